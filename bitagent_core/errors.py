"""Typed errors that cross the contract: a backend says whose fault a failure is, and whether trying again can help.

A backend knows its engine (which log line means "the KV cache is too small", which HTTP 400 is the model's chat
template refusing a message); the validator does not and must not guess from message text. So backends raise
these, and whoever decides (the validator: does the miner's score change?) reads :attr:`BackendError.fault` and
:func:`should_retry`, the way inspect_ai's ``ModelAPI.should_retry(ex)`` lets each model API say what is worth
another try.

* ``model``: the model's own files or answers (weights that do not load, a chat template that rejects the
  request, a config the engine refuses). Scored 0; trying again gives the same.
* ``validator``: this machine or its engine (a KV cache too small for the context length, a bad engine flag,
  the engine not installed, out of memory, the server gone). No score changes; retried later.
* ``unknown``: the backend cannot tell. Retried before it is ever counted as the model's.
"""

from __future__ import annotations

from typing import Literal

Fault = Literal["model", "validator", "unknown"]
FAULTS: tuple[Fault, ...] = ("model", "validator", "unknown")


class BackendError(RuntimeError):
    """A backend failed; ``fault`` says whose fault, ``retryable`` whether another try may succeed."""

    fault: Fault = "unknown"
    retryable: bool = True
    #: for the validator's own failures: what the operator must fix ("" if nothing to say)
    action: str = ""

    def __init__(
        self, message: str, *, fault: Fault | None = None, retryable: bool | None = None, action: str | None = None
    ) -> None:
        super().__init__(message)
        if action is not None:
            self.action = action
        if fault is not None:
            if fault not in FAULTS:
                raise ValueError(f"fault must be one of {', '.join(FAULTS)}, not {fault!r}")
            self.fault = fault
        if retryable is not None:
            self.retryable = retryable


class ModelError(BackendError):
    """The model's own fault: its files cannot be served, or it made the engine refuse a request."""

    fault: Fault = "model"
    retryable = False


class EngineError(BackendError):
    """The validator's own fault: the engine, its flags or this machine (not the model)."""

    fault: Fault = "validator"
    retryable = True


class ServerUnavailable(EngineError):
    """The server cannot be reached (exited, connection refused, retries spent on 5xx)."""


def backend_error(exc: BaseException | None) -> BackendError | None:
    """The first :class:`BackendError` in ``exc``'s chain (``raise ... from``, then the implicit context)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, BackendError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def fault_of(exc: BaseException) -> Fault:
    """Whose fault ``exc`` is, read from the first :class:`BackendError` in its chain; ``unknown`` without one."""
    found = backend_error(exc)
    return found.fault if found is not None else "unknown"


def should_retry(exc: BaseException) -> bool:
    """Whether another try may succeed: a :class:`BackendError`'s ``retryable``; anything untyped: yes."""
    found = backend_error(exc)
    return found.retryable if found is not None else True
