"""Adds ``bitagent plugins check NAME``: the conformance kit run on whatever is registered under NAME."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from bitagent_core import hookimpl


@click.command("check")
@click.argument("name")
@click.option(
    "--kind",
    type=click.Choice(["task_sources", "backends", "scorers", "competitions"]),
    help="Which kind NAME is, when several kinds share the name.",
)
@click.option(
    "--arg",
    "args",
    multiple=True,
    help="Task source argument to check (repeatable; default: none, then each advertised category).",
)
@click.option("--model", "-m", help="Backends: the model to start (default: the backend's default).")
@click.option("--backend-option", "-B", "backend_option", multiple=True, help="Backends: key=value options.")
@click.option("--no-start", is_flag=True, help="Backends: check construction and close only (no model load).")
@click.option("--json", "as_json", is_flag=True)
def check(
    name: str,
    kind: str | None,
    args: tuple[str, ...],
    model: str | None,
    backend_option: tuple[str, ...],
    no_start: bool,
    as_json: bool,
) -> None:
    """Run the conformance checks of bitagent_testing on a registered task source, scorer, backend,
    competition or reporter (a plugin's name). Exits 1 when a check fails."""
    import bitagent_testing
    from bitagent_core import OptionError, UnknownPluginObject, get_registry
    from bitagent_core.toolkit import parse_option_args

    try:
        options = parse_option_args(backend_option, "-B")
        report = bitagent_testing.check_registered(
            get_registry(),
            name,
            kind=kind,
            args=list(args) or None,
            model=model,
            backend_options=options,
            start=not no_start,
        )
    except (UnknownPluginObject, OptionError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        for item in report.checks:
            mark = click.style("ok  ", fg="green") if item.ok else click.style("FAIL", fg="red")
            click.echo(f"{mark} {item.subject}: {item.name}" + ("" if item.ok else f": {item.message}"))
        click.echo(f"{len(report.failures)} of {len(report.checks)} checks failed")
    if report.failures:
        sys.exit(1)


@hookimpl
def register_commands(cli: Any) -> None:
    group = cli.commands.get("plugins")
    if isinstance(group, click.Group):
        group.add_command(check)
