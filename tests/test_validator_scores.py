"""Scores like upstream: a moving average per model over rounds, re-evaluation on a fresh private sample,
first evaluations before re-evaluations, and a re-uploaded copy caught by its weights' content hashes.

The chain is bittensor 11's client over the ``Substrate`` seam (tests/chain_double.py); the models are
evaluated for real by the llama-cpp backend on the embedded model; the Hugging Face cache is read offline.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from chain_double import FileChain, new_chain
from subnet_helpers import gguf_repo, hf_repo, make_wallet, safetensors_repo

from bitagent_plugins.subnet.chain import Chain
from bitagent_plugins.subnet.keys import ModelKey, earliest_committer, weights_digest
from bitagent_plugins.subnet.scoring import Scoreboard
from bitagent_plugins.subnet.state import ValidatorState
from bitagent_plugins.subnet.vetting import OfflineHubClient, vet

NETUID = 20
PLUGINS = "llama-cpp,bitagent-tasks,bitagent-scorer,bitagent-competition,subnet"
ALPHA = 0.3
#: a first evaluation and a re-evaluation: the fewest that move an average (its arithmetic over more rounds
#: is test_moving_average_and_reevaluation_schedule_in_the_state's); each costs a model load and a sample
ROUNDS = 2


def _commit(chain_file: Path, wallet, text: str) -> None:
    async def main():
        async with Chain("local", NETUID, wallet=wallet, substrate=FileChain(chain_file)) as chain:
            assert (await chain.commit(text)).success

    asyncio.run(main())


class MirrorHub:
    """The Hub, at its seam (``vetting.HubClient``): repos in a source cache folder, downloaded (hard-linked)
    into the validator's cache -- so a model deleted after its evaluation can be downloaded again for its
    re-evaluation, as from the Hub (which these machines cannot reach)."""

    def __init__(self, source: Path, target: Path) -> None:
        self.cache_dir, self.target = source, target
        self._source = OfflineHubClient(source)
        self.resolve, self.list_files = self._source.resolve, self._source.list_files
        self.read_file, self.open_file = self._source.read_file, self._source.open_file

    def download(self, locked, *, allow_patterns):
        import fnmatch
        import os

        org, name = locked.repo_id.split("/")
        folder = f"models--{org}--{name}"
        snapshot = self.cache_dir / folder / "snapshots" / locked.sha
        for path in snapshot.rglob("*"):
            relative = path.relative_to(snapshot).as_posix()
            if not any(fnmatch.fnmatchcase(relative, pattern) for pattern in allow_patterns):
                continue
            blob = path.resolve()
            target_blob = self.target / folder / "blobs" / blob.name
            target_blob.parent.mkdir(parents=True, exist_ok=True)
            if not target_blob.exists():
                os.link(blob, target_blob)
            link = self.target / folder / "snapshots" / locked.sha / relative
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                link.symlink_to(os.path.relpath(target_blob, link.parent))
        return self.target / folder / "snapshots" / locked.sha


def _ema(scores: list[float], alpha: float) -> float:
    value = scores[0]
    for score in scores[1:]:
        value = alpha * score + (1 - alpha) * value
    return value


def test_the_same_weights_under_another_repo_have_the_same_digest(tmp_path):
    cache = tmp_path / "hf-cache"
    weights = {"w": [4, 8]}
    orig = hf_repo(cache, "acme/orig", safetensors_repo(shapes=weights))
    copy = hf_repo(cache, "thief/renamed", safetensors_repo(shapes=weights, extra={"NOTES.md": b"mine now"}))
    other = hf_repo(cache, "acme/other", safetensors_repo(shapes={"w": [8, 4]}))
    hub = OfflineHubClient(cache)
    digests = {}
    for repo, sha in (("acme/orig", orig), ("thief/renamed", copy), ("acme/other", other)):
        report = vet(ModelKey(repo, sha), cache_dir=cache, api=hub)
        assert report.ok and report.weight_hashes, report
        digests[repo] = weights_digest(dict(report.weight_hashes))
    assert orig != copy and digests["acme/orig"] == digests["thief/renamed"] != digests["acme/other"]


def test_moving_average_and_reevaluation_schedule_in_the_state(tmp_path):
    with ValidatorState(tmp_path / "state.sqlite") as db:
        db.sync_neurons({0: "a", 1: "b", 2: "copy"}, 1)
        db.upsert_submission("a", 0, "acme/a", None, "a" * 40, 10)
        db.upsert_submission("b", 1, "acme/b", None, "b" * 40, 11)
        db.upsert_submission("copy", 2, "thief/a", None, "c" * 40, 12)
        board = Scoreboard(db, competition="c", version="v1", alpha=ALPHA, reevaluate_blocks=100)
        assert [job.key for job in board.pending_jobs()] == [
            f"acme/a@{'a' * 40}",
            f"acme/b@{'b' * 40}",
            f"thief/a@{'c' * 40}",
        ]
        db.record_vetting(f"acme/a@{'a' * 40}", True, "ok", weights_digest="sha256:same")
        db.record_vetting(f"thief/a@{'c' * 40}", True, "ok", weights_digest="sha256:same")
        db.record_vetting(f"acme/b@{'b' * 40}", True, "ok", weights_digest="sha256:b")
        assert board.copy_of(f"thief/a@{'c' * 40}") == f"acme/a@{'a' * 40}"
        assert [job.key for job in board.pending_jobs()] == [f"acme/a@{'a' * 40}", f"acme/b@{'b' * 40}"]
        # the original deferred (the Hub was away): its copy still waits, it is not evaluated in its place
        assert [job.key for job in board.pending_jobs({f"acme/a@{'a' * 40}"})] == [f"acme/b@{'b' * 40}"]
        a_scores = [0.9, 0.3, 0.6]
        for block, score in zip((100, 300, 500), a_scores):
            assert board.claim(f"acme/a@{'a' * 40}")
            board.finish(
                f"acme/a@{'a' * 40}",
                score=score,
                n_tasks=10,
                ci95=0.1,
                run_dir="r",
                block=block,
                round_id=block,
                data_digest=None,
            )
            assert board.pending_jobs()[0].key == f"acme/b@{'b' * 40}"  # a first evaluation goes first
            assert board.schedule_reevaluations(block + 99) == 0  # not due yet
            assert board.schedule_reevaluations(block + 100) == 1
            assert [j.reevaluation for j in board.pending_jobs()] == [False, True]
        scores = board.scores()
        assert scores == {"a": pytest.approx(_ema(a_scores, ALPHA)), "copy": 0.0}
        assert db.ema("c", "v1")["sha256:same"] == (pytest.approx(_ema(a_scores, ALPHA)), 3)
        assert len(db.history(f"acme/a@{'a' * 40}")) == 3
        # b's model fails by its own fault: 0 in its average; a failure of the validator changes nothing
        from bitagent_plugins.subnet.failures import Failure, Fault

        assert board.claim(f"acme/b@{'b' * 40}")
        board.release(f"acme/b@{'b' * 40}")
        assert "b" not in board.scores() and db.ema("c", "v1").get("sha256:b") is None
        assert board.claim(f"acme/b@{'b' * 40}")
        board.fail(
            f"acme/b@{'b' * 40}", Failure(Fault.MODEL, "ValueError: unsupported architecture"), block=600, round_id=6
        )
        assert board.scores()["b"] == 0.0
        # the earliest committer of the same weights is credited; deregistered, the credit moves
        assert earliest_committer(db.submissions()) == "a"
        db.sync_neurons({1: "b", 2: "copy"}, 700)
        assert board.scores() == {"b": 0.0, "copy": pytest.approx(_ema(a_scores, ALPHA))}
        # a new competition version regrades: nothing carries over
        assert Scoreboard(db, competition="c", version="v2").scores() == {}
        assert db.check() == []


@pytest.mark.model
def test_rounds_move_the_average_and_a_reuploaded_copy_is_caught(tmp_path, embedded_model, monkeypatch):
    from bitagent_core import _plugins as plugins
    from bitagent_plugins.subnet.validator import Validator, ValidatorConfig

    monkeypatch.setenv("BITAGENT_PLUGINS", PLUGINS)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    plugins.reset_registry()
    names = ["validator", "orig", "thief"]
    wallets = {name: make_wallet(tmp_path / "wallets", name) for name in names}
    hk = {name: w.hotkey.ss58_address for name, w in wallets.items()}
    chain_file = new_chain(
        tmp_path / "chain.json",
        netuid=NETUID,
        block_time=0.2,
        neurons=[{"hotkey": hk[n], "validator_permit": n == "validator"} for n in names],
    )
    hub, cache = tmp_path / "hub", tmp_path / "hf-cache"
    orig_sha = hf_repo(hub, "acme/orig", gguf_repo(embedded_model))
    # the same GGUF re-uploaded under another repo, with another card: another commit, the same weights
    thief_sha = hf_repo(hub, "thief/fresh", {**gguf_repo(embedded_model), "NOTES.md": b"all mine"})
    _commit(chain_file, wallets["orig"], f"acme/orig@{orig_sha}")
    time.sleep(0.3)
    _commit(chain_file, wallets["thief"], f"thief/fresh@{thief_sha}")
    config = ValidatorConfig(
        netuid=NETUID,
        network="local",
        state_path=tmp_path / "state" / "state.sqlite",
        cache_dir=cache,
        backend="llama-cpp",
        backend_options={"n_threads": "2", "n_ctx": "2048"},
        sample_size=2,
        sync_interval=2,
        epoch_length=1000,
        max_rounds=ROUNDS,
        reevaluate_blocks=1,
        ema_alpha=ALPHA,
        max_download_bytes=10**9,
    )
    try:
        validator = Validator(
            config, substrate=FileChain(chain_file), wallet=wallets["validator"], hub=MirrorHub(hub, cache)
        )
        assert asyncio.run(validator.run()) == 0
    finally:
        plugins.reset_registry()
    assert not any(cache.rglob("*.gguf"))  # deleted after each evaluation, downloaded again for the next
    orig, thief = f"acme/orig@{orig_sha}", f"thief/fresh@{thief_sha}"
    with ValidatorState(config.state_path) as db:
        assert db.check() == []
        assert db.vetting(orig).weights_digest == db.vetting(thief).weights_digest is not None
        (evaluation,) = db.evaluations()  # the copy is never evaluated
        assert evaluation.model_key == orig and evaluation.n_done == ROUNDS
        history = list(reversed(db.history(orig)))
        rounds = db.rounds()
        assert len(history) == ROUNDS and len({h["round_id"] for h in history}) == ROUNDS
        assert len({r.seed for r in rounds}) == ROUNDS  # a fresh private sample each round
        scores = db.scores_by_hotkey(evaluation.competition, evaluation.competition_version)
        expected = _ema([h["score"] for h in history], ALPHA)
        assert scores == {hk["orig"]: pytest.approx(expected), hk["thief"]: 0.0}
        task_ids = [
            sorted(
                json.loads(line)["task_id"] for line in (Path(h["run_dir"]) / "samples.jsonl").read_text().splitlines()
            )
            for h in history
        ]
        assert all(len(ids) == 2 for ids in task_ids) and len({tuple(ids) for ids in task_ids}) > 1
    feedback = sorted((config.runs_dir / "feedback").glob("round-*/uid-*.json"))
    assert len(feedback) == 2 * ROUNDS  # both hotkeys, every round
    for path in feedback:
        entry = json.loads(path.read_text())
        assert entry["credited"] == (entry["hotkey"] == hk["orig"]) and entry["evaluated_model"] == orig


def test_a_digest_learnt_later_keeps_the_average(tmp_path):
    """Scores kept under a commit sha (a state from schema 2, or a model vetted before digests) stay the
    model's when vetting learns its weights digest."""
    key = f"acme/a@{'a' * 40}"
    with ValidatorState(tmp_path / "state.sqlite") as db:
        db.sync_neurons({0: "a"}, 1)
        db.upsert_submission("a", 0, "acme/a", None, "a" * 40, 10)
        db.record_vetting(key, True, "ok")
        board = Scoreboard(db, competition="c", version="v1", alpha=ALPHA)
        assert board.claim(key)
        board.finish(key, score=0.8, n_tasks=4, ci95=None, run_dir="r", block=5, round_id=1, data_digest=None)
        assert board.scores() == {"a": 0.8}
        db.record_vetting(key, True, "ok", weights_digest="sha256:w")
        assert board.scores() == {"a": 0.8} and db.ema("c", "v1") == {"sha256:w": (0.8, 1)}
