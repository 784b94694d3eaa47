"""The validator's own failures never change a miner's score; a changed submission is ignored.

Everything real except the chain (bittensor 11's client over the ``Substrate`` seam, tests/chain_double.py):
``bitagent mine`` processes on 127.0.0.1, ``bitagent validate`` as a process, the Hugging Face cache read
with ``HF_HUB_OFFLINE=1``, SQLite. The misconfigured server Python is this very interpreter, which has no
sglang: the sglang backend really starts ``python -m sglang.launch_server`` and it really fails.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from chain_double import FileChain, new_chain
from subnet_helpers import (
    DRIVER,
    ROOT,
    hf_repo,
    make_wallet,
    safetensors_repo,
    start_miner,
    stop,
    subprocess_env,
    wait_for_file,
)

from bitagent_plugins.subnet.failures import EXIT_CHECK_FAILED, EXIT_VALIDATOR_FAILURE
from bitagent_plugins.subnet.state import ValidatorState

NETUID = 20
PLUGINS = "llama-cpp,servers,bitagent-tasks,bitagent-scorer,bitagent-competition,subnet"


def _validate(
    tmp_path: Path, chain: Path, wallet_dir: Path, cache: Path, state: Path, *args: str, log_name: str = "validator.log"
) -> tuple[int, str, str]:
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
                "validator",
                "--wallet.path",
                str(wallet_dir),
                "--cache-dir",
                str(cache),
                "--hf-offline",
                "--state-path",
                str(state),
                "--allow-private-axons",
                "--sync-interval",
                "3",
                "--max-download-bytes",
                "1000000000",
                *args,
            ],
            cwd=ROOT,
            env=subprocess_env(tmp_path, BITAGENT_PLUGINS=PLUGINS),
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=300,
        )
    text = log.read_text()
    return proc.returncode, text, text


def _version(monkeypatch, sample_size: int) -> str:
    """The competition version evaluations are keyed by, as the validator computes it."""
    from bitagent_core import _plugins as plugins
    from bitagent_core import competition_version as effective_version
    from bitagent_plugins.competitions import get_competition

    monkeypatch.setenv("BITAGENT_PLUGINS", PLUGINS)
    plugins.reset_registry()
    try:
        registry = plugins.get_registry()
        competition = get_competition(registry, "bitagent")
        competition.sample_size = sample_size
        return effective_version(competition, registry)
    finally:
        plugins.reset_registry()


@pytest.mark.slow
def test_a_misconfigured_server_python_changes_no_score(tmp_path, monkeypatch):
    names = ["validator", "scored", "new"]
    wallet_dir = tmp_path / "wallets"
    wallets = {name: make_wallet(wallet_dir, name) for name in names}
    hk = {name: w.hotkey.ss58_address for name, w in wallets.items()}
    chain = new_chain(
        tmp_path / "chain.json",
        netuid=NETUID,
        neurons=[{"hotkey": hk[n], "validator_permit": n == "validator", "stake": 100} for n in names],
    )
    cache = tmp_path / "hf-cache"
    scored_sha = hf_repo(cache, "acme/scored", safetensors_repo(shapes={"w": [4, 16]}))
    new_sha = hf_repo(cache, "acme/new", safetensors_repo(shapes={"w": [8, 16]}))
    state = tmp_path / "validator" / "state.sqlite"
    sglang = ["--backend", "sglang", "--server-python", sys.executable, "-B", "ready_timeout=60"]

    # a round earlier scored "scored" (0.8); its re-evaluation is due now
    with ValidatorState(state) as db:
        db.sync_neurons({0: hk["validator"], 1: hk["scored"]}, 900)
        db.upsert_submission(hk["scored"], 1, "acme/scored", None, scored_sha, 900)
        key = f"acme/scored@{scored_sha}"
        db.record_vetting(key, True, "ok")
    version = _version(monkeypatch, 4)

    miners = [
        start_miner(
            tmp_path,
            chain=chain,
            wallet_dir=wallet_dir,
            name="new",
            model=f"acme/new@{new_sha}",
            netuid=NETUID,
            extra=["--no-commit"],
        )
    ]
    try:
        wait_for_file(miners[0][1], miners[0][0])
        # `--check` says what is wrong, one line per problem, and exits non-zero
        code, _log, err = _validate(tmp_path, chain, wallet_dir, cache, state, *sglang, "--check", log_name="check.log")
        assert code == EXIT_CHECK_FAILED, err
        problems = [line for line in err.splitlines() if line.startswith("problem: ")]
        assert any("engine:" in p and "has no sglang" in p for p in problems), err
        assert any("GPU:" in p for p in problems), err
        assert not any("registration" in p or "permit" in p or "wallet" in p for p in problems), err
        # the same check at start: the validator does not start
        code, log, _err = _validate(
            tmp_path, chain, wallet_dir, cache, state, *sglang, "--once", log_name="refused.log"
        )
        assert code == EXIT_CHECK_FAILED and "not starting" in log, log[-3000:]

        # started anyway: the engine is missing for every model, which is the validator's failure, not theirs
        with ValidatorState(state) as db:
            assert db.claim_evaluation(key, "bitagent", version)
            db.finish_evaluation(key, "bitagent", version, score=0.8, n_tasks=4, block=900)
            before = (
                db.scores_by_hotkey("bitagent", version),
                list(db.ema("bitagent", version).values()),
                len(db.history()),
            )
        code, log, _err = _validate(
            tmp_path,
            chain,
            wallet_dir,
            cache,
            state,
            *sglang,
            "--once",
            "--skip-start-check",
            "--reevaluate-blocks",
            "1",
            "--sample-size",
            "4",
        )
    finally:
        for proc, _ in miners:
            stop(proc)
    assert code == EXIT_VALIDATOR_FAILURE, log[-4000:]
    assert "VALIDATOR FAILURE (no miner's score changes)" in log
    assert "OPERATOR ACTION NEEDED: install the engine into --server-python" in log
    with ValidatorState(state) as db:
        assert db.check() == []
        # (the average now sits under the weights digest vetting learnt: value and count unchanged)
        after = (
            db.scores_by_hotkey("bitagent", version),
            list(db.ema("bitagent", version).values()),
            len(db.history()),
        )
        assert after == before == ({hk["scored"]: 0.8}, [(0.8, 1)], 1)
        statuses = {e.model_key: e.status for e in db.evaluations("bitagent", version)}
        # both went back to pending: the re-evaluation of the scored one, the first evaluation of the new one
        assert statuses == {key: "pending", f"acme/new@{new_sha}": "pending"}
        assert db.vetting(f"acme/new@{new_sha}").ok
        (weights,) = db.weights_history()
    # both failed on the missing engine (offline, the cache is the only copy: a model to re-evaluate stays)
    assert log.count("OPERATOR ACTION NEEDED: install the engine into --server-python") == 2
    assert (cache / "models--acme--scored" / "snapshots" / scored_sha).exists()
    # the last good weights stay in force: all on the scored uid, none on the validator or the unscored
    assert weights.uids == [1] and weights.submitted
    assert [s["dests"] for s in FileChain(chain).weights_submitted()] == [[1]]


@pytest.mark.slow
def test_a_changed_submission_is_ignored(tmp_path):
    """A hotkey's first accepted submission is final: the miner restarted with another model is logged once
    and ignored, across validator restarts."""
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
    first = hf_repo(cache, "acme/first", safetensors_repo(license_="llama3"))
    second = hf_repo(cache, "acme/second", safetensors_repo(license_="apache-2.0", shapes={"w": [2, 2]}))
    state = tmp_path / "validator" / "state.sqlite"
    logs = []
    for n, model in enumerate((f"acme/first@{first}", f"acme/second@{second}", f"acme/second@{second}")):
        proc, ready = start_miner(
            tmp_path,
            chain=chain,
            wallet_dir=wallet_dir,
            name="miner",
            model=model,
            netuid=NETUID,
            log_name=f"miner-{n}",
            extra=["--no-commit"],
        )
        try:
            ready.unlink(missing_ok=True)
            wait_for_file(ready, proc)
            code, log, err = _validate(
                tmp_path,
                chain,
                wallet_dir,
                cache,
                state,
                "--backend",
                "llama-cpp",
                "--once",
                log_name=f"validator-{n}.log",
            )
        finally:
            stop(proc)
        assert code == 0, log[-3000:] + err
        logs.append(log)
    assert "changed its submission" not in logs[0]
    assert sum("changed its submission to 'acme/second@" in line for line in logs[1].splitlines()) == 1
    assert "ignored" in logs[1] and "changed its submission" not in logs[2]  # logged once, even after a restart
    with ValidatorState(state) as db:
        (sub,) = db.submissions()
        assert (sub.hotkey, sub.model_key) == (hk["miner"], f"acme/first@{first}")
        assert sub.ignored_text == f"acme/second@{second}"
        assert db.vetting(f"acme/second@{second}") is None  # never even vetted
        assert not db.vetting(f"acme/first@{first}").ok


def test_bfcl_data_that_differs_from_the_release_is_refused(tmp_path, monkeypatch):
    import shutil

    from bitagent_plugins.subnet import bfcl_data

    monkeypatch.delenv(bfcl_data.DATA_ENV, raising=False)
    installed, why = bfcl_data.data_dir()
    assert installed is not None, why  # `make install` puts the pinned wheel's data there
    assert bfcl_data.check() == (bfcl_data.PINNED_DIGEST, "")
    copy = tmp_path / "data"
    shutil.copytree(
        installed,
        copy,
        ignore=shutil.ignore_patterns("multi_turn_func_doc", "unused_datasets", "memory_prereq_conversation"),
    )
    monkeypatch.setenv(bfcl_data.DATA_ENV, str(copy))
    assert bfcl_data.check() == (bfcl_data.PINNED_DIGEST, "")  # the same files elsewhere are fine
    target = copy / "possible_answer" / "BFCL_v4_simple_python.json"
    target.write_bytes(target.read_bytes().replace(b'"', b"'", 1))
    digest, problem = bfcl_data.check()
    assert digest != bfcl_data.PINNED_DIGEST and "differs from bfcl-eval" in problem
    assert "pip install --no-deps bfcl-eval==" in problem
    monkeypatch.setenv(bfcl_data.DATA_ENV, "hub@main")
    assert bfcl_data.check()[0] is None and "not the Hub" in bfcl_data.check()[1]


def test_a_full_disk_and_a_dead_server_are_the_validators():
    import errno

    from bitagent_plugins.subnet.failures import ENGINE_ERROR, classify_exception, classify_results

    assert classify_exception(OSError(errno.ENOSPC, "No space left on device")).ours
    dead = [ENGINE_ERROR] * 4
    assert classify_results(4, dead).ours
    assert classify_results(4, dead[:3]) is None  # one answered: the server was up
    assert classify_results(4, ["timeout"] * 4) is None  # slow model: its own fault
    assert classify_results(4, [ENGINE_ERROR] * 3 + ["backend_error"]) is None
