"""Coming from upstream: its command lines, its weights version key, its state file, its habits.

* the seed's documented command lines (README pm2 lines, the FAQ's GPU line) parse: ``--neuron.device cuda:N``
  is the N-th of ``--neuron.visible_devices``, ``--axon.port`` on a validator is accepted and ignored, and a
  flag bitagent does not take is refused with the flag to use instead;
* ``--weights-version-key`` and upstream's formula, and ``--check`` showing the chain's requirement;
* ``--import-upstream-state``: upstream's ``ft_state.npz`` (pickled dicts in object arrays) is read through a
  restricted unpickler; a crafted file naming ``os.system`` is refused and runs nothing;
* a silent miner costs one timeout (its endpoint and the upstream synapse are asked at once), and the round
  says in one INFO line why miners were not collected.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import struct
import zipfile
from pathlib import Path

import click
import pytest
from chain_double import FileChain, new_chain
from click.testing import CliRunner
from subnet_helpers import hf_repo, make_wallet, safetensors_repo

from bitagent_plugins.subnet.plugin import _device, mine_command, validate_command
from bitagent_plugins.subnet.state import ValidatorState
from bitagent_plugins.subnet.upstream_flags import UPSTREAM_FLAGS, RefusedFlag, translate

NETUID = 20

#: the seed README's mainnet lines (placeholders filled in) and its FAQ's GPU line
SEED_VALIDATOR = [
    "--netuid",
    "20",
    "--subtensor.network",
    "finney",
    "--wallet.path",
    "~/.bittensor/wallets",
    "--wallet.name",
    "coldkey",
    "--wallet.hotkey",
    "hotkey",
    "--axon.port",
    "8091",
]
SEED_GPU = ["--neuron.visible_devices", "1", "--neuron.device", "cuda:0"]
SEED_MINER = [
    "--netuid",
    "20",
    "--subtensor.network",
    "finney",
    "--wallet.path",
    "~/.bittensor/wallets",
    "--wallet.name",
    "miner",
    "--wallet.hotkey",
    "default",
    "--miner-hf-model-name-to-submit",
    "Salesforce/xLAM-7b-r",
    "--logging.debug",
    "--log_level",
    "trace",
    "--axon.port",
    "8092",
]
#: the seed's scripts' testnet validator line, without --openai-api-base (refused: see below)
SEED_TESTNET = [
    "--netuid",
    "76",
    "--subtensor.network",
    "test",
    "--wallet.name",
    "bh-wsl-coldkey",
    "--wallet.hotkey",
    "bh-wsl-hotkey",
    "--wallet.path",
    "~/.bittensor/wallets",
    "--logging.debug",
    "--axon.port",
    "7730",
    "--log_level",
    "trace",
    "--logging.trace",
    "--neuron.sample_size",
    "50",
    "--neuron.visible_devices",
    "1",
    "--neuron.device",
    "cuda:0",
]


def _params(command: click.Command, args: list[str]) -> dict:
    ctx = command.make_context(command.name, list(args))
    return dict(ctx.params, _notes=ctx.meta.get("bitagent.upstream_notes", []))


def test_the_seeds_validator_lines_parse_as_upstream_read_them():
    params = _params(validate_command(), [*SEED_VALIDATOR, *SEED_GPU, "--backend", "sglang"])
    assert (params["netuid"], params["network"], params["wallet_name"]) == (20, "finney", "coldkey")
    assert any(
        n.startswith("--axon.port (upstream's) ignored: the validator serves no endpoint") for n in params["_notes"]
    )
    # cuda:0 among visible devices "1" is GPU 1, as upstream's CUDA_VISIBLE_DEVICES made it
    assert _device(params["device"], params["visible_devices"], "sglang") == "1"
    assert _device("cuda:1", "2,3", "sglang") == "3"
    assert _device("cuda:2", None, "sglang") == "2"
    with pytest.raises(click.BadParameter, match="cuda:2 is not among the 2 visible device"):
        _device("cuda:2", "2,3", "sglang")
    params = _params(validate_command(), SEED_TESTNET)
    assert params["sample_size"] is None  # upstream's sample_size counted miners, not tasks
    assert any("--neuron.sample_size (upstream's) ignored" in n for n in params["_notes"])
    assert params["debug"] and params["trace"] and params["log_level"].upper() == "TRACE"


def test_upstream_flags_are_mapped_and_refused_with_what_to_use():
    params = _params(
        validate_command(),
        [
            "--neuron.epoch_length",
            "360",
            "--neuron.moving_average_alpha=0.05",
            "--neuron.disable_set_weights",
            "--neuron.axon_off",
            "--wandb.off",
            "--validator-hf-server-port",
            "8028",
        ],
    )
    assert (params["epoch_length"], params["ema_alpha"], params["dry_run"]) == (360, 0.05, True)
    runner = CliRunner()
    result = runner.invoke(validate_command(), ["--openai-api-base", "http://localhost:8000/v1"])
    assert result.exit_code == 2
    assert "--openai-api-base (upstream's) is not taken" in result.output and "--backend" in result.output
    with pytest.raises(RefusedFlag, match="--state-path"):
        translate(["--neuron.full_path", "/x"], "validator")
    # after `--` nothing is rewritten
    assert translate(["--", "--axon.port", "1"], "validator") == (["--", "--axon.port", "1"], [])


def test_every_upstream_flag_is_handled_by_the_commands():
    """Each flag of the table either parses (alias, mapped, ignored) or is refused with a reason."""
    sample = {
        "--netuid": "20",
        "--neuron.device": "cuda",
        "--log_level": "INFO",
        "--neuron.epoch_length": "5",
        "--neuron.moving_average_alpha": "0.1",
        "--validator-hf-server-mem-fraction-static": "0.5",
        "--axon.port": "9000",
        "--axon.external_port": "9001",
        "--miner-hf-model-name-to-submit": "a/b",
    }
    for flag in UPSTREAM_FLAGS:
        for role in flag.roles:
            command = validate_command() if role == "validator" else mine_command()
            args = [flag.flag] + ([sample.get(flag.flag, "x")] if flag.takes_value else [])
            if role == "miner" and flag.flag != "--miner-hf-model-name-to-submit":
                args += ["--hf-model-name", "a/b"]
            if flag.handling == "refused":
                with pytest.raises(click.UsageError, match="is not taken: "):
                    command.make_context(command.name, args)
            else:
                command.make_context(command.name, args)  # parses


def test_the_seeds_miner_line_parses():
    params = _params(mine_command(), SEED_MINER)
    assert (params["model"], params["port"], params["netuid"]) == ("Salesforce/xLAM-7b-r", 8092, 20)


def test_the_weights_version_key_follows_upstreams_convention(tmp_path):
    from bitagent_plugins.subnet.chain import version_key
    from bitagent_plugins.subnet.validator import Validator, ValidatorConfig

    wallet = make_wallet(tmp_path / "wallets", "validator")
    chain = new_chain(
        tmp_path / "chain.json",
        netuid=NETUID,
        neurons=[{"hotkey": wallet.hotkey.ss58_address, "validator_permit": True, "stake": 100}],
        hyperparameters={"WeightsVersionKey": 1050},
    )

    def check(key):
        config = ValidatorConfig(
            netuid=NETUID,
            network="local",
            state_path=tmp_path / "state.sqlite",
            cache_dir=tmp_path / "cache",
            backend="llama-cpp",
            weights_version_key=key,
        )

        async def main():
            validator = Validator(config, substrate=FileChain(chain), wallet=wallet)
            try:
                return validator.weights_version_key, await validator.check()
            finally:
                await validator.chain.close()

        return asyncio.run(main())

    ours, report = check(None)
    assert ours == version_key() < 1050
    assert any(
        p.startswith(f"weights version key: this validator sends {ours}, the subnet requires at least 1050")
        and "--weights-version-key 1050" in p
        for p in report.problems
    )
    ours, report = check(1050)
    assert ours == 1050
    assert "weights version key: this validator sends 1050, the subnet requires at least 1050" in report.notes


# -- upstream's state file ------------------------------------------------------------------------------------


def _upstream_state(path: Path, hotkeys: list[str], names: dict) -> None:
    """An ``ft_state.npz`` written the way upstream's ``save_state`` wrote it (numpy: llama-cpp-python's)."""
    import numpy as np

    scored = {"1-3": {"2025010100": [1]}}
    np.savez(
        path,
        step=5,
        scores=np.zeros(len(hotkeys), dtype=np.float32),
        offline_scores={"1-3": np.array([0.0, 0.62, 0.0], dtype=np.float32)},
        offline_miners_scored=np.array(list(scored.items()), dtype=object),
        offline_model_names=names,
        hotkeys=hotkeys,
        allow_pickle=True,
    )


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _crafted(path: Path, marker: Path) -> None:
    """An .npz whose object-array member is a pickle that calls os.system."""
    data = pickle.dumps(Payload(marker), protocol=3)
    header = repr({"descr": "|O", "fortran_order": False, "shape": ()}).encode()
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    npy = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("offline_model_names.npy", npy)


def _import(tmp_path: Path, state_file: Path, *extra: str):
    return CliRunner().invoke(
        validate_command(),
        [
            "--import-upstream-state",
            str(state_file),
            "--state-path",
            str(tmp_path / "state.sqlite"),
            "--cache-dir",
            str(tmp_path / "hf-cache"),
            "--hf-offline",
            *extra,
        ],
    )


def test_upstreams_state_is_imported_through_a_restricted_unpickler(tmp_path):
    cache = tmp_path / "hf-cache"
    sha = hf_repo(cache, "acme/model", safetensors_repo())
    hotkeys = ["5Validator", "5Miner", "5Gone"]
    _upstream_state(
        tmp_path / "ft_state.npz", hotkeys, {"1-2": {1: "acme/old"}, "1-3": {1: "acme/model", 2: "ghost/missing"}}
    )
    result = _import(tmp_path, tmp_path / "ft_state.npz")
    assert result.exit_code == 0, result.output
    assert "imported 1 of 2 upstream submission(s)" in result.output
    assert "not imported: uid 2: 'ghost/missing'" in result.output
    with ValidatorState(tmp_path / "state.sqlite") as db:
        (row,) = db.submissions()
    assert (row.hotkey, row.uid, row.model_key) == ("5Miner", 1, f"acme/model@{sha}")
    # dated by the next sync: the earlier of this placeholder and the hotkey's registration block
    from bitagent_plugins.subnet.legacy_state import UNDATED_BLOCK

    assert row.committed_block == UNDATED_BLOCK


def test_the_state_file_is_read_into_plain_values(tmp_path):
    from bitagent_plugins.subnet.legacy_state import read_npz

    _upstream_state(tmp_path / "ft_state.npz", ["5A", "5B", "5C"], {"1-3": {1: "acme/model"}})
    members = read_npz(tmp_path / "ft_state.npz")
    assert members["hotkeys"] == ["5A", "5B", "5C"] and members["step"] == 5
    assert members["scores"] == [0.0, 0.0, 0.0]
    assert members["offline_scores"] == {"1-3": [0.0, pytest.approx(0.62), 0.0]}
    assert members["offline_model_names"] == {"1-3": {1: "acme/model"}}
    assert members["offline_miners_scored"] == [["1-3", {"2025010100": [1]}]]


def test_a_crafted_state_file_is_refused_and_runs_nothing(tmp_path):
    from bitagent_plugins.subnet.legacy_state import UpstreamStateError, read_npz

    marker = tmp_path / "pwned"
    _crafted(tmp_path / "evil.npz", marker)
    with pytest.raises(UpstreamStateError, match=r"asks for (posix|os)\.system; only numpy arrays"):
        read_npz(tmp_path / "evil.npz")
    result = _import(tmp_path, tmp_path / "evil.npz")
    assert result.exit_code == 1 and "system; only numpy arrays, numbers and plain containers" in result.output
    assert not marker.exists()
    assert not (tmp_path / "state.sqlite").exists() or ValidatorState(tmp_path / "state.sqlite").submissions() == []


# -- collection: one timeout per silent miner, one summary line per round -------------------------------------


def test_a_silent_miner_is_asked_on_both_channels_at_once(tmp_path):
    from bitagent_plugins.subnet.chain import MetagraphView, Neuron
    from bitagent_plugins.subnet.protocol import collect_submissions

    wallet = make_wallet(tmp_path / "wallets", "validator")
    opened: list[int] = []
    live = [0]

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        live[0] += 1
        opened.append(live[0])  # connections open at the moment this one arrived
        try:
            while await reader.read(4096):
                pass  # never answers
        finally:
            live[0] -= 1
            writer.close()

    async def main():
        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        mg = MetagraphView(
            netuid=NETUID,
            block=1,
            neurons=(
                Neuron(
                    uid=1,
                    hotkey="5SilentMiner",
                    coldkey="c",
                    validator_permit=False,
                    stake=0.0,
                    axon=f"127.0.0.1:{port}",
                ),
            ),
        )
        async with server:
            found, missing = await collect_submissions(wallet, mg, netuid=NETUID, timeout_s=1.0, allow_private=True)
        return found, missing

    found, missing = asyncio.run(main())
    assert found == {}
    assert missing == {"5SilentMiner": "endpoint: timed out; legacy: timed out"}
    assert len(opened) == 2 and max(opened) == 2  # the second channel was asked while the first waited


def test_the_round_summarises_why_miners_were_not_collected(tmp_path):
    from bitagent_plugins.subnet.chain import MetagraphView, Neuron
    from bitagent_plugins.subnet.collection import SubmissionCollector
    from bitagent_plugins.subnet.vetting import OfflineHubClient

    wallet = make_wallet(tmp_path / "wallets", "validator")
    with ValidatorState(tmp_path / "state.sqlite") as state:
        collector = SubmissionCollector(
            state,
            hub=OfflineHubClient(tmp_path),
            wallet=wallet,
            own_hotkey="5Me",
            netuid=NETUID,
            query_timeout_s=1.0,
            allow_private=False,
            retry_blocks=10,
        )
        mg = MetagraphView(
            netuid=NETUID,
            block=1,
            neurons=(
                Neuron(uid=0, hotkey="5Me", coldkey="c", validator_permit=True, stake=1.0, axon=None),
                Neuron(uid=1, hotkey="5A", coldkey="c", validator_permit=False, stake=0.0, axon=None),
                Neuron(uid=2, hotkey="5B", coldkey="c", validator_permit=False, stake=0.0, axon=None),
                Neuron(uid=3, hotkey="5C", coldkey="c", validator_permit=False, stake=0.0, axon="10.0.0.1:80"),
            ),
        )
        asyncio.run(collector.run(mg))
        line = collector.not_collected_summary()
    assert line.startswith("3 miner(s) not collected: 2 published nothing (no commitment, no endpoint), 1 ")
    assert "private" in line or "endpoint" in line


def test_model_lines_carry_upstreams_offline_prefix(caplog):
    from bitagent_plugins.subnet.keys import ModelKey
    from bitagent_plugins.subnet.validator import log

    with caplog.at_level(logging.INFO, logger="bitagent.subnet.validator"):
        log.info("%s: vetting passed in %.1f s (%s)", ModelKey("acme/m", "a" * 40), 0.1, "ok")
        log.info("round %d started: %d model(s)", 3, 1)
        log.info("sync: block %d", 5)
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == f"OFFLINE: acme/m@{'a' * 40}: vetting passed in 0.1 s (ok)"
    assert messages[1] == "OFFLINE: round 3 started: 1 model(s)"
    assert messages[2] == "sync: block 5"


def test_docs_list_every_upstream_flag():
    doc = (Path(__file__).resolve().parent.parent / "docs" / "subnet.md").read_text()
    for flag in UPSTREAM_FLAGS:
        assert f"| `{flag.flag}` | {' and '.join(flag.roles)} |" in doc, flag.flag
