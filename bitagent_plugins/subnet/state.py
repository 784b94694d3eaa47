"""The validator's state in SQLite: who is registered, what they submitted, vetting and evaluation results,
the weights set, and the round in progress.

Durability: WAL journal, ``synchronous=FULL``, and every public method is one transaction, so a validator
killed at any instant (``kill -9``, power loss) reopens a consistent database: each change is either all
there or not at all. An evaluation left ``running`` by a crash is put back to ``pending`` by
``resume_interrupted()``; an unfinished round is found by ``current_round()`` with its seed, so the
validator can redo it with the same tasks. Nothing is pickled: values are SQL scalars or JSON text.

Schema changes are versioned: ``MIGRATIONS[i]`` takes the database from version ``i`` to ``i + 1`` and is
applied, with the new version number, in one transaction when the state is opened. A database written by a
newer bitagent (a version we do not know) is refused rather than guessed at.

Scores are keyed by hotkey, never by uid (uids are recycled): when a uid's hotkey changes, the old hotkey's
submission is dropped and the newcomer starts clean. Each distinct ``repo@sha`` (the *model key*) is vetted
and evaluated once per competition version; when several hotkeys submit the same commit sha, the one that
committed at the earliest block (ties: the smaller hotkey string, so every validator agrees) gets the score
and the others 0.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import attrs

#: ``MIGRATIONS[i]`` upgrades schema version ``i`` to ``i + 1``; statements run in order in one transaction.
MIGRATIONS: list[tuple[str, ...]] = [
    (  # 0 -> 1: the tables
        "CREATE TABLE neurons (uid INTEGER PRIMARY KEY, hotkey TEXT NOT NULL, first_seen_block INTEGER NOT NULL)",
        "CREATE TABLE submissions (hotkey TEXT PRIMARY KEY, uid INTEGER NOT NULL, repo_id TEXT NOT NULL,"
        " revision TEXT, sha TEXT NOT NULL, committed_block INTEGER NOT NULL, first_seen_at REAL NOT NULL)",
        "CREATE TABLE vetting (model_key TEXT PRIMARY KEY, ok INTEGER NOT NULL, reason TEXT NOT NULL,"
        " checked_at REAL NOT NULL)",
        "CREATE TABLE evaluations (model_key TEXT NOT NULL, competition TEXT NOT NULL,"
        " competition_version TEXT NOT NULL, score REAL, n_tasks INTEGER, run_dir TEXT,"
        " status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),"
        " updated_at REAL NOT NULL, PRIMARY KEY (model_key, competition, competition_version))",
        "CREATE TABLE weights_history (id INTEGER PRIMARY KEY AUTOINCREMENT, block INTEGER NOT NULL,"
        " competition_version TEXT NOT NULL, uids TEXT NOT NULL, weights TEXT NOT NULL,"
        " submitted INTEGER NOT NULL, result TEXT NOT NULL, created_at REAL NOT NULL)",
        "CREATE TABLE rounds (id INTEGER PRIMARY KEY AUTOINCREMENT, seed INTEGER NOT NULL,"
        " started_at REAL NOT NULL, finished_at REAL,"
        " status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')))",
    ),
    (  # 1 -> 2: failure reasons on evaluations; indexes; at most one unfinished round
        "ALTER TABLE evaluations ADD COLUMN error TEXT",
        "CREATE INDEX submissions_by_sha ON submissions (sha)",
        "CREATE INDEX evaluations_by_competition ON evaluations (competition, competition_version, status)",
        "CREATE UNIQUE INDEX rounds_one_running ON rounds (status) WHERE status = 'running'",
    ),
]
SCHEMA_VERSION = len(MIGRATIONS)
EVALUATION_STATUSES = ("pending", "running", "done", "failed")
ROUND_STATUSES = ("running", "done", "failed")


class StateError(RuntimeError):
    """Misuse of the state (an unknown schema version, finishing an evaluation that is not running, ...)."""


def model_key(repo_id: str, sha: str) -> str:
    """``org/name@sha``: the unit that is vetted and evaluated once."""
    return f"{repo_id}@{sha}"


@attrs.frozen
class SubmissionRow:
    hotkey: str
    uid: int
    repo_id: str
    revision: str | None
    sha: str
    committed_block: int
    first_seen_at: float

    @property
    def model_key(self) -> str:
        return model_key(self.repo_id, self.sha)


@attrs.frozen
class VettingRow:
    model_key: str
    ok: bool
    reason: str
    checked_at: float


@attrs.frozen
class EvaluationRow:
    model_key: str
    competition: str
    competition_version: str
    status: str
    score: float | None
    n_tasks: int | None
    run_dir: str | None
    error: str | None
    updated_at: float


@attrs.frozen
class WeightsRow:
    id: int
    block: int
    competition_version: str
    uids: list[int]
    weights: list[float]
    submitted: bool
    result: str
    created_at: float


@attrs.frozen
class RoundRow:
    id: int
    seed: int
    started_at: float
    finished_at: float | None
    status: str


class ValidatorState:
    """The validator's state in the SQLite file at ``path`` (created, and migrated, on open).

    Safe to share between threads (one lock serialises the transactions) and between processes (SQLite
    locking; a writer waits up to ``timeout`` seconds for another).
    """

    def __init__(self, path: str | Path, *, timeout: float = 30.0):
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path), timeout=timeout, isolation_level=None, check_same_thread=False)
        try:
            self._db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal" and str(path) != ":memory:":
                raise StateError(f"{path}: SQLite refused WAL mode (got {mode!r}); is it on a network filesystem?")
            self._db.execute("PRAGMA synchronous = FULL")
            self._migrate()
        except BaseException:
            self._db.close()
            raise

    # -- lifecycle -------------------------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ValidatorState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _migrate(self) -> None:
        with self._tx() as db:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM schema_version").fetchone()
            version = row[0] if row else 0
            if row is None:
                db.execute("INSERT INTO schema_version (version) VALUES (0)")
            if version > SCHEMA_VERSION:
                raise StateError(
                    f"{self.path}: state schema version {version} is newer than this bitagent's "
                    f"({SCHEMA_VERSION}); upgrade bitagent or use another state file"
                )
            for step in MIGRATIONS[version:]:
                for statement in step:
                    db.execute(statement)
            db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    @property
    def schema_version(self) -> int:
        with self._tx(write=False) as db:
            return db.execute("SELECT version FROM schema_version").fetchone()[0]

    # -- neurons and submissions -----------------------------------------------------------------------------

    def sync_neurons(self, hotkeys: Mapping[int, str], block: int) -> list[int]:
        """Replace the known neurons with ``hotkeys`` (the full metagraph: uid -> hotkey) seen at ``block``.

        Returns the uids that are new or whose hotkey changed. A hotkey no longer registered loses its
        submission, so a recycled uid starts clean; a hotkey still registered (even at another uid) keeps its
        submission, with the uid updated.
        """
        with self._tx() as db:
            old = dict(db.execute("SELECT uid, hotkey FROM neurons").fetchall())
            changed = sorted(uid for uid, hotkey in hotkeys.items() if old.get(uid) != hotkey)
            for uid in set(old) - set(hotkeys):
                db.execute("DELETE FROM neurons WHERE uid = ?", (uid,))
            for uid in changed:
                db.execute(
                    "INSERT INTO neurons (uid, hotkey, first_seen_block) VALUES (?, ?, ?) ON CONFLICT (uid) DO"
                    " UPDATE SET hotkey = excluded.hotkey, first_seen_block = excluded.first_seen_block",
                    (int(uid), str(hotkeys[uid]), int(block)),
                )
            uid_of = {hotkey: uid for uid, hotkey in hotkeys.items()}
            for (hotkey,) in db.execute("SELECT hotkey FROM submissions").fetchall():
                if hotkey not in uid_of:
                    db.execute("DELETE FROM submissions WHERE hotkey = ?", (hotkey,))
                else:
                    db.execute("UPDATE submissions SET uid = ? WHERE hotkey = ?", (int(uid_of[hotkey]), hotkey))
            return changed

    def neurons(self) -> dict[int, str]:
        with self._tx(write=False) as db:
            return dict(db.execute("SELECT uid, hotkey FROM neurons ORDER BY uid").fetchall())

    def upsert_submission(self, hotkey: str, uid: int, repo_id: str, revision: str | None, sha: str,
                          committed_block: int) -> bool:
        """Record ``hotkey``'s submission; True if it is new or names another ``repo@sha`` than before.

        Re-committing the same ``repo@sha`` keeps the earlier ``committed_block`` (a miner does not lose its
        priority by committing again) and returns False. A changed submission is a new model key, so it
        gets vetted and evaluated afresh; nothing else is cleared.
        """
        with self._tx() as db:
            row = db.execute("SELECT repo_id, sha, committed_block FROM submissions WHERE hotkey = ?",
                             (hotkey,)).fetchone()
            if row is not None and row[0] == repo_id and row[1] == sha:
                db.execute("UPDATE submissions SET uid = ?, revision = ?, committed_block = ? WHERE hotkey = ?",
                           (int(uid), revision, min(int(row[2]), int(committed_block)), hotkey))
                return False
            db.execute(
                "INSERT OR REPLACE INTO submissions (hotkey, uid, repo_id, revision, sha, committed_block,"
                " first_seen_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (hotkey, int(uid), repo_id, revision, sha, int(committed_block), time.time()),
            )
            return True

    def submissions(self) -> list[SubmissionRow]:
        with self._tx(write=False) as db:
            rows = db.execute("SELECT hotkey, uid, repo_id, revision, sha, committed_block, first_seen_at"
                              " FROM submissions ORDER BY uid, hotkey").fetchall()
        return [SubmissionRow(*row) for row in rows]

    def remove_submission(self, hotkey: str) -> bool:
        """Forget ``hotkey``'s submission (e.g. its commitment was cleared); True if there was one."""
        with self._tx() as db:
            return db.execute("DELETE FROM submissions WHERE hotkey = ?", (hotkey,)).rowcount > 0

    # -- vetting ---------------------------------------------------------------------------------------------

    def record_vetting(self, model_key: str, ok: bool, reason: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO vetting (model_key, ok, reason, checked_at) VALUES (?, ?, ?, ?)",
                       (model_key, int(bool(ok)), reason, time.time()))

    def vetting(self, model_key: str) -> VettingRow | None:
        with self._tx(write=False) as db:
            row = db.execute("SELECT model_key, ok, reason, checked_at FROM vetting WHERE model_key = ?",
                             (model_key,)).fetchone()
        return None if row is None else VettingRow(row[0], bool(row[1]), row[2], row[3])

    # -- evaluations -----------------------------------------------------------------------------------------

    def claim_evaluation(self, model_key: str, competition: str, version: str | int, *,
                         retry_failed: bool = False) -> bool:
        """Mark the evaluation of ``model_key`` in ``competition``/``version`` as running; True if claimed.

        Claims an absent or ``pending`` evaluation (and a ``failed`` one with ``retry_failed``); a ``running``
        or ``done`` one is not claimed. The model must have passed vetting (``record_vetting(key, True, ...)``).
        """
        with self._tx() as db:
            vetted = db.execute("SELECT ok FROM vetting WHERE model_key = ?", (model_key,)).fetchone()
            if vetted is None or not vetted[0]:
                raise StateError(f"{model_key} has not passed vetting; record_vetting() it first")
            row = db.execute(
                "SELECT status FROM evaluations WHERE model_key = ? AND competition = ? AND competition_version = ?",
                (model_key, competition, str(version)),
            ).fetchone()
            claimable = ("pending", "failed") if retry_failed else ("pending",)
            if row is not None and row[0] not in claimable:
                return False
            db.execute(
                "INSERT OR REPLACE INTO evaluations (model_key, competition, competition_version, score, n_tasks,"
                " run_dir, status, updated_at, error) VALUES (?, ?, ?, NULL, NULL, NULL, 'running', ?, NULL)",
                (model_key, competition, str(version), time.time()),
            )
            return True

    def finish_evaluation(self, model_key: str, competition: str, version: str | int, *, score: float,
                          n_tasks: int, run_dir: str | None = None) -> None:
        """Record the score of a running evaluation (``done``)."""
        if not math.isfinite(score):
            raise StateError(f"score must be finite, got {score!r}")
        self._end_evaluation(model_key, competition, version,
                             "score = ?, n_tasks = ?, run_dir = ?, status = 'done', error = NULL",
                             (float(score), int(n_tasks), None if run_dir is None else str(run_dir)))

    def fail_evaluation(self, model_key: str, competition: str, version: str | int, *, reason: str) -> None:
        """Mark a running evaluation ``failed`` (scores 0 until retried with ``retry_failed=True``)."""
        self._end_evaluation(model_key, competition, version, "score = NULL, status = 'failed', error = ?",
                             (reason,))

    def _end_evaluation(self, model_key: str, competition: str, version: str | int, assignments: str,
                        values: tuple[object, ...]) -> None:
        with self._tx() as db:
            cursor = db.execute(
                f"UPDATE evaluations SET {assignments}, updated_at = ? WHERE model_key = ? AND competition = ?"
                " AND competition_version = ? AND status = 'running'",
                (*values, time.time(), model_key, competition, str(version)),
            )
            if cursor.rowcount != 1:
                raise StateError(f"no running evaluation of {model_key} in {competition} v{version}")

    def evaluation(self, model_key: str, competition: str, version: str | int) -> EvaluationRow | None:
        with self._tx(write=False) as db:
            row = db.execute(
                f"SELECT {_EVAL_COLUMNS} FROM evaluations WHERE model_key = ? AND competition = ?"
                " AND competition_version = ?", (model_key, competition, str(version)),
            ).fetchone()
        return None if row is None else EvaluationRow(*row)

    def evaluations(self, competition: str | None = None, version: str | int | None = None) -> list[EvaluationRow]:
        query, args = f"SELECT {_EVAL_COLUMNS} FROM evaluations", []
        if competition is not None:
            query += " WHERE competition = ?"
            args.append(competition)
            if version is not None:
                query += " AND competition_version = ?"
                args.append(str(version))
        with self._tx(write=False) as db:
            rows = db.execute(query + " ORDER BY competition, competition_version, model_key", args).fetchall()
        return [EvaluationRow(*row) for row in rows]

    def resume_interrupted(self) -> int:
        """After a restart: evaluations left ``running`` by the dead process go back to ``pending``."""
        with self._tx() as db:
            return db.execute("UPDATE evaluations SET status = 'pending', updated_at = ? WHERE status = 'running'",
                              (time.time(),)).rowcount

    def scores_by_hotkey(self, competition: str, version: str | int) -> dict[str, float]:
        """Scores per submitting hotkey for ``competition``/``version``.

        A hotkey gets its model's score when the evaluation is done and it is the earliest committer of that
        commit sha (others submitting the same sha get 0); 0 when its model failed vetting or evaluation.
        Hotkeys whose model is not evaluated yet are left out.
        """
        with self._tx(write=False) as db:
            rows = db.execute(
                "SELECT s.hotkey, s.repo_id, s.sha, s.committed_block, v.ok, e.status, e.score"
                " FROM submissions s LEFT JOIN vetting v ON v.model_key = s.repo_id || '@' || s.sha"
                " LEFT JOIN evaluations e ON e.model_key = s.repo_id || '@' || s.sha"
                " AND e.competition = ? AND e.competition_version = ?",
                (competition, str(version)),
            ).fetchall()
        first_by_sha: dict[str, tuple[int, str]] = {}
        for hotkey, _, sha, block, *_ in rows:
            first_by_sha[sha] = min(first_by_sha.get(sha, (block, hotkey)), (block, hotkey))
        scores: dict[str, float] = {}
        for hotkey, _, sha, block, vetted_ok, status, score in rows:
            if vetted_ok is not None and not vetted_ok:
                scores[hotkey] = 0.0
            elif first_by_sha[sha] != (block, hotkey):
                scores[hotkey] = 0.0
            elif status == "done":
                scores[hotkey] = float(score)
            elif status == "failed":
                scores[hotkey] = 0.0
        return scores

    def scores_by_uid(self, competition: str, version: str | int) -> dict[int, float]:
        """``scores_by_hotkey`` mapped onto the current uids (hotkeys no longer registered are left out)."""
        uid_of = {hotkey: uid for uid, hotkey in self.neurons().items()}
        return {uid_of[h]: s for h, s in self.scores_by_hotkey(competition, version).items() if h in uid_of}

    # -- weights and rounds ----------------------------------------------------------------------------------

    def record_weights(self, *, block: int, competition_version: str | int, uids: Sequence[int],
                       weights: Sequence[float], submitted: bool, result: str) -> int:
        """Log a weight vector (set or attempted) with the chain's answer; returns its id."""
        if len(uids) != len(weights):
            raise StateError(f"{len(uids)} uids but {len(weights)} weights")
        with self._tx() as db:
            cursor = db.execute(
                "INSERT INTO weights_history (block, competition_version, uids, weights, submitted, result,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (int(block), str(competition_version), json.dumps([int(u) for u in uids]),
                 json.dumps([float(w) for w in weights], allow_nan=False), int(bool(submitted)), result,
                 time.time()),
            )
            assert cursor.lastrowid is not None  # set by every INSERT
            return int(cursor.lastrowid)

    def weights_history(self, limit: int = 100) -> list[WeightsRow]:
        """The latest ``limit`` entries, newest first."""
        with self._tx(write=False) as db:
            rows = db.execute("SELECT id, block, competition_version, uids, weights, submitted, result, created_at"
                              " FROM weights_history ORDER BY id DESC LIMIT ?", (int(limit),)).fetchall()
        return [WeightsRow(r[0], r[1], r[2], json.loads(r[3]), json.loads(r[4]), bool(r[5]), r[6], r[7])
                for r in rows]

    def begin_round(self, seed: int) -> RoundRow:
        """Start a round with ``seed``, or return the unfinished one (with *its* seed) if there is one."""
        with self._tx() as db:
            row = db.execute(f"SELECT {_ROUND_COLUMNS} FROM rounds WHERE status = 'running'").fetchone()
            if row is None:
                db.execute("INSERT INTO rounds (seed, started_at, finished_at, status) VALUES (?, ?, NULL, 'running')",
                           (int(seed), time.time()))
                row = db.execute(f"SELECT {_ROUND_COLUMNS} FROM rounds WHERE status = 'running'").fetchone()
        return RoundRow(*row)

    def finish_round(self, round_id: int, status: str = "done") -> None:
        if status not in ("done", "failed"):
            raise StateError(f"a round finishes as 'done' or 'failed', not {status!r}")
        with self._tx() as db:
            cursor = db.execute("UPDATE rounds SET status = ?, finished_at = ? WHERE id = ? AND status = 'running'",
                                (status, time.time(), int(round_id)))
            if cursor.rowcount != 1:
                raise StateError(f"round {round_id} is not running")

    def current_round(self) -> RoundRow | None:
        """The unfinished round, if any (after a crash: the one to resume, with its seed)."""
        with self._tx(write=False) as db:
            row = db.execute(f"SELECT {_ROUND_COLUMNS} FROM rounds WHERE status = 'running'").fetchone()
        return None if row is None else RoundRow(*row)

    def rounds(self, limit: int = 100) -> list[RoundRow]:
        with self._tx(write=False) as db:
            rows = db.execute(f"SELECT {_ROUND_COLUMNS} FROM rounds ORDER BY id DESC LIMIT ?", (int(limit),))
            return [RoundRow(*row) for row in rows.fetchall()]

    # -- checks ----------------------------------------------------------------------------------------------

    def check(self) -> list[str]:
        """Problems found: SQLite's integrity check plus this schema's invariants (empty list = healthy)."""
        problems: list[str] = []
        with self._tx(write=False) as db:
            integrity = [r[0] for r in db.execute("PRAGMA integrity_check").fetchall()]
            if integrity != ["ok"]:
                problems.extend(f"integrity: {line}" for line in integrity)
            versions = [r[0] for r in db.execute("SELECT version FROM schema_version").fetchall()]
            if versions != [SCHEMA_VERSION]:
                problems.append(f"schema_version rows {versions}, expected [{SCHEMA_VERSION}]")
            orphans = db.execute(
                "SELECT model_key FROM evaluations WHERE model_key NOT IN (SELECT model_key FROM vetting)"
                " AND model_key NOT IN (SELECT repo_id || '@' || sha FROM submissions)").fetchall()
            problems.extend(f"evaluation of unknown model {r[0]}" for r in orphans)
            for rid, status, finished_at in db.execute("SELECT id, status, finished_at FROM rounds").fetchall():
                if (status == "running") != (finished_at is None):
                    problems.append(f"round {rid}: status {status} with finished_at {finished_at}")
            running = db.execute("SELECT count(*) FROM rounds WHERE status = 'running'").fetchone()[0]
            if running > 1:
                problems.append(f"{running} unfinished rounds")
            bad_done = db.execute("SELECT count(*) FROM evaluations WHERE status = 'done' AND score IS NULL")
            if (n := bad_done.fetchone()[0]):
                problems.append(f"{n} done evaluations without a score")
            for rid, uids, weights in db.execute("SELECT id, uids, weights FROM weights_history").fetchall():
                try:
                    if len(json.loads(uids)) != len(json.loads(weights)):
                        problems.append(f"weights_history {rid}: uids and weights differ in length")
                except ValueError:
                    problems.append(f"weights_history {rid}: not JSON")
        return problems


_EVAL_COLUMNS = "model_key, competition, competition_version, status, score, n_tasks, run_dir, error, updated_at"
_ROUND_COLUMNS = "id, seed, started_at, finished_at, status"
