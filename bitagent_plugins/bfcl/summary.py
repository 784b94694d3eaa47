"""``bitagent bfcl-summary RUN_DIR...``: per-category accuracy and BFCL's leaderboard aggregates.

The aggregates follow BFCL's ``eval_runner_helper`` (bfcl-eval 2026.3.23):

* non-live = unweighted mean of simple (itself the unweighted mean of simple_python, simple_java,
  simple_javascript), multiple, parallel, parallel_multiple;
* live = mean of live_simple, live_multiple, live_parallel, live_parallel_multiple weighted by entry counts;
* irrelevance = unweighted mean of irrelevance and live_irrelevance; relevance = live_relevance;
* multi-turn = unweighted mean of the four multi-turn categories;
* agentic = unweighted mean of web search (base, no_snippet) and memory (kv, vector, rec_sum);
* overall = 10 % non-live + 10 % live + 10 % irrelevance + 30 % multi-turn + 40 % agentic.

As BFCL does, a category that was not evaluated counts 0 in every aggregate (with its BFCL entry count where
a weighting needs one); ``overall`` is that number. ``overall_served`` is the same weighting over only the
sections that have at least one evaluated category, each from its evaluated categories: what the overall
would be if the rest scored like what was run. Categories bitagent does not serve (simple_java,
simple_javascript, the agentic ones) are listed under ``not_served``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from bitagent_core import RunDir

#: BFCL v4 entry counts (for the count-weighted live aggregate when a category was not run)
COUNTS = {
    "simple_python": 400, "simple_java": 100, "simple_javascript": 50, "multiple": 200, "parallel": 200,
    "parallel_multiple": 200, "irrelevance": 240, "live_simple": 258, "live_multiple": 1053, "live_parallel": 16,
    "live_parallel_multiple": 24, "live_irrelevance": 884, "live_relevance": 16, "multi_turn_base": 200,
    "multi_turn_miss_func": 200, "multi_turn_miss_param": 200, "multi_turn_long_context": 200,
    "web_search_base": 100, "web_search_no_snippet": 100, "memory_kv": 155, "memory_vector": 155,
    "memory_rec_sum": 155,
}
NOT_SERVED = ("simple_java", "simple_javascript", "web_search_base", "web_search_no_snippet", "memory_kv",
              "memory_vector", "memory_rec_sum")
WEIGHTS = {"non_live": 10, "live": 10, "irrelevance": 10, "multi_turn": 30, "agentic": 40}


def _read_run(run_dir: Path) -> dict[str, dict[str, Any]]:
    """category -> {n, passed} of one run: from its samples (a missing or failed sample counts as failed)."""
    run = RunDir(run_dir)
    try:
        results = run.read_results()
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"{run_dir}: not a run directory ({RunDir.RESULTS}: {exc})") from None
    per = {category: {"n": stats.n, "passed": stats.passed}
           for category, stats in results.per_category.items() if category in COUNTS}
    if run.has_samples and per:  # recount from the samples, the record of truth (last line per task wins)
        latest = run.read_samples()
        for category in per:
            per[category]["passed"] = sum(1 for r in latest.values() if r.category == category and r.ok and r.passed)
    return per


def _acc(per: dict[str, dict[str, Any]], category: str) -> tuple[float, int, bool]:
    """(accuracy, count, evaluated) as BFCL's ``get_category_score``: not evaluated -> 0 over its BFCL count."""
    if category in per and per[category]["n"]:
        stats = per[category]
        return stats["passed"] / stats["n"], stats["n"], True
    return 0.0, COUNTS[category], False


def _unweighted(parts: list[tuple[float, int, bool]]) -> tuple[float, int, bool]:
    return sum(p[0] for p in parts) / len(parts), sum(p[1] for p in parts), any(p[2] for p in parts)


def _weighted(parts: list[tuple[float, int, bool]]) -> tuple[float, int, bool]:
    total = sum(p[1] for p in parts)
    return (sum(p[0] * p[1] for p in parts) / total if total else 0.0), total, any(p[2] for p in parts)


def _sections(per: dict[str, dict[str, Any]], served_only: bool) -> dict[str, tuple[float, int, bool]]:
    def acc(category: str) -> tuple[float, int, bool]:
        return _acc(per, category)

    def unweighted(names: list[Any]) -> tuple[float, int, bool]:
        parts = [acc(n) if isinstance(n, str) else n for n in names]
        if served_only:
            parts = [p for p in parts if p[2]] or parts
        return _unweighted(parts)

    def weighted(names: list[str]) -> tuple[float, int, bool]:
        parts = [acc(n) for n in names]
        if served_only:
            parts = [p for p in parts if p[2]] or parts
        return _weighted(parts)

    simple = unweighted(["simple_python", "simple_java", "simple_javascript"])
    return {
        "non_live": unweighted([simple, "multiple", "parallel", "parallel_multiple"]),
        "live": weighted(["live_simple", "live_multiple", "live_parallel", "live_parallel_multiple"]),
        "irrelevance": unweighted(["irrelevance", "live_irrelevance"]),
        "relevance": acc("live_relevance"),
        "multi_turn": unweighted(["multi_turn_base", "multi_turn_miss_func", "multi_turn_miss_param",
                                  "multi_turn_long_context"]),
        "agentic": unweighted([unweighted(["web_search_base", "web_search_no_snippet"]),
                               unweighted(["memory_kv", "memory_vector", "memory_rec_sum"])]),
    }


def summarize(run_dirs: list[Path]) -> dict[str, Any]:
    per: dict[str, dict[str, Any]] = {}
    sources: dict[str, str] = {}
    notes = []
    for run_dir in run_dirs:
        for category, stats in _read_run(run_dir).items():
            if category in per:
                notes.append(f"{category}: {run_dir} replaces {sources[category]}")
            per[category] = stats
            sources[category] = str(run_dir)
    if not per:
        raise click.ClickException("no BFCL category in these runs (bfcl-summary reads runs of the bfcl task source)")
    sections = _sections(per, served_only=False)
    overall = sum(sections[name][0] * weight for name, weight in WEIGHTS.items()) / sum(WEIGHTS.values())
    served = _sections(per, served_only=True)
    run_sections = {name: w for name, w in WEIGHTS.items() if served[name][2]}
    overall_served = (sum(served[n][0] * w for n, w in run_sections.items()) / sum(run_sections.values())
                      if run_sections else None)
    return {
        "categories": {c: {"n": s["n"], "passed": s["passed"], "accuracy": round(s["passed"] / s["n"], 6)
                           if s["n"] else 0.0, "run_dir": sources[c]} for c, s in sorted(per.items())},
        "aggregates": {name: {"accuracy": round(value[0], 6), "complete": _complete(name, per)}
                       for name, value in sections.items()},
        "overall": round(overall, 6),
        "overall_served": round(overall_served, 6) if overall_served is not None else None,
        "weights": dict(WEIGHTS),
        "not_evaluated": sorted(c for c in COUNTS if c not in per and c not in NOT_SERVED),
        "not_served": list(NOT_SERVED),
        "notes": notes,
    }


_SECTION_CATEGORIES = {
    "non_live": ("simple_python", "simple_java", "simple_javascript", "multiple", "parallel", "parallel_multiple"),
    "live": ("live_simple", "live_multiple", "live_parallel", "live_parallel_multiple"),
    "irrelevance": ("irrelevance", "live_irrelevance"),
    "relevance": ("live_relevance",),
    "multi_turn": ("multi_turn_base", "multi_turn_miss_func", "multi_turn_miss_param", "multi_turn_long_context"),
    "agentic": ("web_search_base", "web_search_no_snippet", "memory_kv", "memory_vector", "memory_rec_sum"),
}


def _complete(section: str, per: dict[str, dict[str, Any]]) -> bool:
    return all(c in per for c in _SECTION_CATEGORIES[section])


@click.command("bfcl-summary")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def bfcl_summary(run_dirs: tuple[Path, ...], as_json: bool) -> None:
    """Per-category accuracy and BFCL's leaderboard aggregates over BFCL runs (later runs win a category)."""
    summary = summarize(list(run_dirs))
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="BFCL categories")
    for name, justify in (("category", "left"), ("n", "right"), ("passed", "right"), ("accuracy", "right")):
        table.add_column(name, justify="left" if justify == "left" else "right")
    for category, stats in summary["categories"].items():
        table.add_row(category, str(stats["n"]), str(stats["passed"]), f"{100 * stats['accuracy']:.2f}%")
    aggregates = Table(title="BFCL aggregates (not evaluated = 0, as BFCL counts)")
    for name, justify in (("aggregate", "left"), ("weight", "right"), ("accuracy", "right"), ("complete", "left")):
        aggregates.add_column(name, justify="left" if justify == "left" else "right")
    for name, value in summary["aggregates"].items():
        aggregates.add_row(name, f"{WEIGHTS[name]}%" if name in WEIGHTS else "-", f"{100 * value['accuracy']:.2f}%",
                           "yes" if value["complete"] else "no")
    aggregates.add_row("overall", "100%", f"{100 * summary['overall']:.2f}%", "")
    if summary["overall_served"] is not None:
        aggregates.add_row("overall (evaluated sections only)", "", f"{100 * summary['overall_served']:.2f}%", "")
    console = Console()
    console.print(table)
    console.print(aggregates)
    console.print(f"not served by bitagent (count 0 in BFCL's overall): {', '.join(summary['not_served'])}")
    if summary["not_evaluated"]:
        console.print(f"not evaluated in these runs (count 0): {', '.join(summary['not_evaluated'])}")
    for note in summary["notes"]:
        console.print(f"note: {note}")
