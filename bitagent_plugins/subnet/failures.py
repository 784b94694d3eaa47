"""Whose fault is a failure: the model's, or the validator's own?

A miner's score may only change for what its model did. Every failure of a round is classified here:

* **the validator's own** (:attr:`Fault.VALIDATOR`): the server Python lacks sglang/vLLM, CUDA or GPU memory
  errors, a full disk, the Hub or the chain unreachable, a server that does not start for reasons that are not
  the model's (a missing program, a port in use), every request of an evaluation failing to reach the server.
  The model is put back to pending and retried with backoff; no score changes; the log says what the operator
  must fix (:attr:`Failure.action`); ``--once`` exits with :data:`EXIT_VALIDATOR_FAILURE`.
* **the model's** (:attr:`Fault.MODEL`): vetting, a model its own files make unloadable, timeouts while the
  server answers other requests. Recorded, counted 0, never retried until its next re-evaluation.

The classification reads exception types and messages (plugins never import each other, so a backend's
exception class is matched by name); anything not recognised as the validator's is the model's.
"""

from __future__ import annotations

import enum
import errno
import re

import attrs

#: ``bitagent validate --once``: the round could not be finished because of the validator itself.
EXIT_VALIDATOR_FAILURE = 3
#: ``bitagent validate --check`` (or the same check at start) found problems.
EXIT_CHECK_FAILED = 4


class Fault(enum.Enum):
    MODEL = "model"
    VALIDATOR = "validator"


@attrs.frozen
class Failure:
    fault: Fault
    reason: str
    #: for the validator's own failures: what the operator must fix
    action: str = ""

    @property
    def ours(self) -> bool:
        return self.fault is Fault.VALIDATOR


# (pattern in the message, what the operator must do); checked in order
_VALIDATOR_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p, re.I), a) for p, a in (
    (r"No module named '?(sglang|vllm)", "install the engine into --server-python (see docs/servers.md)"),
    (r"No module named", "a Python module is missing from --server-python or this environment"),
    (r"cannot run .*not found or not executable", "--server-python (or the server program) does not exist"),
    (r"CUDA out of memory|OutOfMemoryError|out of memory|CUBLAS_STATUS_ALLOC_FAILED",
     "free GPU memory (other processes?) or lower --mem-fraction-static"),
    (r"CUDA error|CUDA driver|cudaError|cudaMalloc|NCCL error|NVIDIA driver|no CUDA GPUs",
     "check the GPU and its driver (nvidia-smi)"),
    (r"No space left on device|ENOSPC|Disk quota exceeded|database or disk is full",
     "free disk space under --cache-dir / --runs-dir"),
    (r"Address already in use", "another process holds the server's port"),
    (r"Connection refused|ConnectError|ServerUnavailable|gave up after \d+ attempts",
     "the model server stopped answering; check its log in the run directory"),
    (r"ChainUnavailable|cannot connect to", "check --subtensor.network / the chain endpoint"),
))


def classify_exception(exc: BaseException, *, context: str = "") -> Failure:
    """The fault of an exception raised while evaluating a model (``context``: what was being done)."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return Failure(Fault.VALIDATOR, _short(text, context), "free disk space under --cache-dir / --runs-dir")
    if isinstance(exc, MemoryError):
        return Failure(Fault.VALIDATOR, _short(text, context), "this machine ran out of memory")
    return classify_text(text, context=context)


def classify_text(text: str, *, context: str = "") -> Failure:
    for pattern, action in _VALIDATOR_PATTERNS:
        if pattern.search(text):
            return Failure(Fault.VALIDATOR, _short(text, context), action)
    return Failure(Fault.MODEL, _short(text, context))


def classify_results(results: dict[str, object], errors: list[str]) -> Failure | None:
    """A run that completed may still be the validator's failure: when *every* sample failed and the
    errors say the server could not be reached (timeouts alone, while the server is up, are the model's)."""
    n_tasks = int(results.get("n_tasks") or 0)  # type: ignore[call-overload]
    if n_tasks == 0 or len(errors) < n_tasks:
        return None
    joined = "\n".join(sorted(set(errors)))
    failure = classify_text(joined, context="every request failed")
    if failure.ours:
        return failure
    return None


def _short(text: str, context: str) -> str:
    line = " ".join(text.split())
    line = line if len(line) <= 600 else line[:600] + "..."
    return f"{context}: {line}" if context else line
