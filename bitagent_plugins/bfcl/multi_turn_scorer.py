"""BFCL's multi-turn checker, without ``eval``: scorers ``bfcl-strict`` and ``bfcl`` on multi-turn tasks.

As BFCL's ``multi_turn_checker`` (bfcl-eval 2026.3.23) does, for a trajectory of turns of raw step texts:

* a trajectory whose number of turns differs from the ground truth's fails
  (``multi_turn:force_terminated``: the model was cut off, as BFCL's inference does after 20 steps a turn);
* each step is decoded as BFCL's prompting handlers decode for execution (``default_decode_execute_prompting``);
  steps that do not decode, or decode to no call, are skipped;
* turn by turn, the model's calls run on fresh instances of the entry's classes (kept across turns), and the
  ground truth's on another set; a turn whose ground truth has calls but where the model made none fails
  (``multi_turn:empty_turn_model_response``); a turn with an empty ground truth is not checked;
* after each checked turn, every public attribute of every instance must equal the ground truth instance's
  (``multi_turn:instance_state_mismatch``), and every execution result of the turn's ground truth must be
  among the model's results of all turns so far, unordered, duplicates counted
  (``multi_turn:execution_response_mismatch``).

``bfcl-strict`` drops positional arguments before executing, as BFCL's decoder does (so BFCL's own ground
truth ``sort('final_report.pdf')`` fails when given as model output); ``bfcl`` binds them by position and
also applies BFCL's ``multi_turn_irrelevance_checker`` (which BFCL ships but does not call): a turn with an
empty ground truth (a ``miss_param`` turn, where the model should ask) fails if the model called anything
(``multi_turn:irrelevance_error:decoder_success``). Nothing is ever evaluated: see
:mod:`bitagent_core._agent` for what execution refuses, and docs/bfcl.md for every difference from BFCL.
"""

from __future__ import annotations

import copy
import pickle
import threading
from typing import Any

from bitagent_core import Score, Task, ToolCall, Trajectory
from bitagent_core.toolkit import (
    CALL_TIMEOUT_S,
    CallTimeout,
    DecodeError,
    Executor,
    ast_python_calls,
    call_with_deadline,
)
from bitagent_plugins.bfcl.multi_turn import decode_step, format_result, guard, new_instances
from bitagent_plugins.bfcl.reading import literal_bfcl

_GT_CACHE_MAX = 10_000
_gt_cache: dict[str, tuple[tuple[tuple[ToolCall, ...], ...], tuple]] = {}
_gt_lock = threading.Lock()


def _fail(error_type: str, detail: str, **breakdown: float) -> Score:
    return Score(0.0, dict(breakdown), error_type=error_type, passed=False, detail=detail)


def ground_truth_calls(task: Task) -> tuple[tuple[ToolCall, ...], ...]:
    """The ground truth's call strings of each turn, parsed (never evaluated; an operator expression reads as
    an :class:`~bitagent_plugins.bfcl.reading.Expression`, which execution refuses); cached per task."""
    truth = task.metadata.get("ground_truth")
    if not isinstance(truth, list):
        raise ValueError(f"task {task.id}: no multi-turn ground truth in its metadata")
    key = task.id
    with _gt_lock:
        cached = _gt_cache.get(key)
    if cached is not None and cached[1] == tuple(map(tuple, truth)):
        return cached[0]
    turns = []
    for turn in truth:
        calls = []
        for text in turn:
            try:
                calls.extend(ast_python_calls(text, literal_bfcl))  # tuples stay tuples, as BFCL's eval keeps them
            except DecodeError as exc:
                raise ValueError(f"task {task.id}: ground truth call {text[:80]!r} does not parse: {exc}") from None
        turns.append(tuple(calls))
    parsed = tuple(turns)
    with _gt_lock:
        if len(_gt_cache) >= _GT_CACHE_MAX:
            _gt_cache.clear()
        _gt_cache[key] = (parsed, tuple(map(tuple, truth)))
    return parsed


def _missing(expected: list[str], got: list[str]) -> list[str]:
    """BFCL's ``_is_subsequence_unordered``: the expected items not found in ``got``, one use per item."""
    left = list(got)
    missing = []
    for item in expected:
        try:
            left.remove(item)
        except ValueError:
            missing.append(item)
    return missing


def _state_difference(model: object, truth: dict[str, Any]) -> str | None:
    """The first public attribute where the model's instance differs from the ground truth's state (BFCL's
    ``_compare_instances``)."""
    for name, value in truth.items():
        if getattr(model, name, None) != value:
            return name
    return None


def score_trajectory(task: Task, trajectory: Trajectory, *, strict: bool) -> Score:
    """BFCL's verdict on one trajectory (see the module docstring). Never raises on model output.

    The whole replay runs in one worker job, every call under its own deadline (``call_with_deadline``): one
    thread hand-off per trajectory, where one per step made the hand-offs 80 % of the scoring time."""
    if task.environment is None:
        return _fail("multi_turn:inference_error", "not a multi-turn task")
    try:
        score: Score = call_with_deadline(lambda: _score_trajectory(task, trajectory, strict), CALL_TIMEOUT_S)
    except CallTimeout as exc:
        return _fail("multi_turn:execution_timeout", f"environment stopped: {exc}")
    return score


#: a task's ground truth replayed: per turn, its execution results and (for a turn with calls) every instance's
#: public state after it; or why the replay stopped
Replay = tuple[tuple[list[str], dict[str, dict[str, Any]] | None], ...] | str
_REPLAY_CACHE_MAX = 2_000
#: task id -> (ground truth, environment config, the fresh instances pickled or None, the replay)
_replay_cache: dict[str, tuple[tuple[tuple[ToolCall, ...], ...], dict[str, Any], bytes | None, Replay]] = {}


def _snapshot(value: Any) -> Any:
    """A deep copy (pickle's C round trip, several times faster than ``copy.deepcopy``; deepcopy where pickling
    fails)."""
    try:
        return pickle.loads(pickle.dumps(value, pickle.HIGHEST_PROTOCOL))  # noqa: S301 - bytes made just above
    except Exception:  # noqa: BLE001 - an attribute pickle cannot copy
        return copy.deepcopy(value)


def truth_replay(task: Task, truth: tuple[tuple[ToolCall, ...], ...]) -> tuple[bytes | None, Replay]:
    """The entry's fresh instances (pickled, for the model's replays) and the ground truth replayed on them, as
    BFCL replays it for every trajectory. Both depend on the task alone, so they are made once per task per
    process (as the single-turn scorer compiles a task's checks once): every verdict is still computed from its
    trajectory, and nothing is kept across processes."""
    assert task.environment is not None
    config = task.environment.config
    with _gt_lock:
        cached = _replay_cache.get(task.id)
    if cached is not None and cached[0] == truth and cached[1] == config:
        return cached[2], cached[3]
    instances = new_instances(
        list(config.get("involved_classes") or []), config.get("initial_config") or {}, bool(config.get("long_context"))
    )
    try:
        fresh: bytes | None = pickle.dumps(instances, pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - an instance pickle cannot copy: the model's get new_instances
        fresh = None
    run = Executor(list(instances.values()), format_result, bind_positional=True, guard=guard)
    turns = []
    for expected in truth:
        results = run.execute_step(expected)
        if run.broken:
            return fresh, run.broken  # not kept: a timeout may not happen again
        state = None
        if expected:  # only turns with calls are checked
            state = _snapshot(
                {
                    name: {k: v for k, v in vars(instance).items() if not k.startswith("_")}
                    for name, instance in instances.items()
                }
            )
        turns.append((results, state))
    replay = tuple(turns)
    with _gt_lock:
        if len(_replay_cache) >= _REPLAY_CACHE_MAX:
            _replay_cache.clear()
        _replay_cache[task.id] = (truth, config, fresh, replay)
    return fresh, replay


def _score_trajectory(task: Task, trajectory: Trajectory, strict: bool) -> Score:
    if task.environment is None:
        return _fail("multi_turn:inference_error", "not a multi-turn task")
    truth = ground_truth_calls(task)
    n = len(truth)
    if len(trajectory.turns) != n:
        return _fail(
            "multi_turn:force_terminated",
            f"{len(trajectory.turns)} turn(s) where the ground truth has {n}"
            + (f" ({trajectory.terminated})" if trajectory.terminated else ""),
        )
    fresh, replay = truth_replay(task, truth)
    if fresh is not None:
        model_instances: dict[str, object] = pickle.loads(fresh)  # noqa: S301 - made by truth_replay
    else:
        config = task.environment.config
        model_instances = new_instances(
            list(config.get("involved_classes") or []),
            config.get("initial_config") or {},
            bool(config.get("long_context")),
        )
    model_run = Executor(list(model_instances.values()), format_result, bind_positional=not strict, guard=guard)
    all_results: list[str] = []
    for index, (steps, expected) in enumerate(zip(trajectory.turns, truth)):
        decoded = []
        for step in steps:
            calls = decode_step(step.text, step.tool_calls)
            if calls:  # undecodable and empty steps are skipped, as BFCL does
                decoded.append(calls)
        for results in model_run.execute_steps(decoded):
            all_results.extend(results)
        broken = model_run.broken or (replay if isinstance(replay, str) else None)
        if broken:
            return _fail("multi_turn:execution_timeout", f"turn {index}: {broken}", turn=float(index))
        assert not isinstance(replay, str)
        expected_results, states = replay[index]
        if expected and not decoded:
            return _fail(
                "multi_turn:empty_turn_model_response",
                f"Model response list is empty for turn {index}",
                turn=float(index),
            )
        if not expected:
            if not strict and decoded:
                return _fail(
                    "multi_turn:irrelevance_error:decoder_success",
                    f"Model outputs valid function calls when it should not for turn {index}.",
                    turn=float(index),
                )
            continue
        for name, state in (states or {}).items():
            attribute = _state_difference(model_instances[name], state)
            if attribute is not None:
                return _fail(
                    "multi_turn:instance_state_mismatch",
                    f"turn {index}: Model instance for {name} does not match the state with ground truth "
                    f"instance ({attribute!r} differs).",
                    turn=float(index),
                )
        missing = _missing(expected_results, all_results)
        if missing:
            return _fail(
                "multi_turn:execution_response_mismatch",
                f"turn {index}: Model response execution results so far does not contain all the ground "
                f"truth response execution results; missing {_short(missing)}",
                turn=float(index),
            )
    return Score(1.0, {}, passed=True)


def _short(items: list[Any], limit: int = 200) -> str:
    text = repr(items)
    return text if len(text) <= limit else text[:limit] + "..."
