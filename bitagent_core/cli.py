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
    import shlex

    options = {}
    for item in values:
        try:  # split like a shell, so a value may hold spaces: -B "extra_args='--a 1 --b 2'"
            parts = shlex.split(item)
        except ValueError as exc:
            raise click.BadParameter(f"{item!r}: {exc}", param_hint="-B") from None
        for part in parts:
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
@click.option("--server-python", envvar="BITAGENT_SERVER_PYTHON", show_envvar=True,
              help="Interpreter that runs the server (sglang, vllm, llama-cpp-server), e.g. a venv's python.")
@click.option("--visible-devices", envvar="BITAGENT_VISIBLE_DEVICES", show_envvar=True,
              help="GPUs for the server: sets its CUDA_VISIBLE_DEVICES (e.g. 0 or 0,1).")
@click.option("--base-url", envvar="BITAGENT_BASE_URL", show_envvar=True,
              help="openai backend: URL of a running OpenAI-compatible server (several: comma-separated).")
@click.option("--api-key-env", envvar="BITAGENT_API_KEY_ENV", show_envvar=True,
              help="openai backend: the environment variable holding the API key [default: OPENAI_API_KEY].")
@click.option("--ready-timeout", type=click.FloatRange(min=1), envvar="BITAGENT_READY_TIMEOUT", show_envvar=True,
              help="Seconds to wait for a server to answer /v1/models [default: 900; openai: 60].")
@click.option("--json", "as_json", is_flag=True, help="Print only the summary as JSON.")
@click.pass_context
def evaluate(ctx: click.Context, model: str | None, backend: str, tasks: str, scorer: str, limit: int, seed: int,
             concurrency: int | None, output_dir: str, backend_option: tuple[str, ...], tool_format: str,
             max_tokens: int, timeout_s: float, resume: Path | None, server_python: str | None,
             visible_devices: str | None, base_url: str | None, api_key_env: str | None,
             ready_timeout: float | None, as_json: bool) -> None:
    """Evaluate a model on a task source and score it."""
    from bitagent_core.runner import Evaluation, RunConfig, config_for_resume

    registry = get_registry()
    server_values = {"server_python": server_python, "visible_devices": visible_devices, "base_url": base_url,
                     "api_key_env": api_key_env, "ready_timeout": ready_timeout}
    if resume is not None:
        try:
            config = config_for_resume(resume, concurrency=concurrency)
        except (OSError, ValueError, KeyError) as exc:
            raise click.ClickException(str(exc)) from None
        config.backend_options.update(_server_options(ctx, registry, config.backend, server_values))
    else:
        options = _backend_options(backend_option)
        for key, value in _server_options(ctx, registry, backend, server_values).items():
            if key in options and options[key] != value:
                raise click.BadParameter(f"{key} given twice: -B {key}={options[key]} and "
                                         f"--{key.replace('_', '-')} {value}")
            options[key] = value
        config = RunConfig(tasks=tasks, backend=backend, model=model, scorer=scorer, limit=limit, seed=seed,
                           concurrency=concurrency, output_dir=output_dir,
                           backend_options=options, tool_format=tool_format,
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


def _server_options(ctx: click.Context, registry: PluginRegistry, backend: str,
                    values: dict[str, Any]) -> dict[str, str]:
    """The server flags (--server-python, --base-url...) as backend options, for backends that take them.

    A flag given on the command line to a backend that does not take it is an error; one that comes
    from the environment or a config file is meant for other backends and is left out.
    """
    from click.core import ParameterSource

    try:
        accepted = getattr(registry.get("backends", backend).factory, "OPTION_TYPES", None) or {}
    except UnknownPluginObject:
        accepted = {}  # the run reports the unknown backend itself
    options = {}
    for key, value in values.items():
        if value is None:
            continue
        if key not in accepted:
            if ctx.get_parameter_source(key) is ParameterSource.COMMANDLINE:
                flag = "--" + key.replace("_", "-")
                raise click.BadParameter(f"the {backend} backend does not take {flag}", param_hint=flag)
            continue
        options[key] = f"{value:g}" if isinstance(value, float) else str(value)
    return options


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
        provides = ", ".join(f"{kind.replace('_', ' ')}: {', '.join(names)}" for kind, names in row["provides"].items())
        state = provides or ("hooks: " + ", ".join(row["hooks"]) if row["hooks"] else "-")
        if row["error"]:
            state = click.style(f"FAILED: {row['error']}", fg="red")
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


@tasks.command("validate")
@click.argument("spec")
@click.option("--scorer", "-s", help="Also score each task's ground truth, written as an answer, with this scorer.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the problems as JSON.")
def tasks_validate(spec: str, scorer: str | None, seed: int, as_json: bool) -> None:
    """Check SPEC's ground truth against its own tools (e.g. ``bfcl:live_multiple``).

    Lists every task whose ground truth contradicts its function docs: ``error`` where no answer can pass,
    ``warning`` where the data is inconsistent but answerable. Exits 1 when there are errors.
    """
    from bitagent_core.rescore import iter_validation
    from bitagent_core.runner import make_task_source

    registry = get_registry()
    try:
        source = make_task_source(registry, spec)
        task_list = list(source.tasks(seed=seed, limit=None))
        scorer_obj = registry.get("scorers", scorer).factory() if scorer else None
        own = getattr(source, "validate", None)
        problems = [p.to_json() if hasattr(p, "to_json") else dict(p) for p in own()] if own else []
        failing = {p["task_id"] for p in problems if p["severity"] == "error"}
        problems += [{"task_id": task_id, "severity": severity, "message": message}
                     for task_id, severity, message in iter_validation(task_list, scorer_obj, structural=not own,
                                                                       skip=failing)]
    except (UnknownPluginObject, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    errors = sorted({p["task_id"] for p in problems if p["severity"] == "error"})
    warnings = sorted({p["task_id"] for p in problems if p["severity"] != "error"} - set(errors))
    if as_json:
        click.echo(json.dumps({"spec": spec, "n_tasks": len(task_list), "tasks_with_errors": errors,
                               "tasks_with_warnings": warnings, "problems": problems}, indent=2))
    else:
        for p in problems:
            color = "red" if p["severity"] == "error" else "yellow"
            click.echo(f"{p['task_id']}  {click.style(p['severity'], fg=color)}  {p['message']}")
        click.echo(f"{spec}: {len(task_list)} tasks, {len(errors)} with errors (no answer can pass), "
                   f"{len(warnings)} with warnings only")
    if errors:
        sys.exit(1)


@cli.command()
@click.option("--tasks", "-t", "tasks_spec", required=True, envvar="BITAGENT_TASKS", show_envvar=True,
              help="The task source the responses answer, e.g. bfcl or bfcl:live_simple.")
@click.option("--scorer", "-s", default="bfcl", show_default=True, envvar="BITAGENT_SCORER", show_envvar=True)
@click.option("--responses", "-r", type=click.Path(exists=True, dir_okay=False),
              help='JSON lines: {"task_id": ..., "response": "text" or {"tool_calls": [...]} or, for '
                   'multi-turn tasks, a list of turns of raw step texts, "id": optional}.')
@click.option("--bfcl-result", type=click.Path(exists=True, dir_okay=False),
              help='A BFCL result file as BFCL wrote it (JSON lines {"id", "result"}), instead of --responses.')
@click.option("--output", "-o", type=click.Path(dir_okay=False),
              help="Write each scored line here, with score, passed and error_type added.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of seeded task sources (bfcl-shuffle).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def score(tasks_spec: str, scorer: str, responses: str | None, bfcl_result: str | None, output: str | None,
          seed: int, as_json: bool) -> None:
    """Re-score saved responses against a task source, without any model."""
    import gc
    import tempfile

    if (responses is None) == (bfcl_result is None):
        raise click.UsageError("give one of --responses and --bfcl-result")
    if bfcl_result is not None:  # BFCL's result lines become responses lines (agent.read_bfcl_result)
        from bitagent_core.agent import read_bfcl_result

        try:
            converted = read_bfcl_result(bfcl_result)
        except (ValueError, OSError) as exc:
            raise click.ClickException(f"{bfcl_result}: {exc}") from None
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8") as f:
            f.writelines(json.dumps(line) + "\n" for line in converted)
        responses = f.name

    from bitagent_core import rescore
    from bitagent_core.runner import make_task_source

    registry = get_registry()
    try:
        source = make_task_source(registry, tasks_spec)
        task_list = list(source.tasks(seed=seed, limit=None))
        scorer_obj = registry.get("scorers", scorer).factory()
        try:
            lines, bad = rescore.read_responses(responses)
        finally:
            if bfcl_result is not None:
                Path(responses).unlink(missing_ok=True)
                responses = bfcl_result  # what error lines name
        gc.freeze()  # the loaded tasks live to the end: keep them out of the collector's way
        result = rescore.rescore(task_list, scorer_obj, lines, bad)
        if output:
            rescore.write_lines(output, result.lines)
    except (UnknownPluginObject, ValueError, OSError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    summary = rescore.summarize(result)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        _print_score_summary(summary, tasks_spec, scorer)
    for bad_line in result.bad:
        click.echo(f"error: {responses}:{bad_line.lineno}: {bad_line.message} (not scored)", err=True)
    if result.unknown:
        names = ", ".join(f"{task_id} (line {', '.join(map(str, lines_of))})"
                          for task_id, lines_of in sorted(result.unknown.items()))
        click.echo(f"error: {sum(map(len, result.unknown.values()))} response(s) name task ids that "
                   f"{tasks_spec} does not have (not scored): {names}", err=True)
    if not result.ok:
        sys.exit(1)


def _print_score_summary(summary: dict[str, Any], spec: str, scorer: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{scorer} scores on {spec}")
    for name, justify in (("category", "left"), ("responses", "right"), ("passed", "right"),
                          ("accuracy", "right"), ("mean score", "right")):
        table.add_column(name, justify=justify)
    for category, row in summary["per_category"].items():
        table.add_row(category, str(row["n"]), str(row["passed"]), f"{row['accuracy']:.3f}",
                      f"{row['mean_score']:.3f}")
    table.add_row("[bold]all", str(summary["n_scored"]), str(summary["n_passed"]),
                  f"[bold]{summary['accuracy']:.3f}", f"{summary['mean_score']:.3f}")
    console = Console()
    console.print(table)
    if summary["error_types"]:
        console.print("errors: " + ", ".join(f"{k} {v}" for k, v in summary["error_types"].items()))


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
