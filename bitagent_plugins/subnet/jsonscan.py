"""Bounds on untrusted JSON checked on the raw bytes, streaming, before anything is parsed.

``json.loads`` of a 60 MB file of ``{}`` builds tens of millions of objects (1.7 GB); Python's parser has no
limit of its own. :func:`scan` reads a file in chunks (memory: one chunk plus the longest string) and counts
what a parse would build: values (every array element and object member), nesting depth and string
lengths, and reports the object keys it was asked about, at any depth. It stops at the first bound
exceeded, so its time is bounded by the limits, not by the file's size. It checks that brackets balance and
strings close; it is not a full validator (``json.loads`` of a file that passed is).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Protocol

import attrs

#: one token: a whole string, a lone quote (a string cut by the chunk's end, or never closed), or punctuation
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|"|[][{}:,]', re.DOTALL)
CHUNK = 1 << 20


class Readable(Protocol):
    def read(self, n: int, /) -> bytes: ...


class JsonTooBig(ValueError):
    """The JSON exceeds a bound (the message says which) or is malformed."""


@attrs.frozen
class JsonLimits:
    #: values (array elements, object members, the top value) in one document
    max_values: int = 2_000_000
    max_depth: int = 64
    #: bytes of one string, quotes and escapes included
    max_string_bytes: int = 4 << 20


@attrs.frozen
class JsonShape:
    values: int
    depth: int
    #: which of the keys asked for appear as an object key somewhere
    keys_found: frozenset[str]


def scan(source: Readable | bytes, limits: JsonLimits = JsonLimits(), *, keys: Iterable[str] = ()) -> JsonShape:
    """Count ``source``'s values and depth without parsing; :class:`JsonTooBig` past ``limits``.

    Values are counted as opened arrays/objects plus commas plus one (an upper bound on what a parse builds
    beyond the strings and numbers themselves); every token is bounded by that count, so the work is too."""
    wanted = frozenset(keys)
    found: set[str] = set()
    stack = bytearray()  # the open brackets
    values = 1
    depth = tokens = 0
    max_tokens = 4 * limits.max_values + 16
    expect_key = False  # the next string is an object member's key
    buffer = b""
    chunks = iter(_chunks(source))
    done = False
    while not done:
        more = next(chunks, None)
        done = more is None
        if more is not None:
            buffer += more
        pos = len(buffer)
        for match in _TOKEN.finditer(buffer):
            token = match.group()
            first = token[0]
            tokens += 1
            if tokens > max_tokens:
                raise JsonTooBig(f"over {limits.max_values:,} values")
            if first == 0x22:  # a string
                if len(token) == 1:  # not closed within the buffer: read on
                    if done:
                        raise JsonTooBig("a string is never closed")
                    pos = match.start()
                    break
                if len(token) > limits.max_string_bytes:
                    raise JsonTooBig(f"a string of over {limits.max_string_bytes:,} bytes")
                if expect_key:
                    expect_key = False
                    if wanted:
                        key = _decode(token) if b"\\" in token else token[1:-1].decode("utf-8", "replace")
                        if key in wanted:
                            found.add(key)
                continue
            if first in (0x5B, 0x7B):  # [ {
                stack.append(first)
                if len(stack) > limits.max_depth:
                    raise JsonTooBig(f"nested deeper than {limits.max_depth}")
                depth = max(depth, len(stack))
                expect_key = first == 0x7B
                values += 1
            elif first in (0x5D, 0x7D):  # ] } close what opened with [ {
                if not stack or stack.pop() != first - 2:
                    raise JsonTooBig("brackets do not balance")
                expect_key = False
            elif first == 0x2C:  # ,
                expect_key = bool(stack) and stack[-1] == 0x7B
                values += 1
            if values > limits.max_values:
                raise JsonTooBig(f"over {limits.max_values:,} values")
        tail = buffer[pos:]
        if len(tail) > limits.max_string_bytes:
            raise JsonTooBig(f"a string of over {limits.max_string_bytes:,} bytes")
        buffer = tail
    if stack:
        raise JsonTooBig("brackets do not balance")
    return JsonShape(values=values, depth=depth, keys_found=frozenset(found))


def _decode(token: bytes) -> str:
    try:
        value = json.loads(token)
    except ValueError:
        raise JsonTooBig("a string with a bad escape") from None
    return value if isinstance(value, str) else ""


def _chunks(source: Readable | bytes) -> Iterable[bytes]:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        for start in range(0, len(data), CHUNK):
            yield data[start : start + CHUNK]
        return
    while chunk := source.read(CHUNK):
        yield chunk
