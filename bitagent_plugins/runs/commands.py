"""``bitagent runs list``, ``bitagent runs show``, ``bitagent compare``, ``bitagent report`` and ``bitagent score``:
past runs and saved answers, without a model."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from bitagent_core import hookimpl
from bitagent_core.toolkit import TaskLimit

OUTPUT_DIR = click.option("--output-dir", "-o", default="runs", show_default=True, envvar="BITAGENT_OUTPUT_DIR",
                          show_envvar=True, type=click.Path(file_okay=False), help="Where the runs are.")


def _short_model(model: str) -> str:
    """A local model file by its name; a hub id (org/name) as it is."""
    return model.rsplit("/", 1)[-1] if model.startswith(("/", ".", "~")) else model


def _console() -> Any:
    """A console for stdout; piped to a file or a pager, tables keep their full width instead of 80 columns."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=200)


def _load(run: str, output_dir: str) -> Any:
    from bitagent_plugins.runs import view

    try:
        return view.load(run, output_dir)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def runs() -> None:
    """Past runs: list them, show their samples."""


@runs.command("list")
@OUTPUT_DIR
@click.option("--json", "as_json", is_flag=True)
def runs_list(output_dir: str, as_json: bool) -> None:
    """The runs under the output directory, newest first."""
    from bitagent_plugins.runs.view import list_runs

    found = list_runs(output_dir)
    found_tags = {r.run_dir: [str(t) for t in r.config.get("tags") or []] for r in found}
    rows = [{"run": r.run_dir.rsplit("/", 1)[-1], "started_at": r.started_at, "status": r.status,
             "tasks": r.config.get("tasks"), "model": r.model.get("model") or r.config.get("model") or "default",
             "scorer": r.scorer.get("name"), "n_tasks": r.n_tasks, "n_scored": r.n_scored, "n_failed": r.n_failed,
             "mean_score": r.mean_score, "tags": list(r.config.get("tags") or []), "error": r.error,
             "run_dir": r.run_dir} for r in found]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"no runs under {output_dir}")
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"runs under {output_dir}")
    for name in ("run", "status", "tasks", "model", "scorer", "tasks run", "failed", "score"):
        table.add_column(name, justify="right" if name in ("tasks run", "failed", "score") else "left",
                         overflow="fold")
    for row in rows:
        # a run that failed before scoring anything has no score (not 0.000); one running scores its finished tasks
        nothing = row["status"] == "failed" and not row["n_scored"]
        status = {"failed": "[red]failed[/red]", "running": "[yellow]running[/yellow]"}.get(
            str(row["status"]), escape(str(row["status"])))
        tags = "".join(f" #{t}" for t in found_tags.get(str(row["run_dir"]), []))
        table.add_row(escape(str(row["run"]) + tags), status, escape(str(row["tasks"])),
                      escape(_short_model(str(row["model"]))), escape(str(row["scorer"])), str(row["n_tasks"]),
                      str(row["n_failed"]), "-" if nothing else f"{row['mean_score']:.3f}")
    _console().print(table)


@runs.command("show")
@click.argument("run")
@OUTPUT_DIR
@click.option("--failed", is_flag=True, help="Only samples that did not pass.")
@click.option("--category", "-c", help="Only samples of this category.")
@click.option("--json", "as_json", is_flag=True, help="The samples as JSON lines.")
def runs_show(run: str, output_dir: str, failed: bool, category: str | None, as_json: bool) -> None:
    """Each sample of RUN (a run directory, or its name under the output directory): prompt, tools, raw answer,
    decoded and expected calls, score breakdown, and the difference between expected and called."""
    from rich.markup import escape

    from bitagent_plugins.runs.view import call_diff, last_prompt

    loaded = _load(run, output_dir)
    chosen = [r for r in loaded.samples.values()
              if (not failed or not (r.ok and r.passed)) and (category is None or r.category == category)]
    if as_json:
        for record in chosen:
            click.echo(json.dumps(record.to_json(), ensure_ascii=False))
        return
    console = _console()
    console.print(f"[bold]{escape(loaded.results.title())}[/bold]")
    if loaded.results.error:  # a failed or stopped run says why
        console.print(f"[bold red]{escape(loaded.results.status)}:[/bold red] {escape(loaded.results.error)}")
    console.print(f"{len(chosen)} of {len(loaded.samples)} samples"
                  f"{' that did not pass' if failed else ''}{f' in {category}' if category else ''}")
    for record in chosen:
        verdict = "[green]passed[/green]" if record.ok and record.passed else (
            "[red]failed[/red]" if not record.ok else "[yellow]wrong[/yellow]")
        console.rule(f"{escape(record.task_id)}  {escape(record.category)}  {verdict}  score {record.score:.3f}"
                     f"{'  ' + escape(record.error_type) if record.error_type else ''}")
        console.print(f"[bold]prompt:[/bold] {escape(last_prompt(record))}")
        console.print(f"[bold]tools:[/bold] {escape(', '.join(t.name for t in record.tools)) or '-'}")
        answer = record.completion.error or record.completion.text or json.dumps(
            [c.to_json() for c in record.completion.tool_calls], ensure_ascii=False)
        console.print(f"[bold]raw answer:[/bold] {escape(answer)}")
        if record.breakdown:
            console.print("[bold]breakdown:[/bold] " + ", ".join(f"{escape(k)} {v:g}"
                                                                 for k, v in record.breakdown.items()))
        if record.detail:
            console.print(f"[bold]detail:[/bold] {escape(record.detail)}")
        console.print("[bold]expected (-) vs called (+):[/bold]")
        for mark, text in call_diff(record.expected_calls, record.decoded_calls):
            style = {"-": "red", "+": "green"}.get(mark, "dim")
            console.print(f"[{style}]{mark} {escape(text)}[/{style}]")


@click.command()
@click.argument("run_list", metavar="RUN RUN...", nargs=-1, required=True)
@OUTPUT_DIR
@click.option("--json", "as_json", is_flag=True)
@click.option("--diffs/--no-diffs", "show_diffs", default=True, show_default=True,
              help="Show each flipped task's expected-vs-called difference.")
def compare(run_list: tuple[str, ...], output_dir: str, as_json: bool, show_diffs: bool) -> None:
    """Compare runs per category with 95 % intervals; each run after the first is paired with the first on the
    tasks both answered (mean difference, its interval, and a paired permutation test's p-value), and the tasks
    that flipped between them are listed with their diffs. Runs whose task sets or scorers differ are not
    comparable: a warning says why (seed, task source, limit...), and their paired test is left out."""
    from rich.markup import escape
    from rich.table import Table

    from bitagent_plugins.runs.view import comparison

    if len(run_list) < 2:
        raise click.UsageError("compare needs two runs or more")
    loaded = [_load(run, output_dir) for run in run_list]
    data = comparison(loaded)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    console = _console()
    table = Table(title="mean score per category (95 % interval)")
    table.add_column("category")
    for run in data["runs"]:
        table.add_column(escape(f"{run['label']}\n{run['tasks']}, {run['scorer']}"), justify="right")
    for row in data["categories"]:
        cells = [f"{c['mean']:.3f} [{c['ci_low']:.2f}-{c['ci_high']:.2f}] n={c['n']}" if c["mean"] is not None
                 else "-" for c in row["runs"]]
        table.add_row(row["category"], *cells)
    console.print(table)
    for warning in data["warnings"]:
        console.print(f"[bold red]WARNING:[/bold red] {escape(warning)}; its scores are not ranked against "
                      "the first run's", soft_wrap=True)
    for run in data["runs"]:
        if run["error_counts"]:
            console.print(f"{escape(run['label'])}: errors " + ", ".join(
                f"{escape(k)} {v}" for k, v in run["error_counts"].items()), soft_wrap=True)
    for pair in data["paired"]:
        if not pair["n"]:
            why = "; ".join(pair["task_set_differences"]) or "they answered different tasks"
            console.print(f"{escape(pair['b'])} vs {escape(pair['a'])}: no shared tasks ({escape(why)})",
                          soft_wrap=True)
            continue
        verdict = ("a real difference (p < 0.05)" if pair["p_value"] < 0.05
                   else "no significant difference (p >= 0.05)")
        console.print(f"{escape(pair['b'])} vs {escape(pair['a'])} on {pair['n']} shared tasks: "
                      f"{pair['mean_b']:.3f} vs {pair['mean_a']:.3f}, difference {pair['diff']:+.3f} "
                      f"[{pair['ci_low']:+.3f}, {pair['ci_high']:+.3f}], better on {pair['b_better']}, "
                      f"worse on {pair['a_better']}, paired permutation p = {pair['p_value']:.4f}: {verdict}",
                      soft_wrap=True)
        _print_flipped(console, pair, show_diffs)
    sys.stdout.flush()


def _print_flipped(console: Any, pair: dict[str, Any], show_diffs: bool) -> None:
    """The shared tasks one run passed and the other did not; with their expected-vs-called diffs."""
    from rich.markup import escape

    if not pair["flipped"]:
        return
    gained = sum(f["b_passed"] for f in pair["flipped"])
    console.print(f"[bold]{len(pair['flipped'])} task(s) flipped[/bold] ({gained} now pass, "
                  f"{len(pair['flipped']) - gained} now fail):")
    for item in pair["flipped"]:
        way = "[green]fail -> pass[/green]" if item["b_passed"] else "[red]pass -> fail[/red]"
        console.print(f"  {escape(item['task_id'])}  {escape(item['category'])}  {way}  "
                      f"{item['a_score']:.2f} -> {item['b_score']:.2f}"
                      f"{'  ' + escape(item['b_error'] or item['a_error'] or '') if not show_diffs else ''}")
        if show_diffs:
            for side, key in (("a", "a_diff"), ("b", "b_diff")):
                console.print(f"    {side}: expected (-) vs called (+)")
                for mark, text in item[key]:
                    style = {"-": "red", "+": "green"}.get(mark, "dim")
                    console.print(f"    [{style}]{mark} {escape(text)}[/{style}]")


@click.command()
@click.argument("run_list", metavar="RUN...", nargs=-1, required=True)
@click.option("--output", "-o", default="report.html", show_default=True, type=click.Path(dir_okay=False),
              help="The HTML file to write.")
@click.option("--output-dir", default="runs", show_default=True, envvar="BITAGENT_OUTPUT_DIR", show_envvar=True,
              type=click.Path(file_okay=False), help="Where runs given by name are.")
@click.option("--title", default="bitagent report", show_default=True)
def report(run_list: tuple[str, ...], output: str, output_dir: str, title: str) -> None:
    """Write one self-contained HTML file (opens offline) comparing RUNs: a leaderboard, per-category scores
    with 95 % error bars, score and latency distributions, and a filterable list of the samples that did not
    pass with the difference between expected and called."""
    from pathlib import Path

    from bitagent_plugins.runs.view import load
    from bitagent_plugins.runs.html import render

    try:
        runs = [load(run, output_dir) for run in run_list]
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    text = render(runs, title)
    path = Path(output).expanduser()
    try:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from None
    click.echo(f"wrote {path} ({len(text.encode()) // 1024} KiB, {len(runs)} runs)")


@click.command()
@click.argument("run", required=False, type=click.Path(exists=True, path_type=Path))
@click.option("--tasks", "-t", "tasks_spec", envvar="BITAGENT_TASKS", show_envvar=True,
              help="The task source the answers are for, e.g. bfcl or bfcl:live_simple [default for a run: its own].")
@click.option("--scorer", "-s", envvar="BITAGENT_SCORER", show_envvar=True,
              help="Scorer [default: the run's own; for --responses: bfcl].")
@click.option("--responses", "-r", type=click.Path(exists=True, dir_okay=False),
              help='JSON lines: {"task_id": ..., "response": "text" or {"tool_calls": [...]} or, for '
                   'multi-turn tasks, a list of turns of raw step texts, "id": optional}.')
@click.option("--bfcl-result", type=click.Path(exists=True, dir_okay=False),
              help='A BFCL result file as BFCL wrote it (JSON lines {"id", "result"}), instead of --responses.')
@click.option("--output", "-o", type=click.Path(dir_okay=False),
              help="--responses: write each scored line here, with score, passed and error_type added.")
@click.option("--output-dir", type=click.Path(file_okay=False),
              help="RUN: where the re-scored run directory goes [default: beside RUN].")
@click.option("--seed", type=int, help="Seed of seeded task sources (bfcl-shuffle) [default: the run's, or 0].")
@click.option("--limit", "-n", type=TaskLimit(), help="Tasks per task source [default: the run's; --responses: all].")
@click.option("--partial", is_flag=True, help="Score only the tasks that have an answer (like BFCL's "
                                              "--partial-eval); otherwise unanswered tasks count as failures.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def score(run: Path | None, tasks_spec: str | None, scorer: str | None, responses: str | None,
          bfcl_result: str | None, output: str | None, output_dir: str | None, seed: int | None, limit: int | None,
          partial: bool, as_json: bool) -> None:
    """Score saved answers again, without any model: a run (RUN: its directory or its samples.jsonl, written to
    a new run directory), a --responses file or a BFCL result file (--bfcl-result). Exits 1 when nothing could
    be scored, or when lines were unreadable or named unknown tasks."""
    import gc

    if sum(x is not None for x in (run, responses, bfcl_result)) != 1:
        raise click.UsageError("give one of: a run (directory or samples.jsonl), --responses FILE, --bfcl-result FILE")
    from bitagent_core import UnknownPluginObject, get_registry, load_tasks, render_results
    from bitagent_plugins.runs import score as rescore

    registry = get_registry()
    if run is not None:
        try:
            results, summary = rescore.rescore_run(run, registry, tasks=tasks_spec, scorer=scorer, seed=seed,
                                                   limit=limit if limit is not None else "run",
                                                   output_dir=output_dir, partial=partial)
        except (UnknownPluginObject, ValueError, OSError, RuntimeError) as exc:
            raise click.ClickException(str(exc)) from None
        if summary["n_answered"]:  # nothing scored: the error below, not a table of zeros
            click.echo(render_results(results, "json" if as_json else "table"))
        errors_at, what, spec = str(run), "sample(s)", results.config["tasks"]
    else:
        if not tasks_spec:
            raise click.UsageError("--responses needs --tasks (the task source the responses answer)")
        writer = None
        try:
            task_list = load_tasks(registry, tasks_spec, 0 if seed is None else seed, limit)
            scorer_obj = registry.get("scorers", scorer or "bfcl").factory()
            gc.freeze()  # the loaded tasks live to the end: keep them out of the collector's way
            writer = rescore.LineWriter(output) if output else None
            responses = responses or bfcl_result
            assert responses is not None  # one of them was given
            tally = rescore.score_responses(responses, task_list, scorer_obj, writer,
                                            bfcl_result=bfcl_result is not None)
            if writer:
                writer.close()
        except (UnknownPluginObject, ValueError, OSError, RuntimeError) as exc:
            if writer:
                writer.close(keep=False)
            raise click.ClickException(str(exc)) from None
        summary = rescore.summarize(tally, partial=partial)
        if as_json:
            click.echo(json.dumps(summary, indent=2))
        elif summary["n_answered"]:  # nothing scored: the error below, not a table of zeros
            _print_score_summary(summary, tasks_spec, scorer or "bfcl")
        errors_at, what, spec = str(responses), "response(s)", tasks_spec
    click.echo(rescore.coverage_line(summary), err=True)
    for bad_line in summary["bad_lines"]:
        click.echo(f"error: {errors_at}:{bad_line['line']}: {bad_line['error']} (not scored)", err=True)
    if summary["unknown_task_ids"]:
        names = ", ".join(f"{task_id} (line {', '.join(map(str, lines_of))})"
                          for task_id, lines_of in summary["unknown_task_ids"].items())
        click.echo(f"error: {summary['n_unknown_lines']} {what} name task ids that "
                   f"{spec} does not have (not scored): {names}", err=True)
    if summary["n_answered"] == 0:
        click.echo("error: nothing was scored (empty input, or no answer matches a task)", err=True)
    if summary["n_answered"] == 0 or summary["unknown_task_ids"] or summary["bad_lines"]:
        sys.exit(1)


def _print_score_summary(summary: dict[str, Any], spec: str, scorer: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{scorer} scores on {spec}")
    table.add_column("category", justify="left")
    for name in ("responses", "passed", "accuracy", "mean score"):
        table.add_column(name, justify="right")
    for category, row in summary["per_category"].items():
        table.add_row(category, str(row["n"]), str(row["passed"]), f"{row['accuracy']:.3f}",
                      f"{row['mean_score']:.3f}")
    table.add_row("[bold]all", str(summary["n_scored"]), str(summary["n_passed"]),
                  f"[bold]{summary['accuracy']:.3f}", f"{summary['mean_score']:.3f}")
    console = Console()
    console.print(table)
    if summary["error_types"]:
        console.print("errors: " + ", ".join(f"{k} {v}" for k, v in summary["error_types"].items()))


@hookimpl
def register_commands(cli: Any) -> None:
    cli.add_command(runs)
    cli.add_command(compare)
    cli.add_command(report)
    cli.add_command(score)
