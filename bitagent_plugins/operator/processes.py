"""Child processes that do not outlive their supervisor (``stage``'s and ``update --auto-update``'s)."""

from __future__ import annotations

import ctypes
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn``: the kernel sends SIGTERM to this child when its parent dies, even by kill -9 (Linux),
    so a restarted supervisor never finds the previous one's validator still running."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
