"""JSON files, read and written one way everywhere: JSON Lines streamed with an explicit error policy, and
whole JSON documents replaced atomically (written to a temp file, fsynced, renamed over the old one)."""

from __future__ import annotations

import functools
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

#: what to do with a line that is not valid JSON: raise :class:`JsonlError`, skip it, or call a function
#: ``(lineno, message)`` and go on
OnError = Literal["raise", "skip"] | Callable[[int, str], None]


class JsonlError(ValueError):
    """A line that is not valid JSON; the message names ``file:line``."""

    def __init__(self, path: str | Path, lineno: int, message: str) -> None:
        super().__init__(f"{path}:{lineno}: {message}")
        self.path, self.lineno, self.reason = str(path), lineno, message


def read_jsonl(
    path: str | Path, *, on_error: OnError = "raise", drop_torn_tail: bool = False, encoding: str = "utf-8-sig"
) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` for each non-blank line, streamed (the file is never held whole).

    ``drop_torn_tail``: a last line without its newline that is not valid JSON was cut by a crash mid-write;
    it is cut from the file too, so that appends start on a fresh line. Otherwise it is an ordinary bad line.
    """
    path = Path(path)
    with open(path, "rb") as f:
        lineno = 0
        for lineno, raw in enumerate(f, 1):  # noqa: B007 - lineno is read after the loop
            if not raw.strip():
                continue
            try:
                yield lineno, json.loads(raw.decode(encoding))
                continue
            except UnicodeDecodeError as exc:
                message = f"not UTF-8 text: {exc.reason}"
            except json.JSONDecodeError as exc:
                message = f"invalid JSON: {exc.msg} (column {exc.colno})"
            if drop_torn_tail and not raw.endswith(b"\n"):  # only the last line can lack its newline
                _truncate(path, f.tell() - len(raw))
                return
            if on_error == "raise":
                raise JsonlError(path, lineno, message)
            if on_error != "skip":
                on_error(lineno, message)


def _truncate(path: Path, size: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(size)


@functools.cache
def _new_file_mode() -> int:
    """0o666 less the process's umask, as for a file made by ``open(path, "w")`` (read once: setting the umask to
    read it is process-wide)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def write_json_atomic(path: str | Path, data: Any, *, indent: int | None = 2) -> None:
    """Replace ``path`` with ``data`` as JSON: readers see the old file or the new one, never a part."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=indent, ensure_ascii=False, default=str)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _new_file_mode())  # mkstemp makes 0600; the file gets the mode open() would give it
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
