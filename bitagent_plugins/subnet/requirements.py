"""Hardware requirements (``min_compute.toml``) and a check of this host against them.

``load_min_compute()`` reads the shipped file (or another path) into typed records;
``check_host(requirements.role("validator"), cache_dir=..., params_billion=...)`` compares this machine
(CPU cores, RAM, free disk where the Hub cache lives, GPU memory from ``nvidia-smi``) and returns findings:
``error`` below the minimum, ``warning`` below the recommendation. ``bitagent validate --check`` prints them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import attrs

MIN_COMPUTE = Path(__file__).with_name("min_compute.toml")
GIB = 1024**3


class RequirementsError(ValueError):
    """The requirements file is missing a field or has a wrong value."""


@attrs.frozen
class GpuTier:
    max_params_billion: float
    min_memory_gib: float


@attrs.frozen
class RoleRequirements:
    role: str
    gpu_required: bool
    cpu_cores: int
    recommended_cpu_cores: int
    ram_gib: float
    recommended_ram_gib: float
    disk_gib: float
    recommended_disk_gib: float
    gpu: tuple[GpuTier, ...] = ()
    engines: dict[str, str] = attrs.field(factory=dict)
    #: the context length models are served with (sglang --context-length, vLLM --max-model-len)
    context_length: int | None = None

    def gpu_memory_gib(self, params_billion: float) -> float:
        """GPU memory needed for a model of ``params_billion`` parameters (the smallest tier that holds it)."""
        for tier in sorted(self.gpu, key=lambda t: t.max_params_billion):
            if params_billion <= tier.max_params_billion:
                return tier.min_memory_gib
        largest = max((t.max_params_billion for t in self.gpu), default=0)
        raise RequirementsError(f"no GPU tier for {params_billion:g}B parameters (the largest is {largest:g}B)")


@attrs.frozen
class MinCompute:
    version: int
    roles: dict[str, RoleRequirements]

    def role(self, name: str) -> RoleRequirements:
        try:
            return self.roles[name]
        except KeyError:
            raise RequirementsError(f"no [{name}] section (have: {', '.join(sorted(self.roles))})") from None


def _role(name: str, table: dict[str, Any]) -> RoleRequirements:
    try:
        tiers = tuple(GpuTier(float(t["max_params_billion"]), float(t["min_memory_gib"])) for t in table.get("gpu", []))
        role = RoleRequirements(
            role=name,
            gpu_required=bool(table["gpu_required"]),
            cpu_cores=int(table["cpu_cores"]),
            recommended_cpu_cores=int(table.get("recommended_cpu_cores", table["cpu_cores"])),
            ram_gib=float(table["ram_gib"]),
            recommended_ram_gib=float(table.get("recommended_ram_gib", table["ram_gib"])),
            disk_gib=float(table["disk_gib"]),
            recommended_disk_gib=float(table.get("recommended_disk_gib", table["disk_gib"])),
            gpu=tiers,
            engines={str(k): str(v) for k, v in table.get("engines", {}).items()},
            context_length=int(table["context_length"]) if "context_length" in table else None,
        )
    except KeyError as exc:
        raise RequirementsError(f"[{name}] lacks {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise RequirementsError(f"[{name}]: {exc}") from None
    if role.gpu_required and not role.gpu:
        raise RequirementsError(f"[{name}] requires a GPU but has no [[{name}.gpu]] tiers")
    return role


def load_min_compute(path: str | Path | None = None) -> MinCompute:
    """The requirements in ``path`` (default: the shipped ``min_compute.toml``)."""
    path = Path(path) if path is not None else MIN_COMPUTE
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RequirementsError(f"cannot read {path}: {exc}") from None
    roles = {name: _role(name, table) for name, table in data.items() if isinstance(table, dict)}
    return MinCompute(version=int(data.get("version", 1)), roles=roles)


@attrs.frozen
class Host:
    cpu_cores: int
    ram_gib: float
    disk_free_gib: float
    #: total memory of the visible GPUs, or None when there is no GPU (or no nvidia-smi)
    gpu_memory_gib: float | None


def gpu_memory_gib(visible_devices: str | None = None) -> float | None:
    """Total memory of the GPUs ``nvidia-smi`` reports (only ``visible_devices`` when given)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        done = subprocess.run(
            [smi, "--query-gpu=index,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    wanted = {d.strip() for d in visible_devices.split(",")} if visible_devices else None
    total = 0.0
    for line in done.stdout.strip().splitlines():
        index, _, mib = (part.strip() for part in line.partition(","))
        if wanted is None or index in wanted:
            total += float(mib) / 1024
    return total or None


def measure_host(disk_path: str | Path, *, visible_devices: str | None = None, gpu: bool = True) -> Host:
    """This machine's cores, RAM, free disk where ``disk_path`` lives and (``gpu``) GPU memory."""
    path = Path(disk_path).expanduser()
    while not path.exists() and path != path.parent:  # the cache may not exist yet: its nearest parent's disk
        path = path.parent
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    return Host(
        cpu_cores=os.cpu_count() or 1,
        ram_gib=ram,
        disk_free_gib=shutil.disk_usage(path).free / GIB,
        gpu_memory_gib=gpu_memory_gib(visible_devices) if gpu else None,
    )


@attrs.frozen
class Finding:
    #: error (below the minimum) / warning (below the recommendation)
    level: str
    message: str


def check_host(requirements: RoleRequirements, host: Host, *, params_billion: float = 10.0) -> list[Finding]:
    """What ``host`` lacks for ``requirements`` serving models up to ``params_billion`` parameters."""
    found: list[Finding] = []

    def compare(what: str, have: float, minimum: float, recommended: float, unit: str) -> None:
        shown = f"{have:g}" if float(have).is_integer() else f"{have:.1f}"
        if have < minimum:
            found.append(Finding("error", f"{what}: {shown}{unit}, the minimum is {minimum:g}{unit}"))
        elif have < recommended:
            found.append(Finding("warning", f"{what}: {shown}{unit}, {recommended:g}{unit} recommended"))

    compare("CPU cores", host.cpu_cores, requirements.cpu_cores, requirements.recommended_cpu_cores, "")
    compare("RAM", host.ram_gib, requirements.ram_gib, requirements.recommended_ram_gib, " GiB")
    compare(
        "free disk for the Hugging Face cache",
        host.disk_free_gib,
        requirements.disk_gib,
        requirements.recommended_disk_gib,
        " GiB",
    )
    if requirements.gpu_required:
        needed = requirements.gpu_memory_gib(params_billion)
        if host.gpu_memory_gib is None:
            found.append(
                Finding(
                    "error",
                    f"no GPU found (nvidia-smi); models up to {params_billion:g}B parameters "
                    f"need {needed:g} GiB of GPU memory",
                )
            )
        elif host.gpu_memory_gib < needed:
            found.append(
                Finding(
                    "error",
                    f"GPU memory: {host.gpu_memory_gib:.1f} GiB, models up to "
                    f"{params_billion:g}B parameters need {needed:g} GiB",
                )
            )
    return found
