"""Turns model output into tool calls, safely.

Nothing here evaluates model output: pythonic answers are parsed with ``ast.parse`` and only literal nodes
are read; JSON with ``json.loads``. Input size and nesting are bounded before any parser runs, so a
hostile 64 KB answer or a deeply nested one costs microseconds and yields a decode error, never an
exception. Every scorer decodes through :func:`decode`, so every scorer sees the same calls.

Formats, tried in this order:
  * native tool calls the backend already parsed (OpenAI ``tool_calls``);
  * ``<tool_call>{json}</tool_call>`` (Hermes/Qwen), ``<TOOLCALL>...</TOOLCALL>`` (BFCL's tagged prompts,
    holding any of the formats below), ``<function_call> {json}`` (Granite);
  * a fenced code block, then the whole text (also without wrapping backticks), then the outermost
    ``[...]`` in it, each as JSON (``[{"name": ..., "arguments": {...}}]``, BFCL's
    ``[{"function": ..., "parameters": {...}}]``, OpenAI's ``{"function": {...}}``, ``{name: {args}}``,
    several objects separated by ``;`` as Llama 3.1 writes after ``<|python_tag|>``), as BFCL's XML
    (``<functions><function name=..>`` with ``<param name=.. type=.. value=../>`` or
    ``<param name=.. type=..>value</param>``), or as pythonic calls (``[f(a=1), g(b="x")]``, with or
    without the brackets).

Pythonic answers go through a small hand-written reader first (the common case: names, keyword
arguments, plain strings, numbers, lists, tuples, dicts); anything it does not know, it leaves to
``ast.parse`` and :func:`literal`, which give the same result. XML is parsed by ElementTree only after
DOCTYPE and entity declarations are refused.

``decode(..., values="bfcl")`` reads pythonic values the way BFCL's decoder does, still evaluating
nothing: see :func:`literal_bfcl`.
"""

from __future__ import annotations

import ast
import json
import keyword
import re
import warnings
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
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
#: how :func:`decode` reads pythonic argument values: :func:`literal` or :func:`literal_bfcl`
VALUE_MODES = ("plain", "bfcl")
_FENCE = re.compile(r"```[a-zA-Z0-9_+-]*\s*\n?(.*?)```", re.S)


def decode(text: str | None, native_calls: tuple[ToolCall, ...] | list[ToolCall] = (), *,
           values: str = "plain") -> Decoded:
    """Decode a completion into calls. Never raises on any model output.

    ``values`` picks how pythonic argument values are read: ``"plain"`` (:func:`literal`) or ``"bfcl"``
    (:func:`literal_bfcl`, BFCL's reading without its ``eval``).
    """
    if values == "plain":
        bfcl = False
    elif values == "bfcl":
        bfcl = True
    else:
        raise ValueError(f"values must be one of {', '.join(VALUE_MODES)}, not {values!r}")
    if native_calls:
        native = tuple(native_calls)[:MAX_CALLS + 1]
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
    if not tagged and "```" not in text and text[0] not in "{`" and not _JSON_LIST.match(text):
        fast = fast_python_calls(text, bfcl)  # the common case: what the first candidate below decodes to
        if fast is not None:
            return _result(fast, "python")

    errors: list[str] = []
    if tagged and "<" in text:
        for fmt, pattern in _TAGGED:
            bodies = pattern.findall(text)
            if bodies:
                calls: list[ToolCall] = []
                try:
                    for body in bodies:
                        calls.extend(_decode_body(body, bfcl)[0])
                except DecodeError as exc:
                    return Decoded(format=fmt, error=str(exc))
                return _result(calls, fmt)

    for candidate in _candidates(text):
        try:
            calls, fmt = _decode_body(candidate, bfcl)
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


def decode_pythonic(text: str | None, *, values: str = "plain") -> Decoded:
    """Only the pythonic format, the whole text read as one expression: no tags, fences, JSON or XML (what
    BFCL's prompting decoder reads after its own clean-up). The same bounds as :func:`decode`; never raises."""
    if values not in VALUE_MODES:
        raise ValueError(f"values must be one of {', '.join(VALUE_MODES)}, not {values!r}")
    text = (text or "").strip()
    if not text:
        return Decoded(error="empty answer")
    if len(text) > MAX_INPUT_CHARS:
        return Decoded(error=f"answer longer than {MAX_INPUT_CHARS} characters")
    if text.count("(") + text.count("[") + text.count("{") > MAX_NESTING and _max_depth(text) > MAX_NESTING:
        return Decoded(error=f"nesting deeper than {MAX_NESTING}")
    try:
        return _result(_calls_from_python(text, values == "bfcl"), "python")
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
        seen.append(text[start:end + 1])
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


def _decode_body(body: str, bfcl: bool = False) -> tuple[list[ToolCall], str]:
    body = body.strip()
    if not body:
        raise DecodeError("empty tool call")
    if body[0] == "<" and "<functions>" in body:
        return _calls_from_xml(body, bfcl), "xml"
    if body[0] == "{" or _JSON_LIST.match(body):  # JSON calls, or "[]"
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            data = _json_sequence(body) if body[0] == "{" else None
        if data is not None:
            return _calls_from_json(data), "json"
    try:
        return _calls_from_python(body, bfcl), "python"
    except DecodeError:
        if "<functions>" in body:
            return _calls_from_xml(body, bfcl), "xml"
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

def _calls_from_python(body: str, bfcl: bool = False) -> list[ToolCall]:
    fast = fast_python_calls(body, bfcl)
    if fast is not None:
        return fast
    return ast_python_calls(body, bfcl)


def ast_python_calls(body: str, bfcl: bool = False) -> list[ToolCall]:
    """The calls in a pythonic answer through ``ast.parse`` and :func:`literal` / :func:`literal_bfcl`
    (the reference the fast reader must agree with). Raises :class:`DecodeError`."""
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
    read = literal_bfcl if bfcl else literal
    return [_python_call(e, read) for e in elements]


def _python_call(node: ast.AST, read: Any = None) -> ToolCall:
    read = read or literal
    if not isinstance(node, ast.Call):
        raise DecodeError(f"not a call: {type(node).__name__}")
    name = _dotted_name(node.func)
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
        dotted = _dotted_name(node)
        if dotted is not None:
            return dotted
    raise DecodeError(f"{type(node).__name__} is not a literal (expressions are never evaluated)")


# --- BFCL's reading of pythonic values, without eval ------------------------------------------------

class Expression(str):
    """A value written as an operator expression (``1 + 1``, ``x * 2``), kept as its source text.

    BFCL ``eval``s such values; we never do. It is a ``str`` so samples stay JSON, and the BFCL scorer
    counts it equal to no expected value.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Expression({str.__repr__(self)})"


_SCALAR_KEYS = (str, int, float, bool, type(None))


def literal_bfcl(node: ast.AST, depth: int = 0, names: bool = True) -> Any:
    """The value of an argument node as BFCL's decoder reads it, with nothing evaluated.

    As BFCL: tuples stay tuples, ``...`` reads ``"..."``, a bare name reads as its text (``true`` is the
    string ``"true"``), a nested call without keywords and a subscript read as their source text, a
    nested call with keywords reads ``{name: {keyword: value}}``; sets, attributes (``a.b``), lambdas,
    comparisons and the like are refused (BFCL's decoder fails on them too). Unlike BFCL, an operator
    expression (``1 + 1``) is never evaluated: it reads as an :class:`Expression`; a unary ``+`` keeps
    its number's sign (BFCL negates any unary operand). ``names=False`` refuses names, calls, subscripts
    and operators (BFCL's ``ast.literal_eval`` of XML values).
    """
    if depth > MAX_NESTING:
        raise DecodeError("value nested too deeply")
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, (str, int, float, bool)) or value is None:
            return value
        if value is Ellipsis:
            return "..."
        raise DecodeError(f"unsupported constant {type(value).__name__}")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        return literal(node, depth)
    if isinstance(node, ast.List):
        return [literal_bfcl(e, depth + 1, names) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(literal_bfcl(e, depth + 1, names) for e in node.elts)
    if isinstance(node, ast.Dict):
        out = {}
        for k, v in zip(node.keys, node.values):
            if k is None:
                raise DecodeError("** in a dict is not allowed")
            key = literal_bfcl(k, depth + 1, names)
            if not isinstance(key, _SCALAR_KEYS) or isinstance(key, Expression):
                raise DecodeError("dict keys must be scalars")
            out[key] = literal_bfcl(v, depth + 1, names)
        return out
    if names and isinstance(node, ast.Name):
        return node.id
    if names and isinstance(node, ast.Call):
        if not node.keywords:
            return _unparse(node)
        func = _dotted_name(node.func)
        if func is None or node.args or any(kw.arg is None for kw in node.keywords):
            return Expression(_unparse(node))
        return {func: {kw.arg: literal_bfcl(kw.value, depth + 1, names) for kw in node.keywords}}
    if names and isinstance(node, ast.Subscript):
        return _unparse(node)
    if names and isinstance(node, ast.BinOp):
        return Expression(_unparse(node))
    raise DecodeError(f"{type(node).__name__} is not a literal (expressions are never evaluated)")


def _unparse(node: ast.AST) -> str:
    try:
        return ast.unparse(node)
    except (RecursionError, ValueError, MemoryError):
        raise DecodeError("expression too deep to read") from None


# --- the fast pythonic reader -------------------------------------------------------------------------

class _Fallback(Exception):
    """The fast reader met something it leaves to ``ast.parse``."""


# One token per match, after blanks: a plain string (no backslash, no line break), a number, an ASCII
# name, or any single other character (an operator, or something the fast reader does not handle).
_FAST_TOKEN = re.compile(
    r"[ \t\r\n]*("
    r"[A-Za-z_][A-Za-z0-9_]*"
    r"|[(),=\[\]{}:+-]"  # operators first: they are the most frequent tokens (each is also one "." below)
    r"|\"[^\"\\\r\n\x00\ud800-\udfff]*\"|'[^'\\\r\n\x00\ud800-\udfff]*'"
    r"|(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?(?![\w.])"
    r"|.)", re.S)
FAST_MAX_CHARS = 8192
_NAME_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_NUMBER_START = frozenset("0123456789")
_CONSTANTS = {"True": True, "False": False, "None": None}
_CLOSERS = frozenset((",", ")"))
_RESERVED = frozenset(keyword.kwlist)  # True, False and None included: not names


def fast_python_calls(body: str, bfcl: bool = False) -> list[ToolCall] | None:
    """The calls in a pythonic answer, read without ``ast``; None where the answer needs ``ast.parse``.

    Whenever it returns calls, they are exactly what ``ast.parse`` + :func:`literal` (or
    :func:`literal_bfcl`) give; the property tests check this on generated answers.
    """
    if len(body) > FAST_MAX_CHARS or body[:1] in (" ", "\t", "\r", "\n"):
        return None  # long (likely hostile) answers, and leading blanks (indentation rules), go to ast.parse
    tokens = _FAST_TOKEN.findall(body)
    if not tokens or (tokens[0] != "[" and ("\n" in body or "\r" in body)):
        return None  # a line break outside brackets ends a Python expression: leave it to ast
    tokens.append("")  # end marker: no real token is empty
    try:
        return _FastReader(tokens, bfcl).calls()
    except (_Fallback, IndexError, ValueError, OverflowError, RecursionError):
        return None


class _FastReader:
    __slots__ = ("t", "i", "bfcl")

    def __init__(self, tokens: list[str], bfcl: bool) -> None:
        self.t = tokens
        self.i = 0
        self.bfcl = bfcl

    def calls(self) -> list[ToolCall]:
        t = self.t
        out: list[ToolCall] = []
        if t[0] == "[":
            self.i = 1
            if t[1] == "]":
                self.i = 2
            else:
                while True:
                    out.append(self.call())
                    sep = t[self.i]
                    self.i += 1
                    if sep == "]":
                        break
                    if sep != ",":
                        raise _Fallback
                    if t[self.i] == "]":
                        self.i += 1
                        break
        else:
            while True:
                out.append(self.call())
                sep = t[self.i]
                if sep == "":
                    break
                if sep != ",":
                    raise _Fallback
                self.i += 1
                if t[self.i] == "":
                    break  # "f(a=1)," is a one-element tuple
        if t[self.i] != "" or len(out) > MAX_CALLS:
            raise _Fallback
        return out

    def name(self) -> str:
        word = self.t[self.i]
        if word[0] not in _NAME_START or word in _RESERVED:
            raise _Fallback
        self.i += 1
        return word

    def call(self) -> ToolCall:
        t = self.t
        name = self.name()
        while t[self.i] == ".":
            self.i += 1
            name = name + "." + self.name()
        if t[self.i] != "(":
            raise _Fallback
        self.i += 1
        arguments: dict[str, Any] = {}
        positional: list[Any] = []
        if t[self.i] == ")":
            self.i += 1
        else:
            while True:
                word = t[self.i]
                if t[self.i + 1] == "=" and word[0] in _NAME_START:
                    if word in _RESERVED or word in arguments:
                        raise _Fallback  # a SyntaxError for ast: let it say so
                    self.i += 2
                    tok = t[self.i]
                    c = tok[0]
                    if t[self.i + 1] in _CLOSERS and ((c == '"' or c == "'") and len(tok) > 1):
                        arguments[word] = tok[1:-1]  # the common case, inline: what value() reads
                        self.i += 1
                    elif t[self.i + 1] in _CLOSERS and (c in _NUMBER_START or (c == "." and len(tok) > 1)):
                        arguments[word] = _number(tok)
                        self.i += 1
                    else:
                        arguments[word] = self.value(0)
                else:
                    if arguments:
                        raise _Fallback  # positional after keyword: a SyntaxError
                    positional.append(self.value(0))
                sep = t[self.i]
                self.i += 1
                if sep == ")":
                    break
                if sep != ",":
                    raise _Fallback
                if t[self.i] == ")":
                    self.i += 1
                    break
        return ToolCall(name=name, arguments=arguments, positional=tuple(positional))

    def value(self, depth: int) -> Any:
        if depth > MAX_NESTING:
            raise _Fallback
        t = self.t
        tok = t[self.i]
        c = tok[0]
        self.i += 1
        if c == '"' or c == "'":
            following = t[self.i]
            if len(tok) < 2 or (following and following[0] in "\"'"):
                raise _Fallback  # unterminated, or implicit concatenation
            return tok[1:-1]
        if c in _NUMBER_START or (c == "." and len(tok) > 1):
            return _number(tok)
        if c == "-" or c == "+":
            tok = t[self.i]
            if not (tok[0] in _NUMBER_START or (tok[0] == "." and len(tok) > 1)):
                raise _Fallback
            self.i += 1
            number = _number(tok)
            return -number if c == "-" else number
        if c == "[":
            return self.sequence("]", depth)
        if c == "(":
            if t[self.i] == ")":
                self.i += 1
                return () if self.bfcl else []
            first = self.value(depth + 1)
            sep = t[self.i]
            if sep == ")":
                self.i += 1
                return first  # parenthesised, not a tuple
            if sep != ",":
                raise _Fallback
            self.i += 1
            items = [first]
            if t[self.i] == ")":
                self.i += 1
            else:
                items.extend(self.sequence(")", depth))
            return tuple(items) if self.bfcl else items
        if c == "{":
            return self.mapping(depth)
        if c in _NAME_START:
            if tok in _CONSTANTS:
                return _CONSTANTS[tok]
            if tok in _RESERVED:
                raise _Fallback
            following = t[self.i]
            if following == "(" or following == "[":
                raise _Fallback  # a call or a subscript: ast decides
            if following == ".":
                if self.bfcl:
                    raise _Fallback
                parts = [tok]
                while t[self.i] == ".":
                    self.i += 1
                    parts.append(self.name())
                if t[self.i] in ("(", "["):
                    raise _Fallback
                return ".".join(parts)
            if not self.bfcl and tok in _JSON_NAMES:
                return _JSON_NAMES[tok]
            return tok
        raise _Fallback

    def sequence(self, close: str, depth: int) -> list[Any]:
        t = self.t
        items: list[Any] = []
        if t[self.i] == close:
            self.i += 1
            return items
        while True:
            items.append(self.value(depth + 1))
            sep = t[self.i]
            self.i += 1
            if sep == close:
                return items
            if sep != ",":
                raise _Fallback
            if t[self.i] == close:
                self.i += 1
                return items

    def mapping(self, depth: int) -> dict[Any, Any]:
        t = self.t
        out: dict[Any, Any] = {}
        if t[self.i] == "}":
            self.i += 1
            return out
        while True:
            key = self.value(depth + 1)
            if t[self.i] != ":":
                raise _Fallback  # a set, or not Python
            self.i += 1
            value = self.value(depth + 1)
            if self.bfcl:
                if not isinstance(key, _SCALAR_KEYS):
                    raise _Fallback
                out[key] = value
            else:
                if isinstance(key, (list, dict)):
                    raise _Fallback
                out[key if isinstance(key, str) else json.dumps(key)] = value
            sep = t[self.i]
            self.i += 1
            if sep == "}":
                return out
            if sep != ",":
                raise _Fallback
            if t[self.i] == "}":
                self.i += 1
                return out


def _number(tok: str) -> int | float:
    if len(tok) > 40:
        raise _Fallback
    if "." in tok or "e" in tok or "E" in tok:
        return float(tok)
    if len(tok) > 1 and tok[0] == "0" and tok.strip("0"):
        raise _Fallback  # 007: leading zeros are a SyntaxError
    return int(tok)


# --- BFCL's XML formats -------------------------------------------------------------------------------



def _calls_from_xml(body: str, bfcl: bool = False) -> list[ToolCall]:
    """``<functions><function name="f">`` holding ``<params><param name type value/></params>`` (BFCL's
    verbose XML) or ``<param name type>value</param>`` (its concise XML); values converted by the
    ``type`` the model wrote, as BFCL does."""
    start = body.find("<functions>")  # the first block, as BFCL's regex takes it, found in linear time
    end = body.find("</functions>", start + 11) if start >= 0 else -1
    if end < 0:
        raise DecodeError("an XML answer needs <functions>...</functions>")
    block = body[start:end + 12]
    if "<!" in block:
        raise DecodeError("XML declarations (DOCTYPE, ENTITY, CDATA) are not allowed")
    try:
        root = ElementTree.fromstring(block)
    except (ElementTree.ParseError, ValueError, RecursionError) as exc:
        raise DecodeError(f"not valid XML: {str(exc)[:100]}") from None
    calls: list[ToolCall] = []
    for function in root.findall("function"):
        name = function.get("name")
        if not name:
            raise DecodeError("an XML <function> needs a name")
        container = function.find("params")
        params = container.findall("param") if container is not None else function.findall("param")
        arguments: dict[str, Any] = {}
        for param in params:
            pname = param.get("name")
            if pname is None:
                raise DecodeError(f"a <param> of {name[:80]!r} has no name")
            raw = param.get("value", "") if "value" in param.attrib else (param.text or "").strip()
            arguments[pname] = _xml_value(raw, param.get("type", "string"), bfcl)
        calls.append(ToolCall(name=name, arguments=arguments))
        if len(calls) > MAX_CALLS:
            raise DecodeError(f"more than {MAX_CALLS} calls")
    return calls


def _xml_value(raw: str, type_name: str, bfcl: bool) -> Any:
    try:
        if type_name == "integer":
            return int(raw)
        if type_name == "float":
            return float(raw)
    except ValueError:
        raise DecodeError(f"{raw[:40]!r} is not of type {type_name}") from None
    if type_name == "boolean":
        return raw.lower() == "true"
    if type_name == "null":
        return None
    if type_name in ("array", "tuple", "object", "dict"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tree = ast.parse(raw.strip(), mode="eval")
        except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
            raise DecodeError(f"{raw[:40]!r} is not a literal {type_name}") from None
        return literal_bfcl(tree.body, 0, names=False) if bfcl else literal(tree.body)
    return raw


# --- binding ----------------------------------------------------------------------------------------

class ParameterOrder(Protocol):
    """What :func:`bind_arguments` needs of a tool: its parameters' declaration order."""

    @property
    def parameter_order(self) -> Sequence[str]:
        ...


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
