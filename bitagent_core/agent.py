"""The agent loop: multi-turn tasks played against a stateful environment, and the safe executor.

A task with an ``environment`` (see :class:`~bitagent_core.model.EnvironmentSpec`) is played turn by turn:
for each user turn, ask the model, read its calls (:meth:`Environment.decode`), execute them in the
environment, append the results as ``tool`` messages and ask again, until the model answers without a call
(or with something that is not a call) or the turn has run more than ``Task.max_steps_per_turn`` steps with
calls (BFCL's rule: the trajectory is then force-terminated). Every step is kept in a
:class:`~bitagent_core.model.Trajectory`, which the runner saves under the sample's ``trajectory`` key and the
scorer's ``score_trajectory`` scores.

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

import asyncio
import concurrent.futures
import copy
import inspect
import json
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from bitagent_core.decoding import decode
from bitagent_core.errors import fault_of
from bitagent_core.model import ChatRequest, Completion, Message, Score, Step, Task, Tool, ToolCall, Trajectory
from bitagent_core.prompting import build_request
from bitagent_core.protocols import GuardedEnvironment, PersistentEnvironment, TrajectoryScorer
from bitagent_core.records import ErrorType, SampleRecord, SampleStatus

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


# --- one sample: the one path of every task, single- or multi-turn ---------------------------------------


@attrs.define
class PlayConfig:
    """How a sample is asked and scored: the run's settings every request and verdict follows."""

    tool_format: str = "prompt"
    temperature: float = 0.0
    max_tokens: int = 160
    #: seconds one request may take (``--timeout``): every request, single-turn or a multi-turn step
    timeout_s: float = 300.0
    call_timeout_s: float = CALL_TIMEOUT_S
    #: true once the run was asked to stop (the first Ctrl-C): the trajectory ends after the request in flight
    stop_requested: Callable[[], bool] = lambda: False
    #: the scorer's registered name, for the one line a failing scorer gets
    scorer_name: str = "scorer"
    #: the run's directory, where a persistent environment keeps its state (BFCL's memory snapshots)
    run_dir: Path | None = None
    #: hears each step as it is played (turn index, step): progress for long trajectories
    on_step: Callable[[int, Step], None] = lambda turn, step: None


class StepFailed(Exception):
    """A request of the trajectory failed (timeout, backend error); ``trajectory`` holds what was played."""

    def __init__(self, message: str, trajectory: Trajectory, error_type: ErrorType = "backend_error") -> None:
        super().__init__(message)
        self.trajectory = trajectory
        self.error_type = error_type


def request_for(
    task: Task, config: PlayConfig, messages: Sequence[Message] | None = None, tools: Sequence[Tool] | None = None
) -> ChatRequest:
    """The one place a request is built: the task's first request (prompted as ``tool_format`` says), or a
    later step's with the conversation so far; every one carries the run's ``--timeout``."""
    first = build_request(task, config.tool_format, temperature=config.temperature, max_tokens=config.max_tokens)
    if messages is None and tools is None:
        return attrs.evolve(
            first, timeout_s=config.timeout_s, session=task.id if task.environment is not None else None
        )
    return attrs.evolve(
        first,
        messages=tuple(messages if messages is not None else first.messages),
        tools=tuple(tools if tools is not None else first.tools),
        session=task.id,
        timeout_s=config.timeout_s,
    )


async def ask(backend: Any, request: ChatRequest) -> tuple[Completion, ErrorType | None]:
    """The one rule for a request: ``request.timeout_s`` bounds it (a backend that cannot be cancelled stops
    at it itself); a timeout or a backend error is the completion's ``error`` and its type, never an
    exception (cancellation excepted)."""
    timeout = request.timeout_s
    started = time.perf_counter()
    kind: ErrorType | None = None
    try:
        completion = await asyncio.wait_for(backend.complete(request), timeout=timeout)
        if not isinstance(completion, Completion):
            raise TypeError(f"the backend returned a {type(completion).__name__}, not a Completion")
    except TimeoutError as exc:  # asyncio's, or the backend's own (it stopped at request.timeout_s)
        completion, kind = Completion(error=str(exc) or f"timeout after {timeout:g} s"), "timeout"
    except Exception as exc:  # noqa: BLE001 - one failed sample must not end the run
        completion = Completion(error=f"{type(exc).__name__}: {exc}")
        # the server unreachable or broken on the validator's side, not the model's answer
        kind = "engine_error" if fault_of(exc) == "validator" else "backend_error"
    if completion.error is not None and kind is None:
        kind = "backend_error"
    if not completion.latency_s:
        completion = attrs.evolve(completion, latency_s=time.perf_counter() - started)
    return completion, kind


def score_sample(
    scorer: Any,
    task: Task,
    completion: Completion,
    trajectory: Trajectory | None = None,
    *,
    scorer_name: str | None = None,
) -> tuple[Score, SampleStatus]:
    """The one guard around a plugin scorer (runs and re-scoring alike): ``score`` for a single-turn task,
    ``score_trajectory`` for a multi-turn one. A scorer that raises or returns something that is not a usable
    :class:`Score` fails only this sample (``scorer_error``, the answer kept), never the run."""
    name = scorer_name or getattr(scorer, "name", None) or type(scorer).__name__
    try:
        if task.environment is not None:
            if not isinstance(scorer, TrajectoryScorer):
                raise TypeError("it cannot score multi-turn tasks (no score_trajectory)")
            score = scorer.score_trajectory(task, trajectory or Trajectory())
        else:
            score = scorer.score(task, completion)
        if not isinstance(score, Score):
            raise TypeError(f"returned a {type(score).__name__}, not a Score")
        json.dumps(score.to_json(), allow_nan=False)  # what samples.jsonl will hold
    except Exception as exc:  # noqa: BLE001 - plugin code: one bad verdict must not end the run
        detail = f"scorer {name!r}: {type(exc).__name__}: {exc}"
        return Score(0.0, error_type="scorer_error", detail=detail[:2000]), "failed"
    return score, "ok"


def _size(step: Step) -> int:
    return len(step.text) + sum(len(r) for r in step.results)


def _stop_if_cancelled() -> None:
    """Ctrl-C between two steps: ``asyncio.wait_for`` returns a request that completed as it was cancelled
    (an in-process backend answers synchronously) and the cancellation is swallowed, so the loop asks; a
    trajectory can be long, and an interrupted one is played again on ``--resume``."""
    current = asyncio.current_task()
    if current is not None and current.cancelling():
        raise asyncio.CancelledError


async def play(task: Task, backend: Any, environment: Any, config: PlayConfig | None = None) -> Trajectory:
    """Play every turn of ``task`` against ``environment`` with ``backend``. Raises :class:`StepFailed` when
    a request fails; the environment's own failures are error results, never exceptions."""
    config = config or PlayConfig()
    first = request_for(task, config)
    messages = list(first.messages)
    tools = list(task.tools)
    executor = Executor(
        environment.objects(),
        environment.format_result,
        call_timeout_s=config.call_timeout_s,
        guard=environment.guard if isinstance(environment, GuardedEnvironment) else None,
    )
    turns: list[tuple[Step, ...]] = []
    total = 0
    terminated: str | None = None
    for index in range(1 + len(task.turns)):
        if index:
            turn = task.turns[index - 1]
            messages.extend(turn.messages)
            tools.extend(turn.add_tools)
        steps: list[Step] = []
        with_calls = 0
        while True:
            completion, kind = await ask(backend, request_for(task, config, messages, tools))
            _stop_if_cancelled()
            if kind is None and config.stop_requested():
                completion, kind = (
                    attrs.evolve(completion, error="interrupted: the run was asked to stop"),
                    "backend_error",
                )
            if kind is not None:
                raise StepFailed(
                    f"{completion.error} (turn {index}, step {len(steps)})",
                    Trajectory(tuple(turns) + (tuple(steps),)),
                    kind,
                )
            messages.append(Message("assistant", completion.text, tool_calls=completion.tool_calls))
            try:
                calls, why = environment.decode(completion.text, completion.tool_calls)
            except Exception as exc:  # noqa: BLE001 - an environment's decoder bug ends the turn, not the run
                calls, why = [], f"decoder raised {type(exc).__name__}: {exc}"
            results: list[str] = []
            if calls and why is None:
                results = await asyncio.to_thread(executor.execute_step, calls)
                messages.extend(Message("tool", result) for result in results)
            step = Step(
                text=completion.text,
                tool_calls=completion.tool_calls,
                calls=tuple(calls),
                results=tuple(results),
                decode_error=why if why else (None if calls else "no call"),
                prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
                latency_s=completion.latency_s,
            )
            steps.append(step)
            config.on_step(index, step)
            total += _size(step)
            if total > MAX_TRAJECTORY_CHARS:
                terminated = f"trajectory longer than {MAX_TRAJECTORY_CHARS} characters"
                break
            if not results:
                break  # the model answered without a call: the turn is over
            with_calls += 1
            if with_calls > task.max_steps_per_turn:
                terminated = f"turn {index} ran more than {task.max_steps_per_turn} steps"
                break
        turns.append(tuple(steps))
        if terminated:
            break
    return Trajectory(tuple(turns), terminated)


def make_environment(registry: Any, task: Task) -> Any:
    """A fresh environment for ``task`` from the factory registered under its ``EnvironmentSpec.name``."""
    assert task.environment is not None
    return registry.create("environments", task.environment.name, dict(task.environment.config))


async def _play_sample(
    task: Task, backend: Any, registry: Any, config: PlayConfig
) -> tuple[Task, Completion, Trajectory, ErrorType | None]:
    """A multi-turn task played: the task as its environment prepared it, the trajectory, and one completion
    summing its steps (the last step's text, the tokens of all, the whole time, the error that stopped it)."""
    started = time.perf_counter()
    trajectory = Trajectory()
    error: str | None = None
    kind: ErrorType | None = None
    environment: Any = None
    try:
        environment = await asyncio.to_thread(make_environment, registry, task)
    except Exception as exc:  # noqa: BLE001 - one broken environment must not end the run
        assert task.environment is not None
        error, kind = f"environment {task.environment.name!r}: {type(exc).__name__}: {exc}", "environment_error"
    persistent = environment if isinstance(environment, PersistentEnvironment) else None
    if persistent is not None:
        try:
            task = await asyncio.to_thread(persistent.prepare, task, config.run_dir)
        except Exception as exc:  # noqa: BLE001 - missing state fails this sample (--resume plays it again)
            error, kind = f"{type(exc).__name__}: {exc}", "environment_error"
            environment = persistent = None
    if environment is not None:
        try:
            trajectory = await play(task, backend, environment, config)
        except StepFailed as exc:
            trajectory, error, kind = exc.trajectory, str(exc), exc.error_type
    if persistent is not None:
        try:
            await asyncio.to_thread(persistent.finish, trajectory, error)
        except Exception as exc:  # noqa: BLE001 - state that cannot be kept fails this sample
            if error is None:
                error, kind = f"{type(exc).__name__}: {exc}", "environment_error"
    steps = [s for turn in trajectory.turns for s in turn]
    completion = Completion(
        text=steps[-1].text if steps else "",
        prompt_tokens=sum(s.prompt_tokens for s in steps),
        completion_tokens=sum(s.completion_tokens for s in steps),
        latency_s=time.perf_counter() - started,
        error=error,
    )
    return task, completion, trajectory, kind


async def run_sample(
    task: Task, backend: Any, scorer: Any, registry: Any, config: PlayConfig | None = None
) -> SampleRecord:
    """One task from request to record, the runner's only path: a single-turn task is asked once (a
    one-step conversation); a multi-turn task is played against a fresh environment from ``registry``. Any
    failure (timeout, backend, environment, scorer) fails this sample only."""
    config = config or PlayConfig()
    first = request_for(task, config)
    trajectory: Trajectory | None = None
    if task.environment is None:
        completion, kind = await ask(backend, first)
    else:
        task, completion, trajectory, kind = await _play_sample(task, backend, registry, config)
        first = request_for(task, config)  # as its environment prepared it
    status: SampleStatus = "failed"
    if kind is not None:
        score = Score(0.0, error_type=kind, detail=completion.error or kind)
    else:
        score, status = score_sample(scorer, task, completion, trajectory, scorer_name=config.scorer_name)
    return SampleRecord.of(
        task, status=status, score=score, completion=completion, messages=first.messages, trajectory=trajectory
    )
