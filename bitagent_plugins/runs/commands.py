"""``bitagent runs list``, ``bitagent runs show``, ``bitagent compare`` and ``bitagent report``: looking at past runs."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from bitagent_core import hookimpl

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
    rows = [{"run": r.run_dir.rsplit("/", 1)[-1], "started_at": r.started_at, "status": r.status,
             "tasks": r.config.get("tasks"), "model": r.model.get("model") or r.config.get("model") or "default",
             "scorer": r.scorer.get("name"), "n_tasks": r.n_tasks, "n_failed": r.n_failed,
             "mean_score": r.mean_score, "run_dir": r.run_dir} for r in found]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"no runs under {output_dir}")
        return
    from rich.table import Table

    table = Table(title=f"runs under {output_dir}")
    for name in ("run", "status", "tasks", "model", "scorer", "tasks run", "failed", "score"):
        table.add_column(name, justify="right" if name in ("tasks run", "failed", "score") else "left",
                         overflow="fold")
    for row in rows:
        table.add_row(str(row["run"]), str(row["status"]), str(row["tasks"]), _short_model(str(row["model"])),
                      str(row["scorer"]), str(row["n_tasks"]), str(row["n_failed"]), f"{row['mean_score']:.3f}")
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

    from bitagent_plugins.runs.view import call_diff

    loaded = _load(run, output_dir)
    chosen = [r for r in loaded.samples.values()
              if (not failed or not (r.ok and r.passed)) and (category is None or r.category == category)]
    if as_json:
        for record in chosen:
            click.echo(json.dumps(record.to_json(), ensure_ascii=False))
        return
    console = _console()
    console.print(f"[bold]{escape(loaded.results.title())}[/bold]")
    console.print(f"{len(chosen)} of {len(loaded.samples)} samples"
                  f"{' that did not pass' if failed else ''}{f' in {category}' if category else ''}")
    for record in chosen:
        verdict = "[green]passed[/green]" if record.ok and record.passed else (
            "[red]failed[/red]" if not record.ok else "[yellow]wrong[/yellow]")
        console.rule(f"{escape(record.task_id)}  {escape(record.category)}  {verdict}  score {record.score:.3f}"
                     f"{'  ' + escape(record.error_type) if record.error_type else ''}")
        question = next((m.content for m in reversed(record.messages) if m.role == "user"), "")
        console.print(f"[bold]prompt:[/bold] {escape(question)}")
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
def compare(run_list: tuple[str, ...], output_dir: str, as_json: bool) -> None:
    """Compare runs per category with 95 % intervals; each run after the first is paired with the first on the
    tasks both answered (mean difference, its interval, and a paired permutation test's p-value)."""
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
    for pair in data["paired"]:
        if not pair["n"]:
            console.print(f"{escape(pair['b'])} vs {escape(pair['a'])}: no shared tasks")
            continue
        verdict = ("a real difference (p < 0.05)" if pair["p_value"] < 0.05
                   else "no significant difference (p >= 0.05)")
        console.print(f"{escape(pair['b'])} vs {escape(pair['a'])} on {pair['n']} shared tasks: "
                      f"{pair['mean_b']:.3f} vs {pair['mean_a']:.3f}, difference {pair['diff']:+.3f} "
                      f"[{pair['ci_low']:+.3f}, {pair['ci_high']:+.3f}], better on {pair['b_better']}, "
                      f"worse on {pair['a_better']}, paired permutation p = {pair['p_value']:.4f}: {verdict}",
                      soft_wrap=True)
    sys.stdout.flush()


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


@hookimpl
def register_commands(cli: Any) -> None:
    cli.add_command(runs)
    cli.add_command(compare)
    cli.add_command(report)
