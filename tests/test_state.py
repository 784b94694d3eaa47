"""The validator state: SQLite in WAL mode, migrations, neurons/submissions, evaluation claims, credit to the
earliest committer, rounds, and survival of ``kill -9`` at random moments."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from bitagent_plugins.subnet import state as state_mod
from bitagent_plugins.subnet.state import SCHEMA_VERSION, StateError, ValidatorState, model_key

SHA_A, SHA_B, SHA_C = "a" * 40, "b" * 40, "c" * 40


@pytest.fixture
def st(tmp_path):
    with ValidatorState(tmp_path / "state" / "validator.sqlite") as s:
        yield s


def test_fresh_state_is_wal_versioned_and_pickle_free(tmp_path):
    path = tmp_path / "v.sqlite"
    with ValidatorState(path) as s:
        assert s.schema_version == SCHEMA_VERSION == 3
        assert s.check() == []
        assert s._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persistent in the file
    tables = [
        r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    ]
    assert {"schema_version", "neurons", "submissions", "vetting", "evaluations", "weights_history", "rounds"} <= set(
        tables
    )
    for table in tables:
        for column in raw.execute(f"PRAGMA table_info({table})"):
            assert column[2] in ("INTEGER", "TEXT", "REAL"), (table, column)
    raw.close()


def _make_v1(path):
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    raw.execute("INSERT INTO schema_version VALUES (1)")
    for statement in state_mod.MIGRATIONS[0]:
        raw.execute(statement)
    raw.execute("INSERT INTO vetting VALUES ('o/m@" + SHA_A + "', 1, 'ok', 1.0)")
    raw.execute("INSERT INTO evaluations VALUES ('o/m@" + SHA_A + "', 'bfcl', '1', 0.75, 100, 'runs/x', 'done', 2.0)")
    raw.execute("INSERT INTO submissions VALUES ('hk', 3, 'o/m', NULL, '" + SHA_A + "', 10, 1.0)")
    raw.execute("INSERT INTO rounds (seed, started_at, finished_at, status) VALUES (42, 1.0, NULL, 'running')")
    raw.close()


def test_migrates_an_older_schema_keeping_rows(tmp_path):
    path = tmp_path / "old.sqlite"
    _make_v1(path)
    with ValidatorState(path) as s:
        assert s.schema_version == SCHEMA_VERSION
        assert s.check() == []
        row = s.evaluation(model_key("o/m", SHA_A), "bfcl", 1)
        assert (row.status, row.score, row.n_tasks, row.run_dir, row.error) == ("done", 0.75, 100, "runs/x", None)
        assert s.current_round().seed == 42
        assert s.scores_by_hotkey("bfcl", "1") == {"hk": 0.75}
        with pytest.raises(sqlite3.IntegrityError):  # the v2 index: at most one unfinished round
            s._db.execute("INSERT INTO rounds (seed, started_at, status) VALUES (1, 1.0, 'running')")
    with ValidatorState(path) as s:  # reopening is a no-op
        assert s.schema_version == SCHEMA_VERSION


def test_a_failing_migration_changes_nothing(tmp_path, monkeypatch):
    path = tmp_path / "v.sqlite"
    ValidatorState(path).close()
    monkeypatch.setattr(state_mod, "MIGRATIONS", [*state_mod.MIGRATIONS, ("CREATE TABLE extra (x)", "NOT SQL")])
    monkeypatch.setattr(state_mod, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(sqlite3.OperationalError):
        ValidatorState(path)
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    assert raw.execute("SELECT count(*) FROM sqlite_master WHERE name = 'extra'").fetchone() == (0,)
    raw.close()


def test_refuses_a_newer_schema(tmp_path):
    path = tmp_path / "v.sqlite"
    ValidatorState(path).close()
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("UPDATE schema_version SET version = 99")
    raw.close()
    with pytest.raises(StateError, match="newer"):
        ValidatorState(path)


def test_hotkey_change_starts_clean(st):
    assert st.sync_neurons({0: "A", 1: "B"}, block=100) == [0, 1]
    assert st.upsert_submission("A", 0, "a/m", None, SHA_A, 90)
    assert st.upsert_submission("B", 1, "b/m", "main", SHA_B, 95)
    assert st.sync_neurons({0: "A", 1: "B"}, block=101) == []
    assert st.sync_neurons({0: "C", 1: "B"}, block=200) == [0]  # uid 0 recycled
    assert [s.hotkey for s in st.submissions()] == ["B"]
    assert st.neurons() == {0: "C", 1: "B"}
    assert st.sync_neurons({0: "C", 2: "B"}, block=300) == [2]  # B moved to uid 2: keeps its submission
    assert [(s.hotkey, s.uid) for s in st.submissions()] == [("B", 2)]
    assert st.sync_neurons({}, block=400) == [] and st.submissions() == [] and st.neurons() == {}


def test_upsert_submission_reports_changes_and_keeps_priority(st):
    assert st.upsert_submission("A", 0, "a/m", None, SHA_A, 100) is True
    assert st.upsert_submission("A", 0, "a/m", "main", SHA_A, 150) is False  # re-commit: same model
    (sub,) = st.submissions()
    assert (sub.committed_block, sub.revision, sub.model_key) == (100, "main", f"a/m@{SHA_A}")
    st.record_vetting(sub.model_key, True, "ok")
    assert st.upsert_submission("A", 0, "a/m", None, SHA_B, 160) is True  # new commit: a new model key
    (sub,) = st.submissions()
    assert (sub.committed_block, sub.model_key) == (160, f"a/m@{SHA_B}")
    assert st.vetting(sub.model_key) is None  # to be vetted
    assert st.vetting(f"a/m@{SHA_A}").ok  # nothing else cleared
    assert st.remove_submission("A") and not st.remove_submission("A")


def test_evaluation_lifecycle_and_resume(tmp_path):
    path = tmp_path / "v.sqlite"
    key = model_key("o/m", SHA_A)
    with ValidatorState(path) as s:
        with pytest.raises(StateError, match="vetting"):
            s.claim_evaluation(key, "bfcl", 1)
        s.record_vetting(key, False, "license")
        with pytest.raises(StateError, match="vetting"):
            s.claim_evaluation(key, "bfcl", 1)
        s.record_vetting(key, True, "ok")
        assert s.vetting(key).ok and s.vetting(key).reason == "ok"
        assert s.claim_evaluation(key, "bfcl", 1)
        assert not s.claim_evaluation(key, "bfcl", 1)  # already running
        assert s.claim_evaluation(key, "bfcl", 2)  # another competition version is another evaluation
    with ValidatorState(path) as s:  # the process died with both running
        assert s.resume_interrupted() == 2
        assert s.evaluation(key, "bfcl", 1).status == "pending"
        with pytest.raises(StateError, match="no running evaluation"):
            s.finish_evaluation(key, "bfcl", 1, score=0.5, n_tasks=10)
        assert s.claim_evaluation(key, "bfcl", 1)
        s.finish_evaluation(key, "bfcl", 1, score=0.5, n_tasks=10, run_dir="runs/r1")
        assert not s.claim_evaluation(key, "bfcl", 1)  # done
        with pytest.raises(StateError):
            s.finish_evaluation(key, "bfcl", 1, score=float("nan"), n_tasks=10)
        assert s.claim_evaluation(key, "bfcl", 2)
        s.fail_evaluation(key, "bfcl", 2, reason="server did not start")
        row = s.evaluation(key, "bfcl", 2)
        assert (row.status, row.error, row.score) == ("failed", "server did not start", None)
        assert not s.claim_evaluation(key, "bfcl", 2)
        assert s.claim_evaluation(key, "bfcl", 2, retry_failed=True)
        assert [e.competition_version for e in s.evaluations("bfcl")] == ["1", "2"]
        assert s.check() == []


def test_scores_credit_the_earliest_committer(st):
    st.sync_neurons(
        {0: "early", 1: "copycat", 2: "late-same-block", 3: "other", 4: "vetted-out", 5: "pending", 6: "crashed"},
        block=1,
    )
    st.upsert_submission("early", 0, "orig/model", None, SHA_A, 100)
    st.upsert_submission("copycat", 1, "thief/model", None, SHA_A, 200)  # same commit pushed to another repo
    st.upsert_submission("late-same-block", 2, "orig/model", None, SHA_A, 100)  # tie: smaller hotkey wins
    st.upsert_submission("other", 3, "x/y", None, SHA_B, 50)
    st.upsert_submission("vetted-out", 4, "bad/m", None, SHA_C, 10)
    st.upsert_submission("pending", 5, "p/m", None, "d" * 40, 10)
    st.upsert_submission("crashed", 6, "c/m", None, "e" * 40, 10)
    for key in (f"orig/model@{SHA_A}", f"thief/model@{SHA_A}", f"x/y@{SHA_B}", f"p/m@{'d' * 40}", f"c/m@{'e' * 40}"):
        st.record_vetting(key, True, "ok")
        assert st.claim_evaluation(key, "bfcl", "v1")
    st.record_vetting(f"bad/m@{SHA_C}", False, "license 'other'")
    st.finish_evaluation(f"orig/model@{SHA_A}", "bfcl", "v1", score=0.9, n_tasks=100)
    st.finish_evaluation(f"thief/model@{SHA_A}", "bfcl", "v1", score=0.9, n_tasks=100)
    st.finish_evaluation(f"x/y@{SHA_B}", "bfcl", "v1", score=0.4, n_tasks=100)
    st.fail_evaluation(f"c/m@{'e' * 40}", "bfcl", "v1", reason="oom")
    assert st.scores_by_hotkey("bfcl", "v1") == {
        "early": 0.9,
        "copycat": 0.0,
        "late-same-block": 0.0,
        "other": 0.4,
        "vetted-out": 0.0,
        "crashed": 0.0,
    }
    assert st.scores_by_uid("bfcl", "v1") == {0: 0.9, 1: 0.0, 2: 0.0, 3: 0.4, 4: 0.0, 6: 0.0}
    assert st.scores_by_hotkey("bfcl", "v2") == {"copycat": 0.0, "late-same-block": 0.0, "vetted-out": 0.0}
    st.sync_neurons({1: "copycat"}, block=2)  # the earliest committer deregistered: credit moves
    assert st.scores_by_hotkey("bfcl", "v1") == {"copycat": 0.9}


def test_rounds_resume_with_their_seed(st):
    assert st.current_round() is None
    r = st.begin_round(7)
    assert (r.seed, r.status, r.finished_at) == (7, "running", None)
    again = st.begin_round(9)
    assert (again.id, again.seed) == (r.id, 7)
    assert st.current_round() == r
    st.finish_round(r.id)
    with pytest.raises(StateError):
        st.finish_round(r.id)
    with pytest.raises(StateError):
        st.finish_round(r.id + 1, status="weird")
    assert st.current_round() is None
    r2 = st.begin_round(9)
    assert r2.seed == 9 and r2.id != r.id
    st.finish_round(r2.id, "failed")
    assert [x.status for x in st.rounds()] == ["failed", "done"]
    assert st.check() == []


def test_weights_history(st):
    first = st.record_weights(
        block=10, competition_version="v1", uids=[0, 3], weights=[0.25, 0.75], submitted=True, result="ok"
    )
    second = st.record_weights(
        block=20, competition_version="v1", uids=[1], weights=[1.0], submitted=False, result="rate limited"
    )
    rows = st.weights_history()
    assert [r.id for r in rows] == [second, first]
    assert (rows[1].uids, rows[1].weights, rows[1].submitted) == ([0, 3], [0.25, 0.75], True)
    assert st.weights_history(limit=1)[0].result == "rate limited"
    with pytest.raises(StateError):
        st.record_weights(block=1, competition_version="v1", uids=[1, 2], weights=[1.0], submitted=False, result="")
    with pytest.raises(ValueError):
        st.record_weights(
            block=1, competition_version="v1", uids=[1], weights=[float("nan")], submitted=False, result=""
        )
    assert len(st.weights_history()) == 2  # the failed calls left nothing


def test_check_reports_broken_invariants(st):
    st._db.execute(
        "INSERT INTO evaluations (model_key, competition, competition_version, status, updated_at)"
        " VALUES ('ghost@x', 'c', '1', 'done', 0)"
    )
    st._db.execute("INSERT INTO rounds (seed, started_at, finished_at, status) VALUES (1, 0, 5, 'running')")
    problems = st.check()
    assert "evaluation of unknown model ghost@x" in problems
    assert any("done evaluations without a score" in p for p in problems)
    assert any(p.startswith("round ") for p in problems)


# -- kill -9 -----------------------------------------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import random, sys
    from bitagent_plugins.subnet.state import ValidatorState, model_key

    path, seed = sys.argv[1], int(sys.argv[2])
    rng = random.Random(seed)
    s = ValidatorState(path)
    s.resume_interrupted()
    block = max([w.block for w in s.weights_history(1)], default=0)
    print("ready", flush=True)
    hotkeys = [f"hk{i}" for i in range(12)]
    shas = ["%040x" % i for i in range(6)]
    while True:
        op = rng.randrange(9)
        if op == 0:
            s.sync_neurons({uid: rng.choice(hotkeys) for uid in range(rng.randrange(1, 10))}, block)
        elif op == 1:
            s.upsert_submission(rng.choice(hotkeys), rng.randrange(10), f"org/m{rng.randrange(3)}", None,
                                rng.choice(shas), rng.randrange(1000))
        elif op == 2:
            key = model_key(f"org/m{rng.randrange(3)}", rng.choice(shas))
            s.record_vetting(key, rng.random() < 0.8, "ok")
        elif op == 3:
            key = model_key(f"org/m{rng.randrange(3)}", rng.choice(shas))
            vetted = s.vetting(key)
            if vetted is not None and vetted.ok and s.claim_evaluation(key, "bfcl", rng.randrange(40)):
                pass
        elif op == 4:
            for e in s.evaluations("bfcl"):
                if e.status == "running":
                    draw = rng.random()
                    if draw < 0.6:
                        s.finish_evaluation(e.model_key, "bfcl", e.competition_version, score=rng.random(),
                                            n_tasks=100, run_dir="runs/x", block=block)
                    elif draw < 0.8:
                        s.fail_evaluation(e.model_key, "bfcl", e.competition_version, reason="boom", block=block)
                    else:  # the validator's own failure: back to pending, nothing counted
                        s.release_evaluation(e.model_key, "bfcl", e.competition_version)
                    break
        elif op in (7, 8):  # re-evaluations due
            s.schedule_reevaluations("bfcl", rng.randrange(40), finished_before_block=block)
        elif op == 5:
            block += 1
            s.record_weights(block=block, competition_version="1", uids=list(range(8)),
                             weights=[rng.random() for _ in range(8)], submitted=True, result="ok")
            print("block", block, flush=True)
        else:
            r = s.current_round()
            if r is None:
                r = s.begin_round(rng.randrange(1 << 31))
                print("round", r.id, r.seed, flush=True)
            else:
                s.finish_round(r.id, rng.choice(["done", "failed"]))
                print("finished", r.id, flush=True)
""")


@pytest.mark.slow
def test_survives_kill_9_at_random_moments(tmp_path):
    path = tmp_path / "validator.sqlite"
    rng = random.Random(20)
    acked_block = 0
    rounds_started: dict[int, int] = {}
    finished: set[int] = set()
    for trial in range(24):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), str(trial)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert child.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.01, 0.35))
        finally:
            child.send_signal(signal.SIGKILL)
            out, _ = child.communicate(timeout=10)
        assert child.returncode == -signal.SIGKILL
        for line in out.split("\n")[:-1]:  # the last piece is empty or a line cut short by the kill
            word, *rest = line.split()
            if word == "block":
                acked_block = max(acked_block, int(rest[0]))
            elif word == "round":
                rounds_started[int(rest[0])] = int(rest[1])
            elif word == "finished":
                finished.add(int(rest[0]))

        with ValidatorState(path) as s:
            assert s.schema_version == SCHEMA_VERSION
            assert s.check() == [], f"trial {trial}"
            history = s.weights_history(1)
            assert history and history[0].block >= acked_block  # nothing acknowledged was lost
            current = s.current_round()
            if current is not None:  # an unfinished round comes back with the seed it started with
                assert current.id not in finished
                if current.id in rounds_started:
                    assert current.seed == rounds_started[current.id]
            for r in s.rounds(1000):
                if r.id in finished:
                    assert r.status in ("done", "failed") and r.finished_at is not None
            # every finished evaluation is in the history and in its weights' moving average exactly once
            counted: dict[tuple[str, str], int] = {}
            for e in s.evaluations():
                history = [
                    h
                    for h in reversed(s.history(e.model_key, 10_000))
                    if h["competition_version"] == e.competition_version
                ]
                assert len(history) == e.n_done, f"trial {trial}"
                group = (e.competition_version, "sha:" + e.model_key.rpartition("@")[2])
                counted[group] = counted.get(group, 0) + e.n_done
            averages = {
                (v, g): n
                for v in {e.competition_version for e in s.evaluations()}
                for g, (_value, n) in s.ema("bfcl", v).items()
            }
            assert averages == {k: n for k, n in counted.items() if n}, f"trial {trial}"
            s.resume_interrupted()
            assert all(e.status != "running" for e in s.evaluations())
            # resume works: a reset evaluation can be claimed and finished (the child may have re-vetted a
            # model as failed after claiming it; such an evaluation is rightly not claimable)
            pending = [e for e in s.evaluations() if e.status == "pending" and s.vetting(e.model_key).ok]
            if pending:
                e = pending[0]
                assert s.claim_evaluation(e.model_key, e.competition, e.competition_version)
                s.finish_evaluation(e.model_key, e.competition, e.competition_version, score=0.5, n_tasks=1)
        raw = sqlite3.connect(path)
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert json.loads(raw.execute("SELECT uids FROM weights_history ORDER BY id DESC").fetchone()[0])
        raw.close()
    assert acked_block > 0 and rounds_started
