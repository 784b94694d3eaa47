"""``bitagent bfcl-summary``: per-category accuracy and BFCL's leaderboard numbers, from runs or from a table of
accuracies, and BFCL's six leaderboard CSVs.

The numbers are computed as bfcl-eval 2026.3.23 computes them (``eval_checker/eval_runner_helper.py``,
``generate_leaderboard_csv``), line by line:

* a category that was not evaluated counts 0 at its full BFCL size and shows ``N/A``; a group holding one
  shows ``N/A`` too, except the section totals, which show the number with the 0 in it;
* simple = unweighted mean of simple_python, simple_java, simple_javascript; non-live = unweighted mean of
  simple, multiple, parallel, parallel_multiple;
* live = mean of live_simple, live_multiple, live_parallel, live_parallel_multiple weighted by their counts;
* irrelevance = unweighted mean of irrelevance and live_irrelevance; relevance = live_relevance, shown only;
* multi-turn = unweighted mean of its four categories; agentic = unweighted mean of web search (base,
  no_snippet) and memory (kv, vector, rec_sum), each itself an unweighted mean;
* overall = 10 % non-live + 10 % live + 10 % irrelevance + 30 % multi-turn + 40 % agentic;
* format sensitivity (max delta and standard deviation, in percentage points) is shown, in no score.

``overall_served`` is bitagent's own extra: the same weighting over only the sections with at least one
evaluated category, each from its evaluated categories. A run counts only if its recorded task source
(``results.json``) is ``bfcl``; other runs are refused with one line.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click

from bitagent_core import RunDir, RunResults

#: BFCL v4 entry counts (a category not evaluated counts 0 at this size)
COUNTS = {
    "simple_python": 400,
    "simple_java": 100,
    "simple_javascript": 50,
    "multiple": 200,
    "parallel": 200,
    "parallel_multiple": 200,
    "irrelevance": 240,
    "live_simple": 258,
    "live_multiple": 1053,
    "live_parallel": 16,
    "live_parallel_multiple": 24,
    "live_irrelevance": 884,
    "live_relevance": 16,
    "multi_turn_base": 200,
    "multi_turn_miss_func": 200,
    "multi_turn_miss_param": 200,
    "multi_turn_long_context": 200,
    "web_search_base": 100,
    "web_search_no_snippet": 100,
    "memory_kv": 155,
    "memory_vector": 155,
    "memory_rec_sum": 155,
}
NOT_SERVED = ("web_search_base", "web_search_no_snippet", "memory_kv", "memory_vector", "memory_rec_sum")
WEIGHTS = {"non_live": 10, "live": 10, "irrelevance": 10, "multi_turn": 30, "agentic": 40}
IRRELEVANCE = ("irrelevance", "live_irrelevance")
NA = "N/A"

# BFCL's column headers (constants/column_headers.py)
COLUMNS_NON_LIVE = [
    "Rank",
    "Model",
    "Non-Live Overall Acc",
    "AST Summary",
    "Simple AST",
    "Python Simple AST",
    "Java Simple AST",
    "JavaScript Simple AST",
    "Multiple AST",
    "Parallel AST",
    "Parallel Multiple AST",
    "Irrelevance Detection",
]
COLUMNS_LIVE = [
    "Rank",
    "Model",
    "Live Overall Acc",
    "AST Summary",
    "Python Simple AST",
    "Python Multiple AST",
    "Python Parallel AST",
    "Python Parallel Multiple AST",
    "Irrelevance Detection",
    "Relevance Detection",
]
COLUMNS_MULTI_TURN = ["Rank", "Model", "Multi Turn Overall Acc", "Base", "Miss Func", "Miss Param", "Long Context"]
COLUMNS_AGENTIC = [
    "Rank",
    "Model",
    "Agentic Overall Acc",
    "Web Search Summary",
    "Web Search Base",
    "Web Search No Snippet",
    "Memory Summary",
    "Memory KV",
    "Memory Vector",
    "Memory Recursive Summarization",
]
COLUMNS_FORMAT_SENS_PREFIX = ["Rank", "Model", "Format Sensitivity Max Delta", "Format Sensitivity Standard Deviation"]
COLUMNS_OVERALL = [
    "Rank",
    "Overall Acc",
    "Model",
    "Model Link",
    "Total Cost ($)",
    "Latency Mean (s)",
    "Latency Standard Deviation (s)",
    "Latency 95th Percentile (s)",
    "Non-Live AST Acc",
    "Non-Live Simple AST",
    "Non-Live Multiple AST",
    "Non-Live Parallel AST",
    "Non-Live Parallel Multiple AST",
    "Live Acc",
    "Live Simple AST",
    "Live Multiple AST",
    "Live Parallel AST",
    "Live Parallel Multiple AST",
    "Multi Turn Acc",
    "Multi Turn Base",
    "Multi Turn Miss Func",
    "Multi Turn Miss Param",
    "Multi Turn Long Context",
    "Web Search Acc",
    "Web Search Base",
    "Web Search No Snippet",
    "Memory Acc",
    "Memory KV",
    "Memory Vector",
    "Memory Recursive Summarization",
    "Relevance Detection",
    "Irrelevance Detection",
    "Format Sensitivity Max Delta",
    "Format Sensitivity Standard Deviation",
    "Organization",
    "License",
]
CSV_FILES = (
    "data_overall.csv",
    "data_non_live.csv",
    "data_live.csv",
    "data_multi_turn.csv",
    "data_agentic.csv",
    "data_format_sensitivity.csv",
)


def format_sensitivity_configs() -> list[str]:
    """BFCL's 26 prompt configurations (``utils.get_all_format_sensitivity_configs``), in its order."""
    configs = [
        f"ret_fmt={ret}&tool_call_tag={tag}&func_doc_fmt={doc}&prompt_fmt=plaintext&style=classic"
        for ret in ("python", "json", "verbose_xml", "concise_xml")
        for tag in ("True", "False")
        for doc in ("python", "xml", "json")
    ]
    configs.append("ret_fmt=python&tool_call_tag=False&func_doc_fmt=json&prompt_fmt=markdown&style=classic")
    configs.append("ret_fmt=python&tool_call_tag=False&func_doc_fmt=json&prompt_fmt=plaintext&style=experimental")
    return configs


# --- BFCL's arithmetic -----------------------------------------------------------------------------------------

Acc = dict[str, Any]  # {"accuracy": float, "total_count": int, "display_accuracy": float | "N/A"}


def _category(scores: dict[str, dict[str, Any]], category: str) -> Acc:
    if category in scores:
        score = dict(scores[category])
        score["display_accuracy"] = score["accuracy"]
        return score
    return {"accuracy": 0, "total_count": COUNTS[category], "display_accuracy": NA}


def _shown(result: Acc, parts: list[Acc], na_if_missing: bool) -> Acc:
    has_na = any(p["display_accuracy"] == NA for p in parts)
    result["display_accuracy"] = NA if has_na and na_if_missing else result["accuracy"]
    return result


# the sums are plain loops in BFCL's order: sum() of floats rounds differently on Python >= 3.12
def _weighted(parts: list[Acc], na_if_missing: bool = True) -> Acc:
    total, weighted = 0, 0.0
    for part in parts:
        total += part["total_count"]
        weighted += part["accuracy"] * part["total_count"]
    return _shown({"accuracy": weighted / total if total else 0.0, "total_count": total}, parts, na_if_missing)


def _unweighted(parts: list[Acc], na_if_missing: bool = True) -> Acc:
    total, accuracy = 0, 0.0
    for part in parts:
        total += part["total_count"]
        accuracy += part["accuracy"]
    return _shown({"accuracy": accuracy / len(parts), "total_count": total}, parts, na_if_missing)


def _percentage_weighted(parts: list[Acc], weights: list[int]) -> Acc:
    weight_sum = sum(weights)
    total, accuracy = 0, 0.0
    for part, weight in zip(parts, [w / weight_sum for w in weights]):
        total += part["total_count"]
        accuracy += part["accuracy"] * weight
    return _shown({"accuracy": accuracy, "total_count": total}, parts, False)


def leaderboard(
    scores: dict[str, dict[str, Any]],
    format_sensitivity: dict[str, Any] | None = None,
    model: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One model's leaderboard numbers from ``{category: {"accuracy", "total_count"}}``: every group as
    ``{accuracy, total_count, display_accuracy}`` and the six CSV rows (numbers not yet formatted)."""
    model = model or {}
    name = model.get("name", "bitagent")
    c = {category: _category(scores, category) for category in COUNTS}
    simple = _unweighted([c["simple_python"], c["simple_java"], c["simple_javascript"]])
    ast_parts = [simple, c["multiple"], c["parallel"], c["parallel_multiple"]]
    summary_non_live, non_live = _unweighted(ast_parts), _unweighted(ast_parts, False)
    live_parts = [c["live_simple"], c["live_multiple"], c["live_parallel"], c["live_parallel_multiple"]]
    summary_live, live = _weighted(live_parts), _weighted(live_parts, False)
    turns = [c["multi_turn_base"], c["multi_turn_miss_func"], c["multi_turn_miss_param"], c["multi_turn_long_context"]]
    multi_turn = _unweighted(turns, False)
    web_search = _unweighted([c["web_search_base"], c["web_search_no_snippet"]])
    memory = _unweighted([c["memory_kv"], c["memory_vector"], c["memory_rec_sum"]])
    agentic = _unweighted([web_search, memory], False)
    irrelevance = _unweighted([c["irrelevance"], c["live_irrelevance"]])
    relevance = c["live_relevance"]
    fs = format_sensitivity or {}
    max_delta, std = fs.get("accuracy_max_delta", NA), fs.get("accuracy_std", NA)
    overall = _percentage_weighted([non_live, live, irrelevance, multi_turn, agentic], [10, 10, 10, 30, 40])

    def d(acc: Acc) -> Any:
        return acc["display_accuracy"]

    rows = {
        "data_non_live.csv": [
            NA,
            name,
            d(non_live),
            d(summary_non_live),
            d(simple),
            d(c["simple_python"]),
            d(c["simple_java"]),
            d(c["simple_javascript"]),
            d(c["multiple"]),
            d(c["parallel"]),
            d(c["parallel_multiple"]),
            d(c["irrelevance"]),
        ],
        "data_live.csv": [
            NA,
            name,
            d(live),
            d(summary_live),
            *[d(p) for p in live_parts],
            d(c["live_irrelevance"]),
            d(relevance),
        ],
        "data_multi_turn.csv": [NA, name, d(multi_turn), *[d(p) for p in turns]],
        "data_agentic.csv": [
            NA,
            name,
            d(agentic),
            d(web_search),
            d(c["web_search_base"]),
            d(c["web_search_no_snippet"]),
            d(memory),
            d(c["memory_kv"]),
            d(c["memory_vector"]),
            d(c["memory_rec_sum"]),
        ],
        "data_format_sensitivity.csv": [
            NA,
            name,
            max_delta,
            std,
            *[(fs.get(cfg) or {}).get("accuracy", NA) for cfg in format_sensitivity_configs()],
        ],
        "data_overall.csv": [
            NA,
            d(overall),
            name,
            model.get("link", NA),
            NA,
            NA,
            NA,
            NA,
            d(summary_non_live),
            d(simple),
            d(c["multiple"]),
            d(c["parallel"]),
            d(c["parallel_multiple"]),
            d(live),
            *[d(p) for p in live_parts],
            d(multi_turn),
            *[d(p) for p in turns],
            d(web_search),
            d(c["web_search_base"]),
            d(c["web_search_no_snippet"]),
            d(memory),
            d(c["memory_kv"]),
            d(c["memory_vector"]),
            d(c["memory_rec_sum"]),
            d(relevance),
            d(irrelevance),
            max_delta,
            std,
            model.get("organization", NA),
            model.get("license", NA),
        ],
    }
    groups = {
        "simple": simple,
        "non_live": non_live,
        "live": live,
        "irrelevance": irrelevance,
        "relevance": relevance,
        "multi_turn": multi_turn,
        "web_search": web_search,
        "memory": memory,
        "agentic": agentic,
        "overall": overall,
    }
    return {"groups": groups, "rows": rows, "format_sensitivity": {"max_delta": max_delta, "std": std}}


#: per CSV: (header, the column it sorts by, the numeric columns written as they are, not as percentages)
_CSV_LAYOUT: dict[str, tuple[list[str], int, tuple[int, ...]]] = {
    "data_non_live.csv": (COLUMNS_NON_LIVE, 2, ()),
    "data_live.csv": (COLUMNS_LIVE, 2, ()),
    "data_multi_turn.csv": (COLUMNS_MULTI_TURN, 2, ()),
    "data_agentic.csv": (COLUMNS_AGENTIC, 2, ()),
    "data_format_sensitivity.csv": (
        COLUMNS_FORMAT_SENS_PREFIX + [f"Config {cfg}" for cfg in format_sensitivity_configs()],
        2,
        (2, 3),
    ),
    "data_overall.csv": (COLUMNS_OVERALL, 1, (4, 5, 6, 7, 32, 33)),
}


def csv_text(name: str, rows: list[list[Any]]) -> str:
    """One leaderboard CSV as BFCL's ``write_score_csv_file`` writes it: rows sorted by the file's score
    column (``N/A`` last), ranked from 1, numbers as ``54.05%`` (a few columns as they are), no quoting, no
    newline after the last line."""
    header, sort_column, as_is = _CSV_LAYOUT[name]
    data = [list(row) for row in rows]
    data.sort(key=lambda row: row[sort_column] if row[sort_column] != NA else -1, reverse=True)
    for rank, row in enumerate(data, 1):
        row[0] = str(rank)
        for j in range(1, len(row)):
            if type(row[j]) is str:
                continue
            row[j] = str(row[j]) if j in as_is else f"{row[j] * 100:.2f}%"
    return "\n".join(",".join(row) for row in [header, *data])


def write_csvs(out_dir: Path, board: dict[str, Any]) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in CSV_FILES:
        path = out_dir / name
        path.write_text(csv_text(name, [board["rows"][name]]), encoding="utf-8")
        written.append(path)
    return written


# --- runs and accuracy tables --------------------------------------------------------------------------------


class NotBfclRun(click.ClickException):
    pass


def _task_sources(results: RunResults) -> list[str] | None:
    """The task source names a run recorded (None when it recorded none: an older layout)."""
    specs = list(results.sources)
    if not specs:
        tasks = results.config.get("tasks")
        if not isinstance(tasks, str) or not tasks:
            return None
        specs = [tasks]
    return [spec.partition(":")[0] for spec in specs]


def _read_run(run_dir: Path) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """category -> {n, passed, unparseable_calls} of one BFCL run, from its samples (a missing or failed
    sample counts as failed), and what is odd about it."""
    run = RunDir(run_dir)
    try:
        results = run.read_results()
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"{run_dir}: not a run directory ({RunDir.RESULTS}: {exc})") from None
    sources = _task_sources(results)
    if sources is not None and "bfcl" not in sources:
        raise NotBfclRun(
            f"{run_dir}: not a BFCL run (its task source is {', '.join(sorted(set(sources)))}; "
            "bfcl-summary reads runs of the bfcl task source)"
        )
    only_bfcl = sources is None or set(sources) == {"bfcl"}
    per: dict[str, dict[str, Any]] = {
        category: {"n": stats.n, "passed": stats.passed, "unparseable_passed": 0, "unparseable_failed": 0}
        for category, stats in results.per_category.items()
        if category in COUNTS
    }
    notes = []
    if results.rescored_from:
        notes.append(f"{run_dir}: a re-scoring of {results.rescored_from} (scorer {results.scorer.get('name', '?')})")
    if run.has_samples:  # recount from the samples, the record of truth (last line per task wins)
        latest = {
            task_id: record for task_id, record in run.read_samples().items() if only_bfcl or record.source == "bfcl"
        }
        if not only_bfcl:  # a run of several sources: only its bfcl samples count
            per = {}
            for record in latest.values():
                if record.category in COUNTS:
                    per.setdefault(
                        record.category, {"n": 0, "passed": 0, "unparseable_passed": 0, "unparseable_failed": 0}
                    )["n"] += 1
        for category in per:
            records = [r for r in latest.values() if r.category == category]
            per[category]["passed"] = sum(1 for r in records if r.ok and r.passed)
            unreadable = [r for r in records if (r.breakdown or {}).get("unparseable_call")]
            per[category]["unparseable_passed"] = sum(1 for r in unreadable if r.passed)
            per[category]["unparseable_failed"] = len(unreadable) - per[category]["unparseable_passed"]
    return per, notes


def read_accuracies(path: Path) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
    """``{category: {"accuracy": a, "total_count": n}}`` (BFCL's score-file headers), checked; an optional
    ``format_sensitivity`` entry holds BFCL's ``accuracy_max_delta``, ``accuracy_std`` and per-config accuracies."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"{path}: cannot read the accuracies ({exc})") from None
    if not isinstance(data, dict):
        raise click.ClickException(f"{path}: the accuracies are a JSON object {{category: {{accuracy, total_count}}}}")
    fs = data.pop("format_sensitivity", None)
    if fs is not None and not isinstance(fs, dict):
        raise click.ClickException(f"{path}: format_sensitivity must be an object")
    scores = {}
    for category, entry in data.items():
        if category not in COUNTS:
            raise click.ClickException(f"{path}: unknown BFCL category {category!r} (known: {', '.join(COUNTS)})")
        accuracy = entry.get("accuracy") if isinstance(entry, dict) else None
        count = entry.get("total_count") if isinstance(entry, dict) else None
        if (
            not isinstance(accuracy, (int, float))
            or type(accuracy) is bool
            or not math.isfinite(accuracy)
            or not 0 <= accuracy <= 1
        ):
            raise click.ClickException(f"{path}: {category}: 'accuracy' must be a number in [0, 1]")
        if type(count) is not int or count < 0:
            raise click.ClickException(f"{path}: {category}: 'total_count' must be a non-negative integer")
        scores[category] = {"accuracy": accuracy, "total_count": count}
    return scores, fs


def summarize(run_dirs: list[Path], warn: Any = None, model: dict[str, str] | None = None) -> dict[str, Any]:
    per: dict[str, dict[str, Any]] = {}
    sources: dict[str, str] = {}
    notes: list[str] = []
    refused: list[str] = []
    for run_dir in run_dirs:
        try:
            read, run_notes = _read_run(run_dir)
        except NotBfclRun as exc:
            refused.append(exc.message)
            if warn is not None:
                warn(exc.message)
            continue
        notes.extend(run_notes)
        for category, stats in read.items():
            if category in per:
                notes.append(f"{category}: {run_dir} replaces {sources[category]}")
            per[category] = stats
            sources[category] = str(run_dir)
    if not per:
        raise click.ClickException("no BFCL category in these runs (bfcl-summary reads runs of the bfcl task source)")
    scores = {c: {"accuracy": s["passed"] / s["n"], "total_count": s["n"]} for c, s in per.items() if s["n"]}
    summary = summarize_accuracies(scores, None, model)
    summary["categories"] = {
        c: {
            "n": s["n"],
            "passed": s["passed"],
            "accuracy": round(s["passed"] / s["n"], 6) if s["n"] else 0.0,
            "run_dir": sources[c],
        }
        for c, s in sorted(per.items())
    }
    summary["irrelevance_counts"] = _irrelevance_counts(per)
    summary["notes"] = notes
    summary["refused"] = refused
    summary["overall_served"] = _overall_served(per)
    return summary


def _irrelevance_counts(per: dict[str, dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per irrelevance category: answers that tried to call but could not be read (both scorers mark them;
    ``bfcl-strict`` passes them, ``bfcl`` fails them), and what passes under BFCL's rule (they count as no
    call) and under bitagent's (they fail)."""
    out = {}
    for category in IRRELEVANCE:
        if category in per:
            s = per[category]
            out[category] = {
                "n": s["n"],
                "unparseable_calls": s["unparseable_passed"] + s["unparseable_failed"],
                "passed_bfcl_rule": s["passed"] + s["unparseable_failed"],
                "passed_bitagent_rule": s["passed"] - s["unparseable_passed"],
            }
    return out


def summarize_accuracies(
    scores: dict[str, dict[str, Any]],
    format_sensitivity: dict[str, Any] | None = None,
    model: dict[str, str] | None = None,
) -> dict[str, Any]:
    board = leaderboard(scores, format_sensitivity, model)
    groups = board["groups"]
    return {
        "categories": {c: {"n": s["total_count"], "accuracy": s["accuracy"]} for c, s in sorted(scores.items())},
        "aggregates": {
            name: {
                "accuracy": round(groups[name]["accuracy"], 6),
                "complete": _complete(name, scores),
                "display": _display(groups[name]["display_accuracy"]),
            }
            for name in ("non_live", "live", "irrelevance", "relevance", "multi_turn", "agentic")
        },
        "overall": round(groups["overall"]["accuracy"], 6),
        "overall_display": _display(groups["overall"]["display_accuracy"]),
        "format_sensitivity": board["format_sensitivity"],
        "weights": dict(WEIGHTS),
        "not_evaluated": sorted(c for c in COUNTS if c not in scores and c not in NOT_SERVED),
        "not_served": list(NOT_SERVED),
        "board": board,
    }


def _display(value: Any) -> str:
    return value if type(value) is str else f"{value * 100:.2f}%"


def _overall_served(per: dict[str, dict[str, Any]]) -> float | None:
    """The overall over only the sections with an evaluated category, each from its evaluated categories."""

    def acc(category: str) -> float | None:
        s = per.get(category)
        return s["passed"] / s["n"] if s and s["n"] else None

    def mean(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return sum(known) / len(known) if known else None

    live = [(acc(c), per[c]["n"]) for c in _SECTION_CATEGORIES["live"] if acc(c) is not None]
    sections = {
        "non_live": mean(
            [
                mean([acc("simple_python"), acc("simple_java"), acc("simple_javascript")]),
                acc("multiple"),
                acc("parallel"),
                acc("parallel_multiple"),
            ]
        ),
        "live": sum(a * n for a, n in live) / sum(n for _, n in live) if live else None,
        "irrelevance": mean([acc("irrelevance"), acc("live_irrelevance")]),
        "multi_turn": mean([acc(c) for c in _SECTION_CATEGORIES["multi_turn"]]),
        "agentic": mean(
            [
                mean([acc("web_search_base"), acc("web_search_no_snippet")]),
                mean([acc("memory_kv"), acc("memory_vector"), acc("memory_rec_sum")]),
            ]
        ),
    }
    run = {name: value for name, value in sections.items() if value is not None}
    if not run:
        return None
    return round(sum(value * WEIGHTS[name] for name, value in run.items()) / sum(WEIGHTS[name] for name in run), 6)


_SECTION_CATEGORIES = {
    "non_live": ("simple_python", "simple_java", "simple_javascript", "multiple", "parallel", "parallel_multiple"),
    "live": ("live_simple", "live_multiple", "live_parallel", "live_parallel_multiple"),
    "irrelevance": ("irrelevance", "live_irrelevance"),
    "relevance": ("live_relevance",),
    "multi_turn": ("multi_turn_base", "multi_turn_miss_func", "multi_turn_miss_param", "multi_turn_long_context"),
    "agentic": ("web_search_base", "web_search_no_snippet", "memory_kv", "memory_vector", "memory_rec_sum"),
}


def _complete(section: str, scores: dict[str, Any]) -> bool:
    return all(c in scores for c in _SECTION_CATEGORIES[section])


@click.command("bfcl-summary")
@click.argument("run_dirs", nargs=-1, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--accuracies",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='Per-category accuracies instead of runs: {"category": {"accuracy": a, "total_count": n}}.',
)
@click.option(
    "--csv-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write BFCL's six leaderboard CSVs (data_overall.csv, ...) into this directory.",
)
@click.option("--model-name", default="bitagent", show_default=True, help="The Model column of the CSVs.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def bfcl_summary(
    run_dirs: tuple[Path, ...], accuracies: Path | None, csv_dir: Path | None, model_name: str, as_json: bool
) -> None:
    """Per-category accuracy and BFCL's leaderboard numbers over BFCL runs (later runs win a category), or over
    a table of accuracies; optionally BFCL's leaderboard CSVs."""
    if bool(run_dirs) == bool(accuracies):
        raise click.UsageError("give BFCL run directories or --accuracies FILE.json (one of the two)")
    model = {"name": model_name}
    if accuracies is not None:
        scores, fs = read_accuracies(accuracies)
        summary = summarize_accuracies(scores, fs, model)
    else:
        summary = summarize(list(run_dirs), lambda line: click.echo(f"refused: {line}", err=True), model)
    board = summary.pop("board")
    if csv_dir is not None:
        for path in write_csvs(csv_dir, board):
            click.echo(f"wrote {path}", err=True)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    _print(summary)


def _print(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="BFCL categories")
    for name in ("category", "n", "passed", "accuracy"):
        table.add_column(name, justify="left" if name == "category" else "right")
    for category, stats in summary["categories"].items():
        table.add_row(category, str(stats["n"]), str(stats.get("passed", "-")), f"{100 * stats['accuracy']:.2f}%")
    aggregates = Table(title="BFCL aggregates (not evaluated = 0 at full size, as BFCL counts)")
    for name in ("aggregate", "weight", "accuracy", "BFCL shows", "complete"):
        aggregates.add_column(name, justify="left" if name in ("aggregate", "complete") else "right")
    for name, value in summary["aggregates"].items():
        aggregates.add_row(
            name,
            f"{WEIGHTS[name]}%" if name in WEIGHTS else "-",
            f"{100 * value['accuracy']:.2f}%",
            value["display"],
            "yes" if value["complete"] else "no",
        )
    aggregates.add_row("overall", "100%", f"{100 * summary['overall']:.2f}%", summary["overall_display"], "")
    if summary.get("overall_served") is not None:
        aggregates.add_row("overall (evaluated sections only)", "", f"{100 * summary['overall_served']:.2f}%", "", "")
    console = Console()
    console.print(table)
    console.print(aggregates)
    fs = summary["format_sensitivity"]
    console.print(
        f"format sensitivity: max delta {fs['max_delta']}, standard deviation {fs['std']} "
        "(percentage points; in no score)"
    )
    for category, counts in (summary.get("irrelevance_counts") or {}).items():
        console.print(
            f"{category}: {counts['unparseable_calls']} of {counts['n']} answers tried to call but could "
            f"not be read; passed {counts['passed_bfcl_rule']} by BFCL's rule (they count as no call), "
            f"{counts['passed_bitagent_rule']} by bitagent's (they fail)"
        )
    console.print(f"not served by bitagent (count 0 in BFCL's overall): {', '.join(summary['not_served'])}")
    if summary["not_evaluated"]:
        console.print(f"not evaluated (count 0): {', '.join(summary['not_evaluated'])}")
    for note in summary.get("notes") or ():
        console.print(f"note: {note}")
