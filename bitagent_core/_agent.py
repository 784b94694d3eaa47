"""The agent loop: every sample, single- or multi-turn, played against its environment and scored.

A task with an ``environment`` (see :class:`~bitagent_core.model.EnvironmentSpec`) is played turn by turn:
for each user turn, ask the model, read its calls (:meth:`Environment.decode`), execute them in the
environment, append the results as ``tool`` messages and ask again, until the model answers without a call
(or with something that is not a call) or the turn has run more than ``Task.max_steps_per_turn`` steps with
calls (BFCL's rule: the trajectory is then force-terminated). Every step is kept in a
:class:`~bitagent_core.model.Trajectory`, which the runner saves under the sample's ``trajectory`` key and the
scorer's ``score_trajectory`` scores.

The safe executor of the model's calls lives in :mod:`bitagent_core.toolkit.executor`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from bitagent_core.errors import fault_of
from bitagent_core.model import ChatRequest, Completion, Message, Score, Step, Task, Tool, Trajectory
from bitagent_core.protocols import GuardedEnvironment, PersistentEnvironment, TrajectoryScorer
from bitagent_core.records import ErrorType, SampleRecord, SampleStatus
from bitagent_core.toolkit.executor import CALL_TIMEOUT_S, MAX_TRAJECTORY_CHARS, Executor
from bitagent_core.toolkit.prompting import build_request

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
