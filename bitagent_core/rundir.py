"""The run directory: ``results.json`` (rewritten atomically) and ``samples.jsonl`` (appended, one line
per finished sample, written whole or not at all, so a crash, Ctrl-C or a full disk never leaves half a line).
Both hold typed records (:mod:`bitagent_core.records`); a writer holds ``.lock`` while it writes.

:class:`RunDir` is the run log's one owner: every reader and writer (the runner, re-scoring, ``bitagent runs``,
plugins) goes through it. Reading never changes a file; only :meth:`RunDir.repair`, which takes the lock, cuts a
torn last line."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bitagent_core.records import RunResults, SampleRecord, SchemaError
from bitagent_core.toolkit.jsonio import read_jsonl, write_json_atomic

RESULTS = "results.json"
SAMPLES = "samples.jsonl"
LOCK = ".lock"


class RunDirLocked(RuntimeError):
    """Another bitagent process is writing to this run directory."""


def utc_stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def slug(text: str, limit: int = 48) -> str:
    text = text.rstrip("/").rsplit("/", 1)[-1] if "/" in text else text
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:limit] or "x"


def new_run_dir(output_dir: Path, tasks: str, model: str) -> Path:
    base = output_dir / f"{utc_stamp()}_{slug(tasks)}_{slug(model)}"
    path, n = base, 1
    while True:
        try:
            path.mkdir(parents=True)  # exist_ok=False: two runs started in the same second get two directories
            return path.resolve()
        except FileExistsError:
            n += 1
            path = base.with_name(f"{base.name}-{n}")


def lock(run_dir: Path) -> Any:
    """Hold the run directory for writing; raises :class:`RunDirLocked` when another process holds it."""
    import filelock

    handle = filelock.FileLock(str(run_dir / LOCK), timeout=0)
    try:
        handle.acquire()
    except filelock.Timeout:
        raise RunDirLocked(f"{run_dir} is in use by another bitagent process (lock: {run_dir / LOCK})") from None
    return handle


def read_results_json(run_dir: Path) -> dict[str, Any]:
    path = run_dir / RESULTS
    try:
        results: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return results
    except FileNotFoundError:
        raise FileNotFoundError(f"{run_dir} is not a run directory (no {RESULTS})") from None
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None


def read_results(run_dir: Path) -> RunResults:
    try:
        return RunResults.from_json(read_results_json(run_dir))
    except SchemaError as exc:
        raise ValueError(f"{run_dir / RESULTS}: {exc}") from None


def write_results(run_dir: Path, results: RunResults) -> None:
    """Replace ``results.json``. On a full disk, fall back to overwriting it in place with a compact copy
    (smaller than the indented file, so it fits in the blocks the file already has): the run's last word is
    written even when no new block can be had."""
    data = results.to_json()
    try:
        write_json_atomic(run_dir / RESULTS, data)
    except OSError:
        text = json.dumps(data, ensure_ascii=False, default=str, separators=(",", ":")).encode("utf-8") + b"\n"
        with open(run_dir / RESULTS, "r+b") as f:
            f.write(text)
            f.truncate(len(text))


def iter_samples(
    path: Path, *, on_error: Any = "skip", drop_torn_tail: bool = False
) -> Iterator[tuple[int, SampleRecord]]:
    """``(line number, SampleRecord)`` for each readable line of a samples file, streamed."""
    for lineno, data in read_jsonl(path, on_error=on_error, drop_torn_tail=drop_torn_tail):
        try:
            yield lineno, SampleRecord.from_json(data)
        except SchemaError as exc:
            if on_error == "raise":
                raise ValueError(f"{path}:{lineno}: {exc}") from None
            if on_error != "skip":
                on_error(lineno, str(exc))


def read_samples(run_dir: Path) -> dict[str, SampleRecord]:
    """The last record per sample key (the task id; with ``--repeats``, the task id and the repeat index),
    read-only: a torn last line (a crash mid-write) is skipped, never cut (:meth:`RunDir.repair` cuts it, under
    the lock)."""
    path = Path(run_dir) / SAMPLES
    if not path.exists():
        return {}
    return {record.key: record for _, record in iter_samples(path)}


class SampleWriter:
    """Appends sample records. Each line goes out in whole ``write`` calls on an O_APPEND descriptor; if the
    disk fills up mid-line, the part written is cut off again and the error raised, so the file stays whole."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / SAMPLES
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, record: SampleRecord) -> None:
        assert self._fd is not None, "the writer is closed"
        line = json.dumps(record.to_json(), ensure_ascii=False, default=str)
        try:
            data = (line + "\n").encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate from a "\ud800" escape in model output: keep it escaped
            data = (json.dumps(record.to_json(), default=str) + "\n").encode("ascii")
        start = os.lseek(self._fd, 0, os.SEEK_END)
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError:
            os.ftruncate(self._fd, start)
            raise

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class RunDir:
    """One run directory: ``results.json``, ``samples.jsonl`` and the lock a writer holds.

    Readers open it (:meth:`open`) and read: nothing they do changes a file. A writer creates it (:meth:`create`,
    locked at once) or opens and locks it (:meth:`lock`), appends samples (:meth:`append`), rewrites results
    (:meth:`write_results`) and ends with :meth:`finish` (the last results, the writer closed, the lock
    released). :meth:`repair` cuts a torn last line, under the lock.
    """

    RESULTS = RESULTS
    SAMPLES = SAMPLES
    utc_stamp = staticmethod(utc_stamp)

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock: Any = None
        self._writer: SampleWriter | None = None

    @classmethod
    def create(cls, output_dir: Path, tasks: str, model: str) -> RunDir:
        """A new run directory under ``output_dir`` (named after the time, the tasks and the model), locked."""
        run = cls(new_run_dir(Path(output_dir), tasks, model))
        run.lock()
        return run

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """An existing run directory, or the one holding ``path`` when it names its ``samples.jsonl``.
        Raises ``ValueError`` when there is neither a results.json nor a samples.jsonl."""
        path = Path(path).expanduser().resolve()
        if path.is_file() and path.name == SAMPLES:
            path = path.parent
        if not (path / RESULTS).is_file() and not (path / SAMPLES).is_file():
            raise ValueError(f"{path}: not a run directory (no {RESULTS} or {SAMPLES})")
        return cls(path)

    @staticmethod
    def is_run(path: Path) -> bool:
        """Whether ``path`` holds a run's results.json."""
        return (Path(path) / RESULTS).is_file()

    @property
    def samples_path(self) -> Path:
        return self.path / SAMPLES

    @property
    def results_path(self) -> Path:
        return self.path / RESULTS

    @property
    def has_results(self) -> bool:
        return self.results_path.is_file()

    @property
    def has_samples(self) -> bool:
        return self.samples_path.is_file()

    # --- reading: never changes a file --------------------------------------------------------------------

    def read_results(self) -> RunResults:
        return read_results(self.path)

    def read_samples(self) -> dict[str, SampleRecord]:
        """The last record per task id (a retried sample is appended); a torn last line is skipped."""
        return read_samples(self.path)

    def iter_samples(self, *, on_error: Any = "skip") -> Iterator[tuple[int, SampleRecord]]:
        """``(line number, SampleRecord)`` for every readable line, streamed, in file order."""
        if not self.has_samples:
            return iter(())
        return iter_samples(self.samples_path, on_error=on_error)

    @staticmethod
    def read_sample_file(path: Path, *, on_error: Any = "skip") -> Iterator[tuple[int, SampleRecord]]:
        """``(line number, SampleRecord)`` for every readable line of a samples file anywhere (a copy of a
        run's samples.jsonl), streamed; ``on_error``: ``"skip"``, ``"raise"`` or ``(lineno, message)``."""
        return iter_samples(Path(path), on_error=on_error)

    # --- writing: under the lock -------------------------------------------------------------------------

    @property
    def locked(self) -> bool:
        return self._lock is not None

    def lock(self) -> RunDir:
        """Hold the directory for writing; raises :class:`RunDirLocked` when another process holds it."""
        if self._lock is None:
            self._lock = lock(self.path)
        return self

    def _need_lock(self, what: str) -> None:
        if self._lock is None:
            raise RuntimeError(f"{what} {self.path} needs its lock (RunDir.lock())")

    def repair(self) -> int:
        """Cut a torn last line of samples.jsonl (a crash mid-write), so appends start on a fresh line; takes
        the lock if not held. Returns the bytes cut."""
        self.lock()
        if not self.has_samples:
            return 0
        before = self.samples_path.stat().st_size
        for _ in read_jsonl(self.samples_path, on_error="skip", drop_torn_tail=True):
            pass
        return before - self.samples_path.stat().st_size

    def append(self, record: SampleRecord) -> None:
        """Append one sample, whole or not at all (an ``OSError`` leaves the file as it was)."""
        self._need_lock("appending to")
        if self._writer is None:
            self._writer = SampleWriter(self.path)
        self._writer.write(record)

    def write_results(self, results: RunResults) -> None:
        self._need_lock("writing")
        write_results(self.path, results)

    def finish(self, results: RunResults | None = None) -> None:
        """The run's last word: ``results`` written (if given), the samples closed, the lock released."""
        try:
            if results is not None and self._lock is not None:
                write_results(self.path, results)
        finally:
            self.close()

    def close(self) -> None:
        """Close the samples and release the lock (safe to call twice)."""
        writer, self._writer = self._writer, None
        handle, self._lock = self._lock, None
        try:
            if writer is not None:
                writer.close()
        finally:
            if handle is not None:
                handle.release()

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"


def git_commit(path: Path) -> str | None:
    """The commit of the source tree at ``path``, if it is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
