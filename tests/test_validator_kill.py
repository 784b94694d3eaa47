"""kill -9 of the validator at random moments of a round: the state stays consistent and the round resumes.

Everything is real except the chain (bittensor 11's client over the ``Substrate`` seam, tests/chain_double.py):
two ``bitagent mine`` processes on 127.0.0.1 (one commits on chain, one answers only its signed endpoint), a
bad-license submission committed on chain, the Hugging Face cache read with ``HF_HUB_OFFLINE=1``, SQLite, and
``bitagent validate --once`` as a process, SIGKILLed at a random moment, checked, started again -- and killed
again, up to four times in a row -- before it is let finish the round, whose outcome is then checked.

The validator evaluates on the ``city-time`` competition (tests/plugins, installed through PYTHONPATH): the
embedded model scores above zero on any sample of it, so every round sets weights and kills land while they
are set. (On the ``bitagent`` competition the round's private seed may draw a sample the small model scores
0 on, and then no weights are set at all.)

Two kinds of rounds, to get 20+ kills in a few minutes on 2 cores:

* evaluation rounds: the good model is evaluated by the llama-cpp backend on the embedded model (2 tasks), so
  kills land in vetting, loading, generating, recording, deleting, setting weights; the second evaluation round
  re-evaluates it (its state copied from the first, the evaluation due again), so kills also land while its
  moving average is updated: it must count each finished evaluation exactly once;
* cheap rounds: the good model's score is already in the state (copied from an evaluation round) and the
  round's work is a new bad submission (a new hotkey at the bad-license uid, as a recycled uid, committing a
  new commit of the bad-license repo) to lock, vet and reject, then weights: kills land in syncing, querying
  the endpoint, locking, vetting, setting weights, finishing.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
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

from bitagent_plugins.subnet.chain import Chain, fit_to_max_weight_limit, version_key
from bitagent_plugins.subnet.state import DEFAULT_EMA_ALPHA, ValidatorState
from bitagent_plugins.subnet.weights import quantize_u16, subnet_weights

NETUID = 20
KILLS = 20
EVALUATION_ROUNDS = 2
KILLS_PER_ROUND = 4
MAX_WEIGHT_U16 = 50000
PLUGINS = "llama-cpp,bitagent-scorer,bitagent-competition,subnet,city-time-competition"


class Setup:
    def __init__(self, tmp_path: Path, embedded_model: Path) -> None:
        self.tmp = tmp_path
        self.rng = random.Random(20)
        names = ["validator", "good", "copycat", "license"]
        self.wallet_dir = tmp_path / "wallets"
        self.wallets = {name: make_wallet(self.wallet_dir, name) for name in names}
        self.hk = {name: w.hotkey.ss58_address for name, w in self.wallets.items()}
        self.chain = new_chain(
            tmp_path / "chain.json",
            netuid=NETUID,
            # the copycat registered after the original committed: a miner without a commitment is dated at its
            # registration block (the same for every validator), so the original keeps the credit
            neurons=[
                {"hotkey": self.hk[n], "validator_permit": n == "validator", "stake": 100}
                | ({"block_at_registration": 100_000} if n == "copycat" else {})
                for n in names
            ],
            hyperparameters={"MinAllowedWeights": 2, "MaxWeightsLimit": MAX_WEIGHT_U16},
        )
        self.model = embedded_model
        self.good_sha = "a" * 40
        self.kills = 0
        self.durations: dict[str, list[float]] = {"evaluation": [], "cheap": []}

    def commit_license(self, sha: str) -> None:
        async def main():
            async with Chain("local", NETUID, wallet=self.wallets["license"], substrate=FileChain(self.chain)) as c:
                assert (await c.commit(f"acme/license@{sha}")).success

        asyncio.run(main())

    def new_license_hotkey(self, n: int) -> None:
        """A new hotkey takes the bad-license uid (the old one deregistered): its first submission counts."""
        wallet = make_wallet(self.wallet_dir, f"license-{n}")
        old, new = self.hk["license"], wallet.hotkey.ss58_address

        def swap(state: dict) -> None:
            for neuron in state["neurons"]:
                if neuron["hotkey"] == old:
                    neuron.update(hotkey=new, coldkey=new)
            state["commitments"].pop(old, None)

        FileChain(self.chain).update(swap)
        self.wallets["license"], self.hk["license"] = wallet, new

    def validator(self, state: Path, cache: Path, log: Path) -> subprocess.Popen:
        return subprocess.Popen(
            [
                sys.executable,
                str(DRIVER),
                "validate",
                "--chain-file",
                str(self.chain),
                "--",
                "--netuid",
                str(NETUID),
                "--subtensor.network",
                "local",
                "--wallet.name",
                "validator",
                "--wallet.path",
                str(self.wallet_dir),
                "--backend",
                "llama-cpp",
                "-B",
                "n_threads=2",
                "-B",
                "n_ctx=2048",
                "--sample-size",
                "2",
                "--cache-dir",
                str(cache),
                "--hf-offline",
                "--state-path",
                str(state),
                "--allow-private-axons",
                "--sync-interval",
                "5",
                "--once",
                "--reevaluate-blocks",
                "0",
                "--max-download-bytes",
                "1000000000",
                "--competition",
                "city-time",
            ],
            cwd=ROOT,
            env=subprocess_env(self.tmp, BITAGENT_PLUGINS=PLUGINS, PYTHONPATH=str(TEST_PLUGINS)),
            stdout=open(log, "a"),
            stderr=subprocess.STDOUT,
        )

    def round(self, kind: str, state: Path, cache: Path, log: Path) -> list[dict]:
        """Run the round, SIGKILLing it at random moments (up to KILLS_PER_ROUND), then let it finish."""
        seen: list[dict] = []
        while len(seen) < KILLS_PER_ROUND and self.kills < KILLS:
            usual = self.durations[kind]
            delay = self.rng.uniform(0.0, max(usual) * 1.1 if usual else 8.0)
            started = time.monotonic()
            proc = self.validator(state, cache, log)
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
                self.kills += 1
                seen.append(check_consistent(state, self.chain))
                continue
            assert proc.returncode == 0, log.read_text()[-3000:]
            self.durations[kind].append(time.monotonic() - started)
            return seen
        started = time.monotonic()
        proc = self.validator(state, cache, log)
        assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]
        self.durations[kind].append(time.monotonic() - started)
        return seen

    def expected_weights(self, score: float) -> tuple[list[int], list[int]]:
        weights, _forced = subnet_weights(
            {1: score, 2: 0.0, 3: 0.0},
            n_uids=4,
            own_uid=0,
            min_allowed_weights=2,
            max_weight_limit=MAX_WEIGHT_U16 / 65535,
            rule="cubic",
        )
        uids, values = quantize_u16(weights)
        return uids, fit_to_max_weight_limit(uids, values, MAX_WEIGHT_U16)

    def check_weights(self, state: Path, score: float, submitted_before: int, kills: int) -> None:
        expected = self.expected_weights(score)
        submitted = FileChain(self.chain).weights_submitted()[submitted_before:]
        # a kill between submitting and recording means the next run submits again; never zero times
        assert 1 <= len(submitted) <= 1 + kills
        for s in submitted:
            assert (s["signer"], s["dests"], s["weights"], s["version_key"]) == (
                self.hk["validator"],
                *expected,
                version_key(),
            )
        with ValidatorState(state) as db:
            last = db.weights_history(1)[0]
        assert last.submitted and (last.uids, last.weights) == (expected[0], [float(v) for v in expected[1]])


def check_consistent(state_path: Path, chain_file: Path) -> dict:
    """After a kill: SQLite's integrity check and the schema's invariants hold; the chain file is whole."""
    FileChain(chain_file).state()
    if not state_path.exists():
        return {"rounds": 0}
    with ValidatorState(state_path) as db:
        assert db.check() == []
        rounds = db.rounds()
        assert sum(r.status == "running" for r in rounds) <= 1
        assert all(r.status != "failed" for r in rounds)
        groups = db.weights_groups()
        for evaluation in db.evaluations():
            assert evaluation.status in ("pending", "running", "done")
            # a re-evaluation keeps the last score until its own replaces it
            assert (evaluation.score is not None) == (evaluation.n_done > 0)
            # every finished evaluation is in the history and in the moving average exactly once
            history = [
                h
                for h in reversed(db.history(evaluation.model_key, limit=1000))
                if h["competition_version"] == evaluation.competition_version
            ]
            assert len(history) == evaluation.n_done
            group = groups.get(evaluation.model_key, "sha:" + evaluation.model_key.rpartition("@")[2])
            average = db.ema(evaluation.competition, evaluation.competition_version).get(group)
            if evaluation.n_done:
                assert average is not None and average[1] == evaluation.n_done
                assert average[0] == pytest.approx(moving_average([h["score"] for h in history]))
            else:
                assert average is None
        return {"rounds": len(rounds), "evaluations": [e.status for e in db.evaluations()]}


def moving_average(scores: list[float]) -> float:
    value = scores[0]
    for score in scores[1:]:
        value = DEFAULT_EMA_ALPHA * score + (1 - DEFAULT_EMA_ALPHA) * value
    return value


def copy_cache(source: Path, target: Path) -> None:
    """A fresh cache for a round: same repos, blobs hard-linked (the validator deletes what it evaluated)."""
    for path in source.rglob("*"):
        dest = target / path.relative_to(source)
        if path.is_symlink():
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.symlink_to(os.readlink(path))
        elif path.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, dest)


@pytest.mark.model
def test_kill_9_at_random_moments(tmp_path, embedded_model):
    s = Setup(tmp_path, embedded_model)
    source = tmp_path / "source"
    hf_repo(source, "acme/good", gguf_repo(embedded_model), sha=s.good_sha)
    license_sha = hf_repo(source, "acme/license", safetensors_repo(license_="gpl-3.0"), sha="b" * 40)
    s.commit_license(license_sha)
    miners = [
        start_miner(
            tmp_path,
            chain=s.chain,
            wallet_dir=s.wallet_dir,
            name="good",
            model=f"acme/good@{s.good_sha}",
            netuid=NETUID,
        ),
        start_miner(
            tmp_path,
            chain=s.chain,
            wallet_dir=s.wallet_dir,
            name="copycat",
            model=f"acme/good@{s.good_sha}",
            netuid=NETUID,
            extra=["--no-commit"],
        ),
    ]
    try:
        for proc, ready in miners:
            wait_for_file(ready, proc)
        evaluated_state = None
        for n in range(EVALUATION_ROUNDS):
            work = tmp_path / f"evaluation-{n}"
            work.mkdir()
            state, cache = work / "state.sqlite", work / "hf-cache"
            copy_cache(source, cache)
            earlier: list[float] = []
            prior = 0
            if evaluated_state is not None:  # a re-evaluation: the first round's state, the evaluation due again
                with sqlite3.connect(evaluated_state) as src, sqlite3.connect(state) as dst:
                    src.backup(dst)
                with ValidatorState(state) as db:
                    (done,) = db.evaluations()
                    earlier, prior = [done.score], len(db.rounds())
                    assert (
                        db.schedule_reevaluations(
                            done.competition, done.competition_version, finished_before_block=10**9
                        )
                        == 1
                    )
            before = len(FileChain(s.chain).weights_submitted())
            seen = s.round("evaluation", state, cache, work / "validator.log")
            with ValidatorState(state) as db:
                assert db.check() == []
                check_consistent(state, s.chain)
                rounds = db.rounds()  # newest first
                # the round was resumed, never begun again; a run killed after it finished makes the next
                # --once run a round of its own (sync and weights only)
                assert 1 <= len(rounds) - prior <= 1 + len(seen) and all(r.status == "done" for r in rounds)
                (evaluation,) = db.evaluations()
                round_ = next(r for r in rounds if r.id == db.history(evaluation.model_key, 1)[0]["round_id"])
                assert evaluation.model_key == f"acme/good@{s.good_sha}" and evaluation.status == "done"
                assert evaluation.n_done == 1 + len(earlier)  # killed or not, evaluated once more, counted once
                results = json.loads((Path(evaluation.run_dir) / "results.json").read_text())
                assert results["status"] == "complete" and results["seed"] == round_.seed  # the round's sample
                vetted = db.vetting(f"acme/license@{license_sha}")
                assert vetted is not None and not vetted.ok and "gpl-3.0" in vetted.reason
                scores = db.scores_by_hotkey(evaluation.competition, evaluation.competition_version)
                average = moving_average([*earlier, evaluation.score])
                assert scores == {s.hk["good"]: pytest.approx(average), s.hk["copycat"]: 0.0, s.hk["license"]: 0.0}
                average = scores[s.hk["good"]]
            s.check_weights(state, average, before, len(seen))
            assert not (cache / "models--acme--good" / "snapshots" / s.good_sha).exists()
            assert not (cache / "models--acme--license" / "snapshots" / license_sha).exists()
            evaluated_state, good_score, good_average = state, evaluation.score, average

        n = 0
        while s.kills < KILLS:
            n += 1
            assert n <= 3 * KILLS, "rounds keep finishing before the random kill"
            work = tmp_path / f"cheap-{n}"
            work.mkdir()
            state, cache = work / "state.sqlite", work / "hf-cache"
            with sqlite3.connect(evaluated_state) as src, sqlite3.connect(state) as dst:
                src.backup(dst)
            with ValidatorState(state) as db:
                prior = len(db.rounds())
            sha = f"{n:040x}"
            hf_repo(cache, "acme/license", safetensors_repo(license_="gpl-3.0", extra={"NOTES.md": b"%d" % n}), sha=sha)
            s.new_license_hotkey(n)
            s.commit_license(sha)
            before = len(FileChain(s.chain).weights_submitted())
            seen = s.round("cheap", state, cache, work / "validator.log")
            with ValidatorState(state) as db:
                assert db.check() == []
                rounds = db.rounds()  # the evaluation round's, this round, maybe a bare --once round
                assert 1 <= len(rounds) - prior <= 1 + len(seen) and all(r.status == "done" for r in rounds)
                (evaluation,) = db.evaluations()
                assert evaluation.status == "done" and evaluation.score == good_score  # not evaluated again
                vetted = db.vetting(f"acme/license@{sha}")
                assert vetted is not None and not vetted.ok and "gpl-3.0" in vetted.reason
            s.check_weights(state, good_average, before, len(seen))
            assert not (cache / "models--acme--license" / "snapshots" / sha).exists()
    finally:
        for proc, _ in miners:
            stop(proc)
    assert s.kills >= KILLS
