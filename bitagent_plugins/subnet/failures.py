"""Whose fault is a failure: the model's, or the validator's own?

A miner's score may only change for what its model did. Every failure of a round is classified here, from
types, never from message text: backends raise :class:`bitagent_core.BackendError` subclasses that say whose
fault a failure is (the backend knows its engine's words; see ``bitagent_plugins.backends.servers``), and the
runner records a sample whose request failed for the validator's side as ``engine_error``.

* **the validator's own** (:attr:`Fault.VALIDATOR`): the engine missing from ``--server-python``, a bad flag,
  a KV cache too small, out of memory, a full disk, a backend, task source or scorer it does not have, every
  request of an evaluation failing to reach the server.
  The model is put back to pending and retried with backoff; no score changes; the log says what the operator
  must fix (:attr:`Failure.action`); ``--once`` exits with :data:`EXIT_VALIDATOR_FAILURE`.
* **the model's** (:attr:`Fault.MODEL`): vetting, weights that do not load, a context shorter than the subnet's,
  timeouts while the server answers. Recorded, counted 0, never retried until its next re-evaluation.
* **unknown** (:attr:`Fault.UNKNOWN`): nothing says whose. Retried like the validator's own
  :data:`UNKNOWN_RETRIES` times before it is ever counted as the model's.
"""

from __future__ import annotations

import enum
import errno
import sqlite3
from collections.abc import Sequence

import attrs

from bitagent_core import UnknownPluginObject, backend_error

#: ``bitagent validate --once``: the round could not be finished because of the validator itself.
EXIT_VALIDATOR_FAILURE = 3
#: ``bitagent validate --check`` (or the same check at start) found problems.
EXIT_CHECK_FAILED = 4
#: attempts a failure of unknown cause is retried before it counts as the model's
UNKNOWN_RETRIES = 2
#: ``error_type`` of a sample whose request failed for the validator's side (bitagent_core's runner)
ENGINE_ERROR = "engine_error"


class Fault(enum.Enum):
    MODEL = "model"
    VALIDATOR = "validator"
    UNKNOWN = "unknown"


@attrs.frozen
class Failure:
    fault: Fault
    reason: str
    #: for the validator's own failures: what the operator must fix
    action: str = ""

    @property
    def ours(self) -> bool:
        return self.fault is Fault.VALIDATOR


def classify_exception(exc: BaseException, *, context: str = "") -> Failure:
    """The fault of an exception raised while evaluating a model (``context``: what was being done): the
    first typed backend error in its chain says; a full disk or no memory is the validator's; else unknown."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return Failure(Fault.VALIDATOR, _short(text, context), "free disk space under --cache-dir / --runs-dir")
    if isinstance(exc, sqlite3.OperationalError) and "disk is full" in str(exc):  # our own state's database
        return Failure(Fault.VALIDATOR, _short(text, context), "free disk space under the state directory")
    if isinstance(exc, MemoryError):
        return Failure(Fault.VALIDATOR, _short(text, context), "this machine ran out of memory")
    if isinstance(exc, UnknownPluginObject):  # the validator's configuration names a plugin it does not have
        return Failure(Fault.VALIDATOR, _short(text, context), "install the plugin or fix the name (bitagent plugins)")
    found = backend_error(exc)
    if found is None:
        return Failure(Fault.UNKNOWN, _short(text, context))
    fault = Fault(found.fault)
    action = found.action or ("see the server's log in the run directory" if fault is Fault.VALIDATOR else "")
    return Failure(fault, _short(text, context), action)


def classify_results(n_tasks: int, error_types: Sequence[str], errors: Sequence[str] = ()) -> Failure | None:
    """A run that completed may still be the validator's failure: when *every* sample failed because the
    server could not be reached (``engine_error``); timeouts while the server is up are the model's."""
    if n_tasks == 0 or len(error_types) < n_tasks or any(t != ENGINE_ERROR for t in error_types):
        return None
    detail = "; ".join(sorted(set(errors)))
    return Failure(
        Fault.VALIDATOR,
        _short(detail, "every request failed"),
        "the model server stopped answering; check its log in the run directory",
    )


def _short(text: str, context: str) -> str:
    line = " ".join(text.split())
    line = line if len(line) <= 600 else line[:600] + "..."
    return f"{context}: {line}" if context else line
