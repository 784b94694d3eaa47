"""Re-scoring saved responses without a model (``bitagent score``), and checking a task list's ground
truth against its own tools (``bitagent tasks validate``).

Responses are JSON lines: ``{"task_id": str, "response": str | {"tool_calls": [...]}, "id": optional}``.
A ``tool_calls`` entry is any JSON call form the decoder reads (``{"name", "arguments"}``, OpenAI's
``{"function": {"name", "arguments": "<json>"}}``...). Several lines may name the same task. Each scored
line is written back with ``score``, ``passed`` and ``error_type`` added; lines naming unknown tasks and
lines that are not valid are reported (by line number) and not scored, and the rest are scored anyway.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import attrs

from bitagent_core.agent import score_multi_turn, trajectory_from_response
from bitagent_core.decoding import DecodeError, json_call
from bitagent_core.jsonio import read_jsonl
from bitagent_core.matching import standardize
from bitagent_core.model import Completion, ExpectedCall, Task, ToolCall, Trajectory
from bitagent_core.protocols import Scorer

SCORE_FIELDS = ("score", "passed", "error_type")


@attrs.frozen
class BadLine:
    lineno: int
    message: str


@attrs.frozen
class Response:
    lineno: int
    data: dict[str, Any]
    completion: Completion | None  # None: the response itself could not be read (scored as a decode error)
    problem: str | None = None
    trajectory: Trajectory | None = None  # a multi-turn response: a list of turns of steps


def read_responses(path: str | Path) -> tuple[list[Response], list[BadLine]]:
    """Parse a responses file. Lines that cannot be used at all are returned as :class:`BadLine`."""
    responses: list[Response] = []
    bad: list[BadLine] = []
    try:
        for lineno, data in read_jsonl(Path(path).expanduser(), on_error=lambda n, msg: bad.append(BadLine(n, msg))):
            if not isinstance(data, dict):
                bad.append(BadLine(lineno, "a line must be a JSON object"))
                continue
            if not isinstance(data.get("task_id"), str):
                bad.append(BadLine(lineno, "'task_id' must be a string"))
                continue
            if "response" not in data:
                bad.append(BadLine(lineno, "no 'response'"))
                continue
            if isinstance(data["response"], list):  # multi-turn: turns of steps (BFCL's result shape)
                try:
                    responses.append(Response(lineno, data, None, None, trajectory_from_response(data["response"])))
                except ValueError as exc:
                    bad.append(BadLine(lineno, str(exc)))
                continue
            try:
                completion, problem = completion_from_response(data["response"])
            except NotAResponse as exc:
                bad.append(BadLine(lineno, str(exc)))
                continue
            responses.append(Response(lineno, data, completion, problem))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the responses: {exc.strerror or exc}") from None
    return responses, bad


class NotAResponse(ValueError):
    """A line's ``response`` is neither text nor ``{"tool_calls": [...]}``."""


def completion_from_response(response: Any) -> tuple[Completion | None, str | None]:
    """A string is the model's text; ``{"tool_calls": [...], "content": "..."}`` its native calls.

    Returns (completion, None), or (None, problem) when the calls cannot be read (the response then scores as
    a decode error, as unreadable text would). Raises :class:`NotAResponse` for anything else.
    """
    if isinstance(response, str):
        return Completion(text=response), None
    if response is None:
        return Completion(text=""), None
    if not isinstance(response, dict):
        raise NotAResponse("'response' must be a string or {\"tool_calls\": [...]}")
    content = response.get("content")
    if content is not None and not isinstance(content, str):
        raise NotAResponse("'response.content' must be a string")
    raw_calls = response.get("tool_calls")
    if raw_calls is None:
        return Completion(text=content or ""), None
    if not isinstance(raw_calls, list):
        return None, "'response.tool_calls' must be a list"
    calls: list[ToolCall] = []
    try:
        for raw in raw_calls:
            calls.append(json_call(raw))
    except DecodeError as exc:
        return None, f"unreadable tool call: {exc}"
    return Completion(text=content or "", tool_calls=tuple(calls)), None


@attrs.frozen
class Rescored:
    """The result of scoring a responses file."""

    lines: list[dict[str, Any]]  # the scored lines, input fields + score, passed, error_type
    categories: list[str]  # per scored line, its task's category
    unknown: dict[str, list[int]]  # unknown task id -> line numbers
    bad: list[BadLine]

    @property
    def ok(self) -> bool:
        return not self.unknown and not self.bad


def rescore(tasks: Iterable[Task], scorer: Scorer, responses: list[Response],
            bad: list[BadLine] | None = None) -> Rescored:
    by_id = {task.id: task for task in tasks}
    lines: list[dict[str, Any]] = []
    categories: list[str] = []
    unknown: dict[str, list[int]] = {}
    for response in responses:
        task_id = response.data["task_id"]
        task = by_id.get(task_id)
        if task is None:
            unknown.setdefault(task_id, []).append(response.lineno)
            continue
        error_type: str | None
        if task.environment is not None or response.trajectory is not None:
            value, passed, error_type = score_multi_turn(scorer, task, response)
        elif response.completion is None:
            value, passed, error_type = 0.0, False, "decode_error"
        else:
            try:
                result = scorer.score(task, response.completion)
            except Exception as exc:  # noqa: BLE001 - a scorer bug must not lose the other lines
                raise RuntimeError(f"line {response.lineno} ({task_id}): the {scorer.name} scorer raised "
                                   f"{type(exc).__name__}: {exc}") from exc
            value, passed, error_type = result.value, result.passed, result.error_type
        line = {k: v for k, v in response.data.items() if k not in SCORE_FIELDS}
        line.update(score=round(float(value), 6), passed=bool(passed), error_type=error_type)
        lines.append(line)
        categories.append(task.category or "uncategorized")
    return Rescored(lines, categories, unknown, list(bad or []))


def summarize(result: Rescored) -> dict[str, Any]:
    per: dict[str, dict[str, Any]] = {}
    errors: dict[str, int] = {}
    for line, category in zip(result.lines, result.categories):
        row = per.setdefault(category, {"n": 0, "passed": 0, "scores": []})
        row["n"] += 1
        row["passed"] += line["passed"]
        row["scores"].append(line["score"])
        if line["error_type"]:
            errors[line["error_type"]] = errors.get(line["error_type"], 0) + 1
    scores = [line["score"] for line in result.lines]
    return {
        "n_responses": len(result.lines) + sum(len(v) for v in result.unknown.values()) + len(result.bad),
        "n_scored": len(result.lines),
        "n_passed": sum(line["passed"] for line in result.lines),
        "accuracy": round(sum(line["passed"] for line in result.lines) / len(scores), 6) if scores else 0.0,
        "mean_score": round(statistics.fmean(scores), 6) if scores else 0.0,
        "per_category": {
            cat: {"n": row["n"], "passed": row["passed"], "accuracy": round(row["passed"] / row["n"], 6),
                  "mean_score": round(statistics.fmean(row["scores"]), 6)}
            for cat, row in sorted(per.items())
        },
        "error_types": dict(sorted(errors.items(), key=lambda kv: (-kv[1], kv[0]))),
        "unknown_task_ids": {k: v for k, v in sorted(result.unknown.items())},
        "bad_lines": [{"line": b.lineno, "error": b.message} for b in result.bad],
    }


def write_lines(path: str | Path, lines: list[dict[str, Any]]) -> None:
    target = Path(path).expanduser()
    tmp = target.with_name(target.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for line in lines:
            text = json.dumps(line, ensure_ascii=False, default=str)
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate read from a "\ud800" escape: keep it escaped
                text = json.dumps(line, default=str)
            f.write(text + "\n")
    tmp.replace(target)


# --- ground truth: checking it, rendering it -----------------------------------------------------------

def check_task(task: Task) -> list[tuple[str, str]]:
    """Where a task's ground truth contradicts its own tools: ``[(severity, message)]``.

    ``error``: no answer can pass (a required parameter without ground truth, a parameter the function does
    not have and may not omit, a parameter with no acceptable value, an unknown function); ``warning``: the
    data is inconsistent but answerable (an omittable parameter the function does not have, a value outside
    the parameter's ``enum``).
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
                    problems.append(("warning", f"{expected.name}: the ground truth names {param!r}, which the "
                                                "function does not have (omittable, so answerable)"))
                else:
                    problems.append(("error", f"{expected.name}: the ground truth requires {param!r}, which the "
                                              "function does not have"))
                continue
            if not options:
                problems.append(("error", f"{expected.name}.{param}: the ground truth lists no acceptable value"))
                continue
            if param in required and all(o == "" for o in options):
                problems.append(("error", f"{expected.name}.{param}: required by the function, but the ground "
                                          "truth only allows omitting it"))
            schema = props[param] if isinstance(props[param], dict) else {}
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
                    problems.append(("warning", f"{expected.name}.{param}: {outside[0]!r} is outside the "
                                                f"parameter's enum {enum[:6]}"))
        for param in required:
            if param not in expected.arguments:
                problems.append(("error", f"{expected.name}: required parameter {param!r} has no ground truth"))
    return problems



def _first(options: tuple[Any, ...] | list[Any]) -> tuple[bool, Any]:
    for option in options:
        if option != "":
            return True, option
    return False, None


def _render_value(option: Any, schema: dict[str, Any] | None) -> Any:
    """A ground-truth option as a value: BFCL writes dict values as ``{key: [options]}``, one level deep."""
    schema = schema if isinstance(schema, dict) else {}
    kind = schema.get("type")
    items: dict[str, Any] = schema["items"] if isinstance(schema.get("items"), dict) else {}
    if isinstance(option, dict) and (kind in ("dict", "object") or (kind is None and _looks_like_options(option))):
        return _render_options_dict(option)
    if isinstance(option, list) and kind in ("array", "tuple") and items.get("type") in ("dict", "object"):
        return [_render_options_dict(o) if isinstance(o, dict) else o for o in option]
    return option


def _looks_like_options(option: dict[str, Any]) -> bool:
    return bool(option) and all(isinstance(v, list) for v in option.values())


def _render_options_dict(option: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, values in option.items():
        if not isinstance(values, list):
            out[key] = values
            continue
        found, value = _first(values)
        if found:
            out[key] = value
    return out


def expected_arguments(task: Task, expected: ExpectedCall) -> dict[str, Any] | None:
    """The arguments of the first answer the ground truth lists for ``expected`` (its first value of each
    parameter; an omittable one is left out when ``""`` comes first or the function does not have it),
    or None if a parameter has no acceptable value at all."""
    tool = task.tool(expected.name)
    props = tool.properties if tool is not None and isinstance(tool.properties, dict) else {}
    required = set(tool.required) if tool is not None else set()
    arguments = {}
    for param, options in expected.arguments.items():
        if not options:
            return None
        if "" in options and (param not in required and (options[0] == "" or (props and param not in props))):
            continue  # omitted: listed first, or a parameter the function does not have
        found, value = _first(options)
        if found:
            arguments[param] = _render_value(value, props.get(param))
    return arguments


def render_expected(task: Task, style: str = "python") -> str:
    """The task's ground truth written as an answer: pythonic ``[f(a=1)]`` (JSON where a name is not a Python
    identifier), or ``style="json"``. A task expecting no call renders as ``""``."""
    calls = [(e.name, expected_arguments(task, e) or {}) for e in task.expected_calls]
    if not calls:
        return ""
    if style == "python" and all(pythonic_name(name) and all(k.isidentifier() and not _keyword(k) for k in args)
                                 for name, args in calls):
        try:
            return "[" + ", ".join(f"{name}({', '.join(f'{k}={python_literal(v)}' for k, v in args.items())})"
                                   for name, args in calls) + "]"
        except ValueError:
            pass
    return json.dumps([{"name": name, "arguments": args} for name, args in calls], ensure_ascii=False)


def _keyword(word: str) -> bool:
    import keyword

    return keyword.iskeyword(word)


def pythonic_name(name: str) -> bool:
    return bool(name) and all(part.isidentifier() and not _keyword(part) for part in name.split("."))


def python_literal(value: Any) -> str:
    """A Python literal for a JSON-able value (``repr``, refusing what it cannot write back)."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        raise ValueError("no literal for nan/inf")
    if isinstance(value, (list, tuple)):
        inner = ", ".join(python_literal(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' if len(value) == 1 else ''})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{python_literal(k)}: {python_literal(v)}" for k, v in value.items()) + "}"
    return repr(value)


def iter_validation(tasks: Iterable[Task], scorer: Scorer | None = None, *, structural: bool = True,
                    skip: set[str] | frozenset[str] = frozenset()) -> Iterator[tuple[str, str, str]]:
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
            yield (task.id, "error", f"its own ground truth fails the {scorer.name} scorer: "
                                     f"{result.error_type}: {result.detail}")
