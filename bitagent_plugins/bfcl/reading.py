"""How BFCL reads answers: a :class:`~bitagent_core.toolkit.decoding.Dialect` of the shared decoder.

* Pythonic values are read as BFCL's decoder reads them, with nothing evaluated (:func:`literal_bfcl`); an
  operator expression stays its source text, an :class:`Expression`.
* BFCL's XML prompts: ``<functions><function name=..>`` with ``<param name=.. type=.. value=../>`` or
  ``<param name=.. type=..>value</param>``, parsed by ElementTree only after DOCTYPE and entity
  declarations are refused (:func:`xml_calls`).
* Common pythonic answers go through a small hand-written reader (:func:`fast_python_calls`: names, keyword
  arguments, plain strings, numbers, lists, tuples, dicts); anything it does not know, it leaves to
  ``ast.parse`` + :func:`literal_bfcl`, which give the same result.
"""

from __future__ import annotations

import ast
import keyword
import re
import warnings
import xml.etree.ElementTree as ElementTree
from typing import Any

from bitagent_core import ToolCall
from bitagent_core.toolkit import MAX_CALLS, MAX_NESTING, DecodeError, Dialect, dotted_name, literal


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
        func = dotted_name(node.func)
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


# Kept because it measurably matters to a user re-scoring answers: decoding 100,000 rendered BFCL answers
# (the bfcl source's ground truth, cycled) took 3.9-4.7 s with this reader and 8.8-13.6 s through ast.parse
# alone, 2.2-3x (3 rounds on this 2-core machine; the command is in the core-libs report of issue 9). The bfcl
# scorer's check is ~10 us of that budget, so without it re-scoring would be mostly parsing.
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
    r"|.)",
    re.S,
)
FAST_MAX_CHARS = 8192
_NAME_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_NUMBER_START = frozenset("0123456789")
_CONSTANTS = {"True": True, "False": False, "None": None}
_CLOSERS = frozenset((",", ")"))
_RESERVED = frozenset(keyword.kwlist)  # True, False and None included: not names


def fast_python_calls(body: str) -> list[ToolCall] | None:
    """The calls in a pythonic answer, read without ``ast``; None where the answer needs ``ast.parse``.

    Whenever it returns calls, they are exactly what ``ast.parse`` + :func:`literal_bfcl` give; the property
    tests check this on generated answers.
    """
    if len(body) > FAST_MAX_CHARS or body[:1] in (" ", "\t", "\r", "\n"):
        return None  # long (likely hostile) answers, and leading blanks (indentation rules), go to ast.parse
    tokens = _FAST_TOKEN.findall(body)
    if not tokens or (tokens[0] != "[" and ("\n" in body or "\r" in body)):
        return None  # a line break outside brackets ends a Python expression: leave it to ast
    tokens.append("")  # end marker: no real token is empty
    try:
        return _FastReader(tokens).calls()
    except (_Fallback, IndexError, ValueError, OverflowError, RecursionError):
        return None


class _FastReader:
    __slots__ = ("t", "i")

    def __init__(self, tokens: list[str]) -> None:
        self.t = tokens
        self.i = 0

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
                return ()
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
            return tuple(items)
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
                raise _Fallback  # an attribute: BFCL's decoder refuses it, and ast says so
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
            if not isinstance(key, _SCALAR_KEYS):
                raise _Fallback
            out[key] = value
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


def xml_calls(body: str) -> list[ToolCall] | None:
    """``<functions><function name="f">`` holding ``<params><param name type value/></params>`` (BFCL's
    verbose XML) or ``<param name type>value</param>`` (its concise XML); values converted by the
    ``type`` the model wrote, as BFCL does. None when the body holds no ``<functions>``."""
    if "<functions>" not in body:
        return None
    start = body.find("<functions>")  # the first block, as BFCL's regex takes it, found in linear time
    end = body.find("</functions>", start + 11) if start >= 0 else -1
    if end < 0:
        raise DecodeError("an XML answer needs <functions>...</functions>")
    block = body[start : end + 12]
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
            raw = param.attrib["value"] if "value" in param.attrib else (param.text or "").strip()
            arguments[pname] = _xml_value(raw, param.get("type", "string"))
        calls.append(ToolCall(name=name, arguments=arguments))
        if len(calls) > MAX_CALLS:
            raise DecodeError(f"more than {MAX_CALLS} calls")
    return calls


def _xml_value(raw: str, type_name: str) -> Any:
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
        return literal_bfcl(tree.body, 0, names=False)
    return raw


#: BFCL's reading: its values, its XML, and the fast reader for its pythonic answers
BFCL = Dialect(read_value=literal_bfcl, fast_calls=fast_python_calls, formats=(("xml", xml_calls),))
