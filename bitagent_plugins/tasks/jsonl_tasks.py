"""The ``jsonl`` task source: your own tasks, one JSON object a line (``--tasks jsonl:path/to/tasks.jsonl``).

Each line is read by :meth:`bitagent_core.model.Task.from_json`: ``id``, ``messages``, ``tools``
(JSON-schema form or the upstream subnet's ``{"arguments": {...}}`` form), ``expected_calls`` in BFCL's
``[{func: {param: [values]}}]`` form (empty or absent: the right answer is no call), and optional
``category`` (default ``uncategorized``), ``source`` (default ``jsonl``) and ``version``. Blank lines are
skipped. A bad line raises ``ValueError("tasks.jsonl:7: ...")``, naming the file and the line.

The file is a fixed list, so ``seed`` is ignored: ``limit`` takes the first N tasks in file order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from bitagent_core import RegisterTaskSource, Task, hookimpl
from bitagent_core.toolkit import JsonlError, read_jsonl

#: the category of tasks whose line names none
DEFAULT_CATEGORY = "uncategorized"


def read_tasks(path: str | Path) -> tuple[list[Task], str]:
    """Parse and check a tasks file; returns the tasks and a digest of the file (its version)."""
    label = str(path)
    path = Path(path).expanduser()
    tasks: list[Task] = []
    first_line: dict[str, int] = {}
    try:
        with open(path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        for lineno, data in read_jsonl(path):
            try:
                task = _task_from_json(data)
            except ValueError as exc:
                raise ValueError(f"{label}:{lineno}: {exc}") from None
            if task.id in first_line:
                first = first_line[task.id]
                raise ValueError(f"{label}:{lineno}: duplicate task id {task.id!r} (first on line {first})")
            first_line[task.id] = lineno
            tasks.append(task)
    except OSError as exc:
        raise ValueError(f"{label}: cannot read the tasks file: {exc.strerror or exc}") from None
    except JsonlError as exc:
        raise ValueError(f"{label}:{exc.lineno}: {exc.reason}") from None
    if not tasks:
        raise ValueError(f"{label}: no tasks in the file")
    return tasks, "sha256:" + digest[:16]


def _task_from_json(data: Any) -> Task:
    try:
        task = Task.from_json(data)
    except (TypeError, KeyError, AttributeError) as exc:  # odd shapes inside, e.g. a tool call without a name
        raise ValueError(f"malformed task: {type(exc).__name__}: {exc}") from None
    if not task.id:
        raise ValueError("'id' must not be empty")
    names = {t.name for t in task.tools}
    for call in task.expected_calls:
        if call.name not in names:  # it could never be matched: a mistake in the file, not in the model
            raise ValueError(f"task {task.id!r}: expected call {call.name!r} is not among its tools")
    return attrs.evolve(task, source=task.source or "jsonl", category=task.category or DEFAULT_CATEGORY)


class JsonlTaskSource:
    """Tasks read from a JSONL file, in file order. The file is read on first use."""

    name = "jsonl"
    description = "Tasks from a JSONL file: --tasks jsonl:path/to/tasks.jsonl (seed ignored; file order)."

    def __init__(self, arg: str | None = None) -> None:
        if not arg:
            raise ValueError("the jsonl task source needs a file: --tasks jsonl:path/to/tasks.jsonl")
        self.path = arg
        self._loaded: tuple[list[Task], str] | None = None

    def _load(self) -> tuple[list[Task], str]:
        if self._loaded is None:
            self._loaded = read_tasks(self.path)
        return self._loaded

    @property
    def version(self) -> str:
        """A digest of the file, so results say exactly which task set they came from."""
        return self._load()[1]

    def categories(self) -> list[str]:
        return sorted({t.category for t in self._load()[0]})

    def tasks(self, seed: int, limit: int | None) -> Iterator[Task]:
        """The first ``limit`` tasks in file order (all when None). ``seed`` is ignored: the file is fixed."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        tasks = self._load()[0]
        return iter(tasks if limit is None else tasks[:limit])


@hookimpl
def register_task_sources(register: RegisterTaskSource) -> None:
    register("jsonl", JsonlTaskSource, description="Tasks from a JSONL file: jsonl:path/to/tasks.jsonl.")
