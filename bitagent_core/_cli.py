"""The ``bitagent`` command line. Every option can also come from a ``BITAGENT_*`` environment variable
or from ``--config FILE.toml`` (top-level keys apply to every command, ``[evaluate]``-style tables to one);
the command line wins over the environment, which wins over the file.

Importing this module must stay cheap: ``bitagent --help`` loads plugins (for their commands) but never
llama_cpp, bittensor or huggingface_hub.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

import click

import bitagent_core
from bitagent_core._plugins import PluginRegistry, UnknownPluginObject, get_registry
from bitagent_core.model import Task
from bitagent_core.toolkit.commands import TaskLimit


def _config_line(text: str, table: str | None, key: str | None) -> int:
    """The line of ``key`` in ``[table]`` (top level: ``None``), or of the ``[table]`` header itself, in a TOML
    file's text (tomllib keeps no positions); 1 when it cannot be found."""
    current: str | None = None
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("["):
            current = stripped.strip("[]").strip().replace(" ", "")
            if key is None and current == table:
                return lineno
            continue
        if key is not None and current == table:
            name = stripped.partition("=")[0].strip().strip("\"'")
            if name == key and "=" in stripped:
                return lineno
    return 1


def _params_of(command: click.Command) -> dict[str, click.Parameter]:
    """What a config file may call each parameter of ``command`` (and of its subcommands): the option's long
    names as typed on the command line (``format``, ``timeout``, ``json``) and, as before, the parameter's own
    name (``fmt``, ``timeout_s``, ``as_json``); dashes as underscores."""
    names: dict[str, click.Parameter] = {}
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            names.update(_params_of(sub))
    for param in command.params:
        if not param.name or param.name == "config_file":
            continue
        names[param.name] = param
        for opt in (*param.opts, *param.secondary_opts):
            if opt.startswith("--"):
                names[opt[2:].replace("-", "_")] = param
    return names


def _check_config_value(param: click.Parameter, value: Any, where: str, key: str) -> Any:
    """A value from the file converted by the option's own type: a bad one names the file, line and key."""
    try:
        if getattr(param, "multiple", False) and not isinstance(value, list):
            value = [value]
        param.type_cast_value(click.Context(click.Command("config")), value)
    except click.BadParameter as exc:
        raise click.BadParameter(f"{where}: {key} = {value!r}: {exc.message}", param_hint="--config") from None
    return value


def _option_items(value: Any, where: str) -> list[str]:
    """A config file's backend options (a ``backend_options`` table, or a ``backend_option`` list of
    ``key=value`` strings) as ``key=value`` strings."""
    if isinstance(value, dict):
        return [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in value.items()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    if isinstance(value, str):
        return [value]
    raise click.BadParameter(
        f"{where}: backend options are a table or a list of 'key=value' strings", param_hint="--config"
    )


def _load_config(path: str, meta: dict[str, Any]) -> dict[str, Any]:
    """The file's options as click's ``default_map``. Every key must be an option of some command and every
    table a command: a typo is an error naming ``file:line``. ``meta["bitagent.config_sources"]`` records
    where each backend option came from."""
    import tomllib

    try:
        with open(path, "rb") as f:
            raw = f.read()
        data = tomllib.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise click.BadParameter(f"no such file: {path}", param_hint="--config") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="--config") from None
    text = raw.decode("utf-8")
    sources: dict[str, str] = {}
    meta["bitagent.config_sources"] = sources

    def where(table: str | None, key: str | None) -> str:
        return f"{path}:{_config_line(text, table, key)}"

    def options_of(
        table: str | None, items: dict[str, Any], allowed: dict[str, click.Parameter], scope: str
    ) -> dict[str, Any]:
        own: dict[str, Any] = {}
        for key, value in items.items():
            name = key.replace("-", "_")  # option names in files may use dashes or underscores
            if name in ("backend_options", "backend_option"):
                if "backend_option" not in allowed:
                    raise click.BadParameter(
                        f"{where(table, key)}: {scope} takes no backend options", param_hint="--config"
                    )
                option_items = _option_items(value, where(table, key))
                for item in option_items:
                    option_key = item.partition("=")[0].strip()
                    line = (
                        _config_line(text, f"{table}.{key}" if table else key, option_key)
                        if isinstance(value, dict)
                        else _config_line(text, table, key)
                    )
                    sources[option_key] = f"{path}:{line}"
                own["backend_option"] = option_items
            elif isinstance(value, dict):
                raise click.BadParameter(
                    f"{where(table, None) if table else where(key, None)}: "
                    f"unknown table [{f'{table}.' if table else ''}{key}]",
                    param_hint="--config",
                )
            elif name not in allowed:
                if table is None:
                    raise click.BadParameter(
                        f"{where(table, key)}: no command has an option {key!r}", param_hint="--config"
                    )
                known = ", ".join(
                    sorted(
                        {
                            (p.opts[-1] if p.opts[-1].startswith("--") else p.opts[0]).lstrip("-")
                            for p in allowed.values()
                        }
                    )
                )
                raise click.BadParameter(
                    f"{where(table, key)}: {scope} has no option {key!r} (known: {known})", param_hint="--config"
                )
            else:
                param = allowed[name]
                if table is None:  # each command reads a top-level key by its own option of that name
                    own[name] = value
                else:
                    assert param.name is not None
                    own[param.name] = _check_config_value(param, value, where(table, key), key)
        return own

    every: dict[str, click.Parameter] = {}
    for command in cli.commands.values():
        every.update(_params_of(command))
    shared = options_of(
        None,
        {k: v for k, v in data.items() if not isinstance(v, dict) or k.replace("-", "_") == "backend_options"},
        every,
        "no command",
    )
    default_map: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key.replace("-", "_") != "backend_options" and key not in cli.commands:
            known = ", ".join(sorted(cli.commands))
            raise click.BadParameter(
                f"{where(key, None)}: [{key}] is not a command (commands: {known})", param_hint="--config"
            )
    for name, command in cli.commands.items():
        table: dict[str, Any] = data[name] if isinstance(data.get(name), dict) else {}
        params = _params_of(command)
        common = {
            (params[key].name or key): _check_config_value(params[key], value, where(None, key), key)
            for key, value in shared.items()
            if key in params
        }
        if "backend_option" in shared and "backend_option" in params:
            common["backend_option"] = shared["backend_option"]
        own = options_of(name, table, params, f"the {name} command")
        default_map[name] = {**common, **own}
        if isinstance(command, click.Group):
            default_map[name].update({sub: default_map[name] for sub in command.commands})
    return default_map


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(bitagent_core.__version__, prog_name="bitagent")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    envvar="BITAGENT_CONFIG",
    show_envvar=True,
    help="TOML file with option defaults.",
)
@click.pass_context
def cli(ctx: click.Context, config_file: str | None) -> None:
    """Evaluate tool-calling models the way Bittensor Subnet 20 (BitAgent) does."""
    if config_file:
        ctx.default_map = _load_config(config_file, ctx.meta)


def _apply_config(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """``bitagent evaluate --config FILE``: the file's options for this command, read before any other option
    (the option is eager), over those of a ``--config`` given before the command."""
    if not value:
        return
    loaded: Any = _load_config(value, ctx.find_root().meta)
    for name in ctx.command_path.split()[1:]:
        loaded = loaded.get(name, {}) if isinstance(loaded, dict) else {}
    ctx.default_map = {**(ctx.default_map or {}), **loaded}


def add_config_options(group: click.Group) -> None:
    """Every command takes ``--config FILE`` after its name too (``bitagent evaluate --config f.toml``)."""
    for command in group.commands.values():
        if not any(p.name == "config_file" for p in command.params):
            command.params.append(
                click.Option(
                    ["--config", "config_file"],
                    type=click.Path(dir_okay=False),
                    is_eager=True,
                    expose_value=False,
                    callback=_apply_config,
                    help="TOML file with option defaults (as bitagent --config).",
                )
            )
        if isinstance(command, click.Group):
            add_config_options(command)


BACKEND_OPTIONS_ENV = "BITAGENT_BACKEND_OPTIONS"


def _backend_options(ctx: click.Context, values: tuple[str, ...]) -> tuple[dict[str, str], dict[str, str]]:
    """The raw backend options and where each came from: ``-B key=value`` flags (each split at its first
    ``=`` only), else ``BITAGENT_BACKEND_OPTIONS`` (items separated like a shell would), else the config file."""
    import os

    from click.core import ParameterSource

    from bitagent_core.options import OptionError, parse_option_args, parse_option_string

    try:
        if ctx.get_parameter_source("backend_option") is ParameterSource.COMMANDLINE:
            options = parse_option_args(values, "-B")
            return options, {k: f"-B {k}" for k in options}
        if os.environ.get(BACKEND_OPTIONS_ENV):
            options = parse_option_string(os.environ[BACKEND_OPTIONS_ENV], BACKEND_OPTIONS_ENV)
            return options, {k: BACKEND_OPTIONS_ENV for k in options}
        file_sources = ctx.meta.get("bitagent.config_sources", {})
        options = parse_option_args(values, "--config")
        return options, {k: file_sources.get(k, "--config") for k in options}
    except OptionError as exc:
        raise click.BadParameter(str(exc), param_hint="-B") from None


def _evaluate_epilog() -> str:
    from bitagent_core._results_view import EXIT_CODES

    return "\b\nExit codes:\n" + "\n".join(f"  {code:<4} {text}" for code, text in EXIT_CODES.items())


@cli.command(epilog=_evaluate_epilog())
@click.option(
    "--model",
    "-m",
    envvar="BITAGENT_MODEL",
    show_envvar=True,
    help="Model for the backend: a GGUF path, hf://org/repo/file.gguf, org/name[@rev]; "
    "default: the backend's default (llama-cpp: the embedded Qwen2.5-Coder-0.5B).",
)
@click.option("--backend", "-b", default="llama-cpp", show_default=True, envvar="BITAGENT_BACKEND", show_envvar=True)
@click.option(
    "--tasks",
    "-t",
    default="bitagent",
    show_default=True,
    envvar="BITAGENT_TASKS",
    show_envvar=True,
    help="Task source, optionally with an argument: bitagent, bitagent:irrelevance, jsonl:FILE...; "
    "several separated by commas (--limit applies to each).",
)
@click.option("--scorer", "-s", default="bitagent", show_default=True, envvar="BITAGENT_SCORER", show_envvar=True)
@click.option(
    "--limit",
    "-n",
    type=TaskLimit(),
    default="20",
    show_default=True,
    envvar="BITAGENT_LIMIT",
    show_envvar=True,
    help="Number of tasks per task source, or 'all'.",
)
@click.option("--seed", type=int, default=0, show_default=True, envvar="BITAGENT_SEED", show_envvar=True)
@click.option(
    "--repeats",
    "-k",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    envvar="BITAGENT_REPEATS",
    show_envvar=True,
    help="Run each task k times; the summary adds pass@k and pass^k per category.",
)
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(min=1),
    envvar="BITAGENT_CONCURRENCY",
    show_envvar=True,
    help="Requests in flight (default: the backend's own).",
)
@click.option(
    "--output-dir",
    "-o",
    default="runs",
    show_default=True,
    type=click.Path(file_okay=False),
    envvar="BITAGENT_OUTPUT_DIR",
    show_envvar=True,
)
@click.option(
    "--backend-option",
    "-B",
    "backend_option",
    multiple=True,
    help="Backend option key=value (repeatable; split at the first '='), e.g. -B n_ctx=4096 -B n_threads=2 "
    "[env var: BITAGENT_BACKEND_OPTIONS, items separated like a shell would].",
)
@click.option(
    "--tool-format",
    type=click.Choice(["prompt", "native"]),
    default="prompt",
    show_default=True,
    envvar="BITAGENT_TOOL_FORMAT",
    show_envvar=True,
    help="Tools in the BFCL-style system prompt (the validator's way) or as native tools=.",
)
@click.option(
    "--temperature",
    type=click.FloatRange(min=0.0),
    default=0.0,
    show_default=True,
    envvar="BITAGENT_TEMPERATURE",
    show_envvar=True,
    help="Sampling temperature (the validator uses 0).",
)
@click.option(
    "--max-tokens",
    type=click.IntRange(min=1),
    default=160,
    show_default=True,
    envvar="BITAGENT_MAX_TOKENS",
    show_envvar=True,
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0.1),
    default=300.0,
    show_default=True,
    envvar="BITAGENT_TIMEOUT",
    show_envvar=True,
    help="Seconds per request, on every backend (in-process llama.cpp stops generating at the deadline).",
)
@click.option(
    "--max-failures",
    envvar="BITAGENT_MAX_FAILURES",
    show_envvar=True,
    metavar="N|P%",
    help="Failed samples (timeouts, backend errors) allowed before the exit code is 4, as a count or a "
    "percentage [default: no limit, but all failing is always exit 4].",
)
@click.option(
    "--resume",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    envvar="BITAGENT_RESUME",
    show_envvar=True,
    help="Finish an earlier run directory: skips its finished samples. Flags that "
    "change which tasks run or how they are scored are refused; --timeout, "
    "--concurrency and backend options may change (recorded in results.json).",
)
@click.option(
    "--server-python",
    envvar="BITAGENT_SERVER_PYTHON",
    show_envvar=True,
    help="Interpreter that runs the server (sglang, vllm, llama-cpp-server), e.g. a venv's python.",
)
@click.option(
    "--visible-devices",
    envvar="BITAGENT_VISIBLE_DEVICES",
    show_envvar=True,
    help="GPUs for the server: sets its CUDA_VISIBLE_DEVICES (e.g. 0 or 0,1).",
)
@click.option(
    "--base-url",
    envvar="BITAGENT_BASE_URL",
    show_envvar=True,
    help="openai backend: URL of a running OpenAI-compatible server (several: comma-separated).",
)
@click.option(
    "--api-key-env",
    envvar="BITAGENT_API_KEY_ENV",
    show_envvar=True,
    help="openai backend: the environment variable holding the API key [default: OPENAI_API_KEY].",
)
@click.option(
    "--ready-timeout",
    type=click.FloatRange(min=1),
    envvar="BITAGENT_READY_TIMEOUT",
    show_envvar=True,
    help="Seconds to wait for a server to answer /v1/models [default: 900; openai: 60].",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "markdown", "csv"]),
    default="table",
    show_default=True,
    envvar="BITAGENT_FORMAT",
    show_envvar=True,
    help="How to print the results.",
)
@click.option("--json", "as_json", is_flag=True, help="Print only the results as JSON (the same as --format json).")
@click.option(
    "--as-validator",
    "as_validator",
    is_flag=False,
    flag_value="bitagent",
    default=None,
    metavar="[COMPETITION]",
    envvar="BITAGENT_AS_VALIDATOR",
    show_envvar=True,
    help="Run what a validator runs for the competition (default: bitagent): its task mix, sample size "
    "and scorer, prompt tool format, temperature 0, 160 tokens. Only the seed differs: validators "
    "draw a private one per round.",
)
@click.option(
    "--task-id",
    "task_ids",
    multiple=True,
    metavar="ID",
    help="Run only the task with this id (repeatable; --limit does not apply then).",
)
@click.option(
    "--tag",
    "tags",
    multiple=True,
    metavar="LABEL",
    help="Label the run (repeatable): recorded in results.json, shown by runs list, compare and report.",
)
@click.pass_context
def evaluate(
    ctx: click.Context,
    model: str | None,
    backend: str,
    tasks: str,
    scorer: str,
    limit: int | None,
    seed: int,
    repeats: int,
    concurrency: int | None,
    output_dir: str,
    backend_option: tuple[str, ...],
    tool_format: str,
    temperature: float,
    max_tokens: int,
    timeout_s: float,
    max_failures: str | None,
    resume: Path | None,
    server_python: str | None,
    visible_devices: str | None,
    base_url: str | None,
    api_key_env: str | None,
    ready_timeout: float | None,
    fmt: str,
    as_json: bool,
    as_validator: str | None,
    task_ids: tuple[str, ...],
    tags: tuple[str, ...],
) -> None:
    """Evaluate a model on a task source and score it."""
    from click.core import ParameterSource

    from bitagent_core import _results_view as results_view
    from bitagent_core._progress import ConsoleProgress
    from bitagent_core._runner import Evaluation, RunConfig, RunIOError, StartupError, config_for_resume

    try:
        results_view.parse_max_failures(max_failures)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--max-failures") from None
    registry = get_registry()
    if as_validator is not None:
        tasks, scorer, limit, tool_format, temperature, max_tokens = _validator_run(ctx, registry, as_validator)
        tags = (*tags, f"as-validator:{as_validator}")
    server_values = {
        "server_python": server_python,
        "visible_devices": visible_devices,
        "base_url": base_url,
        "api_key_env": api_key_env,
        "ready_timeout": ready_timeout,
    }
    options, sources = _backend_options(ctx, backend_option)
    changes: dict[str, Any] = {}
    if resume is not None:
        given = {name for name in ctx.params if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE}
        values = {
            "tasks": tasks,
            "backend": backend,
            "model": model,
            "scorer": scorer,
            "limit": limit,
            "seed": seed,
            "tool_format": tool_format,
            "temperature": temperature,
            "max_tokens": max_tokens,
            "timeout_s": timeout_s,
            "concurrency": concurrency,
            "repeats": repeats,
            "task_ids": list(task_ids),
        }
        requested: dict[str, Any] = {name: value for name, value in values.items() if name in given}
        try:
            stored = RunConfig.from_json(_read_config(resume))
            server_options = _server_options(ctx, registry, stored.backend, server_values)
            options.update(server_options)
            sources.update({key: f"--{key.replace('_', '-')}" for key in server_options})
            if options:
                requested["backend_options"] = options
            config, changes = config_for_resume(resume, requested)
        except (OSError, ValueError, KeyError) as exc:
            raise click.ClickException(str(exc)) from None
    else:
        for key, value in _server_options(ctx, registry, backend, server_values).items():
            if key in options and options[key] != value:
                raise click.BadParameter(
                    f"{key} given twice: -B {key}={options[key]} and --{key.replace('_', '-')} {value}"
                )
            options[key] = value
            sources[key] = f"--{key.replace('_', '-')}"
        config = RunConfig(
            tasks=tasks,
            backend=backend,
            model=model,
            scorer=scorer,
            limit=limit,
            seed=seed,
            concurrency=concurrency,
            output_dir=output_dir,
            backend_options=options,
            tool_format=tool_format,
            temperature=temperature,
            max_tokens=max_tokens,
            timeout_s=timeout_s,
            repeats=repeats,
            task_ids=list(task_ids),
            tags=list(tags),
        )
    _check_backend_options(registry, config.backend, config.backend_options, sources)
    fmt = "json" if as_json else fmt
    progress = ConsoleProgress()  # on stderr: with --json or --format json alike, stdout holds only the results
    evaluation = Evaluation(config, registry, resume_dir=resume, observer=progress, resume_changes=changes)
    try:
        results = _run_until_signal(evaluation, progress.say)
    except KeyboardInterrupt:
        where = evaluation.run_dir
        click.echo(f"interrupted: finished samples are in {where}; continue with --resume {where}", err=True)
        sys.exit(results_view.EXIT_INTERRUPTED)
    except StartupError as exc:
        click.echo(f"error: {exc}", err=True)
        click.echo(f"nothing was evaluated; {evaluation.run_dir} records the error (status: failed)", err=True)
        sys.exit(results_view.EXIT_STARTUP)
    except RunIOError as exc:
        kept = f"; the finished samples are kept in {evaluation.run_dir}" if evaluation.run_dir else ""
        click.echo(f"error: {exc.strerror or exc}{kept}", err=True)
        sys.exit(results_view.EXIT_IO)
    except (UnknownPluginObject, ValueError, TypeError, FileNotFoundError, RuntimeError, OSError) as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
    click.echo(results_view.render(results, fmt))
    if results.status == "interrupted":
        click.echo(f"interrupted: continue with --resume {results.run_dir}", err=True)
        sys.exit(results_view.EXIT_INTERRUPTED)
    if results_view.too_many_failures(results, max_failures):
        click.echo(
            f"error: {results.n_failed} of {results.n_tasks} samples failed"
            f"{f' (--max-failures {max_failures})' if max_failures else ''}",
            err=True,
        )
        sys.exit(results_view.EXIT_FAILURES)


#: what a validator's evaluation fixes besides the competition's own choices (bitagent_plugins/subnet/pipeline.py)
VALIDATOR_TOOL_FORMAT, VALIDATOR_TEMPERATURE, VALIDATOR_MAX_TOKENS = "prompt", 0.0, 160


def _validator_run(ctx: click.Context, registry: PluginRegistry, name: str) -> tuple[str, str, int, str, float, int]:
    """``--as-validator NAME``: the tasks, scorer, limit, tool format, temperature and max tokens a validator
    uses for competition NAME. A flag that would change one of them is an error, not silently overridden."""
    from click.core import ParameterSource

    try:
        competition = registry.create("competitions", name)
    except UnknownPluginObject as exc:
        raise click.BadParameter(str(exc), param_hint="--as-validator") from None
    given_by_user = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT, ParameterSource.DEFAULT_MAP)
    fixed = ("tasks", "scorer", "task_ids", "tool_format", "temperature", "max_tokens")
    given = [name for name in fixed if ctx.get_parameter_source(name) in given_by_user]
    if given:
        flags = ", ".join("--task-id" if g == "task_ids" else "--" + g.replace("_", "-") for g in given)
        raise click.UsageError(f"--as-validator runs the validator's own choices; leave out {flags}")
    limit = int(competition.sample_size)
    if ctx.get_parameter_source("limit") in given_by_user and ctx.params.get("limit") is not None:
        # a smaller sample of the same mix: quicker, with a wider interval; said, never silent
        limit = int(ctx.params["limit"])
        click.echo(
            f"note: --as-validator with --limit {limit}: a validator evaluates {competition.sample_size} "
            f"tasks of competition {name}; this is a sample of the same mix",
            err=True,
        )
    return (
        f"competition:{name}",
        str(competition.scorer),
        limit,
        VALIDATOR_TOOL_FORMAT,
        VALIDATOR_TEMPERATURE,
        VALIDATOR_MAX_TOKENS,
    )


def _say(text: str) -> None:
    click.echo(text, err=True)


def _read_config(run_dir: Path) -> dict[str, Any]:
    from bitagent_core import rundir

    return rundir.read_results(run_dir).config


def _check_backend_options(
    registry: PluginRegistry, backend: str, options: dict[str, str], sources: dict[str, str]
) -> None:
    """Unknown or mistyped backend options are usage errors naming their source, before anything runs."""
    from bitagent_core.options import OptionError

    try:
        registry.backend_options(backend, options, sources)
    except UnknownPluginObject:
        return  # the run reports the unknown backend itself
    except OptionError as exc:
        raise click.UsageError(str(exc)) from None


def _server_options(
    ctx: click.Context, registry: PluginRegistry, backend: str, values: dict[str, Any]
) -> dict[str, str]:
    """The server flags (--server-python, --base-url...) as backend options, for backends that take them.

    A flag given on the command line to a backend that does not take it is an error; one that comes
    from the environment or a config file is meant for other backends and is left out.
    """
    from click.core import ParameterSource

    try:
        accepted: set[str] = set(registry.get("backends", backend).options.model_fields)
    except UnknownPluginObject:
        accepted = set()  # the run reports the unknown backend itself
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


def _run_until_signal(evaluation: Any, say: Any) -> Any:
    """Run the evaluation. The first Ctrl-C is acknowledged at once and lets the requests in flight finish
    (the run ends interrupted, every finished sample kept); a second one cancels them; a third raises
    KeyboardInterrupt wherever the program is. SIGTERM cancels like a second Ctrl-C.

    The handler is a plain signal handler, not the event loop's: in-process llama.cpp generates on the loop's
    thread, where a loop callback would wait for the generation to end. Cancelling the task that is running
    the generation is seen by the backend between tokens (see the llama-cpp backend's ``_Deadline``)."""
    import asyncio  # here, not at the top: `bitagent --help` never needs it (it pulls ssl: ~30 ms)

    presses = 0
    running: dict[str, Any] = {}

    def on_sigint(signum: int, frame: Any) -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            say("stopping after the current request; Ctrl-C again to abort")
            evaluation.request_stop()
        elif presses == 2 and running:
            say("aborting the requests in flight")
            loop, main_task = running["loop"], running["task"]
            current = asyncio.current_task(loop) if loop.is_running() else None
            if current is not None and current is not main_task:
                current.cancel()  # the request being generated right now, on this thread
            loop.call_soon_threadsafe(main_task.cancel)
        else:
            raise KeyboardInterrupt

    async def main() -> Any:
        current = asyncio.current_task()
        loop = asyncio.get_running_loop()
        running.update(loop=loop, task=current)
        try:
            loop.add_signal_handler(signal.SIGTERM, current.cancel)  # type: ignore[union-attr]
        except (NotImplementedError, RuntimeError):
            pass
        try:
            results: dict[str, Any] = await evaluation.run()
            return results
        except asyncio.CancelledError:
            raise KeyboardInterrupt from None

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        return asyncio.run(main())
    finally:
        signal.signal(signal.SIGINT, previous)


def _list_registrations(kind: str, as_json: bool) -> None:
    registry = get_registry()
    items = registry.registrations(kind)
    if as_json:
        click.echo(
            json.dumps(
                [{"name": r.name, "plugin": r.plugin, "description": r.description} for r in items.values()], indent=2
            )
        )
        return
    if not items:
        click.echo(f"no {kind.replace('_', ' ')} registered")
    for r in items.values():
        click.echo(f"{r.name:<24} {r.description}  [{r.plugin}]")


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def plugins(ctx: click.Context, as_json: bool) -> None:
    """List installed plugins, what they provide, and any that failed to load (then the exit code is 1)."""
    if ctx.invoked_subcommand is not None:
        return
    registry = get_registry()
    provided: dict[str, dict[str, list[str]]] = {}
    for kind in PluginRegistry.KINDS:
        for r in registry.registrations(kind).values():
            provided.setdefault(r.plugin, {}).setdefault(kind, []).append(r.name)
    rows: list[dict[str, Any]] = [
        {
            "name": p.name,
            "module": p.module,
            "distribution": p.distribution,
            "version": p.version,
            "api_version": p.api_version,
            "hooks": p.hooks,
            "provides": provided.get(p.name, {}),
            "error": p.error,
        }
        for p in registry.plugins
    ]
    failed = [row["name"] for row in rows if row["error"]]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        if failed:
            sys.exit(1)
        return
    for row in rows:
        provides = ", ".join(f"{kind.replace('_', ' ')}: {', '.join(names)}" for kind, names in row["provides"].items())
        state = provides or ("hooks: " + ", ".join(row["hooks"]) if row["hooks"] else "-")
        if row["error"]:
            state = click.style(f"FAILED: {row['error']}", fg="red")
        click.echo(f"{row['name']:<20} {row['distribution'] or '-'} {row['version'] or ''}  {state}")
    if failed:
        click.echo(f"error: {len(failed)} plugin(s) failed to load: {', '.join(failed)}", err=True)
        sys.exit(1)


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
            row["version"] = source.version
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
    from bitagent_core._runner import make_task_source
    from bitagent_core.toolkit.prompting import build_request

    try:
        source = make_task_source(get_registry(), spec)
        for i, task in enumerate(source.tasks(seed=seed, limit=None if task_id else index + 1)):
            if not isinstance(task, Task):
                raise click.ClickException(f"task source {spec!r}: task #{i}: not a Task but a {type(task).__name__}")
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
    from bitagent_core._runner import make_task_source
    from bitagent_core.protocols import ValidatingTaskSource
    from bitagent_core.toolkit.checks import iter_validation, task_problems

    registry = get_registry()
    try:
        source = make_task_source(registry, spec)
        generated = list(source.tasks(seed=seed, limit=None))
        scorer_obj = registry.get("scorers", scorer).factory() if scorer else None
        # what makes a task unusable (evaluate refuses these before loading a model): checked first
        problems: list[dict[str, str]] = []
        task_list, seen = [], set()
        for index, task in enumerate(generated):
            unusable = task_problems(task)
            task_id = task.id if isinstance(task, Task) and isinstance(task.id, str) and task.id else f"#{index}"
            if not unusable and task.id in seen:
                unusable = ["the same id as an earlier task (ids must be unique)"]
            if unusable:
                problems += [{"task_id": task_id, "severity": "error", "message": m} for m in unusable]
                continue
            seen.add(task.id)
            task_list.append(task)
        own = isinstance(source, ValidatingTaskSource)
        if isinstance(source, ValidatingTaskSource):
            problems += [p.to_json() for p in source.validate()]
        failing = {p["task_id"] for p in problems if p["severity"] == "error"}
        problems += [
            {"task_id": task_id, "severity": severity, "message": message}
            for task_id, severity, message in iter_validation(task_list, scorer_obj, structural=not own, skip=failing)
        ]
    except (UnknownPluginObject, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    errors = sorted({p["task_id"] for p in problems if p["severity"] == "error"})
    warnings = sorted({p["task_id"] for p in problems if p["severity"] != "error"} - set(errors))
    if as_json:
        click.echo(
            json.dumps(
                {
                    "spec": spec,
                    "n_tasks": len(generated),
                    "tasks_with_errors": errors,
                    "tasks_with_warnings": warnings,
                    "problems": problems,
                },
                indent=2,
            )
        )
    else:
        for p in problems:
            color = "red" if p["severity"] == "error" else "yellow"
            click.echo(f"{p['task_id']}  {click.style(p['severity'], fg=color)}  {p['message']}")
        click.echo(
            f"{spec}: {len(generated)} tasks, {len(errors)} with errors (no answer can pass), "
            f"{len(warnings)} with warnings only"
        )
    if errors:
        sys.exit(1)


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
    from bitagent_core._plugins import PluginSelectionError

    global _commands_added
    if not _commands_added:
        try:
            registry = get_registry()
        except PluginSelectionError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)
        registry.register_commands(cli)
        add_config_options(cli)
        _commands_added = True
    cli()
