"""A run's results for people: the table (or JSON, Markdown, CSV), the notes under it, and the exit code.

Exit codes of ``bitagent evaluate`` (also in its ``--help``): see :data:`EXIT_CODES`.
"""

from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # `bitagent --help` reads EXIT_CODES from here: keep it light
    from bitagent_core.records import RunResults

EXIT_OK = 0  # every task scored (or failures within --max-failures)
EXIT_ERROR = 1  # bad input before the run: unknown plugin, bad option, unreadable tasks, --resume conflict
EXIT_USAGE = 2  # a flag click could not parse
EXIT_STARTUP = 3  # the backend could not start: model, server, --base-url
EXIT_FAILURES = 4  # more samples failed than --max-failures allows; all failing always counts
EXIT_IO = 5  # results could not be written (full disk...): finished samples are kept
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM: finished samples are kept, --resume continues

EXIT_CODES = {
    EXIT_OK: "every task was scored (failures within --max-failures)",
    EXIT_ERROR: "error before the run (unknown plugin, bad option or tasks, --resume conflict)",
    EXIT_USAGE: "bad command line",
    EXIT_STARTUP: "the backend could not start (model, server, --base-url); the run directory says failed",
    EXIT_FAILURES: "more samples failed than --max-failures allows (all failed: always)",
    EXIT_IO: "a file could not be written (disk full...); finished samples are kept",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C, SIGTERM); continue with --resume",
}

FORMATS = ("table", "json", "markdown", "csv")


def parse_max_failures(value: str | None) -> tuple[int | None, float | None]:
    """``"5"`` -> (5, None); ``"10%"`` -> (None, 0.10); None -> (None, None): no limit but all failing."""
    if value is None or value == "":
        return None, None
    text = str(value).strip()
    try:
        if text.endswith("%"):
            share = float(text[:-1]) / 100
            if not 0 <= share <= 1:
                raise ValueError
            return None, share
        count = int(text)
        if count < 0:
            raise ValueError
        return count, None
    except ValueError:
        raise ValueError(f"--max-failures takes a count (5) or a percentage (10%), not {value!r}") from None


def too_many_failures(results: RunResults, max_failures: str | None) -> bool:
    count, share = parse_max_failures(max_failures)
    failed, total = results.n_failed, results.n_tasks
    if total and failed >= total:
        return True
    if count is not None:
        return failed > count
    if share is not None:
        return total > 0 and failed / total > share
    return False


def notes(results: RunResults) -> list[str]:
    """Lines under the table: the limit sampling a benchmark, failures and their top errors, the run's error."""
    out = []
    limit = results.config.get("limit")
    for spec, counts in results.sources.items():
        taken, available = counts.get("taken"), counts.get("available")
        if available is not None and taken is not None and available > taken:
            out.append(
                f"note: --limit {limit} took {taken} of {spec}'s {available} tasks; the score covers those "
                "only (--limit all runs them all)"
            )
    if results.n_failed:
        out.append(f"{results.n_failed} of {results.n_tasks} samples failed (scored 0); top errors:")
        out.extend(f"  {count} x {message}" for message, count in list(results.top_errors.items())[:5])
    if results.error:
        out.append(f"error: {results.error}")
    return out


def _rows(results: RunResults) -> list[dict[str, Any]]:
    rows = [
        {
            "category": cat,
            "tasks": s.n,
            "passed": s.passed,
            "mean_score": s.mean_score,
            "ci_low": s.ci_low,
            "ci_high": s.ci_high,
        }
        for cat, s in results.per_category.items()
    ]
    rows.append(
        {
            "category": "all",
            "tasks": results.n_tasks,
            "passed": results.n_passed,
            "mean_score": results.mean_score,
            "ci_low": results.mean_score_ci[0],
            "ci_high": results.mean_score_ci[1],
        }
    )
    return rows


def pass_k_lines(results: RunResults) -> list[str]:
    """``--repeats k``: pass@k and pass^k per category, one line each (empty for a run without repeats)."""
    data = results.extra.get("pass_k")
    if not isinstance(data, dict) or not isinstance(data.get("per_category"), dict):
        return []
    k = int(data.get("k") or 1)
    rows = {**data["per_category"], "all": data.get("all") or {}}
    lines = [f"repeats: each task ran {k} times; pass@k (any of k passes) and pass^k (all k pass):"]
    for category, figures in rows.items():
        cells = "  ".join(
            f"pass@{i} {figures.get(f'pass@{i}', 0.0):.3f}  pass^{i} {figures.get(f'pass^{i}', 0.0):.3f}"
            for i in sorted({1, k})
        )
        lines.append(f"  {category}: {cells}")
    return lines


def render_results(results: RunResults, fmt: str = "table") -> str:
    """The results as text in ``fmt`` (one of :data:`FORMATS`); ``table`` is for a terminal (rich)."""
    if fmt == "json":
        return json.dumps(results.to_json(), indent=2, ensure_ascii=False, default=str)
    rows = _rows(results)
    if fmt == "csv":
        # each row says which run and model it is: CSV files of several runs are concatenated and compared
        run = str(results.run_dir).rstrip("/").rsplit("/", 1)[-1]
        model = str(results.model.get("model") or results.config.get("model") or "default")
        rows = [{"run": run, "model": model, **row} for row in rows]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue().rstrip("\n")
    if fmt == "markdown":
        lines = [
            f"**{results.title()}**",
            "",
            "| category | tasks | passed | mean score | 95% CI |",
            "|---|---:|---:|---:|---|",
        ]
        lines += [
            f"| {r['category']} | {r['tasks']} | {r['passed']} | {r['mean_score']:.3f} | "
            f"{r['ci_low']:.3f}-{r['ci_high']:.3f} |"
            for r in rows
        ]
        return "\n".join(lines + [""] + pass_k_lines(results) + notes(results))
    if fmt != "table":
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    from rich.console import Console
    from rich.table import Table

    table = Table(title=results.title())
    for name in ("category", "tasks", "passed", "mean score", "95% CI"):
        table.add_column(name, justify="left" if name == "category" else "right")
    for r in rows:
        bold = "[bold]" if r["category"] == "all" else ""
        table.add_row(
            bold + r["category"],
            str(r["tasks"]),
            str(r["passed"]),
            f"{bold}{r['mean_score']:.3f}",
            f"{r['ci_low']:.3f}-{r['ci_high']:.3f}",
        )
    console = Console(file=io.StringIO(), width=120, force_terminal=False)
    console.print(table)
    console.print(
        f"model: {results.model.get('model', '?')}  failed: {results.n_failed}  "
        f"tokens: {results.prompt_tokens}+{results.completion_tokens}  "
        f"mean latency: {results.mean_latency_s if results.mean_latency_s is not None else '-'} s"
    )
    for line in pass_k_lines(results) + notes(results):
        console.print(line, markup=False, highlight=False)
    console.print(f"run directory: {results.run_dir}", markup=False, highlight=False)
    return str(console.file.getvalue()).rstrip("\n")  # type: ignore[attr-defined]


render = render_results  # the name the CLI uses
