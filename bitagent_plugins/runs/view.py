"""Reading past runs back: finding them, loading their records, comparing two on their shared tasks, and the
difference between what a sample expected and what the model called. Used by ``bitagent runs``,
``bitagent compare`` and the report plugin."""

from __future__ import annotations

import difflib
import itertools
import json
import math
import random
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from bitagent_core import ExpectedCall, RunDir, ToolCall
from bitagent_core import RunResults, SampleRecord
from bitagent_core.toolkit import confidence_interval


@attrs.frozen
class Run:
    """A run directory read back: its results and its samples (the last record per task)."""

    path: Path
    results: RunResults
    samples: dict[str, SampleRecord]

    @property
    def label(self) -> str:
        """What a person calls this run: the model, what decides comparability (tool format, seed, tags), and
        the directory name."""
        model = str(self.results.model.get("model") or self.results.config.get("model") or "default")
        if model.startswith(("/", ".", "~")):  # a local file: its name says enough
            model = Path(model).name
        cfg = self.results.config
        tags = "".join(f", #{t}" for t in cfg.get("tags") or [])
        return f"{model} [{cfg.get('tool_format', 'prompt')}, seed {cfg.get('seed', 0)}{tags}] ({self.path.name})"

    @property
    def traits(self) -> dict[str, Any]:
        """What decides whether two runs can be ranked against each other: the task set (its digest, and what
        made it: task sources, seed, limit, chosen ids), the scorer and its version, the tool format, the
        engine and the weights."""
        cfg, model = self.results.config, self.results.model
        return {"tasks": cfg.get("tasks"), "seed": cfg.get("seed", self.results.seed), "limit": cfg.get("limit"),
                "task_ids": list(cfg.get("task_ids") or []), "task_digest": self.results.task_digest,
                "source_versions": {k: v.get("version") for k, v in self.results.sources.items()},
                "scorer": self.results.scorer.get("name"), "scorer_version": self.results.scorer.get("version"),
                "tool_format": cfg.get("tool_format", "prompt"), "backend": cfg.get("backend"),
                "model": model.get("model") or cfg.get("model"),
                "model_sha": model.get("sha256") or model.get("revision"), "tags": list(cfg.get("tags") or [])}

    def scores(self) -> dict[str, float]:
        """Task id -> score over every task the run covered (a failed sample counts 0)."""
        return {task_id: (record.score if record.ok else 0.0) for task_id, record in self.samples.items()}


def resolve(run: str | Path, output_dir: str | Path = "runs") -> Path:
    """A run given as a path, or as a directory name under ``output_dir``."""
    path = Path(run).expanduser()
    for candidate in (path, Path(output_dir).expanduser() / str(run)):
        if RunDir.is_run(candidate):
            return candidate.resolve()
        if candidate.is_file() and candidate.name == RunDir.SAMPLES and RunDir.is_run(candidate.parent):
            return candidate.parent.resolve()
    raise ValueError(f"{run}: not a run directory (no {RunDir.RESULTS} there or under {output_dir})")


def load(run: str | Path, output_dir: str | Path = "runs") -> Run:
    run_dir = RunDir(resolve(run, output_dir))
    return Run(run_dir.path, run_dir.read_results(), run_dir.read_samples())


def list_runs(output_dir: str | Path) -> list[RunResults]:
    """The runs directly under ``output_dir``, newest first; unreadable ones are left out."""
    found = []
    root = Path(output_dir).expanduser()
    if not root.is_dir():
        return []
    for path in root.iterdir():
        if RunDir.is_run(path):
            try:
                found.append(RunDir(path).read_results())
            except (OSError, ValueError):
                continue
    return sorted(found, key=lambda r: (r.started_at, r.run_dir), reverse=True)


def last_prompt(record: SampleRecord) -> str:
    """The user's words the shown answer replies to: the last user message, of the last turn played for a
    multi-turn sample (whose raw answer is that turn's last step)."""
    played = len(record.trajectory.turns) if record.trajectory is not None else 0
    if record.turns and played > 1:
        turn = record.turns[min(played - 1, len(record.turns)) - 1]
        for message in reversed(turn.get("messages") or []):
            if isinstance(message, dict) and message.get("role") == "user":
                return f"(turn {played}) {message.get('content', '')}"
    return next((m.content for m in reversed(record.messages) if m.role == "user"), "")


# --- what was expected and what came ------------------------------------------------------------------------

def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def call_diff(expected: Iterable[ExpectedCall], decoded: Iterable[ToolCall]) -> list[tuple[str, str]]:
    """Lines comparing expected and decoded calls, one argument per line: ``(" ", text)`` for the same,
    ``("-", text)`` expected only, ``("+", text)`` called only. A task expecting no call shows ``(no call)``."""
    def lines_of(calls: list[tuple[str, list[str]]]) -> list[str]:
        out = []
        for name, args in calls:
            out.append(f"{name}(")
            out.extend(f"    {arg}" for arg in args)
            out.append(")")
        return out or ["(no call)"]

    want = lines_of([(c.name, [f"{k}={'|'.join('<omitted>' if o == '' else _value(o) for o in v)}"
                               for k, v in sorted(c.arguments.items())]) for c in expected])
    got = lines_of([(c.name, [_value(v) for v in c.positional] +
                     [f"{k}={_value(v)}" for k, v in sorted(c.arguments.items())]) for c in decoded])
    out = []
    for line in difflib.ndiff(want, got):
        if line.startswith("?"):
            continue
        out.append((line[0], line[2:]))
    return out


# --- comparing runs ------------------------------------------------------------------------------------------

@attrs.frozen
class Paired:
    """Run B against run A on the tasks both answered."""

    n: int
    mean_a: float
    mean_b: float
    diff: float  # mean of B - A
    ci_low: float
    ci_high: float
    p_value: float  # two-sided paired sign-flip permutation test on the per-task differences
    b_better: int  # tasks where B scored higher
    a_better: int

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


def paired_test(diffs: list[float], *, rounds: int = 20000, seed: int = 0) -> float:
    """Two-sided p-value that the mean difference is 0: every sign flip of the non-zero differences (exact up
    to 16 of them) or ``rounds`` random flips with a fixed seed (deterministic). For 0/1 scores this is the
    exact McNemar test on the discordant pairs."""
    nonzero = [d for d in diffs if d != 0]
    if not nonzero:
        return 1.0
    observed = abs(sum(nonzero)) - 1e-12
    if len(nonzero) <= 16:
        hits = sum(1 for signs in itertools.product((1, -1), repeat=len(nonzero))
                   if abs(sum(s * d for s, d in zip(signs, nonzero))) >= observed)
        return hits / 2 ** len(nonzero)
    rng = random.Random(seed)
    hits = sum(1 for _ in range(rounds) if abs(sum(d if rng.random() < 0.5 else -d for d in nonzero)) >= observed)
    return (hits + 1) / (rounds + 1)


def compare_pair(a: dict[str, float], b: dict[str, float]) -> Paired:
    shared = sorted(set(a) & set(b))
    diffs = [b[t] - a[t] for t in shared]
    n = len(shared)
    if n == 0:
        return Paired(0, 0.0, 0.0, 0.0, -1.0, 1.0, 1.0, 0, 0)
    mean = statistics.fmean(diffs)
    half = 1.959964 * statistics.stdev(diffs) / math.sqrt(n) if n > 1 else 1.0
    return Paired(n, round(statistics.fmean(a[t] for t in shared), 6), round(statistics.fmean(b[t] for t in shared), 6),
                  round(mean, 6), round(max(-1.0, mean - half), 6), round(min(1.0, mean + half), 6),
                  round(paired_test(diffs), 6), sum(d > 0 for d in diffs), sum(d < 0 for d in diffs))


def per_category(run: Run) -> dict[str, tuple[int, float, float, float]]:
    """Category -> (n, mean, ci_low, ci_high) over the run's samples."""
    by: dict[str, list[float]] = {}
    for record in run.samples.values():
        by.setdefault(record.category or "all", []).append(record.score if record.ok else 0.0)
    return {cat: (len(v), round(statistics.fmean(v), 6), *confidence_interval(v)) for cat, v in sorted(by.items())}


def task_set_differences(a: Run, b: Run) -> list[str]:
    """Why ``b`` was not asked the same questions as ``a`` (empty: the same task set, by digest)."""
    ta, tb = a.traits, b.traits
    if ta["task_digest"] and ta["task_digest"] == tb["task_digest"]:
        return []
    why = []
    for key, words in (("tasks", "task source"), ("source_versions", "task source version"), ("seed", "seed"),
                       ("limit", "--limit"), ("task_ids", "--task-id")):
        if ta[key] != tb[key]:
            why.append(f"different {words} ({_shown(ta[key])} vs {_shown(tb[key])})")
    if not why and ta["task_digest"] != tb["task_digest"]:
        why.append("different task data (the task digests differ)")
    return why


def scoring_differences(a: Run, b: Run) -> list[str]:
    """Why ``b``'s scores do not mean what ``a``'s do: another scorer or scorer version."""
    ta, tb = a.traits, b.traits
    if (ta["scorer"], ta["scorer_version"]) != (tb["scorer"], tb["scorer_version"]):
        return [f"different scorer ({ta['scorer']} {ta['scorer_version']} vs {tb['scorer']} {tb['scorer_version']})"]
    return []


def _shown(value: Any) -> str:
    if value is None:
        return "all"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False) if value else "none"
    return str(value)


def comparability(runs: list[Run]) -> list[str]:
    """One warning per run that cannot be ranked against the first: its task set or scoring differs, and why.
    Empty: every run answered the same tasks and was scored the same way."""
    warnings = []
    for run in runs[1:]:
        why = task_set_differences(runs[0], run) + scoring_differences(runs[0], run)
        if why:
            warnings.append(f"{run.label} is not comparable with {runs[0].label}: {'; '.join(why)}")
    return warnings


def flipped(a: Run, b: Run) -> list[dict[str, Any]]:
    """The shared tasks that one run passed and the other did not, with each run's expected-vs-called diff."""
    out = []
    for task_id in sorted(set(a.samples) & set(b.samples)):
        ra, rb = a.samples[task_id], b.samples[task_id]
        pa, pb = ra.ok and ra.passed, rb.ok and rb.passed
        if pa == pb:
            continue
        out.append({"task_id": task_id, "category": rb.category, "a_passed": pa, "b_passed": pb,
                    "a_score": ra.score if ra.ok else 0.0, "b_score": rb.score if rb.ok else 0.0,
                    "a_error": ra.error_type, "b_error": rb.error_type,
                    "a_diff": call_diff(ra.expected_calls, ra.decoded_calls),
                    "b_diff": call_diff(rb.expected_calls, rb.decoded_calls)})
    return out


def error_counts(run: Run) -> dict[str, int]:
    """Error type -> samples, most frequent first (a failed request counts under its error type or 'failed')."""
    counts: dict[str, int] = {}
    for record in run.samples.values():
        if not (record.ok and record.passed):
            key = record.error_type or ("failed" if not record.ok else "wrong")
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def comparison(runs: list[Run]) -> dict[str, Any]:
    """Per category and overall, each run's mean with its interval; each later run paired with the first."""
    categories = sorted({cat for run in runs for cat in per_category(run)})
    table = []
    for cat in [*categories, "all"]:
        row: dict[str, Any] = {"category": cat, "runs": []}
        for run in runs:
            scores = [s for t, s in run.scores().items() if cat == "all" or (run.samples[t].category or "all") == cat]
            low, high = confidence_interval(scores)
            row["runs"].append({"n": len(scores), "mean": round(statistics.fmean(scores), 6) if scores else None,
                                "ci_low": low, "ci_high": high})
        table.append(row)
    base = runs[0].scores()
    pairs = []
    for run in runs[1:]:
        # tasks with one id are the same question only when the sources, their versions and the seed are the
        # same (a limit or --task-id only takes fewer of them); otherwise nothing is paired
        ta, tb = runs[0].traits, run.traits
        same_questions = all(ta[k] == tb[k] for k in ("tasks", "source_versions", "seed"))
        paired_scores = run.scores() if same_questions else {}
        pairs.append({"a": runs[0].label, "b": run.label, **compare_pair(base, paired_scores).to_json(),
                      "task_set_differences": task_set_differences(runs[0], run),
                      "scoring_differences": scoring_differences(runs[0], run),
                      "flipped": flipped(runs[0], run) if same_questions else []})
    warnings = comparability(runs)
    return {"runs": [{"label": r.label, "run_dir": str(r.path), "tasks": r.results.config.get("tasks"),
                      "model": r.results.model.get("model"), "scorer": r.results.scorer.get("name"),
                      "mean_score": r.results.mean_score, "status": r.results.status, "traits": r.traits,
                      "error_counts": error_counts(r)} for r in runs],
            "categories": table, "paired": pairs, "comparable": not warnings, "warnings": warnings}
