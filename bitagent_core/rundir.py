"""The run directory: ``results.json`` (rewritten atomically) and ``samples.jsonl`` (appended, one line
per finished sample, flushed as it finishes so a crash or Ctrl-C loses nothing finished)."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
from pathlib import Path
from typing import IO, Any

from bitagent_core.jsonio import read_jsonl

RESULTS = "results.json"
SAMPLES = "samples.jsonl"


def utc_stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def slug(text: str, limit: int = 48) -> str:
    text = text.rstrip("/").rsplit("/", 1)[-1] if "/" in text else text
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:limit] or "x"


def new_run_dir(output_dir: Path, tasks: str, model: str) -> Path:
    base = output_dir / f"{utc_stamp()}_{slug(tasks)}_{slug(model)}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


def read_results(run_dir: Path) -> dict[str, Any]:
    path = run_dir / RESULTS
    try:
        results: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return results
    except FileNotFoundError:
        raise FileNotFoundError(f"{run_dir} is not a run directory (no {RESULTS})") from None
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None


def read_samples(run_dir: Path) -> dict[str, dict[str, Any]]:
    """The last record per task id. A torn last line (crash mid-write) is dropped from the file."""
    path = run_dir / SAMPLES
    if not path.exists():
        return {}
    records: dict[str, dict[str, Any]] = {}
    for _, record in read_jsonl(path, on_error="skip", drop_torn_tail=True):
        if isinstance(record, dict) and "task_id" in record:
            records[str(record["task_id"])] = record
    return records


class SampleWriter:
    """Appends sample records; each line is flushed before the next sample is reported."""

    def __init__(self, run_dir: Path) -> None:
        self._file: IO[str] = open(run_dir / SAMPLES, "a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def git_commit(path: Path) -> str | None:
    """The commit of the source tree at ``path``, if it is a git checkout."""
    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
