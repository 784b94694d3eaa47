"""The hardware requirements file and the host check ``bitagent validate --check`` uses."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from bitagent_plugins.subnet.requirements import (
    Host,
    RequirementsError,
    check_host,
    load_min_compute,
    measure_host,
)

ROOT = Path(__file__).resolve().parent.parent


def test_the_shipped_file():
    requirements = load_min_compute()
    validator, miner = requirements.role("validator"), requirements.role("miner")
    assert validator.gpu_required and not miner.gpu_required
    # GPU memory grows with the model size, up to the largest model accepted (10B)
    assert [validator.gpu_memory_gib(b) for b in (0.5, 1.5, 3, 7, 8, 10)] == [12, 12, 24, 40, 40, 48]
    with pytest.raises(RequirementsError, match="no GPU tier for 12B"):
        validator.gpu_memory_gib(12)
    with pytest.raises(RequirementsError, match="no \\[owner\\] section"):
        requirements.role("owner")


def test_engine_pins_agree_with_the_requirement_files():
    engines = load_min_compute().role("validator").engines
    for engine in ("sglang", "vllm"):
        text = (ROOT / "requirements" / f"{engine}.txt").read_text()
        (pin,) = re.findall(rf"^{engine}==(\S+)$", text, re.M)
        assert pin == engines[engine]
    assert engines == {"sglang": "0.5.23", "vllm": "0.33.0"}


def test_check_host():
    validator = load_min_compute().role("validator")
    big = Host(cpu_cores=32, ram_gib=256, disk_free_gib=1000, gpu_memory_gib=80)
    assert check_host(validator, big) == []
    small = Host(cpu_cores=8, ram_gib=40, disk_free_gib=50, gpu_memory_gib=24)
    found = [(f.level, f.message) for f in check_host(validator, small, params_billion=8)]
    assert found == [
        ("warning", "CPU cores: 8, 16 recommended"),
        ("warning", "RAM: 40 GiB, 64 GiB recommended"),
        ("error", "free disk for the Hugging Face cache: 50 GiB, the minimum is 100 GiB"),
        ("error", "GPU memory: 24.0 GiB, models up to 8B parameters need 40 GiB"),
    ]
    assert check_host(validator, small, params_billion=4)[-1].level == "error"  # disk still
    no_gpu = Host(cpu_cores=32, ram_gib=256, disk_free_gib=1000, gpu_memory_gib=None)
    (finding,) = check_host(validator, no_gpu)
    assert finding.message.startswith("no GPU found")
    assert check_host(load_min_compute().role("miner"), no_gpu) == []


def test_measure_host(tmp_path):
    host = measure_host(tmp_path / "not" / "created" / "yet")
    assert host.cpu_cores >= 1 and host.ram_gib > 0 and host.disk_free_gib > 0


def test_bad_files(tmp_path):
    path = tmp_path / "min_compute.toml"
    path.write_text("[validator]\ngpu_required = true\ncpu_cores = 4\nram_gib = 8\ndisk_gib = 10\n")
    with pytest.raises(RequirementsError, match="requires a GPU but has no"):
        load_min_compute(path)
    path.write_text("[miner]\ngpu_required = false\ncpu_cores = 'many'\nram_gib = 8\ndisk_gib = 1\n")
    with pytest.raises(RequirementsError, match="\\[miner\\]"):
        load_min_compute(path)
    path.write_text("[miner]\ngpu_required = false\n")
    with pytest.raises(RequirementsError, match="lacks 'cpu_cores'"):
        load_min_compute(path)
    with pytest.raises(RequirementsError, match="cannot read"):
        load_min_compute(tmp_path / "missing.toml")


def test_gpu_memory_from_nvidia_smi(tmp_path, monkeypatch):
    """The parsing of ``nvidia-smi --query-gpu=index,memory.total --format=csv,noheader,nounits`` (the tool
    is absent here: a script prints what it prints on a two-GPU machine)."""
    from bitagent_plugins.subnet.requirements import gpu_memory_gib

    smi = tmp_path / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\n[ \"$1\" = --query-gpu=index,memory.total ] || exit 9\nprintf '0, 81559\\n1, 40960\\n'\n"
    )
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    assert gpu_memory_gib() == pytest.approx((81559 + 40960) / 1024)
    assert gpu_memory_gib("1") == pytest.approx(40.0)
    assert gpu_memory_gib("7") is None
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert gpu_memory_gib() is None
