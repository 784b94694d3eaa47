"""Scoring saved answers again without a model (``bitagent score``): a run's samples, or a responses file.

Responses are JSON lines: ``{"task_id": str, "response": str | {"tool_calls": [...]}, "id": optional}``.
A ``tool_calls`` entry is any JSON call form the decoder reads (``{"name", "arguments"}``, OpenAI's
``{"function": {"name", "arguments": "<json>"}}``...). Each scored line is written back as it is scored
(the file is streamed, never held) with ``score``, ``passed`` and ``error_type`` added; lines naming unknown
tasks and lines that are not valid are reported (by line number) and not scored, and the rest are scored
anyway. Several lines may name the same task: all are scored and written, the last one counts in the
summary (duplicates are reported). Tasks without an answer count as failures unless ``partial``.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import attrs

from bitagent_core import Completion, RunDir, SampleRecord, Scorer, Step, Task, ToolCall, Trajectory, __version__, score_sample
from bitagent_core.toolkit import DecodeError, confidence_interval, json_call, read_jsonl

SCORE_FIELDS = ("score", "passed", "error_type")


@attrs.frozen
class BadLine:
    lineno: int
    message: str


@attrs.frozen
class Response:
    lineno: int
    data: dict[str, Any]
    completion: Completion | None  # None: the response itself could not be read (scored as a decode error)
    problem: str | None = None
    trajectory: Trajectory | None = None  # a multi-turn response: turns of steps (BFCL's result shape)


class NotAResponse(ValueError):
    """A line's ``response`` is neither text nor ``{"tool_calls": [...]}``."""


def completion_from_response(response: Any) -> tuple[Completion | None, str | None]:
    """A string is the model's text; ``{"tool_calls": [...], "content": "..."}`` its native calls.

    Returns (completion, None), or (None, problem) when the calls cannot be read (the response then scores as
    a decode error, as unreadable text would). Raises :class:`NotAResponse` for anything else.
    """
    if isinstance(response, str):
        return Completion(text=response), None
    if response is None:
        return Completion(text=""), None
    if not isinstance(response, dict):
        raise NotAResponse("'response' must be a string or {\"tool_calls\": [...]}")
    content = response.get("content")
    if content is not None and not isinstance(content, str):
        raise NotAResponse("'response.content' must be a string")
    raw_calls = response.get("tool_calls")
    if raw_calls is None:
        return Completion(text=content or ""), None
    if not isinstance(raw_calls, list):
        return None, "'response.tool_calls' must be a list"
    calls: list[ToolCall] = []
    try:
        for raw in raw_calls:
            calls.append(json_call(raw))
    except DecodeError as exc:
        return None, f"unreadable tool call: {exc}"
    return Completion(text=content or "", tool_calls=tuple(calls)), None


#: line numbers kept per duplicate or unknown task id (the counts are exact)
MAX_LINES_SHOWN = 10


@attrs.define
class Tally:
    """What scoring a file found, kept per task (the last answer to a task counts, as in a run's samples.jsonl,
    where a retried sample is appended), so the lines themselves are streamed and never held."""

    tasks: dict[str, Task]
    per_task: dict[str, tuple[float, bool, str | None]] = attrs.field(factory=dict)  # score, passed, error_type
    n_lines: int = 0
    unknown: dict[str, list[int]] = attrs.field(factory=dict)  # unknown task id -> line numbers
    duplicates: dict[str, list[int]] = attrs.field(factory=dict)  # task id -> line numbers of later answers
    bad: list[BadLine] = attrs.field(factory=list)
    first_line: dict[str, int] = attrs.field(factory=dict)
    n_duplicate_lines: int = 0
    n_unknown_lines: int = 0

    @property
    def ok(self) -> bool:
        return not self.unknown and not self.bad and bool(self.per_task)

    def add_unknown(self, task_id: str, lineno: int) -> None:
        self.n_unknown_lines += 1
        lines = self.unknown.setdefault(task_id, [])
        if len(lines) < MAX_LINES_SHOWN:
            lines.append(lineno)

    def add(self, task_id: str, lineno: int, value: float, passed: bool, error_type: str | None) -> None:
        if task_id in self.per_task:
            self.n_duplicate_lines += 1
            lines = self.duplicates.setdefault(task_id, [self.first_line[task_id]])
            if len(lines) < MAX_LINES_SHOWN:  # memory stays bounded by the tasks, not the lines
                lines.append(lineno)
        else:
            self.first_line[task_id] = lineno
        self.per_task[task_id] = (round(float(value), 6), bool(passed), error_type)


def score_one(scorer: Scorer, task: Task, completion: Completion | None) -> tuple[float, bool, str | None]:
    """(score, passed, error_type) of one single-turn answer, through the guard every verdict takes (a scorer
    that raises scores the line 0 as ``scorer_error``)."""
    if completion is None:
        return 0.0, False, "decode_error"
    result, _ = score_sample(scorer, task, completion)
    return result.value, result.passed, result.error_type


def score_responses(path: str | Path, tasks: Iterable[Task], scorer: Scorer,
                    write: Callable[[dict[str, Any]], None] | None = None, *, bfcl_result: bool = False) -> Tally:
    """Score a responses file line by line; each scored line (its fields + score, passed, error_type) goes to
    ``write`` at once. Lines naming unknown tasks and lines that cannot be used are tallied, not scored.
    ``bfcl_result``: the file is BFCL's result file, each line read as :func:`bfcl_result_line` says."""
    tally = Tally({task.id: task for task in tasks})
    try:
        for lineno, data in read_jsonl(Path(path).expanduser(),
                                       on_error=lambda n, msg: tally.bad.append(BadLine(n, msg))):
            if bfcl_result:
                data = bfcl_result_line(lineno, data)
            tally.n_lines += 1
            response = _response(lineno, data, tally.bad)
            if response is None:
                continue
            task_id = response.data["task_id"]
            task = tally.tasks.get(task_id)
            if task is None:
                tally.add_unknown(task_id, lineno)
                continue
            if task.environment is not None or response.trajectory is not None:
                value, passed, error_type = score_multi_turn(scorer, task, response)
            else:
                value, passed, error_type = score_one(scorer, task, response.completion)
            tally.add(task_id, lineno, value, passed, error_type)
            if write is not None:
                line = {k: v for k, v in response.data.items() if k not in SCORE_FIELDS}
                line.update(score=round(float(value), 6), passed=bool(passed), error_type=error_type)
                write(line)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the responses: {exc.strerror or exc}") from None
    return tally


def _response(lineno: int, data: Any, bad: list[BadLine]) -> Response | None:
    if not isinstance(data, dict):
        bad.append(BadLine(lineno, "a line must be a JSON object"))
    elif not isinstance(data.get("task_id"), str):
        bad.append(BadLine(lineno, "'task_id' must be a string"))
    elif "response" not in data:
        bad.append(BadLine(lineno, "no 'response'"))
    elif isinstance(data["response"], list):  # multi-turn: turns of steps (BFCL's result shape)
        try:
            return Response(lineno, data, None, None, trajectory_from_response(data["response"]))
        except ValueError as exc:
            bad.append(BadLine(lineno, str(exc)))
    else:
        try:
            completion, problem = completion_from_response(data["response"])
        except NotAResponse as exc:
            bad.append(BadLine(lineno, str(exc)))
            return None
        return Response(lineno, data, completion, problem)
    return None


def summarize(tally: Tally, *, partial: bool = False) -> dict[str, Any]:
    """Scores per category over the tasks: a task without an answer counts as a failure (score 0), unless
    ``partial`` (like BFCL's ``--partial-eval``): then only answered tasks count."""
    per: dict[str, list[tuple[float, bool]]] = {}
    errors: dict[str, int] = {}
    for task_id, task in tally.tasks.items():
        answer = tally.per_task.get(task_id)
        if answer is None:
            if partial:
                continue
            answer = (0.0, False, "no_answer")
        per.setdefault(task.category or "uncategorized", []).append(answer[:2])
        if answer[2]:
            errors[answer[2]] = errors.get(answer[2], 0) + 1
    rows = [row for values in per.values() for row in values]
    n_passed = sum(p for _, p in rows)
    scores = [s for s, _ in rows]
    return {
        "n_responses": tally.n_lines,
        "n_tasks": len(tally.tasks),
        "n_answered": len(tally.per_task),
        "coverage": round(len(tally.per_task) / len(tally.tasks), 6) if tally.tasks else 0.0,
        "partial": partial,
        "n_scored": len(rows),
        "n_passed": n_passed,
        "accuracy": round(n_passed / len(rows), 6) if rows else 0.0,
        "mean_score": round(statistics.fmean(scores), 6) if scores else 0.0,
        "mean_score_ci": list(confidence_interval(scores)),
        "per_category": {
            cat: {"n": len(values), "passed": sum(p for _, p in values),
                  "accuracy": round(sum(p for _, p in values) / len(values), 6),
                  "mean_score": round(statistics.fmean(s for s, _ in values), 6)}
            for cat, values in sorted(per.items())
        },
        "error_types": dict(sorted(errors.items(), key=lambda kv: (-kv[1], kv[0]))),
        "unknown_task_ids": {k: v for k, v in sorted(tally.unknown.items())},
        "duplicate_task_ids": {k: v for k, v in sorted(tally.duplicates.items())},
        "n_duplicate_lines": tally.n_duplicate_lines,
        "n_unknown_lines": tally.n_unknown_lines,
        "bad_lines": [{"line": b.lineno, "error": b.message} for b in tally.bad],
    }


class LineWriter:
    """Writes JSON lines to ``path`` as they come, into a temporary file renamed over ``path`` on success."""

    def __init__(self, path: str | Path) -> None:
        self.target = Path(path).expanduser()
        self.tmp = self.target.with_name(self.target.name + ".tmp")
        self._file = open(self.tmp, "w", encoding="utf-8")

    def __call__(self, line: dict[str, Any]) -> None:
        text = json.dumps(line, ensure_ascii=False, default=str)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate read from a "\ud800" escape: keep it escaped
            text = json.dumps(line, default=str)
        self._file.write(text + "\n")

    def close(self, keep: bool = True) -> None:
        self._file.close()
        if keep:
            self.tmp.replace(self.target)
        else:
            self.tmp.unlink(missing_ok=True)


# --- re-scoring a run ------------------------------------------------------------------------------------

def find_samples(path: str | Path) -> tuple[Path, Path | None]:
    """A run directory or its ``samples.jsonl`` -> (the samples file, the run's results.json if there is one)."""
    path = Path(path).expanduser().resolve()
    run = RunDir(path if path.is_dir() else path.parent)
    samples = run.samples_path if path.is_dir() else path
    if not samples.is_file():
        raise ValueError(f"{path}: neither a run directory nor a samples file (no {RunDir.SAMPLES})")
    return samples, run.results_path if run.has_results else None


def coverage_line(summary: dict[str, Any]) -> str:
    """``answers for 2 of 400 tasks (0.5 %); ...`` from a summary of :func:`summarize` or a re-scored run."""
    parts = [f"answers for {summary['n_answered']} of {summary['n_tasks']} tasks "
             f"({100 * summary['coverage']:.1f} %)"]
    if summary.get("unknown_task_ids"):
        parts.append(f"{len(summary['unknown_task_ids'])} unknown task id(s)")
    if summary.get("duplicate_task_ids"):
        parts.append(f"{len(summary['duplicate_task_ids'])} task id(s) answered more than once (the last counts)")
    if summary.get("bad_lines"):
        parts.append(f"{len(summary['bad_lines'])} unreadable line(s)")
    missing = summary["n_tasks"] - summary["n_answered"]
    if missing:
        parts.append(f"{missing} unanswered task(s) " + ("left out (--partial)" if summary.get("partial")
                                                          else "count as failures (--partial leaves them out)"))
    return "coverage: " + "; ".join(parts)


def rescore_run(path: str | Path, registry: Any, *, tasks: str | None = None, scorer: str | None = None,
                seed: int | None = None, limit: int | None | str = "run", output_dir: str | Path | None = None,
                partial: bool = False) -> tuple[Any, dict[str, Any]]:
    """Score a run's samples (a run directory or its samples.jsonl) again, with ``scorer`` (default: the run's),
    into a new run directory (default: beside the run). The task list is the run's own (its spec, seed and
    limit) unless given. Streams the samples. Returns the new run's RunResults and the coverage summary."""
    from bitagent_core import RunConfig, RunResults, load_tasks, task_digest
    from bitagent_core.toolkit import summarize_samples

    utc_stamp = RunDir.utc_stamp

    samples, results_path = find_samples(path)
    base = RunDir(samples.parent).read_results() if results_path else None
    config = RunConfig.from_json(base.config) if base else RunConfig(tasks=tasks or "", limit=None)
    if not config.tasks:
        raise ValueError(f"{samples} has no results.json beside it: say which tasks it answers with --tasks")
    config = attrs.evolve(config, tasks=tasks or config.tasks, seed=config.seed if seed is None else seed,
                           limit=config.limit if isinstance(limit, str) else limit, scorer=scorer or config.scorer)
    sources: dict[str, dict[str, int | None]] = {}
    task_list = load_tasks(registry, config.tasks, config.seed, config.limit, sources)
    scorer_obj: Scorer = registry.create("scorers", config.scorer)
    out_dir = Path(output_dir).expanduser() if output_dir else samples.parent.parent
    run = RunDir.create(out_dir, config.tasks, f"rescored-{config.scorer}")
    new_dir = run.path
    tally = Tally({task.id: task for task in task_list})
    slim: dict[str, SampleRecord] = {}  # per task, the record without its texts: enough for the summary
    started = time.perf_counter()
    try:
        def bad_line(lineno: int, message: str) -> None:
            tally.bad.append(BadLine(lineno, message))

        for lineno, record in RunDir.read_sample_file(samples, on_error=bad_line):
            tally.n_lines += 1
            task = tally.tasks.get(record.task_id)
            if task is None:
                tally.add_unknown(record.task_id, lineno)
                continue
            if record.ok:  # the same guard and record as a run's: a scorer that fails fails this sample only
                score, status = score_sample(scorer_obj, task, record.completion, record.trajectory,
                                             scorer_name=config.scorer)
                record = SampleRecord.of(task, status=status, score=score, completion=record.completion,
                                         messages=record.messages, trajectory=record.trajectory, extra=record.extra)
            run.append(record)
            tally.add(task.id, lineno, record.score, record.passed, record.error_type)
            slim[task.id] = attrs.evolve(record, messages=(), tools=(), expected_calls=(), decoded_calls=(),
                                          completion=attrs.evolve(record.completion, text="", tool_calls=()))
        coverage = summarize(tally, partial=partial)
        ids = [(t.id, t.category) for t in task_list]
        results = RunResults(
            status="complete", run_dir=str(new_dir), config=config.to_json(), started_at=utc_stamp(),
            updated_at=utc_stamp(), duration_s=round(time.perf_counter() - started, 3), seed=config.seed,
            model=base.model if base else {}, scorer={"name": config.scorer, "version": scorer_obj.version},
            bitagent_version=__version__, task_digest=task_digest(task_list), sources=sources,
            rescored_from=str(samples), extra={"coverage": {k: coverage[k] for k in (
                "n_responses", "n_tasks", "n_answered", "coverage", "partial", "unknown_task_ids",
                "duplicate_task_ids", "bad_lines")}},
            **summarize_samples(ids, slim, partial=partial))
        run.write_results(results)
    except Exception as exc:
        # never leave a directory that looks like a run: say it failed, and why
        run.write_results(RunResults(
            status="failed", run_dir=str(new_dir), config=config.to_json(), error=str(exc),
            started_at=utc_stamp(), updated_at=utc_stamp(), rescored_from=str(samples)))
        raise
    finally:
        run.close()
    return results, coverage


# --- multi-turn answers and BFCL's result files -----------------------------------------------------------

def trajectory_from_response(response: Any) -> Trajectory:
    """A saved multi-turn response as a trajectory: BFCL's result shape (a list of turns, each a list of raw
    step strings) or a saved ``{"turns": [...]}``. Raises ValueError for anything else."""
    return Trajectory.from_json(response)


def score_multi_turn(scorer: Any, task: Task, response: Any) -> tuple[float, bool, str | None]:
    """(score, passed, error_type) of one re-scored response (``bitagent score``) where the task or the
    response is multi-turn. A plain text answering a multi-turn task is its first turn's only step."""
    if task.environment is None:
        return 0.0, False, "not_multi_turn"  # turns given for a single-turn task
    trajectory = response.trajectory
    if trajectory is None:
        text = response.completion.text if response.completion is not None else ""
        trajectory = Trajectory(((Step(text=text),),))
    result, _ = score_sample(scorer, task, Completion(), trajectory)
    return result.value, result.passed, result.error_type


def bfcl_result_line(lineno: int, row: Any) -> dict[str, Any]:
    """A line of BFCL's result file (``BFCL_v4_<category>_result.json``: ``{"id", "result", ...}``) as a
    responses line ``{"id", "task_id", "response"}``. A line that is not an object keeps ``task_id`` None, so
    it is reported, not dropped."""
    if not isinstance(row, dict):
        return {"id": f"line {lineno}", "task_id": None, "response": None}
    return {"id": row.get("id"), "task_id": row.get("id"), "response": row.get("result")}
