"""What makes a task unusable, checked before any model loads.

A task source is plugin code: it may yield a dict instead of a :class:`Task`, a tool named ``""``, a task with
no messages, an expected call to a tool the task does not offer, or the same id twice. Each is an
:class:`InvalidTask` naming the source, the task id and the problem, raised by :func:`validate_tasks` (the
runner calls it on every task list before the backend starts; ``bitagent tasks validate`` reports the same
problems).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable

from bitagent_core.model import ExpectedCall, Message, Task, Tool

ROLES = ("system", "user", "assistant", "tool")


class InvalidTask(ValueError):
    """A task no model can be asked; the message names the task source, the task id and the problem."""

    def __init__(self, source: str, task_id: str, problem: str) -> None:
        super().__init__(f"task source {source!r}: task {task_id}: {problem}")
        self.source, self.task_id, self.problem = source, task_id, problem


def _is_name(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def task_problems(task: object) -> list[str]:
    """Everything that makes ``task`` unusable (empty when it is fine)."""
    if not isinstance(task, Task):
        return [f"not a Task but a {type(task).__name__} (build tasks with bitagent_core.Task)"]
    problems = []
    if not _is_name(task.id):
        problems.append(f"the id must be a non-empty string, got {task.id!r}")
    if not isinstance(task.messages, tuple) or not task.messages:
        problems.append("no messages")
    else:
        for i, message in enumerate(task.messages):
            if not isinstance(message, Message):
                problems.append(f"messages[{i}] is a {type(message).__name__}, not a Message")
            elif message.role not in ROLES:
                problems.append(f"messages[{i}] has the role {message.role!r} (one of {', '.join(ROLES)})")
            elif not isinstance(message.content, str):
                problems.append(f"messages[{i}]: the content must be a string")
    offered: set[str] = set()
    if not isinstance(task.tools, tuple):
        problems.append(f"tools must be a tuple of Tool, got a {type(task.tools).__name__}")
    else:
        for i, tool in enumerate(task.tools):
            if not isinstance(tool, Tool):
                problems.append(f"tools[{i}] is a {type(tool).__name__}, not a Tool")
            elif not _is_name(tool.name):
                problems.append(f"tools[{i}] has no name ({tool.name!r})")
            elif not isinstance(tool.parameters, dict):
                problems.append(f"tool {tool.name!r}: parameters must be a JSON-schema object")
            else:
                offered.add(tool.name)
    if not isinstance(task.expected_calls, tuple):
        problems.append(f"expected_calls must be a tuple of ExpectedCall, got a {type(task.expected_calls).__name__}")
    else:
        for i, call in enumerate(task.expected_calls):
            if not isinstance(call, ExpectedCall):
                problems.append(f"expected_calls[{i}] is a {type(call).__name__}, not an ExpectedCall")
            elif not _is_name(call.name):
                problems.append(f"expected_calls[{i}] has no name ({call.name!r})")
            elif call.name not in offered:
                problems.append(f"expects a call to {call.name!r}, which is not among the task's tools "
                                f"({', '.join(sorted(offered)) or 'none'})")
            elif not isinstance(call.arguments, dict):
                problems.append(f"expected call {call.name!r}: arguments must be a dict")
    return problems


def validate_tasks(tasks: Iterable[object], source: str) -> list[Task]:
    """``tasks`` as a list, or :class:`InvalidTask` for the first unusable task or repeated id."""
    checked: list[Task] = []
    seen: set[str] = set()
    for index, task in enumerate(tasks):
        problems = task_problems(task)
        task_id = task.id if isinstance(task, Task) and _is_name(task.id) else f"#{index}"
        if problems:
            raise InvalidTask(source, str(task_id), "; ".join(problems))
        assert isinstance(task, Task)
        if task.id in seen:
            raise InvalidTask(source, task.id, "the same id as an earlier task (ids must be unique)")
        seen.add(task.id)
        checked.append(task)
    return checked


def protocol_members(protocol: type) -> list[str]:
    """The attributes and methods a protocol class declares (its own and its protocol bases')."""
    names: set[str] = set()
    for base in protocol.__mro__:
        if base is object or not getattr(base, "_is_protocol", False) or base.__name__ in ("Protocol", "Generic"):
            continue
        names |= {n for n in getattr(base, "__annotations__", {}) if not n.startswith("_")}
        names |= {n for n, v in vars(base).items()
                  if not n.startswith("_") and (callable(v) or isinstance(v, property))}
    return sorted(names)


def protocol_problems(obj: object, protocol: type) -> list[str]:
    """What ``obj`` lacks of ``protocol``: missing members, methods that are not callable, and ``async``
    methods that are plain functions."""
    problems = []
    for name in protocol_members(protocol):
        if not hasattr(obj, name):
            problems.append(f"has no {name!r}")
            continue
        declared = getattr(protocol, name, None)
        if callable(declared):
            value = getattr(obj, name)
            if not callable(value):
                problems.append(f"{name!r} is not a method")
            elif inspect.iscoroutinefunction(declared) and not inspect.iscoroutinefunction(value):
                problems.append(f"{name!r} must be an async method")
    return problems


def check_protocol(obj: object, protocol: type, label: str) -> None:
    """Raise a :class:`TypeError` naming ``label`` (e.g. ``scorer 'x'``) when ``obj`` breaks ``protocol``."""
    problems = protocol_problems(obj, protocol)
    if problems:
        raise TypeError(f"{label} does not implement the {protocol.__name__} protocol: {'; '.join(problems)}")
