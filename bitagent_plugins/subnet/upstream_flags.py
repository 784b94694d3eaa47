"""Upstream's command-line flags on ``bitagent mine`` / ``bitagent validate``: each is honoured (an alias of a
bitagent option), mapped (rewritten to the bitagent option that means the same), accepted and ignored (it
configures something bitagent does not have; a note says so), or refused with the flag to use instead.

The table is the documentation (docs/subnet.md prints it); :func:`translate` applies it to argv before click
parses it, so the seed's pm2 lines start as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import attrs

Role = Literal["validator", "miner"]
Handling = Literal["alias", "mapped", "ignored", "refused"]


@attrs.frozen
class UpstreamFlag:
    flag: str
    handling: Handling
    #: the bitagent option (alias/mapped), or why it is ignored/refused and what to use
    note: str
    #: it takes a value (``--flag VALUE``); False: a switch
    takes_value: bool = True
    #: which commands it applies to
    roles: tuple[Role, ...] = ("validator", "miner")
    #: mapped: the bitagent flag it becomes
    target: str | None = None


UPSTREAM_FLAGS: tuple[UpstreamFlag, ...] = (
    UpstreamFlag("--netuid", "alias", "--netuid"),
    UpstreamFlag("--subtensor.network", "alias", "--subtensor.network"),
    UpstreamFlag("--subtensor.chain_endpoint", "alias", "--subtensor.chain_endpoint"),
    UpstreamFlag("--wallet.name", "alias", "--wallet.name"),
    UpstreamFlag("--wallet.hotkey", "alias", "--wallet.hotkey"),
    UpstreamFlag("--wallet.path", "alias", "--wallet.path"),
    UpstreamFlag("--logging.debug", "alias", "--logging.debug", takes_value=False),
    UpstreamFlag("--logging.trace", "alias", "--logging.trace", takes_value=False),
    UpstreamFlag("--log_level", "alias", "--log-level"),
    UpstreamFlag("--logging.info", "ignored", "INFO is the default level", takes_value=False),
    UpstreamFlag("--logging.record_log", "ignored", "logs go to stdout/stderr (pm2 keeps them)", takes_value=False),
    UpstreamFlag(
        "--logging.logging_dir",
        "refused",
        "logs go to stdout/stderr: use pm2's log files (pm2 logs), or "
        "redirect them; the validator's state goes where --state-path says",
    ),
    UpstreamFlag("--neuron.name", "refused", "use --state-path for where the validator keeps its state"),
    UpstreamFlag("--neuron.full_path", "refused", "use --state-path for where the validator keeps its state"),
    UpstreamFlag("--neuron.dont_save_events", "ignored", "no events file is written", takes_value=False),
    UpstreamFlag("--neuron.events_retention_size", "ignored", "no events file is written"),
    # the validator
    UpstreamFlag(
        "--neuron.device",
        "alias",
        "--neuron.device: cuda:N is the N-th of --neuron.visible_devices, as upstream read it",
        roles=("validator",),
    ),
    UpstreamFlag("--neuron.visible_devices", "alias", "--visible-devices", roles=("validator",)),
    UpstreamFlag("--validator-hf-cache-dir", "alias", "--cache-dir", roles=("validator",)),
    UpstreamFlag("--validator-hf-server-mem-fraction-static", "alias", "--mem-fraction-static", roles=("validator",)),
    UpstreamFlag(
        "--neuron.epoch_length",
        "mapped",
        "blocks between weight settings",
        roles=("validator",),
        target="--epoch-length",
    ),
    UpstreamFlag(
        "--neuron.moving_average_alpha",
        "mapped",
        "weight of a new evaluation in the moving average",
        roles=("validator",),
        target="--ema-alpha",
    ),
    UpstreamFlag(
        "--neuron.disable_set_weights",
        "mapped",
        "everything but submitting weights",
        takes_value=False,
        roles=("validator",),
        target="--dry-run",
    ),
    UpstreamFlag(
        "--neuron.sample_size",
        "ignored",
        "upstream: miners queried per step; bitagent asks every miner "
        "at each sync (--sample-size is the number of tasks per evaluation)",
        roles=("validator",),
    ),
    UpstreamFlag(
        "--neuron.num_concurrent_forwards",
        "ignored",
        "one model is evaluated at a time, beside the loop",
        roles=("validator",),
    ),
    UpstreamFlag(
        "--neuron.vpermit_tao_limit",
        "ignored",
        "weights go only to uids with a scored submission",
        roles=("validator",),
    ),
    UpstreamFlag(
        "--neuron.axon_off", "ignored", "the validator serves no endpoint", takes_value=False, roles=("validator",)
    ),
    UpstreamFlag("--axon_off", "ignored", "the validator serves no endpoint", takes_value=False, roles=("validator",)),
    UpstreamFlag(
        "--axon.port",
        "ignored",
        "the validator serves no endpoint (it only asks miners'); the port needs no opening",
        roles=("validator",),
    ),
    UpstreamFlag("--axon.ip", "ignored", "the validator serves no endpoint", roles=("validator",)),
    UpstreamFlag("--axon.external_ip", "ignored", "the validator serves no endpoint", roles=("validator",)),
    UpstreamFlag("--axon.external_port", "ignored", "the validator serves no endpoint", roles=("validator",)),
    UpstreamFlag("--axon.max_workers", "ignored", "the validator serves no endpoint", roles=("validator",)),
    UpstreamFlag(
        "--validator-hf-server-port",
        "ignored",
        "each model server listens on a free 127.0.0.1 port "
        "chosen at start (a fixed port collided with anything already there)",
        roles=("validator",),
    ),
    UpstreamFlag(
        "--wandb.off", "ignored", "Weights & Biases is off unless --wandb", takes_value=False, roles=("validator",)
    ),
    UpstreamFlag(
        "--wandb.project_name", "refused", "use --wandb with BITAGENT_WANDB_PROJECT=...", roles=("validator",)
    ),
    UpstreamFlag("--wandb.entity", "refused", "use --wandb with BITAGENT_WANDB_ENTITY=...", roles=("validator",)),
    UpstreamFlag(
        "--openai-api-base",
        "refused",
        "bitagent starts and stops each miner's model itself: use --backend "
        "(sglang, vllm, llama-cpp-server) and --server-python",
        roles=("validator",),
    ),
    # the miner
    UpstreamFlag("--miner-hf-model-name-to-submit", "alias", "--hf-model-name", roles=("miner",)),
    UpstreamFlag("--axon.port", "alias", "--axon.port", roles=("miner",)),
    UpstreamFlag("--axon.ip", "alias", "--axon.ip", roles=("miner",)),
    UpstreamFlag("--axon.external_ip", "alias", "--external-ip", roles=("miner",)),
    UpstreamFlag("--axon.external_port", "alias", "--external-port", roles=("miner",)),
    UpstreamFlag("--axon.max_workers", "ignored", "the endpoint caps its connections itself", roles=("miner",)),
    UpstreamFlag("--neuron.device", "ignored", "the miner runs no model", roles=("miner",)),
    UpstreamFlag("--neuron.epoch_length", "ignored", "the miner sets no weights", roles=("miner",)),
    UpstreamFlag(
        "--blacklist.force_validator_permit",
        "ignored",
        "the submission is revealed only over requests signed by a registered hotkey with a validator permit",
        takes_value=False,
        roles=("miner",),
    ),
    UpstreamFlag(
        "--blacklist.allow_non_registered",
        "refused",
        "the submission is never revealed to unregistered hotkeys (a copier could take it)",
        takes_value=False,
        roles=("miner",),
    ),
)


class RefusedFlag(ValueError):
    """An upstream flag bitagent does not take; the message says what to use instead."""


def flags_for(role: Role) -> dict[str, UpstreamFlag]:
    return {f.flag: f for f in UPSTREAM_FLAGS if role in f.roles}


def translate(args: Sequence[str], role: Role) -> tuple[list[str], list[str]]:
    """``(argv for click, notes)``: mapped flags rewritten, ignored ones dropped (with their value) and noted;
    a refused flag raises :class:`RefusedFlag`. Everything after ``--`` is left alone."""
    table = flags_for(role)
    out: list[str] = []
    notes: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            out.extend(args[i:])
            break
        name, eq, inline = arg.partition("=")
        flag = table.get(name)
        if flag is None or flag.handling == "alias":
            out.append(arg)
            i += 1
            continue
        value: str | None = inline if eq else None
        consumed = 1
        if flag.takes_value and not eq and i + 1 < len(args) and not _is_flag(args[i + 1]):
            value, consumed = args[i + 1], 2
        if flag.handling == "refused":
            raise RefusedFlag(f"{name} (upstream's) is not taken: {flag.note}")
        if flag.handling == "mapped":
            assert flag.target is not None
            out.extend([flag.target] + ([value] if flag.takes_value and value is not None else []))
            notes.append(f"{name} (upstream's) read as {flag.target}")
        else:
            notes.append(f"{name} (upstream's) ignored: {flag.note}")
        i += consumed
    return out, notes


def _is_flag(text: str) -> bool:
    return text.startswith("--") or (text.startswith("-") and len(text) > 1 and not text[1:2].isdigit())


def device_index(device: str, visible_devices: str | None) -> str:
    """Upstream's ``--neuron.device cuda:N``: the N-th GPU among ``--neuron.visible_devices`` (it set
    ``CUDA_VISIBLE_DEVICES`` to them first, so ``cuda:0`` is the first visible one); without them, GPU N.
    Returns the physical GPU id; raises ``ValueError`` when N is not among the visible devices."""
    index = int(device.split(":", 1)[1])
    if not visible_devices:
        return str(index)
    visible = [part.strip() for part in visible_devices.split(",") if part.strip()]
    if index >= len(visible):
        raise ValueError(f"cuda:{index} is not among the {len(visible)} visible device(s) {visible_devices}")
    return visible[index]
