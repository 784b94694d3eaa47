"""What a run directory holds, as typed records: one :class:`SampleRecord` per line of ``samples.jsonl`` and
one :class:`RunResults` in ``results.json``. The JSON layout is documented field by field in docs/schema.md.

Both records are open: a field this version does not know (written by a newer plugin, or by the multi-turn
loop) is kept in ``extra`` and written back unchanged, so reading and rewriting a file never loses data.
``schema_version`` says which layout a file has; a file from a newer *major* layout is refused with a message.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal

import attrs

from bitagent_core.model import Completion, ExpectedCall, Message, Score, Task, Tool, ToolCall, Trajectory

#: Version of the samples.jsonl / results.json layout. Bump the major part for a change old readers cannot read.
SCHEMA_VERSION = "1.0"

#: ``SampleRecord.status``: the sample was scored, or its request (or its scoring) failed
SampleStatus = Literal["ok", "failed"]
OK: Final = "ok"
FAILED: Final = "failed"
#: ``RunResults.status``
RunStatus = Literal["running", "complete", "interrupted", "failed"]
RUNNING: Final = "running"
COMPLETE: Final = "complete"
INTERRUPTED: Final = "interrupted"
RUN_FAILED: Final = "failed"
#: ``SampleRecord.error_type`` of a sample that failed before or while it was scored (a scorer's own verdict
#: words, ``wrong_func_name``..., are its own)
#: why a sample failed; ``engine_error``: the request failed on the serving side (the validator's fault, never
#: the model's)
ErrorType = Literal["timeout", "backend_error", "engine_error", "environment_error", "scorer_error"]


class SchemaError(ValueError):
    """A record that cannot be read: wrong shape, or written by a newer major schema."""


def _check_version(data: Mapping[str, Any], what: str) -> str:
    version = str(data.get("schema_version") or "0")  # lines written before the schema existed: same layout
    major = version.split(".", 1)[0]
    if not major.isdigit() or int(major) > int(SCHEMA_VERSION.split(".")[0]):
        raise SchemaError(
            f"{what} has schema_version {version}, newer than this bitagent reads ({SCHEMA_VERSION}); upgrade bitagent"
        )
    return version


def completion_from_json(data: Mapping[str, Any]) -> Completion:
    return Completion(
        text=str(data.get("text") or ""),
        tool_calls=tuple(ToolCall.from_json(c) for c in data.get("tool_calls") or ()),
        prompt_tokens=int(data.get("prompt_tokens") or 0),
        completion_tokens=int(data.get("completion_tokens") or 0),
        latency_s=float(data.get("latency_s") or 0.0),
        finish_reason=str(data.get("finish_reason") or ""),
        error=data.get("error"),
    )


@attrs.frozen
class SampleRecord:
    """One finished task: what was asked, what the model answered, and how it scored."""

    task_id: str
    status: SampleStatus
    score: float = 0.0
    passed: bool = False
    source: str = ""
    category: str = ""
    #: why the score is not perfect: a scorer's word (``wrong_func_name``...), ``backend_error``,
    #: ``timeout``, ``scorer_error``; None when it passed
    error_type: str | None = None
    breakdown: dict[str, float] = attrs.field(factory=dict)
    decoded_calls: tuple[ToolCall, ...] = ()
    detail: str = ""
    completion: Completion = attrs.field(factory=Completion)
    messages: tuple[Message, ...] = ()  # as the model saw them (after prompting)
    tools: tuple[Tool, ...] = ()
    expected_calls: tuple[ExpectedCall, ...] = ()
    #: multi-turn tasks: the user turns after the first (as the task gave them); None for a single-turn task
    turns: tuple[dict[str, Any], ...] | None = None
    #: multi-turn tasks: every step of every turn as played (raw text, decoded calls, execution results)
    trajectory: Trajectory | None = None
    #: ``--repeats k``: which of the k runs of the task this is (0 ... k-1); None in a run without repeats
    repeat: int | None = None
    #: fields this version does not know, kept verbatim
    extra: dict[str, Any] = attrs.field(factory=dict)
    schema_version: str = SCHEMA_VERSION

    @classmethod
    def of(
        cls,
        task: Task,
        *,
        status: SampleStatus,
        score: Score,
        completion: Completion,
        messages: tuple[Message, ...],
        trajectory: Trajectory | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> SampleRecord:
        """The one way a sample's record is made (a run, a resumed run, re-scoring): the task, what was asked
        (``messages`` as the model saw them), the answer and the verdict; ``extra``: fields kept verbatim. A
        multi-turn task keeps its turns and the trajectory; its decoded calls are the calls read at each step."""
        multi_turn = task.environment is not None or trajectory is not None
        decoded = (
            tuple(c for steps in trajectory.turns for s in steps for c in s.calls)
            if trajectory is not None
            else score.decoded_calls
        )
        return cls(
            task_id=task.id,
            source=task.source,
            category=task.category,
            status=status,
            score=score.value,
            passed=score.passed,
            error_type=score.error_type,
            breakdown=score.breakdown,
            decoded_calls=decoded,
            detail=score.detail,
            completion=completion,
            messages=messages,
            tools=task.tools,
            expected_calls=() if multi_turn else task.expected_calls,
            turns=tuple(t.to_json() for t in task.turns) if multi_turn else None,
            trajectory=(trajectory or Trajectory()) if multi_turn else None,
            extra=dict(extra or {}),
        )

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def key(self) -> str:
        """What identifies the sample in its run: the task id, and the repeat index with ``--repeats``."""
        return sample_key(self.task_id, self.repeat)

    @property
    def error(self) -> str | None:
        """The failure message of a failed sample (the request's error, or the scorer's)."""
        if self.status == OK:
            return None
        return self.completion.error or self.detail or self.error_type or "failed"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "schema_version": self.schema_version,
            "task_id": self.task_id,
            "source": self.source,
            "category": self.category,
            "status": self.status,
            "score": round(float(self.score), 6),
            "passed": self.passed,
            "error_type": self.error_type,
            "breakdown": self.breakdown,
            "decoded_calls": [c.to_json() for c in self.decoded_calls],
            "detail": self.detail,
            "completion": self.completion.to_json(),
            "messages": [m.to_json() for m in self.messages],
            "tools": [t.to_json() for t in self.tools],
            "expected_calls": [c.to_json() for c in self.expected_calls],
        }
        if self.turns is not None:
            data["turns"] = list(self.turns)
        if self.trajectory is not None:
            data["trajectory"] = self.trajectory.to_json()
        if self.repeat is not None:
            data["repeat"] = self.repeat
        for key, value in self.extra.items():
            data.setdefault(key, value)
        return data

    @classmethod
    def from_json(cls, data: Any) -> SampleRecord:
        if not isinstance(data, dict) or not isinstance(data.get("task_id"), str):
            raise SchemaError("a sample record is a JSON object with a string 'task_id'")
        version = _check_version(data, f"sample {data['task_id']!r}")
        try:
            turns = data.get("turns")
            return cls(
                task_id=data["task_id"],
                status=OK if data.get("status") == OK else FAILED,
                score=float(data.get("score") or 0.0),
                passed=bool(data.get("passed")),
                source=str(data.get("source") or ""),
                category=str(data.get("category") or ""),
                error_type=data.get("error_type"),
                breakdown=dict(data.get("breakdown") or {}),
                decoded_calls=tuple(ToolCall.from_json(c) for c in data.get("decoded_calls") or ()),
                detail=str(data.get("detail") or ""),
                completion=completion_from_json(data.get("completion") or {}),
                messages=tuple(Message.from_json(m) for m in data.get("messages") or ()),
                tools=tuple(Tool.from_json(t) for t in data.get("tools") or ()),
                expected_calls=tuple(ExpectedCall.from_json(c) for c in data.get("expected_calls") or ()),
                turns=tuple(turns) if isinstance(turns, list) else None,
                trajectory=Trajectory.from_json(data["trajectory"]) if data.get("trajectory") is not None else None,
                repeat=int(data["repeat"]) if data.get("repeat") is not None else None,
                extra={k: v for k, v in data.items() if k not in _SAMPLE_FIELDS},
                schema_version=version if version != "0" else SCHEMA_VERSION,
            )
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise SchemaError(f"sample {data['task_id']!r}: {exc}") from None


def sample_key(task_id: str, repeat: int | None) -> str:
    """A sample's key in its run: ``task_id``, or ``task_id@repeat<i>`` with ``--repeats``."""
    return task_id if repeat is None else f"{task_id}@repeat{repeat}"


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k estimator from ``n`` samples with ``c`` correct: ``1 - C(n-c, k) / C(n, k)``."""
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def pass_hat_k(n: int, c: int, k: int) -> float:
    """pass^k (tau2-bench): the chance that k samples drawn from ``n`` are all correct, ``C(c, k) / C(n, k)``."""
    return math.comb(c, k) / math.comb(n, k)


def summarize_repeats(
    tasks: Iterable[tuple[str, str]], records: Mapping[str, SampleRecord], repeats: int
) -> dict[str, Any]:
    """pass@k and pass^k for k = 1 ... ``repeats``, per category and over all tasks (the mean over tasks; a
    failed or missing sample counts as not passed), as tau2-bench and MCPMark report them."""
    per_category: dict[str, list[int]] = {}
    for task_id, category in tasks:
        correct = 0
        for repeat in range(repeats):
            record = records.get(sample_key(task_id, repeat))
            correct += bool(record is not None and record.ok and record.passed)
        per_category.setdefault(category or "all", []).append(correct)

    def figures(counts: list[int]) -> dict[str, Any]:
        out: dict[str, Any] = {"tasks": len(counts)}
        for k in range(1, repeats + 1):
            out[f"pass@{k}"] = round(statistics.fmean(pass_at_k(repeats, c, k) for c in counts), 6)
            out[f"pass^{k}"] = round(statistics.fmean(pass_hat_k(repeats, c, k) for c in counts), 6)
        return out

    every = [c for counts in per_category.values() for c in counts]
    return {
        "k": repeats,
        "per_category": {cat: figures(counts) for cat, counts in sorted(per_category.items())},
        "all": figures(every) if every else {"tasks": 0},
    }


_SAMPLE_FIELDS = frozenset(f.name for f in attrs.fields(SampleRecord)) - {"extra"}


@attrs.frozen
class CategoryStats:
    """Scores of one category: every task counts, a failed or missing one as 0."""

    n: int
    mean_score: float
    passed: int
    ci_low: float
    ci_high: float

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CategoryStats:
        mean = float(data.get("mean_score") or 0.0)
        return cls(
            n=int(data.get("n") or 0),
            mean_score=mean,
            passed=int(data.get("passed") or 0),
            ci_low=float(data.get("ci_low", mean)),
            ci_high=float(data.get("ci_high", mean)),
        )


@attrs.frozen
class RunResults:
    """``results.json``: what ran, how it ended, and the scores over every task of the run."""

    status: RunStatus
    run_dir: str
    config: dict[str, Any]  # the run's RunConfig as JSON (absolute paths)
    started_at: str = ""
    updated_at: str = ""
    duration_s: float | None = None
    seed: int = 0
    model: dict[str, Any] = attrs.field(factory=dict)
    scorer: dict[str, Any] = attrs.field(factory=dict)
    bitagent_version: str = ""
    git_commit: str | None = None
    plugins: dict[str, str | None] = attrs.field(factory=dict)
    #: why the run failed or stopped (startup error, I/O error); None otherwise
    error: str | None = None
    mean_score: float = 0.0
    mean_score_ci: tuple[float, float] = (0.0, 0.0)
    n_tasks: int = 0
    n_scored: int = 0
    n_failed: int = 0
    n_passed: int = 0
    per_category: dict[str, CategoryStats] = attrs.field(factory=dict)
    #: samples whose scorer raised or returned an unusable verdict (counted in ``n_failed`` too)
    n_scorer_errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    mean_latency_s: float | None = None
    #: failure message -> count, most frequent first (at most 10)
    top_errors: dict[str, int] = attrs.field(factory=dict)
    #: sha256 over the task list's JSON, in order: ``--resume`` refuses a task list that changed
    task_digest: str = ""
    #: per task source spec: tasks taken and tasks it has (when a limit cut it)
    sources: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    #: each ``--resume``: when, and the flags it changed
    resumes: tuple[dict[str, Any], ...] = ()
    #: ``bitagent score`` on a run: the run it re-scored
    rescored_from: str | None = None
    extra: dict[str, Any] = attrs.field(factory=dict)
    schema_version: str = SCHEMA_VERSION

    def title(self) -> str:
        """One line saying what was run: tasks, model, backend, scorer, seed, limit, temperature, status."""
        cfg = self.config
        limit = cfg.get("limit")
        version = self.scorer.get("version")
        return (
            f"{cfg.get('tasks', '?')}: {self.model.get('model') or cfg.get('model') or 'default'} "
            f"({cfg.get('backend', '?')}), scorer {self.scorer.get('name', '?')}"
            f"{' v' + str(version) if version else ''}, seed {cfg.get('seed', 0)}, "
            f"limit {'all' if limit is None else limit}, temperature {cfg.get('temperature', 0.0):g} "
            f"[{self.status}]"
        )

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in attrs.fields(RunResults) if f.name != "extra"}
        data["per_category"] = {k: v.to_json() for k, v in self.per_category.items()}
        data["mean_score_ci"] = list(self.mean_score_ci)
        data["resumes"] = list(self.resumes)
        for key, value in self.extra.items():
            data.setdefault(key, value)
        return data

    @classmethod
    def from_json(cls, data: Any) -> RunResults:
        if not isinstance(data, dict) or "status" not in data:
            raise SchemaError("results.json is a JSON object with a 'status'")
        version = _check_version(data, "results.json")
        known = {f.name for f in attrs.fields(cls)} - {"extra"}
        values = {k: v for k, v in data.items() if k in known}
        try:
            rows = data.get("per_category") or {}
            values["per_category"] = {k: CategoryStats.from_json(v) for k, v in rows.items()}
            ci = data.get("mean_score_ci") or (data.get("mean_score", 0.0),) * 2
            values["mean_score_ci"] = (float(ci[0]), float(ci[1]))
            values["resumes"] = tuple(data.get("resumes") or ())
            values["config"] = dict(data.get("config") or {})
            values["run_dir"] = str(data.get("run_dir") or "")
            values["schema_version"] = version if version != "0" else SCHEMA_VERSION
            return cls(**values, extra={k: v for k, v in data.items() if k not in known})
        except (TypeError, ValueError) as exc:
            raise SchemaError(f"results.json: {exc}") from None


# --- statistics ------------------------------------------------------------------------------------------

Z95 = 1.959964


def confidence_interval(scores: list[float]) -> tuple[float, float]:
    """A 95 % interval for the mean score: Wilson's for pass/fail scores (sound at 0/n and n/n), the normal
    approximation otherwise; clipped to [0, 1]. An empty list gives (0, 1): nothing is known."""
    n = len(scores)
    if n == 0:
        return 0.0, 1.0
    mean = statistics.fmean(scores)
    if all(s in (0.0, 1.0) for s in scores):
        denom = 1 + Z95**2 / n
        centre = (mean + Z95**2 / (2 * n)) / denom
        half = Z95 * math.sqrt(mean * (1 - mean) / n + Z95**2 / (4 * n * n)) / denom
        low, high = centre - half, centre + half
    else:
        half = Z95 * statistics.stdev(scores) / math.sqrt(n) if n > 1 else 1.0
        low, high = mean - half, mean + half
    return round(max(0.0, low), 6), round(min(1.0, high), 6)


def summarize(
    tasks: Iterable[tuple[str, str]], records: Mapping[str, SampleRecord], *, partial: bool = False
) -> dict[str, Any]:
    """Scores over ``tasks`` (``(task id, category)`` pairs): a failed or missing sample counts 0, unless
    ``partial``, where only the tasks with a record count. Returns the summary fields of :class:`RunResults`."""
    per_category: dict[str, list[float]] = {}
    passed: dict[str, int] = {}
    for task_id, category in tasks:
        record = records.get(task_id)
        if record is None and partial:
            continue
        ok = record is not None and record.ok
        category = category or "all"
        per_category.setdefault(category, []).append(float(record.score) if ok and record else 0.0)
        passed[category] = passed.get(category, 0) + bool(ok and record and record.passed)
    scores = [v for values in per_category.values() for v in values]
    done = [r for r in records.values() if r.ok]
    latencies = [r.completion.latency_s for r in done]
    errors: dict[str, int] = {}
    for r in records.values():
        if not r.ok:
            message = (r.error or "")[:200]
            errors[message] = errors.get(message, 0) + 1
    return {
        "mean_score": round(statistics.fmean(scores), 6) if scores else 0.0,
        "mean_score_ci": confidence_interval(scores),
        "n_tasks": len(scores),
        "n_scored": len(done),
        "n_failed": sum(1 for r in records.values() if not r.ok),
        "n_scorer_errors": sum(1 for r in records.values() if r.error_type == "scorer_error"),
        "n_passed": sum(passed.values()),
        "per_category": {
            cat: CategoryStats(
                len(values), round(statistics.fmean(values), 6), passed[cat], *confidence_interval(values)
            )
            for cat, values in sorted(per_category.items())
        },
        "prompt_tokens": sum(r.completion.prompt_tokens for r in done),
        "completion_tokens": sum(r.completion.completion_tokens for r in done),
        "mean_latency_s": round(statistics.fmean(latencies), 4) if latencies else None,
        "top_errors": dict(sorted(errors.items(), key=lambda kv: (-kv[1], kv[0]))[:10]),
    }


#: :func:`summarize` under the name the public surface gives it (``bitagent_core.summarize_samples``)
summarize_samples = summarize
