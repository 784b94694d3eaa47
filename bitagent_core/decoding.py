"""Turns model output into tool calls, safely.

Nothing here evaluates model output: pythonic answers are parsed with ``ast.parse`` and only literal nodes
are read; JSON with ``json.loads``. Input size and nesting are bounded before any parser runs, so a
hostile 64 KB answer or a deeply nested one costs microseconds and yields a decode error, never an
exception. Every scorer decodes through :func:`decode`, so every scorer sees the same calls.

Formats, tried in this order:
  * native tool calls the backend already parsed (OpenAI ``tool_calls``);
  * ``<tool_call>{json}</tool_call>`` (Hermes/Qwen), ``<TOOLCALL>[...]</TOOLCALL>``;
  * a fenced code block, then the whole text, then the outermost ``[...]`` in it, each as
    JSON (``[{"name": ..., "arguments": {...}}]`` and variants) or as pythonic calls
    (``[f(a=1), g(b="x")]``, with or without the brackets).
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

import attrs

from bitagent_core.model import Tool, ToolCall

MAX_INPUT_CHARS = 65_536
MAX_NESTING = 64
MAX_CALLS = 64


class DecodeError(ValueError):
    """The text is not a tool call in any known format."""


@attrs.frozen
class Decoded:
    """The calls found in a model answer. ``error`` is set when nothing could be decoded."""

    calls: tuple[ToolCall, ...] = ()
    format: str = "none"
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


_TAGGED = [
    ("tool_call", re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)),
    ("TOOLCALL", re.compile(r"<TOOLCALL>\s*(.*?)\s*(?:</TOOLCALL>|$)", re.S)),
]
_FENCE = re.compile(r"```[a-zA-Z0-9_+-]*\s*\n?(.*?)```", re.S)
_THINK = re.compile(r"<think>.*?</think>", re.S)


def decode(text: str | None, native_calls: tuple[ToolCall, ...] | list[ToolCall] = ()) -> Decoded:
    """Decode a completion into calls. Never raises."""
    if native_calls:
        calls = tuple(native_calls)[:MAX_CALLS + 1]
        if len(calls) > MAX_CALLS:
            return Decoded(error=f"more than {MAX_CALLS} calls")
        return Decoded(calls=calls, format="native")
    if not text or not text.strip():
        return Decoded(error="empty answer")
    if len(text) > MAX_INPUT_CHARS:
        return Decoded(error=f"answer longer than {MAX_INPUT_CHARS} characters")
    text = _THINK.sub("", text).strip()
    if _max_depth(text) > MAX_NESTING:
        return Decoded(error=f"nesting deeper than {MAX_NESTING}")

    errors: list[str] = []
    for fmt, pattern in _TAGGED:
        bodies = pattern.findall(text)
        if bodies:
            calls: list[ToolCall] = []
            try:
                for body in bodies:
                    calls.extend(_decode_body(body)[0])
            except DecodeError as exc:
                return Decoded(format=fmt, error=str(exc))
            return _result(calls, fmt)

    for candidate in _candidates(text):
        try:
            calls, fmt = _decode_body(candidate)
        except DecodeError as exc:
            errors.append(str(exc))
            continue
        return _result(calls, fmt)
    return Decoded(error=errors[0] if errors else "no tool call found")


def _result(calls: list[ToolCall], fmt: str) -> Decoded:
    if len(calls) > MAX_CALLS:
        return Decoded(format=fmt, error=f"more than {MAX_CALLS} calls")
    return Decoded(calls=tuple(calls), format=fmt)


def _candidates(text: str) -> list[str]:
    seen: list[str] = []
    for body in _FENCE.findall(text):
        seen.append(body.strip())
    seen.append(text)
    start, end = text.find("["), text.rfind("]")
    if 0 <= start < end:
        seen.append(text[start:end + 1])
    return [c for i, c in enumerate(seen) if c and c not in seen[:i]]


def _max_depth(text: str) -> int:
    depth = deepest = 0
    for ch in text:
        if ch in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")]}":
            depth = max(0, depth - 1)
    return deepest


def _decode_body(body: str) -> tuple[list[ToolCall], str]:
    body = body.strip()
    if not body:
        raise DecodeError("empty tool call")
    if body[0] in "[{":
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            pass
        else:
            return _calls_from_json(data), "json"
    return _calls_from_python(body), "python"


# --- JSON -------------------------------------------------------------------------------------------

def _calls_from_json(data: Any) -> list[ToolCall]:
    if isinstance(data, dict) and isinstance(data.get("tool_calls"), list):
        data = data["tool_calls"]
    items = data if isinstance(data, list) else [data]
    return [json_call(item) for item in items]


def json_call(item: Any) -> ToolCall:
    """One call from its JSON form: ``{"name", "arguments"|"parameters"}``, OpenAI's
    ``{"function": {...}}`` (arguments possibly a JSON string), or ``{name: {args}}``."""
    if not isinstance(item, dict):
        raise DecodeError(f"a JSON tool call must be an object, got {type(item).__name__}")
    if isinstance(item.get("function"), dict):
        item = item["function"]
    if "name" in item:
        name = item["name"]
        args = item.get("arguments", item.get("parameters", {}))
    elif len(item) == 1:
        (name, args), = item.items()
    else:
        raise DecodeError("a JSON tool call needs a 'name'")
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except (ValueError, RecursionError) as exc:
            raise DecodeError(f"arguments of {str(name)[:80]!r} are not valid JSON") from exc
    if not isinstance(name, str) or not name:
        raise DecodeError("a tool call name must be a non-empty string")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise DecodeError(f"arguments of {name[:80]!r} must be an object")
    return ToolCall(name=name, arguments=dict(args))


# --- pythonic ---------------------------------------------------------------------------------------

def _calls_from_python(body: str) -> list[ToolCall]:
    try:
        tree = ast.parse(body, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError) as exc:
        raise DecodeError(f"not a call: {type(exc).__name__}") from None
    node = tree.body
    elements = node.elts if isinstance(node, (ast.List, ast.Tuple)) else [node]
    if len(elements) > MAX_CALLS:
        raise DecodeError(f"more than {MAX_CALLS} calls")
    return [_python_call(e) for e in elements]


def _python_call(node: ast.AST) -> ToolCall:
    if not isinstance(node, ast.Call):
        raise DecodeError(f"not a call: {type(node).__name__}")
    name = _dotted_name(node.func)
    if name is None:
        raise DecodeError("a call's function must be a plain or dotted name")
    positional = []
    for arg in node.args:
        if isinstance(arg, ast.Starred):
            raise DecodeError("*args are not allowed in a tool call")
        positional.append(literal(arg))
    arguments: dict[str, Any] = {}
    for kw in node.keywords:
        if kw.arg is None:
            raise DecodeError("**kwargs are not allowed in a tool call")
        arguments[kw.arg] = literal(kw.value)
    return ToolCall(name=name, arguments=arguments, positional=tuple(positional))


def _dotted_name(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


_JSON_NAMES = {"true": True, "false": False, "null": None}


def literal(node: ast.AST, depth: int = 0) -> Any:
    """The value of a literal node. Bare and dotted names read as strings (as BFCL reads them);
    anything computed (operators, calls, comprehensions) is refused, never evaluated."""
    if depth > MAX_NESTING:
        raise DecodeError("value nested too deeply")
    if isinstance(node, ast.Constant):
        if isinstance(node.value, (str, int, float, bool)) or node.value is None:
            return node.value
        raise DecodeError(f"unsupported constant {type(node.value).__name__}")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = node.operand
        if isinstance(operand, ast.Constant) and type(operand.value) in (int, float):
            return -operand.value if isinstance(node.op, ast.USub) else operand.value
        raise DecodeError("unary operators apply only to numbers")
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return [literal(e, depth + 1) for e in node.elts]
    if isinstance(node, ast.Dict):
        out = {}
        for k, v in zip(node.keys, node.values):
            if k is None:
                raise DecodeError("** in a dict is not allowed")
            key = literal(k, depth + 1)
            if isinstance(key, (list, dict)):
                raise DecodeError("dict keys must be scalars")
            out[key if isinstance(key, str) else json.dumps(key)] = literal(v, depth + 1)
        return out
    if isinstance(node, ast.Name) and node.id in _JSON_NAMES:
        return _JSON_NAMES[node.id]  # JSON spellings inside a pythonic call: f(flag=true)
    if isinstance(node, (ast.Name, ast.Attribute)):
        dotted = _dotted_name(node)
        if dotted is not None:
            return dotted
    raise DecodeError(f"{type(node).__name__} is not a literal (expressions are never evaluated)")


# --- binding ----------------------------------------------------------------------------------------

def bind_arguments(call: ToolCall, tool: Tool | None) -> tuple[dict[str, Any], list[str]]:
    """Map positional arguments to names by the tool's parameter order.

    Returns the named arguments and the problems found (too many positional arguments, an argument
    given both by position and by name); unbindable positional arguments are kept as ``"#<i>"`` so a
    scorer counts them as extra.
    """
    arguments = dict(call.arguments)
    problems: list[str] = []
    order = tool.parameter_order if tool else []
    for i, value in enumerate(call.positional):
        if i < len(order):
            name = order[i]
            if name in arguments:
                problems.append(f"{name!r} given by position and by name")
                continue
            arguments[name] = value
        else:
            arguments[f"#{i}"] = value
            problems.append(f"positional argument {i} has no parameter")
    return arguments, problems
