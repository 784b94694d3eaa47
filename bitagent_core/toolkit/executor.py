"""The safe executor of the model's calls, for environment authors: :class:`SimpleEnvironment`, the
:class:`Executor`, and :func:`call_with_deadline`.

Execution (:class:`Executor`) never evaluates anything. A call is dispatched only to a public method (no
leading ``_``) defined on the class of one of the environment's objects; dotted names, attributes, unknown
names and arguments that are not plain literals (operator expressions, nested calls) become an error result
``Error during execution: ...`` as BFCL words them, as does an exception raised inside the method.

Bounds: calls per step (:data:`MAX_CALLS_PER_STEP`), characters of one result shown to the model
(:data:`MAX_RESULT_CHARS`), characters of a whole trajectory (:data:`MAX_TRAJECTORY_CHARS`), and time per call
(:data:`CALL_TIMEOUT_S`). A call runs in a worker thread with a deadline; past it the environment is marked
broken (its state can no longer be trusted: the thread may still be running) and every later call of the
trajectory gets an error result. Python cannot stop a thread, so a runaway pure-Python method keeps one
thread busy until it returns, but the run goes on; one C-level operation that holds the GIL (a huge integer
power, say) would stall the whole process until it ends, which a thread cannot prevent: an environment
refuses such calls before they run with its optional ``guard(call)`` (see docs/plugins.md).
"""

from __future__ import annotations

import concurrent.futures
import copy
import inspect
import json
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from bitagent_core.model import ToolCall
from bitagent_core.toolkit.decoding import decode

MAX_CALLS_PER_STEP = 64
MAX_RESULT_CHARS = 65_536
MAX_TRAJECTORY_CHARS = 4_000_000
MAX_ARGUMENT_DEPTH = 32
CALL_TIMEOUT_S = 10.0
ERROR_PREFIX = "Error during execution: "


class SimpleEnvironment:
    """An environment made of plain objects: the model may call their public methods. Results are shown as
    text: strings as they are, dicts and lists as JSON (``str()`` when not JSON-able), anything else by
    ``str()``. Steps are read by the shared decoder (every format it knows)."""

    def __init__(self, *objects: object) -> None:
        self._objects = tuple(objects)

    def objects(self) -> Sequence[object]:
        return self._objects

    def decode(self, text: str, native_calls: tuple[ToolCall, ...]) -> tuple[list[ToolCall], str | None]:
        decoded = decode(text, native_calls)
        return (list(decoded.calls), None) if decoded.ok else ([], decoded.error)

    def format_result(self, value: Any) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, (dict, list)):
            try:
                return json.dumps(value)
            except (TypeError, ValueError):
                return str(value)
        return str(value)


# --- execution ---------------------------------------------------------------------------------------


class CallTimeout(Exception):
    """A call ran past its deadline."""


class _Progress:
    """What a worker job is doing: when its current call started (``time.monotonic()``)."""

    __slots__ = ("call_started",)

    def __init__(self) -> None:
        self.call_started = time.monotonic()


class _Deadlines:
    """Worker threads for environment calls. A job (the calls of one step) runs in a worker; each call in it
    gets ``timeout_s`` from its own start, so a step costs one thread hand-off, not one per call. A job whose
    current call overruns keeps its thread; the pool is replaced so later jobs get fresh threads, and the stuck
    one ends with the process (never joined)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool = self._new_pool()

    @staticmethod
    def _new_pool() -> concurrent.futures.ThreadPoolExecutor:
        return concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="bitagent-env")

    def run(self, job: Callable[[_Progress], Any], timeout_s: float) -> Any:
        with self._lock:
            pool = self._pool
        progress = _Progress()
        future = pool.submit(self._in_job, job, progress)
        while True:
            wait = progress.call_started + timeout_s - time.monotonic()
            try:
                return future.result(timeout=max(wait, 0.0))
            except concurrent.futures.TimeoutError:
                if progress.call_started + timeout_s > time.monotonic():
                    continue  # a later call started meanwhile: it has its own time
                with self._lock:
                    if self._pool is pool:
                        self._pool = self._new_pool()
                pool.shutdown(wait=False, cancel_futures=True)
                raise CallTimeout(f"a call ran longer than {timeout_s:g} s") from None

    @staticmethod
    def _in_job(job: Callable[[_Progress], Any], progress: _Progress) -> Any:
        _current.progress = progress  # calls made inside this job run here, under its deadline (no second hand-off)
        try:
            return job(progress)
        finally:
            _current.progress = None


#: the deadline job the current worker thread is running, if any
_current = threading.local()


_deadlines = _Deadlines()


def call_with_deadline(fn: Callable[[], Any], timeout_s: float) -> Any:
    """``fn()`` in a worker thread; :class:`CallTimeout` when it runs past ``timeout_s`` (it is not stopped). The
    :class:`Executor` calls ``fn`` makes run in that same thread, each with ``timeout_s`` from its own start: a
    scorer replaying a whole trajectory pays one thread hand-off, not one per step."""
    return _deadlines.run(lambda progress: fn(), timeout_s)


_METHODS_CACHE: dict[type, tuple[tuple[str, Any], ...]] = {}


def _class_methods(cls: type) -> tuple[tuple[str, Any], ...]:
    methods = _METHODS_CACHE.get(cls)
    if methods is None:
        methods = tuple(
            (name, value)
            for name, value in inspect.getmembers_static(cls)
            if not name.startswith("_") and (inspect.isfunction(value) or isinstance(value, classmethod))
        )
        if len(_METHODS_CACHE) < 1024:
            _METHODS_CACHE[cls] = methods
    return methods


def public_methods(objects: Sequence[object]) -> dict[str, tuple[object, Any]]:
    """name -> (object, class attribute) for every public method defined on the objects' classes; a later
    object wins a name clash (as BFCL maps names). Read statically: no property or ``__getattr__`` runs."""
    table: dict[str, tuple[object, Any]] = {}
    for obj in objects:
        for name, value in _class_methods(type(obj)):
            table[name] = (obj, value)
    return table


def refuse_argument(value: Any, depth: int = 0) -> str | None:
    """Why ``value`` is not a plain literal argument, or None: only str, int, float, bool, None and lists,
    tuples and dicts of them (dict keys scalars) pass; operator expressions are never evaluated."""
    if depth > MAX_ARGUMENT_DEPTH:
        return "argument nested too deeply"
    kind = type(value)
    if isinstance(value, str) and kind is not str:  # a reader's expression kept as text (BFCL's Expression)
        return f"expressions are never evaluated: {str(value)[:80]}"
    if value is None or kind in (str, int, float, bool):
        return None
    if kind in (list, tuple):
        for item in value:
            why = refuse_argument(item, depth + 1)
            if why:
                return why
        return None
    if kind is dict:
        for key, item in value.items():
            if type(key) not in (str, int, float, bool) and key is not None:
                return "dict keys must be scalars"
            why = refuse_argument(item, depth + 1)
            if why:
                return why
        return None
    return f"{kind.__name__} is not a literal"


class Executor:
    """Runs decoded calls against one environment's objects, safely (see the module docstring).

    ``bind_positional=False`` drops positional arguments before the call, as BFCL's decoder does (scorer
    ``bfcl-strict``); the default binds them by position, as Python would.
    """

    def __init__(
        self,
        objects: Sequence[object],
        format_result: Callable[[Any], str],
        *,
        call_timeout_s: float = CALL_TIMEOUT_S,
        bind_positional: bool = True,
        max_calls_per_step: int = MAX_CALLS_PER_STEP,
        guard: Callable[[ToolCall], str | None] | None = None,
    ) -> None:
        self.methods = public_methods(objects)
        self.guard = guard
        self.format_result = format_result
        self.call_timeout_s = call_timeout_s
        self.bind_positional = bind_positional
        self.max_calls_per_step = max_calls_per_step
        self.broken: str | None = None

    def refuse(self, call: ToolCall) -> str | None:
        """Why ``call`` may not run (the error text, without BFCL's prefix), or None."""
        name = call.name
        if not isinstance(name, str) or not name:
            return "a call needs a name"
        head = name.split(".", 1)[0]
        if "." in name or name not in self.methods:
            return f"name {head!r} is not defined"  # what BFCL's eval says of names it does not map
        for value in (*call.positional, *call.arguments.values()):
            why = refuse_argument(value)
            if why:
                return why
        if any(not isinstance(k, str) or not k.isidentifier() for k in call.arguments):
            return "argument names must be identifiers"
        if self.guard is not None:
            return self.guard(call if self.bind_positional else attrs.evolve(call, positional=()))
        return None

    def execute(self, call: ToolCall) -> str:
        """One call's result as the model sees it: the method's return value formatted, or an error result."""
        return self.execute_step([call])[0]

    def _prepare(self, call: ToolCall) -> Callable[[], Any] | str:
        """The bound call to run, or the error result that answers it."""
        why = self.refuse(call)
        if why:
            return ERROR_PREFIX + why
        obj, attribute = self.methods[call.name]
        method = attribute.__get__(obj, type(obj))  # the class's function bound to the object: never an attribute
        # fresh copies, as an evaluated literal would be: the method may keep (and later change) what it gets
        positional = copy.deepcopy(call.positional) if self.bind_positional else ()
        arguments = copy.deepcopy(dict(call.arguments))
        return lambda: method(*positional, **arguments)

    def _run(self, prepared: list[Callable[[], Any] | str], progress: _Progress) -> list[str]:
        results = []
        for item in prepared:
            if isinstance(item, str):
                results.append(item)
                continue
            progress.call_started = time.monotonic()
            try:
                value = item()
            except Exception as exc:  # noqa: BLE001 - a failing method is an error result, as in BFCL
                results.append(ERROR_PREFIX + str(exc))
                continue
            try:
                results.append(self.format_result(value))
            except Exception as exc:  # noqa: BLE001
                results.append(ERROR_PREFIX + f"unprintable result: {type(exc).__name__}")
        return results

    def execute_step(self, calls: Sequence[ToolCall]) -> list[str]:
        """The results of one step's calls, in order (see the module docstring for the bounds)."""
        return self.execute_steps([calls])[0]

    def execute_steps(self, steps: Sequence[Sequence[ToolCall]]) -> list[list[str]]:
        """The results of several steps' calls, step by step, in one worker job (a scorer replaying a turn)."""
        if self.broken:
            return [[ERROR_PREFIX + self.broken] * len(calls) for calls in steps]
        prepared = [self._prepare(call) for calls in steps for call in calls[: self.max_calls_per_step]]
        flat: list[str]
        if all(isinstance(item, str) for item in prepared):
            flat = [item for item in prepared if isinstance(item, str)]  # nothing to run: no thread needed
        elif getattr(_current, "progress", None) is not None:  # already in a deadline job: run here, under it
            flat = self._run(prepared, _current.progress)
        else:
            try:
                flat = _deadlines.run(lambda progress: self._run(prepared, progress), self.call_timeout_s)
            except CallTimeout as exc:
                self.broken = f"environment stopped: {exc}"
                return [[ERROR_PREFIX + self.broken] * len(calls) for calls in steps]
        refused = ERROR_PREFIX + f"more than {self.max_calls_per_step} calls in one step"
        out, i = [], 0
        for calls in steps:
            n = min(len(calls), self.max_calls_per_step)
            results = [
                r
                if len(r) <= MAX_RESULT_CHARS
                else r[:MAX_RESULT_CHARS] + f"... [cut at {MAX_RESULT_CHARS} characters]"
                for r in flat[i : i + n]
            ]
            out.append(results + [refused] * (len(calls) - n))
            i += n
        return out
