"""A small, bounded GGUF header reader (and writer, for tests and tools).

Reads what vetting needs from a ``.gguf`` file without loading tensor data: the metadata key/values (for
``tokenizer.chat_template``) and the tensor infos (parameter count = sum of the element counts). Every count,
length and nesting depth read from the file is checked against ``GGUFLimits`` before anything is allocated
or read, so a hostile header (a 2^60-element array, a 1 TB string, a billion tensors) fails fast with
``GGUFError`` instead of exhausting memory. Long arrays (the tokenizer's vocabulary) are skipped over and
kept only as ``GGUFArray(item_type, length)``.

Format (little-endian, versions 2 and 3): ``b"GGUF"``, u32 version, u64 tensor count, u64 metadata count,
then the metadata ``(string key, u32 type, value)``, then per tensor ``(string name, u32 n_dims,
u64 dims[n_dims], u32 ggml type, u64 offset)``. A string is a u64 byte length and UTF-8 bytes.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import attrs

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)

# Metadata value types.
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)
_SCALARS: dict[int, str] = {
    UINT8: "<B",
    INT8: "<b",
    UINT16: "<H",
    INT16: "<h",
    UINT32: "<I",
    INT32: "<i",
    FLOAT32: "<f",
    BOOL: "<?",
    UINT64: "<Q",
    INT64: "<q",
    FLOAT64: "<d",
}
GGML_MAX_DIMS = 4
DEFAULT_ALIGNMENT = 32


class GGUFError(ValueError):
    """Not a GGUF file we accept: bad magic, unsupported version, a limit exceeded, truncated."""


@attrs.frozen
class GGUFLimits:
    max_tensors: int = 100_000
    max_kv: int = 65_536
    max_string: int = 4 << 20  # bytes in one string (chat templates are ~10 KB)
    max_array: int = 1 << 24  # elements in one array (vocabularies are ~150-260 K)
    max_depth: int = 3  # arrays of arrays
    max_header_bytes: int = 256 << 20  # the whole header, vocabulary included
    keep_array_items: int = 1024  # longer arrays are skipped and kept as GGUFArray
    #: values decoded one at a time (strings, scalars, tensor infos; a skipped scalar array counts once): bounds
    #: the work on a header that is within every other limit (16 M empty strings took ~20 s). A real model's
    #: vocabulary is ~0.3-1 M such values.
    max_items: int = 4_000_000


@attrs.frozen
class GGUFArray:
    """An array too long to keep: its item type and length only."""

    item_type: int
    length: int


@attrs.frozen
class GGUFTensorInfo:
    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)


@attrs.frozen
class GGUFHeader:
    version: int
    metadata: dict[str, Any]
    tensors: tuple[GGUFTensorInfo, ...]
    header_size: int  # bytes of header read (before alignment padding)

    @property
    def n_params(self) -> int:
        return sum(t.n_elements for t in self.tensors)

    @property
    def chat_template(self) -> str | None:
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) and value.strip() else None

    @property
    def alignment(self) -> int:
        value = self.metadata.get("general.alignment", DEFAULT_ALIGNMENT)
        return value if isinstance(value, int) else DEFAULT_ALIGNMENT


class _Reader:
    def __init__(self, f: BinaryIO, limit: int, max_items: int):
        self._f = f
        self.pos = 0
        self._limit = limit
        self.items = 0
        self._max_items = max_items

    def count(self, n: int = 1) -> None:
        self.items += n
        if self.items > self._max_items:
            raise GGUFError(f"header holds more than {self._max_items:,} values (the work limit)")

    def _budget(self, n: int) -> None:
        if n < 0 or self.pos + n > self._limit:
            raise GGUFError(f"header larger than the {self._limit}-byte limit")

    def read(self, n: int) -> bytes:
        self._budget(n)
        data = self._f.read(n)
        if len(data) != n:
            raise GGUFError(f"truncated header: wanted {n} bytes at offset {self.pos}, got {len(data)}")
        self.pos += n
        return data

    def skip(self, n: int) -> None:
        self._budget(n)
        while n:
            chunk = self.read(min(n, 1 << 20))
            n -= len(chunk)

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]


def read_gguf_header(f: BinaryIO, *, limits: GGUFLimits = GGUFLimits()) -> GGUFHeader:
    """Parse the header of the GGUF file ``f`` (positioned at its start); tensor data is never read."""
    r = _Reader(f, limits.max_header_bytes, limits.max_items)
    magic = r.read(4)
    if magic != MAGIC:
        raise GGUFError(f"not a GGUF file (magic {magic!r})")
    version = r.unpack("<I")
    if version not in SUPPORTED_VERSIONS:
        swapped = struct.unpack(">I", struct.pack("<I", version))[0]
        if swapped in SUPPORTED_VERSIONS:
            raise GGUFError("big-endian GGUF files are not supported")
        raise GGUFError(f"unsupported GGUF version {version} (supported: 2, 3)")
    n_tensors = r.unpack("<Q")
    n_kv = r.unpack("<Q")
    if n_tensors > limits.max_tensors:
        raise GGUFError(f"{n_tensors} tensors exceeds the limit of {limits.max_tensors}")
    if n_kv > limits.max_kv:
        raise GGUFError(f"{n_kv} metadata entries exceeds the limit of {limits.max_kv}")

    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        key = _string(r, limits)
        if key in metadata:
            raise GGUFError(f"duplicate metadata key {key!r}")
        metadata[key] = _value(r, r.unpack("<I"), limits, depth=0)

    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise GGUFError(f"general.alignment must be a power of two, got {alignment!r}")
    tensors: list[GGUFTensorInfo] = []
    names: set[str] = set()
    for _ in range(n_tensors):
        r.count()
        name = _string(r, limits)
        if name in names:
            raise GGUFError(f"duplicate tensor name {name!r}")
        names.add(name)
        n_dims = r.unpack("<I")
        if not 1 <= n_dims <= GGML_MAX_DIMS:
            raise GGUFError(f"tensor {name!r} has {n_dims} dimensions (1..{GGML_MAX_DIMS} allowed)")
        shape = tuple(r.unpack("<Q") for _ in range(n_dims))
        if math.prod(shape) >= 1 << 63:
            raise GGUFError(f"tensor {name!r} has an impossible shape {shape}")
        ggml_type = r.unpack("<I")
        offset = r.unpack("<Q")
        if offset % alignment:
            raise GGUFError(f"tensor {name!r} offset {offset} is not aligned to {alignment}")
        tensors.append(GGUFTensorInfo(name, shape, ggml_type, offset))
    return GGUFHeader(version, metadata, tuple(tensors), r.pos)


def read_gguf_file(path: str | Path, *, limits: GGUFLimits = GGUFLimits()) -> GGUFHeader:
    with open(path, "rb", buffering=1 << 20) as f:
        return read_gguf_header(f, limits=limits)


def _string(r: _Reader, limits: GGUFLimits) -> str:
    r.count()
    n = r.unpack("<Q")
    if n > limits.max_string:
        raise GGUFError(f"a {n}-byte string exceeds the {limits.max_string}-byte limit")
    return r.read(n).decode("utf-8", errors="replace")


def _value(r: _Reader, vtype: int, limits: GGUFLimits, *, depth: int) -> Any:
    if vtype in _SCALARS:
        r.count()
        return r.unpack(_SCALARS[vtype])
    if vtype == STRING:
        return _string(r, limits)
    if vtype != ARRAY:
        raise GGUFError(f"unknown metadata value type {vtype}")
    if depth >= limits.max_depth:
        raise GGUFError(f"arrays nested deeper than {limits.max_depth}")
    item_type = r.unpack("<I")
    length = r.unpack("<Q")
    if length > limits.max_array:
        raise GGUFError(f"a {length}-element array exceeds the limit of {limits.max_array}")
    if item_type not in _SCALARS and item_type not in (STRING, ARRAY):
        raise GGUFError(f"unknown array item type {item_type}")
    if length > limits.keep_array_items:
        if item_type in _SCALARS:
            r.count()
            r.skip(length * struct.calcsize(_SCALARS[item_type]))
        else:
            for _ in range(length):
                _value(r, item_type, limits, depth=depth + 1)
        return GGUFArray(item_type, length)
    return [_value(r, item_type, limits, depth=depth + 1) for _ in range(length)]


# -- writing (tests, tools) ------------------------------------------------------------------------------------


def build_gguf_header(
    metadata: Mapping[str, Any],
    tensors: Sequence[tuple[str, Sequence[int], int]] = (),
    *,
    version: int = 3,
    pad_to_alignment: bool = True,
) -> bytes:
    """The bytes of a GGUF header with ``metadata`` and ``tensors`` (name, shape, ggml type) and no data.

    Value types are inferred: ``bool`` -> BOOL, ``int`` -> UINT32 if it fits else INT64, ``float`` -> FLOAT32,
    ``str`` -> STRING, ``list`` -> ARRAY of the first item's type. Tensor offsets are laid out contiguously as if
    every tensor were f32 (ggml type is recorded as given).
    """
    out = bytearray(MAGIC)
    out += struct.pack("<IQQ", version, len(tensors), len(metadata))
    for key, value in metadata.items():
        out += _pack_string(key)
        vtype = _infer_type(value)
        out += struct.pack("<I", vtype)
        out += _pack_value(vtype, value)
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    offset = 0
    for name, shape, ggml_type in tensors:
        out += _pack_string(name)
        out += struct.pack("<I", len(shape))
        out += b"".join(struct.pack("<Q", d) for d in shape)
        out += struct.pack("<IQ", ggml_type, offset)
        offset += -(-math.prod(shape) * 4 // alignment) * alignment
    if pad_to_alignment:
        out += b"\0" * (-len(out) % alignment)
    return bytes(out)


def _infer_type(value: Any) -> int:
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int):
        return UINT32 if 0 <= value < 1 << 32 else INT64
    if isinstance(value, float):
        return FLOAT32
    if isinstance(value, str):
        return STRING
    if isinstance(value, list):
        return ARRAY
    raise TypeError(f"cannot store {type(value).__name__} in GGUF metadata")


def _pack_string(s: str) -> bytes:
    data = s.encode("utf-8")
    return struct.pack("<Q", len(data)) + data


def _pack_value(vtype: int, value: Any) -> bytes:
    if vtype in _SCALARS:
        return struct.pack(_SCALARS[vtype], value)
    if vtype == STRING:
        return _pack_string(value)
    item_type = _infer_type(value[0]) if value else UINT8
    return struct.pack("<IQ", item_type, len(value)) + b"".join(_pack_value(item_type, v) for v in value)
