"""Registers ``bitagent report RUN... -o report.html``."""

from __future__ import annotations

from typing import Any

import click

from bitagent_core.hookspecs import hookimpl


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

    from bitagent_core.runs_view import load
    from bitagent_plugins.report.html import render

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
    cli.add_command(report)
