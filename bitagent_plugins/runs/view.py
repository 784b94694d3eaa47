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
from bitagent_core import RunResults, SampleRecord, confidence_interval


@attrs.frozen
class Run:
    """A run directory read back: its results and its samples (the last record per task)."""

    path: Path
    results: RunResults
    samples: dict[str, SampleRecord]

    @property
    def label(self) -> str:
        """What a person calls this run: the model, and the directory name."""
        model = str(self.results.model.get("model") or self.results.config.get("model") or "default")
        if model.startswith(("/", ".", "~")):  # a local file: its name says enough
            model = Path(model).name
        return f"{model} ({self.path.name})"

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
        pairs.append({"a": runs[0].label, "b": run.label, **compare_pair(base, run.scores()).to_json()})
    return {"runs": [{"label": r.label, "run_dir": str(r.path), "tasks": r.results.config.get("tasks"),
                      "model": r.results.model.get("model"), "scorer": r.results.scorer.get("name"),
                      "mean_score": r.results.mean_score, "status": r.results.status} for r in runs],
            "categories": table, "paired": pairs}
