"""Turns model output into tool calls, safely.

Nothing here evaluates model output: pythonic answers are parsed with ``ast.parse`` and only literal nodes
are read; JSON with ``json.loads``. Input size and nesting are bounded before any parser runs, so a
hostile 64 KB answer or a deeply nested one costs microseconds and yields a decode error, never an
exception. Every scorer decodes through :func:`decode`, so every scorer sees the same calls.

Formats, tried in this order:
  * native tool calls the backend already parsed (OpenAI ``tool_calls``);
  * ``<tool_call>{json}</tool_call>`` (Hermes/Qwen), ``<TOOLCALL>...</TOOLCALL>`` (tagged prompts, holding
    any of the formats below), ``<function_call> {json}`` (Granite);
  * a fenced code block, then the whole text (also without wrapping backticks), then the outermost
    ``[...]`` in it, each as JSON (``[{"name": ..., "arguments": {...}}]``, BFCL's
    ``[{"function": ..., "parameters": {...}}]``, OpenAI's ``{"function": {...}}``, ``{name: {args}}``,
    several objects separated by ``;`` as Llama 3.1 writes after ``<|python_tag|>``), or as pythonic calls
    (``[f(a=1), g(b="x")]``, with or without the brackets), then in the dialect's own formats.

A :class:`Dialect` is where one benchmark's reading departs from this one (the BFCL plugin's reads values as
BFCL's decoder does, and BFCL's XML): how a pythonic value is read, a faster reader for whole pythonic
answers, and extra formats. The default reads values with :func:`literal`.
"""

from __future__ import annotations

import ast
import json
import re
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import attrs

from bitagent_core.model import ToolCall

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
    ("function_call", re.compile(r"<function_call>\s*(.*?)\s*(?=<function_call>|$)", re.S)),
]
_FENCE = re.compile(r"```[a-zA-Z0-9_+-]*\s*\n?(.*?)```", re.S)


def decode(
    text: str | None, native_calls: tuple[ToolCall, ...] | list[ToolCall] = (), *, dialect: Dialect | None = None
) -> Decoded:
    """Decode a completion into calls. Never raises on any model output.

    ``dialect`` says how pythonic values are read and which formats come on top of the shared ones
    (default: :data:`PLAIN`, values read by :func:`literal`).
    """
    dialect = dialect or PLAIN
    if native_calls:
        native = tuple(native_calls)[: MAX_CALLS + 1]
        if len(native) > MAX_CALLS:
            return Decoded(error=f"more than {MAX_CALLS} calls")
        return Decoded(calls=native, format="native")
    if not text:
        return Decoded(error="empty answer")
    if len(text) > MAX_INPUT_CHARS:
        return Decoded(error=f"answer longer than {MAX_INPUT_CHARS} characters")
    text = text.strip()
    if not text:
        return Decoded(error="empty answer")
    tagged = "<" in text
    if tagged:
        if "<think>" in text:
            text = _drop_thinking(text)
        if "<|python_tag|>" in text:
            text = text.replace("<|python_tag|>", " ")
        text = text.strip()
        if not text:
            return Decoded(error="no tool call found")
    if text.count("(") + text.count("[") + text.count("{") > MAX_NESTING and _max_depth(text) > MAX_NESTING:
        return Decoded(error=f"nesting deeper than {MAX_NESTING}")
    fast_calls = dialect.fast_calls
    tried = None  # the text the fast reader already left to ast.parse: not offered to it twice
    if (
        fast_calls is not None
        and not tagged
        and "```" not in text
        and text[0] not in "{`"
        and not _JSON_LIST.match(text)
    ):
        fast = fast_calls(text)  # the common case: what the first candidate below decodes to
        if fast is not None:
            return _result(fast, "python")
        tried = text

    errors: list[str] = []
    if tagged and "<" in text:
        for fmt, pattern in _TAGGED:
            bodies = pattern.findall(text)
            if bodies:
                calls: list[ToolCall] = []
                try:
                    for body in bodies:
                        calls.extend(_decode_body(body, dialect, tried)[0])
                except DecodeError as exc:
                    return Decoded(format=fmt, error=str(exc))
                return _result(calls, fmt)

    for candidate in _candidates(text):
        try:
            calls, fmt = _decode_body(candidate, dialect, tried)
        except DecodeError as exc:
            errors.append(str(exc))
            continue
        return _result(calls, fmt)
    return Decoded(error=errors[0] if errors else "no tool call found")


def _drop_thinking(text: str) -> str:
    """``text`` without its ``<think>...</think>`` spans (linear: a regex would rescan after every open tag)."""
    out = []
    i = 0
    while True:
        start = text.find("<think>", i)
        end = text.find("</think>", start + 7) if start >= 0 else -1
        if end < 0:
            out.append(text[i:])
            return "".join(out)
        out.append(text[i:start])
        i = end + 8


def decode_pythonic(text: str | None, *, dialect: Dialect | None = None) -> Decoded:
    """Only the pythonic format, the whole text read as one expression: no tags, fences, JSON or other
    formats (what BFCL's prompting decoder reads after its own clean-up). The same bounds as :func:`decode`;
    never raises."""
    text = (text or "").strip()
    if not text:
        return Decoded(error="empty answer")
    if len(text) > MAX_INPUT_CHARS:
        return Decoded(error=f"answer longer than {MAX_INPUT_CHARS} characters")
    if text.count("(") + text.count("[") + text.count("{") > MAX_NESTING and _max_depth(text) > MAX_NESTING:
        return Decoded(error=f"nesting deeper than {MAX_NESTING}")
    try:
        return _result(_calls_from_python(text, dialect or PLAIN), "python")
    except DecodeError as exc:
        return Decoded(format="python", error=str(exc))


def _result(calls: list[ToolCall], fmt: str) -> Decoded:
    if len(calls) > MAX_CALLS:
        return Decoded(format=fmt, error=f"more than {MAX_CALLS} calls")
    return Decoded(calls=tuple(calls), format=fmt)


def _candidates(text: str) -> list[str]:
    seen: list[str] = []
    if "```" in text:
        for body in _FENCE.findall(text):
            seen.append(body.strip())
    seen.append(text)
    if text[0] == "`" or text[-1] == "`":
        seen.append(text.strip("`\n "))  # `f(a=1)`: BFCL strips backticks too
    start, end = text.find("["), text.rfind("]")
    if 0 <= start < end:
        seen.append(text[start : end + 1])
    return [c for i, c in enumerate(seen) if c and c not in seen[:i]]


_NOT_BRACKETS = re.compile(r"[^()\[\]{}]+")


def _max_depth(text: str) -> int:
    """The deepest bracket nesting in ``text``, counted up to just past MAX_NESTING (then it stops)."""
    depth = deepest = 0
    for ch in _NOT_BRACKETS.sub("", text):
        if ch in "([{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_NESTING:
                    break
        elif depth:
            depth -= 1
    return deepest


def _decode_body(body: str, dialect: Dialect, tried: str | None = None) -> tuple[list[ToolCall], str]:
    body = body.strip()
    if not body:
        raise DecodeError("empty tool call")
    if body[0] == "{" or _JSON_LIST.match(body):  # JSON calls, or "[]"
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            data = _json_sequence(body) if body[0] == "{" else None
        if data is not None:
            return _calls_from_json(data), "json"
    try:
        return _calls_from_python(body, dialect, fast=body != tried), "python"
    except DecodeError:
        for name, read in dialect.formats:
            calls = read(body)
            if calls is not None:
                return calls, name
        raise


_JSON_DECODER = json.JSONDecoder()
_JSON_LIST = re.compile(r"\[\s*[{\]]")


def _json_sequence(body: str) -> list[Any] | None:
    """Several JSON objects one after another, separated by ``;``, ``,`` or white space, or None."""
    items: list[Any] = []
    i, n = 0, len(body)
    try:
        while i < n:
            item, i = _JSON_DECODER.raw_decode(body, i)
            items.append(item)
            if len(items) > MAX_CALLS:
                raise DecodeError(f"more than {MAX_CALLS} calls")
            while i < n and body[i] in " \t\r\n":
                i += 1
            if i < n and body[i] in ";,":
                i += 1
            while i < n and body[i] in " \t\r\n":
                i += 1
    except (ValueError, RecursionError):
        return None
    return items if len(items) > 1 else None


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
    elif isinstance(item.get("function"), str):  # BFCL's JSON prompt: {"function": name, "parameters": {...}}
        name = item["function"]
        args = item.get("parameters", item.get("arguments", {}))
    elif len(item) == 1:
        ((name, args),) = item.items()
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


def _calls_from_python(body: str, dialect: Dialect, fast: bool = True) -> list[ToolCall]:
    if fast and dialect.fast_calls is not None:
        calls = dialect.fast_calls(body)
        if calls is not None:
            return calls
    return ast_python_calls(body, dialect.read_value)


def ast_python_calls(body: str, read_value: ValueReader | None = None) -> list[ToolCall]:
    """The calls in a pythonic answer through ``ast.parse``, each argument read by ``read_value`` (default
    :func:`literal`). Raises :class:`DecodeError`."""
    try:
        with warnings.catch_warnings():  # "invalid escape sequence" and the like: the model's text, not ours
            warnings.simplefilter("ignore")
            tree = ast.parse(body, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError) as exc:
        raise DecodeError(f"not a call: {type(exc).__name__}") from None
    node = tree.body
    elements = node.elts if isinstance(node, (ast.List, ast.Tuple)) else [node]
    if len(elements) > MAX_CALLS:
        raise DecodeError(f"more than {MAX_CALLS} calls")
    read = read_value or literal
    return [_python_call(e, read) for e in elements]


def _python_call(node: ast.AST, read: ValueReader) -> ToolCall:
    if not isinstance(node, ast.Call):
        raise DecodeError(f"not a call: {type(node).__name__}")
    name = dotted_name(node.func)
    if name is None:
        raise DecodeError("a call's function must be a plain or dotted name")
    positional = []
    for arg in node.args:
        if isinstance(arg, ast.Starred):
            raise DecodeError("*args are not allowed in a tool call")
        positional.append(read(arg))
    arguments: dict[str, Any] = {}
    for kw in node.keywords:
        if kw.arg is None:
            raise DecodeError("**kwargs are not allowed in a tool call")
        arguments[kw.arg] = read(kw.value)
    return ToolCall(name=name, arguments=arguments, positional=tuple(positional))


def dotted_name(node: ast.AST) -> str | None:
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
            number: int | float = operand.value  # type: ignore[assignment]  # narrowed by the type() test
            return -number if isinstance(node.op, ast.USub) else number
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
        dotted = dotted_name(node)
        if dotted is not None:
            return dotted
    raise DecodeError(f"{type(node).__name__} is not a literal (expressions are never evaluated)")


# --- dialects ---------------------------------------------------------------------------------------

#: reads one pythonic argument node into a value, evaluating nothing; raises :class:`DecodeError`
ValueReader = Callable[[ast.AST], Any]
#: reads a whole answer body into calls; None when the body is not in its format (or, for a fast reader, when it
#: leaves the body to ``ast.parse``); raises :class:`DecodeError` when the body is in its format but broken
CallReader = Callable[[str], "list[ToolCall] | None"]


@attrs.frozen
class Dialect:
    """Where a benchmark's reading of answers departs from the shared one.

    ``read_value``: how a pythonic argument value is read (default :func:`literal`). ``fast_calls``: an
    optional quicker reader of whole pythonic answers that returns exactly what ``ast.parse`` + ``read_value``
    would, or None to leave the answer to them. ``formats``: ``(name, reader)`` pairs tried, in order, on a
    body that is neither JSON nor pythonic.
    """

    read_value: ValueReader = literal
    fast_calls: CallReader | None = None
    formats: tuple[tuple[str, CallReader], ...] = ()


#: the shared reading: values by :func:`literal`, no formats of its own
PLAIN = Dialect()


# --- binding ----------------------------------------------------------------------------------------


class ParameterOrder(Protocol):
    """What :func:`bind_arguments` needs of a tool: its parameters' declaration order."""

    @property
    def parameter_order(self) -> Sequence[str]: ...


def bind_arguments(call: ToolCall, tool: ParameterOrder | None) -> tuple[dict[str, Any], list[str]]:
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
