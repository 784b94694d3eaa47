"""A really full disk under the validator's state (a small tmpfs this test mounts; we run as root here), at
start and mid-run: one line naming the path and what to free, no traceback, the validator keeps running and
retrying its writes, and nothing is lost once space is back.

The validator runs in-process on the chain double (tests/chain_double.py) with real SQLite on the tmpfs."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
from chain_double import FileChain, new_chain
from subnet_helpers import hf_repo, make_wallet, safetensors_repo

from bitagent_plugins.subnet.chain import Chain
from bitagent_plugins.subnet.state import ValidatorState

NETUID = 20
PLUGINS = "llama-cpp,bitagent-tasks,bitagent-scorer,bitagent-competition,subnet"


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs at ``tmp_path / "disk"``, unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> Path:
    """Write to ``disk`` until it is full; the file that filled it."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as fh:
        with contextlib.suppress(OSError):
            while True:
                fh.write(b"\0" * 65536)
        with contextlib.suppress(OSError):
            while True:
                fh.write(b"\0")
    with pytest.raises(OSError) as err:
        (disk / "probe").write_bytes(b"\0" * 8192)
    assert err.value.errno == errno.ENOSPC
    return filler


def _commit(chain_file: Path, wallet, text: str) -> None:
    async def main():
        async with Chain("local", NETUID, wallet=wallet, substrate=FileChain(chain_file)) as chain:
            assert (await chain.commit(text)).success

    asyncio.run(main())


class Running:
    """The validator's ``run()`` in a thread; ``lines`` what it logged."""

    def __init__(self, validator, caplog) -> None:
        self.validator = validator
        self.caplog = caplog
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.code = asyncio.run(self.validator.run())

    def lines(self) -> list[str]:
        return [r.getMessage() for r in self.caplog.records]

    def wait_for(self, predicate, what: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert self.thread.is_alive(), f"the validator stopped: {self.lines()[-20:]}"
            assert time.monotonic() < deadline, f"no {what}: {self.lines()[-20:]}"
            time.sleep(0.1)


def _validator(tmp_path, state: Path, chain_file: Path, wallet, monkeypatch, **options):
    from bitagent_core import _plugins as plugins
    from bitagent_plugins.subnet import validator as validator_module
    from bitagent_plugins.subnet.validator import Validator, ValidatorConfig

    monkeypatch.setenv("BITAGENT_PLUGINS", PLUGINS)
    monkeypatch.setattr(validator_module, "DISK_RETRY_S", 0.2)
    plugins.reset_registry()
    config = ValidatorConfig(
        netuid=NETUID,
        network="local",
        state_path=state,
        cache_dir=tmp_path / "hf-cache",
        backend="llama-cpp",
        hf_offline=True,
        sync_interval=1,
        tick_s=0.2,
        max_download_bytes=10**9,
        reevaluate_blocks=None,
        skip_start_check=True,
        **options,
    )
    return Validator(config, substrate=FileChain(chain_file), wallet=wallet)


def _full_lines(lines: list[str], state: Path) -> list[str]:
    return [line for line in lines if "is full" in line and str(state) in line]


def _no_tracebacks(caplog) -> None:
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records if r.exc_info]


def test_a_full_disk_at_start_is_one_line_and_the_validator_starts_once_space_is_back(
    tmp_path, small_disk, monkeypatch, caplog
):
    wallets = {n: make_wallet(tmp_path / "wallets", n) for n in ("validator", "a")}
    chain_file = new_chain(
        tmp_path / "chain.json",
        netuid=NETUID,
        neurons=[{"hotkey": w.hotkey.ss58_address, "validator_permit": n == "validator"} for n, w in wallets.items()],
    )
    state = small_disk / "validator" / "state.sqlite"
    state.parent.mkdir()
    filler = fill(small_disk)
    validator = _validator(tmp_path, state, chain_file, wallets["validator"], monkeypatch)
    with caplog.at_level(logging.INFO):
        running = Running(validator, caplog)
        try:
            running.wait_for(lambda: _full_lines(running.lines(), state), "line saying the disk is full")
            time.sleep(1)  # retried meanwhile, said once
            assert len(_full_lines(running.lines(), state)) == 1, running.lines()
            line = _full_lines(running.lines(), state)[0]
            assert "OPERATOR ACTION NEEDED" in line and "free space" in line and "MB free" in line, line
            assert not any(line.startswith("sync:") for line in running.lines())
            filler.unlink()
            running.wait_for(lambda: any(line.startswith("sync:") for line in running.lines()), "sync once free")
        finally:
            validator.stop()
            running.thread.join(timeout=60)
    assert running.code == 0, running.lines()[-20:]
    _no_tracebacks(caplog)
    with ValidatorState(state) as db:
        assert db.check() == []  # opened on the freed disk, and consistent


def test_a_disk_filling_mid_run_loses_nothing_once_space_is_back(tmp_path, small_disk, monkeypatch, caplog):
    wallets = {n: make_wallet(tmp_path / "wallets", n) for n in ("validator", "a")}
    chain_file = new_chain(
        tmp_path / "chain.json",
        netuid=NETUID,
        neurons=[{"hotkey": w.hotkey.ss58_address, "validator_permit": n == "validator"} for n, w in wallets.items()],
    )
    cache = tmp_path / "hf-cache"
    sha = hf_repo(cache, "acme/a", safetensors_repo(license_="llama3"))  # vetted out: no model to run
    key = f"acme/a@{sha}"
    state = small_disk / "state.sqlite"
    validator = _validator(tmp_path, state, chain_file, wallets["validator"], monkeypatch)
    with caplog.at_level(logging.INFO):
        running = Running(validator, caplog)
        try:
            running.wait_for(lambda: any(line.startswith("sync:") for line in running.lines()), "first sync")
            filler = fill(small_disk)
            _commit(chain_file, wallets["a"], key)  # submitted while the disk is full
            running.wait_for(lambda: _full_lines(running.lines(), state), "line saying the disk is full")
            time.sleep(2)  # several ticks and syncs on the full disk: still running, said once a minute
            assert running.thread.is_alive() and len(_full_lines(running.lines(), state)) == 1
            filler.unlink()

            def vetted() -> bool:
                with ValidatorState(state) as db:
                    return db.vetting(key) is not None

            running.wait_for(vetted, "vetting recorded once space was back")
        finally:
            validator.stop()
            running.thread.join(timeout=60)
    assert running.code == 0, running.lines()[-20:]
    _no_tracebacks(caplog)
    with ValidatorState(state) as db:
        record = db.vetting(key)
        assert record is not None and not record.ok and "license" in record.reason
        assert db.check() == []
    assert os.path.exists(state)
