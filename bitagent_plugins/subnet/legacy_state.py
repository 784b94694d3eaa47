"""Import upstream's validator state (``ft_state.npz``) into bitagent's SQLite state.

Upstream saved its state with ``np.savez(..., allow_pickle=True)``: its dict-valued entries
(``offline_scores``, ``offline_model_names``, ``offline_miners_scored``) are 0-d object arrays whose data is a
pickle. ``np.load(allow_pickle=True)`` would run whatever callable such a pickle names; here each ``.npy``
member is read by hand and a pickle goes through :class:`RestrictedUnpickler`, which resolves only numpy's
array reconstruction and plain containers and numbers ("restricting globals", the pickle documentation's
pattern). Anything else is refused with the name it asked for.

What is imported: each uid's submitted model name (the last competition that names one), for the hotkey the
file holds at that uid, locked to its commit through the Hub (or the offline cache) as a fresh submission
would be. Its date is set by the next sync: the hotkey's registration block (``collection.submission_block``),
the date every validator agrees on. Upstream's scores are reported, not imported: they were computed on
upstream's data with its scorer, and bitagent evaluates every imported submission first thing.
"""

from __future__ import annotations

import ast
import io
import pickle
import re
import struct
import zipfile
from pathlib import Path
from typing import Any

MAX_STATE_BYTES = 256 << 20
MAX_MEMBER_BYTES = 256 << 20
#: a date no block reaches: the next sync replaces it with the hotkey's registration block (the earlier one)
UNDATED_BLOCK = 2**62
#: plain numeric and text dtypes a member may hold: struct format and item size
_KINDS = {
    "f4": ("f", 4),
    "f8": ("d", 8),
    "f2": ("e", 2),
    "i1": ("b", 1),
    "i2": ("h", 2),
    "i4": ("i", 4),
    "i8": ("q", 8),
    "u1": ("B", 1),
    "u2": ("H", 2),
    "u4": ("I", 4),
    "u8": ("Q", 8),
    "b1": ("?", 1),
}


class UpstreamStateError(ValueError):
    """The file is not an upstream state bitagent can read; the message says why."""


# numpy itself is never called: the pickles' array and scalar reconstruction lands on these stand-ins, which
# turn arrays into lists (0-d arrays into their one value) -- so no numpy code runs on the file's bytes either


class _DType:
    def __init__(self, descr: Any = "O", *_args: Any) -> None:
        self.descr = str(descr)
        self.order = "<"

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "|", "="):
            self.order = "<" if state[1] in ("|", "=") else str(state[1])


class _Array:
    def __init__(self, *_args: Any) -> None:
        self.value: Any = None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) != 5:
            raise UpstreamStateError("an array in the state file has an unknown layout")
        _version, shape, dtype, _fortran, data = state
        if not isinstance(dtype, _DType) or not isinstance(shape, tuple):
            raise UpstreamStateError("an array in the state file has an unknown layout")
        values = (
            list(data)
            if isinstance(data, list)
            else _decode(dtype.order + dtype.descr.lstrip("<>|="), bytes(data), _count(shape))
        )
        self.value = _shaped(values, shape)


def _scalar(dtype: Any, data: Any = b"") -> Any:
    if not isinstance(dtype, _DType):
        raise UpstreamStateError("a number in the state file has an unknown layout")
    if not isinstance(data, bytes):
        return data  # an object scalar holds its value
    (value,) = _decode(dtype.order + dtype.descr.lstrip("<>|="), data, 1)
    return value


#: the globals an upstream state's pickles may name: numpy's array and scalar reconstruction (the stand-ins
#: above), and plain containers
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    **{(module, "_reconstruct"): _Array for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(module, "scalar"): _scalar for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    ("numpy", "ndarray"): _Array,
    ("numpy", "dtype"): _DType,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
}


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UpstreamStateError(
                f"the state file's pickle asks for {module}.{name}; only numpy arrays, "
                "numbers and plain containers are read (refused)"
            ) from None


def _count(shape: tuple[Any, ...]) -> int:
    count = 1
    for dim in shape:
        if not isinstance(dim, int) or dim < 0:
            raise UpstreamStateError(f"bad array shape {shape!r}")
        count *= dim
    return count


def _decode(descr: str, data: bytes, count: int) -> list[Any]:
    """``count`` values of dtype ``descr`` (e.g. ``<f4``, ``<U48``) from ``data``."""
    order, kind = ("<" if descr[0] in "<|=" else ">"), descr[1:]
    if kind.startswith("U") and kind[1:].isdigit():
        width = int(kind[1:]) * 4
        if len(data) != width * count:
            raise UpstreamStateError(f"{descr}: {len(data)} bytes for {count} value(s)")
        codec = "utf-32-le" if order == "<" else "utf-32-be"
        return [data[i * width : (i + 1) * width].decode(codec).rstrip("\0") for i in range(count)]
    if kind not in _KINDS:
        raise UpstreamStateError(f"unsupported array type {descr!r}")
    code, size = _KINDS[kind]
    if len(data) != size * count:
        raise UpstreamStateError(f"{descr}: {len(data)} bytes for {count} value(s)")
    return list(struct.unpack(f"{order}{count}{code}", data))


def _shaped(values: list[Any], shape: tuple[int, ...]) -> Any:
    if not shape:
        return values[0] if values else None
    for dim in reversed(shape[1:]):
        values = [values[i : i + dim] for i in range(0, len(values), dim)] if dim else []
    return values


def _plain(value: Any, depth: int = 0) -> Any:
    """Stand-ins replaced by their values, all the way down."""
    if depth > 64:
        raise UpstreamStateError("the state file nests deeper than 64 levels")
    if isinstance(value, _Array):
        return _plain(value.value, depth + 1)
    if isinstance(value, dict):
        return {_plain(k, depth + 1): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_plain(v, depth + 1) for v in value)
    if isinstance(value, _DType):
        raise UpstreamStateError("a bare dtype in the state file")
    return value


def read_npz(path: Path) -> dict[str, Any]:
    """Every member of an ``.npz`` as plain Python (arrays as lists, 0-d arrays as their value); pickled
    members through :class:`RestrictedUnpickler`."""
    if path.stat().st_size > MAX_STATE_BYTES:
        raise UpstreamStateError(f"{path} is larger than {MAX_STATE_BYTES >> 20} MiB")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UpstreamStateError(f"{path} is not an .npz file: {exc}") from None
    members: dict[str, Any] = {}
    with archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy") or info.file_size > MAX_MEMBER_BYTES:
                raise UpstreamStateError(f"{path}: unexpected member {info.filename!r} ({info.file_size} bytes)")
            raw = io.BytesIO(archive.read(info))
            try:
                header = _read_header(raw)
                descr, shape = header["descr"], tuple(header["shape"])
                if descr in ("|O", "O"):
                    value = _plain(RestrictedUnpickler(raw).load())
                elif isinstance(descr, str) and not header["fortran_order"]:
                    value = _shaped(_decode(descr, raw.read(), _count(shape)), shape)
                else:
                    raise UpstreamStateError(f"unsupported array type {descr!r}")
            except UpstreamStateError as exc:
                raise UpstreamStateError(f"{path}: {info.filename}: {exc}") from None
            except (ValueError, TypeError, KeyError, EOFError, pickle.UnpicklingError, RecursionError) as exc:
                raise UpstreamStateError(f"{path}: {info.filename}: unreadable: {type(exc).__name__}: {exc}") from None
            members[info.filename.removesuffix(".npy")] = value
    return members


def _read_header(raw: io.BytesIO) -> dict[str, Any]:
    """The ``.npy`` header dict, parsed as a Python literal (never evaluated)."""
    magic = raw.read(8)
    if magic[:6] != b"\x93NUMPY" or len(magic) != 8:
        raise ValueError("not an .npy member")
    major = magic[6]
    size_bytes = 2 if major == 1 else 4
    (size,) = struct.unpack("<H" if size_bytes == 2 else "<I", raw.read(size_bytes))
    if size > 1 << 16:
        raise ValueError("the .npy header is too long")
    header = ast.literal_eval(raw.read(size).decode("latin1" if major < 3 else "utf-8"))
    if not isinstance(header, dict) or not {"descr", "fortran_order", "shape"} <= set(header):
        raise ValueError("not an .npy header")
    return header


def _competition_order(name: str) -> tuple[int, str]:
    match = re.search(r"(\d+)$", str(name))
    return (int(match.group(1)) if match else -1, str(name))


def upstream_submissions(members: dict[str, Any]) -> dict[int, tuple[str, str]]:
    """``{uid: (hotkey, model name)}`` from an upstream state: the last competition naming a model per uid."""
    hotkeys = [str(h) for h in list(members.get("hotkeys", []))]
    names = members.get("offline_model_names", {})
    if not isinstance(names, dict):
        raise UpstreamStateError("offline_model_names is not a dict")
    found: dict[int, tuple[str, str]] = {}
    for competition in sorted(names, key=_competition_order):
        per_uid = names[competition]
        if not isinstance(per_uid, dict):
            continue
        for uid, model in per_uid.items():
            try:
                index = int(uid)
            except (TypeError, ValueError):
                continue
            if isinstance(model, str) and model.strip() and 0 <= index < len(hotkeys):
                found[index] = (hotkeys[index], model.strip())
    return found


def import_upstream_state(path: Path, state_path: Path, *, hub: Any) -> str:
    """Read ``path`` (upstream's ``ft_state.npz``) and lock its submissions into the state at ``state_path``;
    returns the summary printed to the operator."""
    from bitagent_plugins.subnet import vetting
    from bitagent_plugins.subnet.state import ValidatorState

    members = read_npz(Path(path))
    submissions = upstream_submissions(members)
    imported, skipped = 0, []
    with ValidatorState(state_path) as state:
        locked = {row.hotkey for row in state.submissions()}
        for uid, (hotkey, name) in sorted(submissions.items()):
            if hotkey in locked:
                skipped.append(f"uid {uid}: {hotkey} already has a locked submission")
                continue
            try:
                sub = vetting.parse_submission(name)
                key = vetting.resolve(sub, api=hub)
            except vetting.InvalidSubmission as exc:
                skipped.append(f"uid {uid}: {name!r}: {exc.reason}")
                continue
            except vetting.VettingFailed as exc:
                skipped.append(f"uid {uid}: {name!r}: {exc.reason}")
                continue
            state.upsert_submission(hotkey, uid, key.repo_id, sub.revision, key.sha, UNDATED_BLOCK)
            imported += 1
    scores = members.get("offline_scores", {})
    lines = [
        f"imported {imported} of {len(submissions)} upstream submission(s) from {path} into {state_path} "
        "(dated at each hotkey's registration block from the next sync on)"
    ]
    lines += [f"not imported: {reason}" for reason in skipped]
    if isinstance(scores, dict) and scores:
        lines.append(
            f"upstream scores for {len(scores)} competition(s) not carried over: bitagent evaluates each "
            "imported submission on its own sample"
        )
    return "\n".join(lines)
