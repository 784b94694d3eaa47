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
submission is dropped and the newcomer starts clean. Each distinct ``repo@sha`` (the *model key*,
``keys.ModelKey``) is vetted once and evaluated per competition version, again at each re-evaluation; every
finished evaluation goes to ``evaluation_history`` and into a moving average (``ema``) kept per competition
version and *weights* (the vetted weights digest, else the commit sha), in the same transaction. When several
hotkeys submit the same weights, the one that committed at the earliest block (``keys.earliest_committer``;
ties: the smaller hotkey string, so every validator agrees) gets the average and the others 0.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import attrs

from bitagent_plugins.subnet.keys import ModelKey, credited

#: The moving average's weight for a new evaluation: ``ema = alpha * score + (1 - alpha) * ema``. 0.3 lets a
#: model's average move most of the way (83 %) to a new level within five re-evaluations while one noisy
#: sample moves it by at most 0.3 x its error. (Bittensor's subnet template uses 0.1, but updates at every
#: query; ours moves once per evaluation, which is hours apart.)
DEFAULT_EMA_ALPHA = 0.3

#: ``MIGRATIONS[i]`` upgrades schema version ``i`` to ``i + 1``; statements run in order in one transaction.
MIGRATIONS: list[tuple[str | Callable[[sqlite3.Connection], None], ...]] = [
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
    (  # 2 -> 3: weights digests (copies), moving averages, re-evaluations, locked submissions
        "ALTER TABLE vetting ADD COLUMN weights_digest TEXT",
        "ALTER TABLE evaluations ADD COLUMN n_done INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE evaluations ADD COLUMN finished_block INTEGER",
        "ALTER TABLE evaluations ADD COLUMN ci95 REAL",
        "ALTER TABLE evaluations ADD COLUMN data_digest TEXT",
        "UPDATE evaluations SET n_done = 1 WHERE status IN ('done', 'failed')",
        "ALTER TABLE submissions ADD COLUMN ignored_text TEXT",
        "CREATE TABLE ema (competition TEXT NOT NULL, competition_version TEXT NOT NULL, weights TEXT NOT NULL,"
        " value REAL NOT NULL, n INTEGER NOT NULL, updated_at REAL NOT NULL,"
        " PRIMARY KEY (competition, competition_version, weights))",
        "CREATE TABLE evaluation_history (id INTEGER PRIMARY KEY AUTOINCREMENT, model_key TEXT NOT NULL,"
        " competition TEXT NOT NULL, competition_version TEXT NOT NULL, round_id INTEGER, status TEXT NOT NULL,"
        " score REAL, n_tasks INTEGER, ci95 REAL, run_dir TEXT, data_digest TEXT, error TEXT,"
        " created_at REAL NOT NULL)",
        lambda db: _seed_ema(db),
    ),
]
SCHEMA_VERSION = len(MIGRATIONS)
EVALUATION_STATUSES = ("pending", "running", "done", "failed")
ROUND_STATUSES = ("running", "done", "failed")


class StateError(RuntimeError):
    """Misuse of the state (an unknown schema version, finishing an evaluation that is not running, ...)."""


def model_key(repo_id: str, sha: str) -> str:
    """``org/name@sha``: the unit that is vetted and evaluated (``keys.ModelKey``)."""
    return ModelKey(repo_id, sha).key


@attrs.frozen
class SubmissionRow:
    hotkey: str
    uid: int
    repo_id: str
    revision: str | None
    sha: str
    committed_block: int
    first_seen_at: float
    #: the last changed submission this hotkey made (ignored: the first accepted one is final)
    ignored_text: str | None = None

    @property
    def model_key(self) -> str:
        return ModelKey(self.repo_id, self.sha).key


@attrs.frozen
class VettingRow:
    model_key: str
    ok: bool
    reason: str
    checked_at: float
    #: ``keys.weights_digest`` of the weight files (None: not known, e.g. vetting failed)
    weights_digest: str | None = None


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
    n_done: int = 0
    finished_block: int | None = None
    ci95: float | None = None
    data_digest: str | None = None


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
                    if callable(statement):
                        statement(db)
                    else:
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

    def upsert_submission(
        self, hotkey: str, uid: int, repo_id: str, revision: str | None, sha: str, committed_block: int
    ) -> bool:
        """Record ``hotkey``'s submission; True if it is new or names another ``repo@sha`` than before.

        Re-committing the same ``repo@sha`` keeps the earlier ``committed_block`` (a miner does not lose its
        priority by committing again) and returns False. A changed submission is a new model key, so it
        gets vetted and evaluated afresh; nothing else is cleared.
        """
        with self._tx() as db:
            row = db.execute(
                "SELECT repo_id, sha, committed_block FROM submissions WHERE hotkey = ?", (hotkey,)
            ).fetchone()
            if row is not None and row[0] == repo_id and row[1] == sha:
                db.execute(
                    "UPDATE submissions SET uid = ?, revision = ?, committed_block = ? WHERE hotkey = ?",
                    (int(uid), revision, min(int(row[2]), int(committed_block)), hotkey),
                )
                return False
            db.execute(
                "INSERT OR REPLACE INTO submissions (hotkey, uid, repo_id, revision, sha, committed_block,"
                " first_seen_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (hotkey, int(uid), repo_id, revision, sha, int(committed_block), time.time()),
            )
            return True

    def submissions(self) -> list[SubmissionRow]:
        with self._tx(write=False) as db:
            rows = db.execute(f"SELECT {_SUBMISSION_COLUMNS} FROM submissions ORDER BY uid, hotkey").fetchall()
        return [SubmissionRow(*row) for row in rows]

    def note_ignored(self, hotkey: str, text: str) -> bool:
        """Remember that ``hotkey`` now submits ``text``, which is ignored (its first accepted submission is
        final); True the first time this text is seen, so it is logged once, even across restarts."""
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE submissions SET ignored_text = ? WHERE hotkey = ?"
                " AND (ignored_text IS NULL OR ignored_text != ?)",
                (text, hotkey, text),
            )
            return cursor.rowcount > 0

    def remove_submission(self, hotkey: str) -> bool:
        """Forget ``hotkey``'s submission (e.g. its commitment was cleared); True if there was one."""
        with self._tx() as db:
            return db.execute("DELETE FROM submissions WHERE hotkey = ?", (hotkey,)).rowcount > 0

    # -- vetting ---------------------------------------------------------------------------------------------

    def record_vetting(self, model_key: str, ok: bool, reason: str, *, weights_digest: str | None = None) -> None:
        """Record a vetting verdict. A weights digest learnt now (a state migrated from schema 2, a model vetted
        again) takes over the moving averages kept so far under the model's commit sha."""
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO vetting (model_key, ok, reason, checked_at, weights_digest)"
                " VALUES (?, ?, ?, ?, ?)",
                (model_key, int(bool(ok)), reason, time.time(), weights_digest),
            )
            if weights_digest is not None:
                by_sha = _sha_group(model_key)
                db.execute("UPDATE OR IGNORE ema SET weights = ? WHERE weights = ?", (weights_digest, by_sha))
                db.execute("DELETE FROM ema WHERE weights = ?", (by_sha,))  # the digest already had one

    def vetting(self, model_key: str) -> VettingRow | None:
        with self._tx(write=False) as db:
            row = db.execute(
                "SELECT model_key, ok, reason, checked_at, weights_digest FROM vetting WHERE model_key = ?",
                (model_key,),
            ).fetchone()
        return None if row is None else VettingRow(row[0], bool(row[1]), row[2], row[3], row[4])

    def weights_groups(self) -> dict[str, str]:
        """``{model key: weights identity}`` for every submitted model: the vetted weights digest, else the
        commit sha (the same commit pushed to another repo is the same model)."""
        with self._tx(write=False) as db:
            return _weights_groups(db)

    # -- evaluations -----------------------------------------------------------------------------------------

    def claim_evaluation(
        self, model_key: str, competition: str, version: str | int, *, retry_failed: bool = False
    ) -> bool:
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
            if row is None:
                db.execute(
                    "INSERT INTO evaluations (model_key, competition, competition_version, status, updated_at)"
                    " VALUES (?, ?, ?, 'running', ?)",
                    (model_key, competition, str(version), time.time()),
                )
            else:  # a re-evaluation keeps the last result until the new one replaces it
                db.execute(
                    "UPDATE evaluations SET status = 'running', updated_at = ? WHERE model_key = ?"
                    " AND competition = ? AND competition_version = ?",
                    (time.time(), model_key, competition, str(version)),
                )
            return True

    def finish_evaluation(
        self,
        model_key: str,
        competition: str,
        version: str | int,
        *,
        score: float,
        n_tasks: int,
        run_dir: str | None = None,
        block: int | None = None,
        round_id: int | None = None,
        ci95: float | None = None,
        data_digest: str | None = None,
        alpha: float = DEFAULT_EMA_ALPHA,
    ) -> None:
        """Record the score of a running evaluation (``done``) and fold it into its weights' moving average,
        in one transaction (a crash never counts an evaluation twice, nor loses it)."""
        if not math.isfinite(score):
            raise StateError(f"score must be finite, got {score!r}")
        self._end_evaluation(
            model_key,
            competition,
            version,
            status="done",
            score=float(score),
            n_tasks=int(n_tasks),
            run_dir=None if run_dir is None else str(run_dir),
            block=block,
            round_id=round_id,
            ci95=ci95,
            data_digest=data_digest,
            error=None,
            alpha=alpha,
        )

    def fail_evaluation(
        self,
        model_key: str,
        competition: str,
        version: str | int,
        *,
        reason: str,
        block: int | None = None,
        round_id: int | None = None,
        alpha: float = DEFAULT_EMA_ALPHA,
    ) -> None:
        """Mark a running evaluation ``failed`` by the model's fault: it counts 0 in the moving average
        (a failure of the validator itself is :meth:`release_evaluation`, which changes no score)."""
        self._end_evaluation(
            model_key,
            competition,
            version,
            status="failed",
            score=None,
            n_tasks=None,
            run_dir=None,
            block=block,
            round_id=round_id,
            ci95=None,
            data_digest=None,
            error=reason,
            alpha=alpha,
        )

    def release_evaluation(self, model_key: str, competition: str, version: str | int) -> None:
        """Put a running evaluation back to ``pending`` without any result: the validator failed, not the
        model (its last score and moving average stay as they were)."""
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE evaluations SET status = 'pending', updated_at = ? WHERE model_key = ?"
                " AND competition = ? AND competition_version = ? AND status = 'running'",
                (time.time(), model_key, competition, str(version)),
            )
            if cursor.rowcount != 1:
                raise StateError(f"no running evaluation of {model_key} in {competition} v{version}")

    def schedule_reevaluations(self, competition: str, version: str | int, *, finished_before_block: int) -> int:
        """Back to ``pending``: every finished evaluation (done, or failed by the model) of a model still
        submitted and vetted whose last run ended at or before ``finished_before_block``. Returns how many."""
        with self._tx() as db:
            submitted = {ModelKey(r, s).key for r, s in db.execute("SELECT repo_id, sha FROM submissions")}
            vetted = {k for (k,) in db.execute("SELECT model_key FROM vetting WHERE ok = 1")}
            rows = db.execute(
                "SELECT model_key FROM evaluations WHERE competition = ? AND competition_version = ?"
                " AND status IN ('done', 'failed') AND finished_block IS NOT NULL"
                " AND finished_block <= ?",
                (competition, str(version), int(finished_before_block)),
            )
            due = [k for (k,) in rows.fetchall() if k in submitted and k in vetted]
            for key in due:
                db.execute(
                    "UPDATE evaluations SET status = 'pending', updated_at = ? WHERE model_key = ?"
                    " AND competition = ? AND competition_version = ?",
                    (time.time(), key, competition, str(version)),
                )
            return len(due)

    def _end_evaluation(
        self,
        model_key: str,
        competition: str,
        version: str | int,
        *,
        status: str,
        score: float | None,
        n_tasks: int | None,
        run_dir: str | None,
        block: int | None,
        round_id: int | None,
        ci95: float | None,
        data_digest: str | None,
        error: str | None,
        alpha: float,
    ) -> None:
        if not 0 < alpha <= 1:
            raise StateError(f"alpha must be in (0, 1], got {alpha!r}")
        now = time.time()
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE evaluations SET status = ?, score = ?, n_tasks = ?, run_dir = ?, error = ?, ci95 = ?,"
                " data_digest = ?, finished_block = ?, n_done = n_done + 1, updated_at = ? WHERE model_key = ?"
                " AND competition = ? AND competition_version = ? AND status = 'running'",
                (
                    status,
                    score,
                    n_tasks,
                    run_dir,
                    error,
                    ci95,
                    data_digest,
                    block,
                    now,
                    model_key,
                    competition,
                    str(version),
                ),
            )
            if cursor.rowcount != 1:
                raise StateError(f"no running evaluation of {model_key} in {competition} v{version}")
            db.execute(
                "INSERT INTO evaluation_history (model_key, competition, competition_version, round_id,"
                " status, score, n_tasks, ci95, run_dir, data_digest, error, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    model_key,
                    competition,
                    str(version),
                    round_id,
                    status,
                    score,
                    n_tasks,
                    ci95,
                    run_dir,
                    data_digest,
                    error,
                    now,
                ),
            )
            group = _weights_groups(db).get(model_key) or _sha_group(model_key)
            _update_ema(db, competition, str(version), group, 0.0 if score is None else score, alpha, now)

    def ema(self, competition: str, version: str | int) -> dict[str, tuple[float, int]]:
        """``{weights identity: (moving average, evaluations folded in)}`` for ``competition``/``version``."""
        with self._tx(write=False) as db:
            rows = db.execute(
                "SELECT weights, value, n FROM ema WHERE competition = ? AND competition_version = ?",
                (competition, str(version)),
            ).fetchall()
        return {group: (float(value), int(n)) for group, value, n in rows}

    def history(
        self, model_key: str | None = None, limit: int = 100, *, round_id: int | None = None
    ) -> list[dict[str, object]]:
        """Every finished evaluation (newest first), re-evaluations included; of one model, or of one round."""
        query = (
            "SELECT id, model_key, competition, competition_version, round_id, status, score, n_tasks, ci95,"
            " run_dir, data_digest, error, created_at FROM evaluation_history WHERE 1 = 1"
        )
        args: list[object] = []
        if model_key is not None:
            query += " AND model_key = ?"
            args.append(model_key)
        if round_id is not None:
            query += " AND round_id = ?"
            args.append(int(round_id))
        with self._tx(write=False) as db:
            cursor = db.execute(query + " ORDER BY id DESC LIMIT ?", (*args, int(limit)))
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    def evaluation(self, model_key: str, competition: str, version: str | int) -> EvaluationRow | None:
        with self._tx(write=False) as db:
            row = db.execute(
                f"SELECT {_EVAL_COLUMNS} FROM evaluations WHERE model_key = ? AND competition = ?"
                " AND competition_version = ?",
                (model_key, competition, str(version)),
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
            return db.execute(
                "UPDATE evaluations SET status = 'pending', updated_at = ? WHERE status = 'running'", (time.time(),)
            ).rowcount

    def scores_by_hotkey(
        self, competition: str, version: str | int, *, longevity: tuple[int, float] = (0, 0.0)
    ) -> dict[str, float]:
        """Scores per submitting hotkey for ``competition``/``version``.

        Scores belong to weights, credit to the earliest committer (``keys.earliest_committer``): the hotkey
        that committed a model's weights first gets their moving average over every evaluation (a failure by
        the model counts 0), the others submitting the same weights (the same commit, or the same weight files
        re-uploaded) get 0; 0 when the model failed vetting. Hotkeys whose weights have no evaluation yet are
        left out. ``longevity=(n, share)`` mixes in each weights' averages under the competition's last ``n``
        earlier versions (:func:`_with_longevity`).
        """
        with self._tx(write=False) as db:
            subs = [SubmissionRow(*row) for row in db.execute(f"SELECT {_SUBMISSION_COLUMNS} FROM submissions")]
            vetted = dict(db.execute("SELECT model_key, ok FROM vetting").fetchall())
            groups = _weights_groups(db)
            averages = dict(
                db.execute(
                    "SELECT weights, value FROM ema WHERE competition = ? AND competition_version = ?",
                    (competition, str(version)),
                ).fetchall()
            )
            if longevity[0] > 0:
                averages = _with_longevity(db, competition, str(version), averages, *longevity)
        group_of = {row.hotkey: groups[row.model_key] for row in subs}
        winners = credited(subs, group_of)
        scores: dict[str, float] = {}
        for row in subs:
            group = group_of[row.hotkey]
            if row.model_key in vetted and not vetted[row.model_key]:
                scores[row.hotkey] = 0.0
            elif winners[group] != row.hotkey:
                scores[row.hotkey] = 0.0
            elif group in averages:
                scores[row.hotkey] = float(averages[group])
        return scores

    def scores_by_uid(self, competition: str, version: str | int) -> dict[int, float]:
        """``scores_by_hotkey`` mapped onto the current uids (hotkeys no longer registered are left out)."""
        uid_of = {hotkey: uid for uid, hotkey in self.neurons().items()}
        return {uid_of[h]: s for h, s in self.scores_by_hotkey(competition, version).items() if h in uid_of}

    # -- weights and rounds ----------------------------------------------------------------------------------

    def record_weights(
        self,
        *,
        block: int,
        competition_version: str | int,
        uids: Sequence[int],
        weights: Sequence[float],
        submitted: bool,
        result: str,
    ) -> int:
        """Log a weight vector (set or attempted) with the chain's answer; returns its id."""
        if len(uids) != len(weights):
            raise StateError(f"{len(uids)} uids but {len(weights)} weights")
        with self._tx() as db:
            cursor = db.execute(
                "INSERT INTO weights_history (block, competition_version, uids, weights, submitted, result,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    int(block),
                    str(competition_version),
                    json.dumps([int(u) for u in uids]),
                    json.dumps([float(w) for w in weights], allow_nan=False),
                    int(bool(submitted)),
                    result,
                    time.time(),
                ),
            )
            assert cursor.lastrowid is not None  # set by every INSERT
            return int(cursor.lastrowid)

    def weights_history(self, limit: int = 100) -> list[WeightsRow]:
        """The latest ``limit`` entries, newest first."""
        with self._tx(write=False) as db:
            rows = db.execute(
                "SELECT id, block, competition_version, uids, weights, submitted, result, created_at"
                " FROM weights_history ORDER BY id DESC LIMIT ?",
                (int(limit),),
            ).fetchall()
        return [WeightsRow(r[0], r[1], r[2], json.loads(r[3]), json.loads(r[4]), bool(r[5]), r[6], r[7]) for r in rows]

    def begin_round(self, seed: int) -> RoundRow:
        """Start a round with ``seed``, or return the unfinished one (with *its* seed) if there is one."""
        with self._tx() as db:
            row = db.execute(f"SELECT {_ROUND_COLUMNS} FROM rounds WHERE status = 'running'").fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO rounds (seed, started_at, finished_at, status) VALUES (?, ?, NULL, 'running')",
                    (int(seed), time.time()),
                )
                row = db.execute(f"SELECT {_ROUND_COLUMNS} FROM rounds WHERE status = 'running'").fetchone()
        return RoundRow(*row)

    def finish_round(self, round_id: int, status: str = "done") -> None:
        if status not in ("done", "failed"):
            raise StateError(f"a round finishes as 'done' or 'failed', not {status!r}")
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE rounds SET status = ?, finished_at = ? WHERE id = ? AND status = 'running'",
                (status, time.time(), int(round_id)),
            )
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
            ).fetchall()
            submitted = {ModelKey(r, s).key for r, s in db.execute("SELECT repo_id, sha FROM submissions")}
            problems.extend(f"evaluation of unknown model {r[0]}" for r in orphans if r[0] not in submitted)
            for rid, status, finished_at in db.execute("SELECT id, status, finished_at FROM rounds").fetchall():
                if (status == "running") != (finished_at is None):
                    problems.append(f"round {rid}: status {status} with finished_at {finished_at}")
            running = db.execute("SELECT count(*) FROM rounds WHERE status = 'running'").fetchone()[0]
            if running > 1:
                problems.append(f"{running} unfinished rounds")
            bad_done = db.execute("SELECT count(*) FROM evaluations WHERE status = 'done' AND score IS NULL")
            if n := bad_done.fetchone()[0]:
                problems.append(f"{n} done evaluations without a score")
            for rid, uids, weights in db.execute("SELECT id, uids, weights FROM weights_history").fetchall():
                try:
                    if len(json.loads(uids)) != len(json.loads(weights)):
                        problems.append(f"weights_history {rid}: uids and weights differ in length")
                except ValueError:
                    problems.append(f"weights_history {rid}: not JSON")
        return problems


_EVAL_COLUMNS = (
    "model_key, competition, competition_version, status, score, n_tasks, run_dir, error, updated_at,"
    " n_done, finished_block, ci95, data_digest"
)
_SUBMISSION_COLUMNS = "hotkey, uid, repo_id, revision, sha, committed_block, first_seen_at, ignored_text"


def _sha_group(key: str) -> str:
    return "sha:" + ModelKey.parse(key).sha


def _weights_groups(db: sqlite3.Connection) -> dict[str, str]:
    digests = dict(db.execute("SELECT model_key, weights_digest FROM vetting WHERE weights_digest IS NOT NULL"))
    groups = {}
    for repo_id, sha in db.execute("SELECT repo_id, sha FROM submissions").fetchall():
        key = ModelKey(repo_id, sha).key
        groups[key] = digests.get(key) or "sha:" + sha
    # a digest is shared by every commit with the same weights: models known by sha only join it
    by_sha = {ModelKey.parse(k).sha: g for k, g in groups.items() if not g.startswith("sha:")}
    return {k: (by_sha.get(g[4:], g) if g.startswith("sha:") else g) for k, g in groups.items()}


def _update_ema(
    db: sqlite3.Connection, competition: str, version: str, group: str, score: float, alpha: float, now: float
) -> None:
    """The first evaluation sets the average; each later one moves it by ``alpha``."""
    db.execute(
        "INSERT INTO ema (competition, competition_version, weights, value, n, updated_at)"
        " VALUES (?, ?, ?, ?, 1, ?) ON CONFLICT (competition, competition_version, weights) DO UPDATE SET"
        " value = ? * ? + (1 - ?) * value, n = n + 1, updated_at = excluded.updated_at",
        (competition, version, group, score, now, alpha, score, alpha),
    )


def past_versions(db: sqlite3.Connection, competition: str, version: str, n: int) -> list[str]:
    """The competition's last ``n`` versions before ``version``, newest first (by their first evaluation)."""
    return [
        v
        for (v,) in db.execute(
            "SELECT competition_version FROM evaluation_history WHERE competition = ? AND competition_version != ?"
            " GROUP BY competition_version ORDER BY MIN(id) DESC LIMIT ?",
            (competition, version, int(n)),
        )
    ]


def _with_longevity(
    db: sqlite3.Connection, competition: str, version: str, current: dict[str, float], n: int, share: float
) -> dict[str, float]:
    """Upstream's model longevity: ``(1 - n * share) * current + share * (average under each of the last n
    earlier versions)``; a version under which the weights have no average counts 0 (a new model earns it)."""
    if not 0 <= n * share <= 1:
        raise StateError(f"longevity: {n} versions x {share} is not a share of the score")
    past = past_versions(db, competition, version, n)
    earlier: dict[str, float] = {}
    for old in past:
        for group, value in db.execute(
            "SELECT weights, value FROM ema WHERE competition = ? AND competition_version = ?", (competition, old)
        ):
            earlier[group] = earlier.get(group, 0.0) + float(value)
    return {group: (1 - n * share) * float(value) + share * earlier.get(group, 0.0) for group, value in current.items()}


def _seed_ema(db: sqlite3.Connection) -> None:
    """Migration 2 -> 3: each finished evaluation becomes its weights' first moving-average value."""
    rows = db.execute(
        "SELECT model_key, competition, competition_version, status, score FROM evaluations"
        " WHERE status IN ('done', 'failed')"
    ).fetchall()
    now = time.time()
    for key, competition, version, status, score in rows:
        db.execute(
            "INSERT OR IGNORE INTO ema (competition, competition_version, weights, value, n, updated_at)"
            " VALUES (?, ?, ?, ?, 1, ?)",
            (competition, version, _sha_group(key), float(score) if status == "done" else 0.0, now),
        )


_ROUND_COLUMNS = "id, seed, started_at, finished_at, status"
