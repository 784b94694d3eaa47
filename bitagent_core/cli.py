"""The ``bitagent`` command line. Every option can also come from a ``BITAGENT_*`` environment variable
or from ``--config FILE.toml`` (top-level keys apply to every command, ``[evaluate]``-style tables to one);
the command line wins over the environment, which wins over the file.

Importing this module must stay cheap: ``bitagent --help`` loads plugins (for their commands) but never
llama_cpp, bittensor or huggingface_hub.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import click

import bitagent_core
from bitagent_core.plugins import PluginRegistry, UnknownPluginObject, get_registry


def _load_config(path: str) -> dict[str, Any]:
    import tomllib

    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise click.BadParameter(f"no such file: {path}", param_hint="--config") from None
    except tomllib.TOMLDecodeError as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="--config") from None
    # option names in files may use dashes or underscores, like on the command line
    shared = {k.replace("-", "_"): v for k, v in data.items() if not isinstance(v, dict)}
    default_map: dict[str, Any] = {}
    for name, command in cli.commands.items():
        own = data.get(name, {}) if isinstance(data.get(name), dict) else {}
        default_map[name] = {**shared, **{k.replace("-", "_"): v for k, v in own.items()}}
        if isinstance(command, click.Group):
            default_map[name].update({sub: default_map[name] for sub in command.commands})
    return default_map


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(bitagent_core.__version__, prog_name="bitagent")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), envvar="BITAGENT_CONFIG",
              show_envvar=True, help="TOML file with option defaults.")
@click.pass_context
def cli(ctx: click.Context, config_file: str | None) -> None:
    """Evaluate tool-calling models the way Bittensor Subnet 20 (BitAgent) does."""
    if config_file:
        ctx.default_map = _load_config(config_file)


def _backend_options(values: tuple[str, ...]) -> dict[str, str]:
    options = {}
    for item in values:
        for part in item.split():
            key, sep, value = part.partition("=")
            if not sep or not key:
                raise click.BadParameter(f"expected key=value, got {part!r}", param_hint="-B")
            options[key.strip()] = value.strip()
    return options


@cli.command()
@click.option("--model", "-m", envvar="BITAGENT_MODEL", show_envvar=True,
              help="Model for the backend: a GGUF path, hf://org/repo/file.gguf, org/name[@rev]; "
                   "default: the backend's default (llama-cpp: the embedded Qwen2.5-Coder-0.5B).")
@click.option("--backend", "-b", default="llama-cpp", show_default=True, envvar="BITAGENT_BACKEND", show_envvar=True)
@click.option("--tasks", "-t", default="bitagent", show_default=True, envvar="BITAGENT_TASKS", show_envvar=True,
              help="Task source, optionally with an argument: bitagent, bitagent:irrelevance, jsonl:FILE...")
@click.option("--scorer", "-s", default="bitagent", show_default=True, envvar="BITAGENT_SCORER", show_envvar=True)
@click.option("--limit", "-n", type=click.IntRange(min=1), default=20, show_default=True,
              envvar="BITAGENT_LIMIT", show_envvar=True, help="Number of tasks.")
@click.option("--seed", type=int, default=0, show_default=True, envvar="BITAGENT_SEED", show_envvar=True)
@click.option("--concurrency", "-c", type=click.IntRange(min=1), envvar="BITAGENT_CONCURRENCY", show_envvar=True,
              help="Requests in flight (default: the backend's own).")
@click.option("--output-dir", "-o", default="runs", show_default=True, type=click.Path(file_okay=False),
              envvar="BITAGENT_OUTPUT_DIR", show_envvar=True)
@click.option("--backend-option", "-B", "backend_option", multiple=True, envvar="BITAGENT_BACKEND_OPTIONS",
              show_envvar=True, help="Backend option key=value (repeatable), e.g. -B n_ctx=4096 -B n_threads=2.")
@click.option("--tool-format", type=click.Choice(["prompt", "native"]), default="prompt", show_default=True,
              envvar="BITAGENT_TOOL_FORMAT", show_envvar=True,
              help="Tools in the BFCL-style system prompt (the validator's way) or as native tools=.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=160, show_default=True,
              envvar="BITAGENT_MAX_TOKENS", show_envvar=True)
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0.1), default=300.0, show_default=True,
              envvar="BITAGENT_TIMEOUT", show_envvar=True, help="Seconds per request.")
@click.option("--resume", type=click.Path(exists=True, file_okay=False, path_type=Path), envvar="BITAGENT_RESUME",
              show_envvar=True, help="Finish an earlier run directory: skips its finished samples.")
@click.option("--json", "as_json", is_flag=True, help="Print only the summary as JSON.")
def evaluate(model: str | None, backend: str, tasks: str, scorer: str, limit: int, seed: int,
             concurrency: int | None, output_dir: str, backend_option: tuple[str, ...], tool_format: str,
             max_tokens: int, timeout_s: float, resume: Path | None, as_json: bool) -> None:
    """Evaluate a model on a task source and score it."""
    from bitagent_core.runner import Evaluation, RunConfig, config_for_resume

    registry = get_registry()
    if resume is not None:
        try:
            config = config_for_resume(resume, concurrency=concurrency)
        except (OSError, ValueError, KeyError) as exc:
            raise click.ClickException(str(exc)) from None
    else:
        config = RunConfig(tasks=tasks, backend=backend, model=model, scorer=scorer, limit=limit, seed=seed,
                           concurrency=concurrency, output_dir=output_dir,
                           backend_options=_backend_options(backend_option), tool_format=tool_format,
                           max_tokens=max_tokens, timeout_s=timeout_s)
    progress = None if as_json else _Progress()
    evaluation = Evaluation(config, registry, resume_dir=resume, on_sample=progress.advance if progress else None,
                            on_start=progress.start if progress else None)
    try:
        results = _run_until_signal(evaluation)
    except KeyboardInterrupt:
        where = evaluation.run_dir
        click.echo(f"interrupted: finished samples are in {where}; continue with --resume {where}", err=True)
        sys.exit(130)
    except (UnknownPluginObject, ValueError, FileNotFoundError, RuntimeError, OSError) as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
    finally:
        if progress:
            progress.stop()
    if as_json:
        click.echo(json.dumps(results, indent=2, default=str))
    else:
        _print_results(results)


def _run_until_signal(evaluation: Any) -> dict[str, Any]:
    """Run the evaluation; SIGTERM cancels it like Ctrl-C, so the backend is always closed."""

    async def main() -> dict[str, Any]:
        current = asyncio.current_task()
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, current.cancel)  # type: ignore[union-attr]
        except (NotImplementedError, RuntimeError):
            pass
        try:
            return await evaluation.run()
        except asyncio.CancelledError:
            raise KeyboardInterrupt from None

    return asyncio.run(main())


class _Progress:
    """A rich progress bar on stderr, advanced once per finished sample."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(TextColumn("[bold]evaluating"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("mean {task.fields[mean]:.3f}"), TimeElapsedColumn(),
                                  console=Console(stderr=True), transient=False)
        self._task: Any = None
        self._scores: list[float] = []

    def start(self, total: int, done: int = 0) -> None:
        self._progress.start()
        self._task = self._progress.add_task("evaluate", total=total, completed=done, mean=0.0)

    def advance(self, record: dict[str, Any]) -> None:
        self._scores.append(float(record.get("score") or 0.0))
        if self._task is not None:
            self._progress.update(self._task, advance=1, mean=sum(self._scores) / len(self._scores))

    def stop(self) -> None:
        if self._task is not None:
            self._progress.stop()


def _print_results(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"bitagent results ({results['status']})")
    table.add_column("category")
    table.add_column("tasks", justify="right")
    table.add_column("passed", justify="right")
    table.add_column("mean score", justify="right")
    for category, row in results["per_category"].items():
        table.add_row(category, str(row["n"]), str(row["passed"]), f"{row['mean_score']:.3f}")
    table.add_row("[bold]all", str(results["n_tasks"]), str(results["n_passed"]),
                  f"[bold]{results['mean_score']:.3f}")
    console = Console()
    console.print(table)
    model = results.get("model") or {}
    console.print(f"model: {model.get('model', '?')}  failed: {results['n_failed']}  "
                  f"tokens: {results['prompt_tokens']}+{results['completion_tokens']}")
    console.print(f"run directory: {results['run_dir']}")


def _list_registrations(kind: str, as_json: bool) -> None:
    registry = get_registry()
    items = registry.registrations(kind)
    if as_json:
        click.echo(json.dumps([{"name": r.name, "plugin": r.plugin, "description": r.description}
                               for r in items.values()], indent=2))
        return
    if not items:
        click.echo(f"no {kind.replace('_', ' ')} registered")
    for r in items.values():
        click.echo(f"{r.name:<24} {r.description}  [{r.plugin}]")


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def plugins(as_json: bool) -> None:
    """List installed plugins, what they provide, and any that failed to load."""
    registry = get_registry()
    provided: dict[str, dict[str, list[str]]] = {}
    for kind in PluginRegistry.KINDS:
        for r in registry.registrations(kind).values():
            provided.setdefault(r.plugin, {}).setdefault(kind, []).append(r.name)
    rows = [{"name": p.name, "module": p.module, "distribution": p.distribution, "version": p.version,
             "hooks": p.hooks, "provides": provided.get(p.name, {}), "error": p.error}
            for p in registry.plugins]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        state = click.style(f"FAILED: {row['error']}", fg="red") if row["error"] else ", ".join(
            f"{kind.replace('_', ' ')}: {', '.join(names)}" for kind, names in row["provides"].items()) or "-"
        click.echo(f"{row['name']:<20} {row['distribution'] or '-'} {row['version'] or ''}  {state}")


@cli.group()
def tasks() -> None:
    """Task sources and their tasks."""


@tasks.command("list")
@click.option("--json", "as_json", is_flag=True)
def tasks_list(as_json: bool) -> None:
    """List task sources and their categories."""
    registry = get_registry()
    rows = []
    for r in registry.registrations("task_sources").values():
        row: dict[str, Any] = {"name": r.name, "plugin": r.plugin, "description": r.description}
        try:
            source = r.factory(None)
            row["categories"] = list(source.categories())
            row["version"] = getattr(source, "version", None)
        except Exception as exc:  # noqa: BLE001 - e.g. jsonl needs a file; list it anyway
            row["categories"] = []
            row["note"] = str(exc)
        rows.append(row)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        cats = ", ".join(f"{row['name']}:{c}" for c in row["categories"]) or row.get("note", "")
        click.echo(f"{row['name']:<16} {row['description']}")
        if cats:
            click.echo(f"{'':<16}   {cats}")


@tasks.command("show")
@click.argument("spec")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--index", type=click.IntRange(min=0), default=0, show_default=True, help="Which task (0-based).")
@click.option("--id", "task_id", help="Show the task with this id instead.")
@click.option("--prompt", is_flag=True, help="Show the messages as the model sees them.")
def tasks_show(spec: str, seed: int, index: int, task_id: str | None, prompt: bool) -> None:
    """Show one task of SPEC (e.g. ``bitagent`` or ``jsonl:tasks.jsonl``) as JSON."""
    from bitagent_core.prompting import build_request
    from bitagent_core.runner import make_task_source

    try:
        source = make_task_source(get_registry(), spec)
        for i, task in enumerate(source.tasks(seed=seed, limit=None if task_id else index + 1)):
            if (task_id is not None and task.id == task_id) or (task_id is None and i == index):
                data = task.to_json()
                if prompt:
                    data["prompted_messages"] = [m.to_json() for m in build_request(task).messages]
                click.echo(json.dumps(data, indent=2, ensure_ascii=False))
                return
    except (UnknownPluginObject, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    raise click.ClickException(f"no such task in {spec}: {task_id if task_id else f'index {index}'}")


@cli.group()
def backends() -> None:
    """Model backends."""


@backends.command("list")
@click.option("--json", "as_json", is_flag=True)
def backends_list(as_json: bool) -> None:
    """List backends."""
    _list_registrations("backends", as_json)


@cli.group()
def scorers() -> None:
    """Scorers."""


@scorers.command("list")
@click.option("--json", "as_json", is_flag=True)
def scorers_list(as_json: bool) -> None:
    """List scorers."""
    _list_registrations("scorers", as_json)


_commands_added = False


def main() -> None:
    global _commands_added
    if not _commands_added:
        get_registry().pm.hook.register_commands(cli=cli)
        _commands_added = True
    cli()
