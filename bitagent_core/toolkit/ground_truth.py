"""Ground truth written as an answer: the arguments of the first acceptable answer, and that answer as
pythonic calls or JSON (what ``bitagent tasks validate`` scores, and what scorer authors check against)."""

from __future__ import annotations

import json
from typing import Any

from bitagent_core.model import ExpectedCall, Task


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
    if style == "python" and all(
        pythonic_name(name) and all(k.isidentifier() and not _keyword(k) for k in args) for name, args in calls
    ):
        try:
            return (
                "["
                + ", ".join(
                    f"{name}({', '.join(f'{k}={python_literal(v)}' for k, v in args.items())})" for name, args in calls
                )
                + "]"
            )
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
