"""The ``subnet`` plugin: adds ``bitagent mine`` and ``bitagent validate`` to the CLI.

Every option also reads a ``BITAGENT_*`` environment variable (shown in ``--help``); the upstream subnet's
flag names (``--subtensor.network``, ``--wallet.name``, ``--miner-hf-model-name-to-submit``,
``--validator-hf-cache-dir``, ...) work as aliases, so existing pm2 configs keep working.

``mine_command(substrate_factory=...)`` / ``validate_command(...)`` build the same commands against any
``bittensor.Substrate`` implementation (an in-memory chain, a recorded one): the CLI is the same code.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from bitagent_core import OptionError, PluginRegistry, hookimpl
from bitagent_core.toolkit import parse_option_args

ENV = "BITAGENT_"


def _opt(*names: str, env: str, **kwargs: Any) -> Callable[[Any], Any]:
    return click.option(*names, envvar=ENV + env, show_envvar=True, **kwargs)


def _chain_options(func: Any) -> Any:
    for decorator in reversed(
        [
            _opt(
                "--netuid",
                type=click.IntRange(min=0),
                default=20,
                show_default=True,
                env="NETUID",
                help="Subnet to mine/validate on (20 is BitAgent on finney).",
            ),
            _opt(
                "--subtensor.network",
                "network",
                default="finney",
                show_default=True,
                env="SUBTENSOR_NETWORK",
                help="finney, test, local, or a ws(s):// endpoint.",
            ),
            _opt(
                "--subtensor.chain_endpoint",
                "chain_endpoint",
                env="SUBTENSOR_CHAIN_ENDPOINT",
                help="A ws(s):// endpoint; overrides --subtensor.network.",
            ),
            _opt("--wallet.name", "wallet_name", default="default", show_default=True, env="WALLET_NAME"),
            _opt("--wallet.hotkey", "wallet_hotkey", default="default", show_default=True, env="WALLET_HOTKEY"),
            _opt("--wallet.path", "wallet_path", default="~/.bittensor/wallets", show_default=True, env="WALLET_PATH"),
            _opt("--logging.debug", "debug", is_flag=True, env="LOGGING_DEBUG", help="Debug logs for bitagent."),
            _opt(
                "--logging.trace",
                "trace",
                is_flag=True,
                env="LOGGING_TRACE",
                help="Debug logs for bitagent and the bittensor SDK (RPC traffic).",
            ),
            _opt(
                "--log_level",
                "--log-level",
                "log_level",
                env="LOG_LEVEL",
                type=click.Choice(["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
                help="Log level (upstream's flag); TRACE = --logging.trace, DEBUG = --logging.debug.",
            ),
        ]
    ):
        func = decorator(func)
    return func


def _setup_logging(debug: bool, trace: bool, log_level: str | None = None) -> None:
    if log_level:
        trace = trace or log_level.upper() == "TRACE"
        debug = debug or log_level.upper() == "DEBUG"
    level = logging.DEBUG if (debug or trace) else getattr(logging, (log_level or "INFO").upper(), logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("bitagent").setLevel(level)
    logging.getLogger("bittensor").setLevel(logging.DEBUG if trace else logging.WARNING)
    for noisy in ("httpx", "httpcore", "huggingface_hub", "filelock"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if trace else logging.WARNING)


class _UpstreamCommand(click.Command):
    """A command that also takes upstream's flags (``upstream_flags``): mapped or ignored ones are rewritten
    before parsing (each said once at INFO), refused ones stop with the flag to use instead."""

    role: Any = "validator"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        from bitagent_plugins.subnet.upstream_flags import RefusedFlag, translate

        try:
            args, notes = translate(args, self.role)
        except RefusedFlag as exc:
            raise click.UsageError(str(exc), ctx) from None
        ctx.meta["bitagent.upstream_notes"] = notes
        return super().parse_args(ctx, args)


class _UpstreamMineCommand(_UpstreamCommand):
    role = "miner"


def _upstream_notes() -> None:
    for note in click.get_current_context().meta.get("bitagent.upstream_notes", []):
        logging.getLogger("bitagent.subnet").info("%s", note)


def _network(network: str, chain_endpoint: str | None) -> str:
    return chain_endpoint or network


def mine_command(substrate_factory: Callable[[], Any] | None = None) -> click.Command:
    @click.command("mine", cls=_UpstreamMineCommand)
    @_opt(
        "--hf-model-name",
        "--miner-hf-model-name-to-submit",
        "model",
        required=True,
        env="HF_MODEL_NAME",
        help="The Hugging Face submission: org/name or org/name@revision (a commit sha is best).",
    )
    @_chain_options
    @_opt(
        "--axon.ip",
        "host",
        default="127.0.0.1",
        show_default=True,
        env="AXON_IP",
        help="Address the submission endpoint binds to (0.0.0.0 for all interfaces).",
    )
    @_opt(
        "--axon.port",
        "port",
        type=click.IntRange(0, 65535),
        default=8091,
        show_default=True,
        env="AXON_PORT",
        help="Port of the submission endpoint (0: any free port).",
    )
    @_opt(
        "--external-ip",
        "--axon.external_ip",
        "external_ip",
        env="EXTERNAL_IP",
        help="Public address published with ServeAxon (default: --axon.ip; given alone, binds 0.0.0.0).",
    )
    @_opt(
        "--external-port",
        "--axon.external_port",
        "external_port",
        type=click.IntRange(1, 65535),
        env="EXTERNAL_PORT",
        help="Public port published with ServeAxon (default: the bound port).",
    )
    @_opt(
        "--commit/--no-commit",
        "commit",
        default=True,
        show_default=True,
        env="COMMIT",
        help="Publish the submission as an on-chain commitment.",
    )
    @_opt(
        "--serve-axon/--no-serve-axon",
        "serve_axon",
        default=True,
        show_default=True,
        env="SERVE_AXON",
        help="Publish the endpoint's address on chain (ServeAxon).",
    )
    @_opt(
        "--metagraph-refresh",
        "metagraph_refresh",
        type=click.FloatRange(min=0.1),
        default=120.0,
        show_default=True,
        env="METAGRAPH_REFRESH",
        help="Seconds between metagraph refreshes (who may ask).",
    )
    @_opt(
        "--ready-file",
        "ready_file",
        type=click.Path(dir_okay=False, path_type=Path),
        env="READY_FILE",
        help="Write host:port here once the endpoint listens.",
    )
    def mine(
        model: str,
        netuid: int,
        network: str,
        chain_endpoint: str | None,
        wallet_name: str,
        wallet_hotkey: str,
        wallet_path: str,
        debug: bool,
        trace: bool,
        log_level: str | None,
        host: str,
        port: int,
        external_ip: str | None,
        external_port: int | None,
        commit: bool,
        serve_axon: bool,
        metagraph_refresh: float,
        ready_file: Path | None,
    ) -> None:
        """Publish a Hugging Face model as this hotkey's submission (commitment + signed endpoint)."""
        from bitagent_plugins.subnet.chain import ChainUnavailable
        from bitagent_plugins.subnet.miner import MinerConfig, run_miner
        from bitagent_plugins.subnet.vetting import InvalidSubmission

        _setup_logging(debug, trace, log_level)
        _upstream_notes()
        source = click.get_current_context().get_parameter_source("host")
        if external_ip and source in (click.core.ParameterSource.DEFAULT, None):
            host = "0.0.0.0"
        config = MinerConfig(
            model=model,
            netuid=netuid,
            network=_network(network, chain_endpoint),
            wallet_name=wallet_name,
            wallet_hotkey=wallet_hotkey,
            wallet_path=wallet_path,
            host=host,
            port=port,
            external_ip=external_ip,
            external_port=external_port,
            commit=commit,
            serve_axon=serve_axon,
            metagraph_refresh_s=metagraph_refresh,
            ready_file=ready_file,
        )
        try:
            code = run_miner(config, substrate=substrate_factory() if substrate_factory else None)
        except InvalidSubmission as exc:
            raise click.BadParameter(exc.reason, param_hint="--hf-model-name") from None
        except (ChainUnavailable, OSError) as exc:
            raise click.ClickException(str(exc)) from None
        raise SystemExit(code)

    return mine


def _key_values(values: tuple[str, ...], flag: str) -> dict[str, str]:
    try:
        return parse_option_args(values, flag)
    except OptionError as exc:
        raise click.BadParameter(str(exc), param_hint=flag) from None


def _backend_options(
    values: tuple[str, ...],
    backend: str,
    registry: PluginRegistry,
    *,
    visible_devices: str | None,
    server_python: str | None,
    mem_fraction_static: float | None,
) -> dict[str, str]:
    try:
        options = parse_option_args(values, "-B")
        known = set(registry.get("backends", backend).options.model_fields)
    except OptionError as exc:
        raise click.BadParameter(str(exc), param_hint="-B") from None
    except LookupError as exc:
        raise click.BadParameter(str(exc), param_hint="--backend") from None
    wanted = {"visible_devices": visible_devices, "server_python": server_python}
    if mem_fraction_static is not None:
        key = "gpu_memory_utilization" if backend == "vllm" else "mem_fraction_static"
        wanted[key] = str(mem_fraction_static)
    for key, value in wanted.items():
        if value is None:
            continue
        if key not in known:
            raise click.BadParameter(
                f"does not apply to the {backend} backend", param_hint=f"--{key.replace('_', '-')}"
            )
        options.setdefault(key, str(value))
    try:
        sources = {k: f"-B {k}" if k not in wanted else f"--{k.replace('_', '-')}" for k in options}
        registry.backend_options(backend, options, sources)
    except OptionError as exc:
        raise click.BadParameter(str(exc), param_hint="-B") from None
    return options


def _device(device: str, visible_devices: str | None, backend: str) -> str | None:
    """Upstream's ``--neuron.device``, read as upstream read it: ``cuda:N`` is the N-th GPU among
    ``--neuron.visible_devices`` (``--neuron.visible_devices 1 --neuron.device cuda:0`` is GPU 1), or GPU N
    without them; ``cuda``/``cpu`` change nothing (a GPU engine cannot run on ``cpu``)."""
    from bitagent_plugins.subnet.upstream_flags import device_index

    value = device.strip().lower()
    if value.startswith("cuda:") and value[5:].isdigit() and backend in ("llama-cpp", "embedded"):
        return visible_devices  # in-process llama.cpp: the GPU is chosen by its own build (n_gpu_layers)
    if value.startswith("cuda:") and value[5:].isdigit():
        try:
            return device_index(value, visible_devices)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--neuron.device") from None
    if value == "cpu" and backend in ("sglang", "vllm"):
        raise click.BadParameter(
            f"the {backend} backend needs a GPU; use --backend llama-cpp-server on a CPU", param_hint="--neuron.device"
        )
    if value not in ("cpu", "cuda"):
        raise click.BadParameter("expected cpu, cuda or cuda:N", param_hint="--neuron.device")
    return visible_devices


def validate_command(substrate_factory: Callable[[], Any] | None = None) -> click.Command:
    @click.command("validate", cls=_UpstreamCommand)
    @_chain_options
    @_opt(
        "--backend",
        default="sglang",
        show_default=True,
        env="BACKEND",
        help="Backend that serves each model: sglang (GPU), vllm, llama-cpp-server, llama-cpp (GGUF only)...",
    )
    @_opt(
        "--backend-option",
        "-B",
        "backend_option",
        multiple=True,
        env="BACKEND_OPTIONS",
        help="Backend option key=value (repeatable), e.g. -B ready_timeout=1200.",
    )
    @_opt(
        "--competition",
        default="bitagent",
        show_default=True,
        env="COMPETITION",
        help="Competition plugin: task sources and mix, sample size, scorer, weight rule.",
    )
    @_opt(
        "--competition-option",
        "competition_option",
        multiple=True,
        env="COMPETITION_OPTIONS",
        help="A competition setting key=value (repeatable), e.g. multi_turn_share=0.2, longevity_versions=10.",
    )
    @_opt(
        "--sample-size",
        type=click.IntRange(min=1),
        env="SAMPLE_SIZE",
        help="Tasks per evaluation (default: the competition's).",
    )
    @_opt(
        "--cache-dir",
        "--validator-hf-cache-dir",
        "cache_dir",
        type=click.Path(file_okay=False, path_type=Path),
        default="~/.cache/bitagent/validator-hf",
        show_default=True,
        env="HF_CACHE_DIR",
        help="Hugging Face cache the models are downloaded into (and deleted from after evaluation).",
    )
    @_opt(
        "--hf-offline",
        is_flag=True,
        env="HF_OFFLINE",
        help="Read submissions from the pre-populated --cache-dir only (no Hub; HF_HUB_OFFLINE=1 implies it).",
    )
    @_opt(
        "--state-path",
        type=click.Path(dir_okay=False, path_type=Path),
        default="~/.bitagent/validator/state.sqlite",
        show_default=True,
        env="STATE_PATH",
        help="The validator's SQLite state (WAL).",
    )
    @_opt(
        "--runs-dir",
        type=click.Path(file_okay=False, path_type=Path),
        env="RUNS_DIR",
        help="Where each evaluation's run directory goes (default: next to the state, runs/).",
    )
    @_opt("--dry-run", is_flag=True, env="DRY_RUN", help="Do everything but submit weights.")
    @_opt(
        "--epoch-length",
        type=click.IntRange(min=1),
        default=100,
        show_default=True,
        env="EPOCH_LENGTH",
        help="Blocks between weight settings.",
    )
    @_opt(
        "--sync-interval",
        type=click.IntRange(min=1),
        default=10,
        show_default=True,
        env="SYNC_INTERVAL",
        help="Blocks between metagraph syncs and submission collection.",
    )
    @_opt(
        "--query-timeout",
        type=click.FloatRange(min=0.1),
        default=15.0,
        show_default=True,
        env="QUERY_TIMEOUT",
        help="Seconds to wait for a miner's endpoint.",
    )
    @_opt(
        "--allow-private-axons",
        is_flag=True,
        env="ALLOW_PRIVATE_AXONS",
        help="Also query endpoints on private/loopback addresses (local networks, tests).",
    )
    @_opt(
        "--visible-devices",
        "--neuron.visible_devices",
        "visible_devices",
        env="VISIBLE_DEVICES",
        help="GPUs for the model server (CUDA_VISIBLE_DEVICES), e.g. 0 or 0,1.",
    )
    @_opt(
        "--server-python",
        type=click.Path(dir_okay=False),
        env="SERVER_PYTHON",
        help="Python interpreter that has sglang/vllm installed (their own venv).",
    )
    @_opt(
        "--mem-fraction-static",
        "--validator-hf-server-mem-fraction-static",
        "mem_fraction_static",
        type=click.FloatRange(0, 1, min_open=True),
        env="MEM_FRACTION_STATIC",
        help="GPU memory fraction for the server (sglang mem_fraction_static, vllm gpu_memory_utilization).",
    )
    @_opt(
        "--request-timeout",
        type=click.FloatRange(min=1),
        default=300.0,
        show_default=True,
        env="REQUEST_TIMEOUT",
        help="Seconds per model request.",
    )
    @_opt(
        "--evaluation-deadline",
        type=click.FloatRange(min=1),
        default=3600.0,
        show_default=True,
        env="EVALUATION_DEADLINE",
        help="Seconds one model's whole evaluation may take (model start included); past it the model's process "
        "is stopped and the miss recorded (the model's fault when its requests timed out). Longer than "
        "--request-timeout.",
    )
    @_opt(
        "--max-params",
        type=click.IntRange(min=1),
        env="MAX_PARAMS",
        help="Largest model accepted, in parameters (default 10,000,000,000).",
    )
    @_opt(
        "--max-download-bytes",
        type=click.IntRange(min=1),
        env="MAX_DOWNLOAD_BYTES",
        help="Largest download accepted per model, in bytes (default 25 GB).",
    )
    @_opt(
        "--once",
        is_flag=True,
        env="ONCE",
        help="Run one round (sync, evaluate everything pending, set weights) and exit.",
    )
    @_opt("--max-rounds", type=click.IntRange(min=1), env="MAX_ROUNDS", help="Exit after this many rounds.")
    @_opt("--wandb", is_flag=True, env="WANDB", help="Report runs to Weights & Biases (pip install 'bitagent[wandb]').")
    @_opt(
        "--neuron.device",
        "device",
        env="NEURON_DEVICE",
        help="Upstream's device flag: cuda:N serves models on GPU N (= --visible-devices N); cpu/cuda: no change.",
    )
    @_opt(
        "--reevaluate-blocks",
        type=click.IntRange(min=0),
        default=7200,
        show_default=True,
        env="REEVALUATE_BLOCKS",
        help="Blocks between re-evaluations of each vetted model on a fresh private "
        "sample (0: never; 7200 is about a day).",
    )
    @_opt(
        "--ema-alpha",
        type=click.FloatRange(0, 1, min_open=True),
        default=0.3,
        show_default=True,
        env="EMA_ALPHA",
        help="Weight of a new evaluation in a model's moving average.",
    )
    @_opt(
        "--heartbeat",
        type=click.FloatRange(min=1),
        default=60.0,
        show_default=True,
        env="HEARTBEAT",
        help="Seconds between heartbeat log lines.",
    )
    @_opt(
        "--check",
        "check_only",
        is_flag=True,
        env="CHECK",
        help="Check wallet, registration, permit, chain, engine, GPU memory, disk and BFCL data; print one line "
        "per problem and exit (non-zero when there is one).",
    )
    @_opt(
        "--skip-start-check",
        is_flag=True,
        env="SKIP_START_CHECK",
        help="Start even when the start checks find problems (they are still logged).",
    )
    @_opt(
        "--weights-version-key",
        type=click.IntRange(min=0),
        env="WEIGHTS_VERSION_KEY",
        help="The version key sent with weights [default: upstream's 1000*major + 10*minor + patch of this "
        "release]; set it to what the subnet requires when its owner accepts this validator.",
    )
    @_opt(
        "--import-upstream-state",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        env="IMPORT_UPSTREAM_STATE",
        help="Import upstream's ft_state.npz (submissions, their blocks) into the "
        "state, then exit (read without unpickling anything but numpy arrays).",
    )
    def validate(
        netuid: int,
        network: str,
        chain_endpoint: str | None,
        wallet_name: str,
        wallet_hotkey: str,
        wallet_path: str,
        debug: bool,
        trace: bool,
        log_level: str | None,
        backend: str,
        backend_option: tuple[str, ...],
        competition: str,
        competition_option: tuple[str, ...],
        sample_size: int | None,
        cache_dir: Path,
        hf_offline: bool,
        state_path: Path,
        runs_dir: Path | None,
        dry_run: bool,
        epoch_length: int,
        sync_interval: int,
        query_timeout: float,
        allow_private_axons: bool,
        visible_devices: str | None,
        server_python: str | None,
        mem_fraction_static: float | None,
        request_timeout: float,
        evaluation_deadline: float,
        max_params: int | None,
        max_download_bytes: int | None,
        once: bool,
        max_rounds: int | None,
        wandb: bool,
        device: str | None,
        reevaluate_blocks: int,
        ema_alpha: float,
        heartbeat: float,
        check_only: bool,
        skip_start_check: bool,
        weights_version_key: int | None,
        import_upstream_state: Path | None,
    ) -> None:
        """Validate: collect miners' submissions, vet and evaluate them, set weights."""
        from bitagent_core import UnknownPluginObject, get_registry
        from bitagent_plugins.subnet.chain import ChainUnavailable
        from bitagent_plugins.subnet.validator import AlreadyRunning, ValidatorConfig, check_validator, run_validator

        _setup_logging(debug, trace, log_level)
        _upstream_notes()
        if device:
            visible_devices = _device(device, visible_devices, backend)
        if wandb:
            os.environ["BITAGENT_WANDB"] = "1"
        registry = get_registry()
        options = _backend_options(
            backend_option,
            backend,
            registry,
            visible_devices=visible_devices,
            server_python=server_python,
            mem_fraction_static=mem_fraction_static,
        )
        config = ValidatorConfig(
            netuid=netuid,
            network=_network(network, chain_endpoint),
            wallet_name=wallet_name,
            wallet_hotkey=wallet_hotkey,
            wallet_path=wallet_path,
            state_path=state_path.expanduser(),
            cache_dir=cache_dir.expanduser(),
            output_dir=runs_dir.expanduser() if runs_dir else None,
            backend=backend,
            backend_options=options,
            competition=competition,
            competition_options=_key_values(competition_option, "--competition-option"),
            sample_size=sample_size,
            dry_run=dry_run,
            epoch_length=epoch_length,
            sync_interval=sync_interval,
            query_timeout_s=query_timeout,
            allow_private_axons=allow_private_axons,
            hf_offline=hf_offline,
            max_params=max_params,
            max_download_bytes=max_download_bytes,
            once=once,
            max_rounds=max_rounds,
            request_timeout_s=request_timeout,
            evaluation_deadline_s=evaluation_deadline,
            reevaluate_blocks=reevaluate_blocks or None,
            ema_alpha=ema_alpha,
            heartbeat_s=heartbeat,
            skip_start_check=skip_start_check,
            weights_version_key=weights_version_key,
        )
        if import_upstream_state is not None:
            _import_upstream_state(import_upstream_state, config)
            raise SystemExit(0)
        try:
            run = check_validator if check_only else run_validator
            code = run(config, registry=registry, substrate=substrate_factory() if substrate_factory else None)
        except (UnknownPluginObject, ValueError) as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
        except (ChainUnavailable, AlreadyRunning, OSError) as exc:
            raise click.ClickException(str(exc)) from None
        raise SystemExit(code)

    return validate


def _import_upstream_state(path: Path, config: Any) -> None:
    """``--import-upstream-state``: with the state's lock held (no validator may run on it meanwhile)."""
    from bitagent_plugins.subnet import vetting
    from bitagent_plugins.subnet.legacy_state import UpstreamStateError, import_upstream_state
    from bitagent_plugins.subnet.validator import AlreadyRunning, state_lock

    lock = state_lock(config.state_path)
    try:
        lock.acquire()
    except AlreadyRunning as exc:
        raise click.ClickException(f"{exc}: stop it before importing") from None
    try:
        hub = vetting.hub_client(config.cache_dir, offline=config.hf_offline, token=config.hf_token)
        click.echo(import_upstream_state(path, config.state_path, hub=hub))
    except (UpstreamStateError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        lock.release()


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(mine_command())
    cli.add_command(validate_command())
