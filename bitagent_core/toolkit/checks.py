"""What makes a task unusable, checked before any model loads; what makes its ground truth unanswerable.

A task source is plugin code: it may yield a dict instead of a :class:`Task`, a tool named ``""``, a task with
no messages, an expected call to a tool the task does not offer, or the same id twice. Each is an
:class:`InvalidTask` naming the source, the task id and the problem, raised by :func:`validate_tasks` (the
runner calls it on every task list before the backend starts; ``bitagent tasks validate`` reports the same
problems).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from bitagent_core.model import Completion, ExpectedCall, Message, Task, Tool
from bitagent_core.toolkit.ground_truth import render_expected
from bitagent_core.toolkit.matching import standardize

if TYPE_CHECKING:
    from bitagent_core.protocols import Scorer

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
                problems.append(
                    f"expects a call to {call.name!r}, which is not among the task's tools "
                    f"({', '.join(sorted(offered)) or 'none'})"
                )
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
        names |= {
            n for n, v in vars(base).items() if not n.startswith("_") and (callable(v) or isinstance(v, property))
        }
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


# --- ground truth: checking it, rendering it -----------------------------------------------------------


def check_task(task: Task, *, type_severity: str = "error") -> list[tuple[str, str]]:
    """Where a task's ground truth contradicts its own tools: ``[(severity, message)]``.

    ``error``: no answer can pass (a required parameter without ground truth, a parameter the function does
    not have and may not omit, a parameter with no acceptable value, an unknown function); ``warning``: the
    data is inconsistent but answerable (an omittable parameter the function does not have, a value outside
    the parameter's ``enum``). A value of another JSON type than the parameter declares (``"3"`` for an
    integer) is ``type_severity``: an error by default (a type-strict scorer fails the right answer); a benchmark
    whose own checker accepts some of its mistyped ground truth passes ``"warning"``.
    """
    problems: list[tuple[str, str]] = []
    names = [tool.name for tool in task.tools]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(("warning", f"two tools are named {name!r}"))
    for expected in task.expected_calls:
        tool = task.tool(expected.name)
        if tool is None:
            problems.append(("error", f"{expected.name}: not among the task's tools"))
            continue
        props = tool.properties if isinstance(tool.properties, dict) else {}
        required = [r for r in tool.required if isinstance(r, str)]
        for param, options in expected.arguments.items():
            omittable = "" in options
            if param not in props:
                if omittable:
                    problems.append(
                        (
                            "warning",
                            f"{expected.name}: the ground truth names {param!r}, which the "
                            "function does not have (omittable, so answerable)",
                        )
                    )
                else:
                    problems.append(
                        (
                            "error",
                            f"{expected.name}: the ground truth requires {param!r}, which the function does not have",
                        )
                    )
                continue
            if not options:
                problems.append(("error", f"{expected.name}.{param}: the ground truth lists no acceptable value"))
                continue
            if param in required and all(o == "" for o in options):
                problems.append(
                    (
                        "error",
                        f"{expected.name}.{param}: required by the function, but the ground "
                        "truth only allows omitting it",
                    )
                )
            schema = props[param] if isinstance(props[param], dict) else {}
            for option in options:
                wrong = type_mismatch(option, schema) if option is not None or param in required else None
                if wrong:  # (None for an optional parameter: its default, as BFCL writes it)
                    problems.append(
                        (
                            type_severity,
                            f"{expected.name}.{param}: the ground truth's {option!r} "
                            f"{wrong}, so a scorer fails the answer that sends the declared "
                            "type",
                        )
                    )
                    break
            enum = schema.get("enum")
            if isinstance(enum, list) and enum:
                allowed = {standardize(e) if isinstance(e, str) else json.dumps(e) for e in enum}
                outside = []
                for option in options:
                    values = option if isinstance(option, list) else [option]
                    for value in values:
                        if value == "" or value is None:
                            continue
                        key = standardize(value) if isinstance(value, str) else json.dumps(value, default=str)
                        if key not in allowed:
                            outside.append(value)
                if outside:
                    problems.append(
                        (
                            "warning",
                            f"{expected.name}.{param}: {outside[0]!r} is outside the parameter's enum {enum[:6]}",
                        )
                    )
        for param in required:
            if param not in expected.arguments:
                problems.append(("error", f"{expected.name}: required parameter {param!r} has no ground truth"))
    return problems


#: JSON-schema types (and BFCL's Python-flavoured names) -> the Python types a JSON value of that type has
JSON_TYPES: dict[str, tuple[type, ...]] = {
    "integer": (int,),
    "int": (int,),
    "number": (int, float),
    "float": (int, float),
    "string": (str,),
    "str": (str,),
    "boolean": (bool,),
    "bool": (bool,),
    "array": (list, tuple),
    "tuple": (list, tuple),
    "list": (list, tuple),
    "object": (dict,),
    "dict": (dict,),
    "null": (type(None),),
}


def type_mismatch(value: Any, schema: dict[str, Any]) -> str | None:
    """Why ``value`` (one acceptable ground-truth value; ``""`` = omitted) is not of the JSON type ``schema``
    declares, or None. Types this does not know (BFCL's ``any``, Java's ``String``...) are not checked."""
    if value == "" or not isinstance(schema, dict):
        return None
    declared = schema.get("type")
    names = [declared] if isinstance(declared, str) else declared if isinstance(declared, list) else []
    allowed = [JSON_TYPES[n] for n in names if isinstance(n, str) and n in JSON_TYPES]
    if not allowed or len(allowed) < len(names):
        return None
    for types in allowed:
        if isinstance(value, bool) and bool not in types:
            continue  # JSON's true is not a number
        if isinstance(value, types):
            return None
    return f"is a {type(value).__name__}, but the parameter is declared {declared!r}"


def iter_validation(
    tasks: Iterable[Task],
    scorer: Scorer | None = None,
    *,
    structural: bool = True,
    skip: set[str] | frozenset[str] = frozenset(),
) -> Iterator[tuple[str, str, str]]:
    """``(task id, severity, message)`` for every problem :func:`check_task` finds (unless ``structural`` is
    off: the source checked itself) and, with a scorer, every task whose ground truth, rendered as an
    answer, the scorer fails. Tasks in ``skip`` (already known to be broken) are not scored."""
    for task in tasks:
        problems = check_task(task) if structural else []
        yield from ((task.id, severity, message) for severity, message in problems)
        if scorer is None or not task.expected_calls or task.id in skip or any(s == "error" for s, _ in problems):
            continue
        answer = render_expected(task)
        result = scorer.score(task, Completion(text=answer))
        if not result.passed:
            yield (
                task.id,
                "error",
                f"its own ground truth fails the {scorer.name} scorer: {result.error_type}: {result.detail}",
            )
