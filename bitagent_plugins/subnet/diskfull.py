"""A full disk, told apart from other storage failures and said in one line (no traceback).

SQLite says ``database or disk is full`` (``SQLITE_FULL``), the OS ``ENOSPC``/``EDQUOT``; both mean the same
thing to an operator: free space where the validator writes, after which every write is retried.
"""

from __future__ import annotations

import errno
import shutil
import sqlite3
from pathlib import Path

_SQLITE_FULL = 13


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) says the disk is full."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(current, sqlite3.Error) and (
            getattr(current, "sqlite_errorcode", None) == _SQLITE_FULL or "disk is full" in str(current)
        ):
            return True
        current = current.__cause__ or current.__context__
    return False


def disk_full_line(path: Path, what: str = "") -> str:
    """``path``'s disk is full: how much is free there and what to free, in one line."""
    free = "?"
    for candidate in (path, *path.parents):
        try:
            free = f"{shutil.disk_usage(candidate).free / 2**20:,.1f} MB free"
            break
        except OSError:
            continue
    doing = f" while {what}" if what else ""
    return (
        f"the disk holding {path} is full ({free}){doing}: free space on it (old run directories under "
        f"--runs-dir, models under --cache-dir, other files); every write is retried until then"
    )
