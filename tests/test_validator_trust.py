"""What a subnet's miners must be able to trust of a validator, every part real except the chain (bittensor 11's
client over the ``Substrate`` seam, tests/chain_double.py):

* its loop never waits on generation: with the in-process llama-cpp backend, heartbeats and syncs happen while
  a sample is being generated (timestamps of the real llama.cpp calls against the validator's log records);
* submission dates every validator agrees on: a miner without a commitment (``bitagent mine --no-commit``,
  answering over its endpoint and the upstream synapse) is dated at its registration block; a copier who
  commits the same weights later is the copy, for a validator that started before it committed and for one
  that started after;
* a validator-side failure never deletes the submission it could not evaluate (offline, the only copy).
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from chain_double import FileChain, new_chain
from subnet_helpers import (
    DRIVER,
    ROOT,
    TEST_PLUGINS,
    gguf_repo,
    hf_repo,
    make_wallet,
    safetensors_repo,
    start_miner,
    stop,
    subprocess_env,
    wait_for_file,
)

from bitagent_plugins.subnet.chain import Chain
from bitagent_plugins.subnet.failures import EXIT_VALIDATOR_FAILURE
from bitagent_plugins.subnet.keys import credited
from bitagent_plugins.subnet.state import ValidatorState

NETUID = 20
PLUGINS = "llama-cpp,servers,bitagent-scorer,bitagent-competition,subnet,city-time-competition"


def _commit(chain_file: Path, wallet, text: str) -> None:
    async def main():
        async with Chain("local", NETUID, wallet=wallet, substrate=FileChain(chain_file)) as chain:
            result = await chain.commit(text)
            assert result.success, result.message

    asyncio.run(main())


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.model
def test_heartbeats_and_syncs_go_on_during_an_in_process_sample(tmp_path, embedded_model, monkeypatch):
    from bitagent_core import _plugins as plugins
    from bitagent_plugins.backends.llama_cpp import LlamaCppBackend
    from bitagent_plugins.subnet.validator import Validator, ValidatorConfig

    samples: list[tuple[float, float]] = []
    generate = LlamaCppBackend._complete

    def timed(self, *args, **kwargs):  # the real llama.cpp call, timed
        started = time.time()
        try:
            return generate(self, *args, **kwargs)
        finally:
            samples.append((started, time.time()))

    monkeypatch.setattr(LlamaCppBackend, "_complete", timed)
    monkeypatch.syspath_prepend(str(TEST_PLUGINS))
    # without the servers plugin the validator cannot run llama.cpp as a server process: it runs in-process
    monkeypatch.setenv("BITAGENT_PLUGINS", PLUGINS.replace("servers,", ""))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    plugins.reset_registry()
    wallets = {name: make_wallet(tmp_path / "wallets", name) for name in ("validator", "miner")}
    chain_file = new_chain(
        tmp_path / "chain.json",
        netuid=NETUID,
        block_time=0.05,
        neurons=[{"hotkey": w.hotkey.ss58_address, "validator_permit": n == "validator"} for n, w in wallets.items()],
    )
    cache = tmp_path / "hf-cache"
    sha = hf_repo(cache, "acme/model", gguf_repo(embedded_model))
    _commit(chain_file, wallets["miner"], f"acme/model@{sha}")
    # no worker_thread given: the validator must find the switch in the backend's typed options
    config = ValidatorConfig(
        netuid=NETUID,
        network="local",
        state_path=tmp_path / "state" / "state.sqlite",
        cache_dir=cache,
        backend="llama-cpp",
        backend_options={"n_threads": "2", "n_ctx": "2048"},
        competition="city-time",
        sample_size=3,
        hf_offline=True,
        sync_interval=1,
        heartbeat_s=0.01,
        tick_s=0.01,
        max_rounds=1,
        max_download_bytes=2 * 10**9,
    )
    records = _Records()
    logger = logging.getLogger("bitagent.subnet.validator")
    logger.addHandler(records)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        validator = Validator(config, substrate=FileChain(chain_file), wallet=wallets["validator"])
        assert validator.pipeline.backend_options["worker_thread"] == "true"
        assert asyncio.run(validator.run()) == 0
    finally:
        logger.removeHandler(records)
        logger.setLevel(level)
        plugins.reset_registry()
    assert len(samples) >= 3
    beats = [r.created for r in records.records if r.getMessage().startswith("heartbeat: evaluating")]
    syncs = [r.created for r in records.records if r.getMessage().startswith("sync: block")]

    def inside(times: list[float]) -> int:
        return sum(any(start < t < end for start, end in samples) for t in times)

    # with generation on the loop's thread, no log record could be made while llama.cpp ran: both would be 0
    assert inside(beats) > 0, (samples, beats)
    assert inside(syncs) > 0, (samples, syncs)


def _validate(
    tmp_path: Path, chain: Path, wallet_dir: Path, cache: Path, state: Path, name: str, *args: str, log_name: str
) -> tuple[int, str]:
    log = tmp_path / log_name
    with open(log, "w") as out:
        proc = subprocess.run(
            [
                sys.executable,
                str(DRIVER),
                "validate",
                "--chain-file",
                str(chain),
                "--",
                "--netuid",
                str(NETUID),
                "--subtensor.network",
                "local",
                "--wallet.name",
                name,
                "--wallet.path",
                str(wallet_dir),
                "--cache-dir",
                str(cache),
                "--hf-offline",
                "--state-path",
                str(state),
                "--allow-private-axons",
                "--sync-interval",
                "2",
                "--max-download-bytes",
                "2000000000",
                *args,
            ],
            cwd=ROOT,
            env=subprocess_env(
                tmp_path, BITAGENT_PLUGINS=PLUGINS, PYTHONPATH=os.pathsep.join([str(TEST_PLUGINS), str(ROOT)])
            ),
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=600,
        )
    return proc.returncode, log.read_text()


def _credited(state: Path) -> dict[str, str]:
    with ValidatorState(state) as db:
        groups = db.weights_groups()
        subs = [row for row in db.submissions() if row.model_key in groups]
        return credited(subs, {row.hotkey: groups[row.model_key] for row in subs})


@pytest.mark.model
def test_validators_started_apart_credit_the_uncommitted_original_not_the_committed_copier(tmp_path, embedded_model):
    names = ["early", "late", "original", "copier"]
    wallet_dir = tmp_path / "wallets"
    wallets = {name: make_wallet(wallet_dir, name) for name in names}
    hk = {name: w.hotkey.ss58_address for name, w in wallets.items()}
    # the copier registered first (block 1001) but commits the copied weights only later; the original
    # registered at 1006 and, like every upstream miner, publishes nothing on chain
    chain = new_chain(
        tmp_path / "chain.json",
        netuid=NETUID,
        block_time=0.2,
        neurons=[
            {
                "hotkey": hk[n],
                "validator_permit": n in ("early", "late"),
                "stake": 100,
                "block_at_registration": {"original": 1006, "copier": 1001}.get(n, 1000),
            }
            for n in names
        ],
    )
    cache = tmp_path / "hf-cache"
    original = hf_repo(cache, "acme/original", gguf_repo(embedded_model))
    copy = hf_repo(cache, "thief/copy", gguf_repo(embedded_model))  # the same weights re-uploaded
    common = (
        "--once",
        "--backend",
        "llama-cpp",
        "--competition",
        "city-time",
        "--sample-size",
        "1",
        "-B",
        "n_ctx=2048",
    )
    miner, ready = start_miner(
        tmp_path,
        chain=chain,
        wallet_dir=wallet_dir,
        name="original",
        model=f"acme/original@{original}",
        netuid=NETUID,
        extra=["--no-commit"],
    )
    try:
        wait_for_file(ready, miner)
        early_state = tmp_path / "early" / "state.sqlite"
        code, log = _validate(tmp_path, chain, wallet_dir, cache, early_state, "early", *common, log_name="early-1.log")
        assert code == 0, log[-3000:]
        _commit(chain, wallets["copier"], f"thief/copy@{copy}")
        copier_block = FileChain(chain).state()["commitments"][hk["copier"]]["block"]
        code, log = _validate(tmp_path, chain, wallet_dir, cache, early_state, "early", *common, log_name="early-2.log")
        assert code == 0, log[-3000:]
        late_state = tmp_path / "late" / "state.sqlite"
        code, late_log = _validate(tmp_path, chain, wallet_dir, cache, late_state, "late", *common, log_name="late.log")
        assert code == 0, late_log[-3000:]
    finally:
        stop(miner)
    assert copier_block > 1006
    for state in (early_state, late_state):
        with ValidatorState(state) as db:
            dates = {row.hotkey: row.committed_block for row in db.submissions()}
        assert dates == {hk["original"]: 1006, hk["copier"]: copier_block}
        assert list(_credited(state).values()) == [hk["original"]]
    copy_line = f"thief/copy@{copy}: the same weights as acme/original@{original} (committed earlier): a copy"
    assert copy_line in log and copy_line in late_log


@pytest.mark.slow
def test_an_offline_validators_own_failure_keeps_the_only_copy(tmp_path):
    """``--hf-offline``, no re-evaluations: the engine is missing (the validator's failure); the model stays in
    the cache, and the next start fails the same way instead of 'not in the local cache'."""
    names = ["validator", "miner"]
    wallet_dir = tmp_path / "wallets"
    wallets = {name: make_wallet(wallet_dir, name) for name in names}
    hk = {name: w.hotkey.ss58_address for name, w in wallets.items()}
    chain = new_chain(
        tmp_path / "chain.json",
        netuid=NETUID,
        neurons=[{"hotkey": hk[n], "validator_permit": n == "validator", "stake": 100} for n in names],
    )
    cache = tmp_path / "hf-cache"
    sha = hf_repo(cache, "acme/model", safetensors_repo())
    _commit(chain, wallets["miner"], f"acme/model@{sha}")
    state = tmp_path / "validator" / "state.sqlite"
    sglang = (
        "--backend",
        "sglang",
        "--server-python",
        sys.executable,
        "-B",
        "ready_timeout=60",
        "--once",
        "--skip-start-check",
        "--reevaluate-blocks",
        "0",
        "--competition",
        "city-time",
        "--sample-size",
        "2",
    )
    logs = []
    for n in range(2):
        code, log = _validate(
            tmp_path, chain, wallet_dir, cache, state, "validator", *sglang, log_name=f"validator-{n}.log"
        )
        logs.append(log)
        assert code == EXIT_VALIDATOR_FAILURE, log[-3000:]
        assert "VALIDATOR FAILURE (no miner's score changes)" in log, log[-3000:]
        assert "kept in the cache for the retry (the failure was this validator's)" in log
        assert "removed from the cache" not in log and "not in the local cache" not in log
        assert (cache / "models--acme--model" / "snapshots" / sha / "model.safetensors").exists()
    with ValidatorState(state) as db:
        assert db.vetting(f"acme/model@{sha}").ok
        assert {e.model_key: e.status for e in db.evaluations()} == {f"acme/model@{sha}": "pending"}


def test_the_submission_date_of_a_miner_without_commitment_is_its_registration_block():
    from bitagent_plugins.subnet.chain import MetagraphView, Neuron
    from bitagent_plugins.subnet.collection import submission_block

    mg = MetagraphView(
        netuid=NETUID,
        block=1043,
        neurons=(
            Neuron(
                uid=1,
                hotkey="a",
                coldkey="c",
                validator_permit=False,
                stake=0.0,
                axon="1.2.3.4:5",
                registration_block=1006,
            ),
            Neuron(
                uid=2,
                hotkey="b",
                coldkey="c",
                validator_permit=False,
                stake=0.0,
                axon="1.2.3.4:6",
                commitment="x",
                commitment_block=1022,
                registration_block=1001,
            ),
        ),
    )
    for channel in ("endpoint", "legacy"):  # whichever answers, whenever this validator started
        assert submission_block(mg, "a", channel, 1043) == 1006
        assert submission_block(mg, "a", channel, 2000) == 1006
    for channel in ("commitment", "endpoint+commitment", "legacy+commitment"):
        assert submission_block(mg, "b", channel, 1022) == 1022
    assert submission_block(mg, "gone", "legacy", 1043) == 1043  # not in the metagraph: the block it was seen
