"""The ``operator`` plugin: adds ``bitagent register``, ``bitagent stage`` and ``bitagent update``.

Options read ``BITAGENT_*`` environment variables like ``mine``/``validate``; the upstream scripts' flag
spellings (``--num_validators``, ``--skip-launch_v``, ``--subtensor.network`` ...) work as aliases.
``register_command(substrate_factory=...)`` / ``stage_command(...)`` build the same commands against any
``bittensor.Substrate`` implementation (the tests' chain double).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from bitagent_core import hookimpl
from bitagent_plugins.operator.stage import LOCAL_ENDPOINT  # stdlib and attrs only: bittensor loads on use
from bitagent_plugins.operator.update import DEFAULT_CHECK

ENV = "BITAGENT_"


def _opt(*names: str, env: str, **kwargs: Any) -> Callable[[Any], Any]:
    return click.option(*names, envvar=ENV + env, show_envvar=True, **kwargs)


def _network_options(func: Any) -> Any:
    for decorator in reversed(
        [
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
        ]
    ):
        func = decorator(func)
    return func


class StatusLine:
    """One status line rewritten in place on a terminal; one line per change otherwise (logs, pm2)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = ""

    def show(self, text: str) -> None:
        if text == self.last:
            return
        self.last = text
        if self.tty:
            click.echo("\r\x1b[2K" + text, nl=False, err=True)
        else:
            click.echo(text, err=True)

    def done(self) -> None:
        if self.tty and self.last:
            click.echo("", err=True)


def register_command(substrate_factory: Callable[[], Any] | None = None) -> click.Command:
    @click.command("register")
    @_opt("--netuid", type=click.IntRange(min=0), default=20, show_default=True, env="NETUID")
    @_network_options
    @_opt("--wallet.name", "wallet_name", default="default", show_default=True, env="WALLET_NAME")
    @_opt("--wallet.hotkey", "wallet_hotkey", default="default", show_default=True, env="WALLET_HOTKEY")
    @_opt("--wallet.path", "wallet_path", default="~/.bittensor/wallets", show_default=True, env="WALLET_PATH")
    @_opt(
        "--max-cost",
        type=click.FloatRange(min=0),
        required=True,
        env="REGISTER_MAX_COST",
        help="Highest burn cost accepted for the registration, in TAO.",
    )
    @_opt(
        "--max-attempts",
        type=click.IntRange(min=1),
        default=3,
        show_default=True,
        env="REGISTER_MAX_ATTEMPTS",
        help="Registration extrinsics sent, at most.",
    )
    @_opt(
        "--max-spend",
        type=click.FloatRange(min=0),
        env="REGISTER_MAX_SPEND",
        help="TAO spent over all attempts (burns and fees), at most [default: --max-cost].",
    )
    @_opt(
        "--max-blocks",
        type=click.IntRange(min=1),
        env="REGISTER_MAX_BLOCKS",
        help="Give up after waiting this many blocks [default: wait until stopped].",
    )
    @_opt("--yes", "-y", "yes", is_flag=True, env="REGISTER_YES", help="Register without asking (unattended).")
    def register(
        netuid: int,
        network: str,
        chain_endpoint: str | None,
        wallet_name: str,
        wallet_hotkey: str,
        wallet_path: str,
        max_cost: float,
        max_attempts: int,
        max_spend: float | None,
        max_blocks: int | None,
        yes: bool,
    ) -> None:
        """Wait for a registration window and a burn cost <= --max-cost, then register the hotkey."""
        from bitagent_plugins.operator.chain import ChainError, OperatorChain, load_wallet, tao
        from bitagent_plugins.operator.register import RegisterLimits, register_when_possible

        if max_spend is not None and max_spend < max_cost:
            raise click.BadParameter("must be at least --max-cost", param_hint="--max-spend")
        limits = RegisterLimits(
            max_cost_tao=max_cost, max_attempts=max_attempts, max_spend_tao=max_spend, max_blocks=max_blocks
        )
        wallet = load_wallet(wallet_name, wallet_hotkey, wallet_path)
        try:
            hotkey = wallet.hotkey.ss58_address
        except Exception as exc:  # noqa: BLE001 - bittensor's keyfile errors
            raise click.ClickException(
                f"cannot load hotkey {wallet_hotkey!r} of wallet {wallet_name!r}: {exc}"
            ) from None
        line = StatusLine()

        def confirm(status: Any) -> bool:
            line.done()
            return click.confirm(
                f"Register hotkey {hotkey} on subnet {netuid}, now costing {tao(status.cost_rao):.4f} TAO "
                f"(at most {max_cost:g} TAO per attempt, {tao(limits.spend_cap_rao):g} TAO in total)?",
                default=False,
                err=True,
            )

        async def run() -> Any:
            substrate = substrate_factory() if substrate_factory else None
            async with OperatorChain(chain_endpoint or network, substrate=substrate) as chain:
                return await register_when_possible(
                    chain,
                    wallet,
                    netuid,
                    limits,
                    on_progress=lambda p: line.show(p.line()),
                    confirm=None if yes else confirm,
                )

        import asyncio  # at use: loading plugins (`bitagent --help`) stays light

        try:
            outcome = asyncio.run(run())
        except ChainError as exc:
            line.done()
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            line.done()
            click.echo("stopped: interrupted before registering", err=True)
            raise SystemExit(130) from None
        line.done()
        click.echo(outcome.line())
        raise SystemExit(outcome.exit_code)

    return register


def stage_command(
    substrate_factory: Callable[[], Any] | None = None, launch_prefix: Callable[[str], list[str]] | None = None
) -> click.Command:
    @click.command("stage")
    @click.option(
        "--num-validators",
        "--num_validators",
        "num_validators",
        type=click.IntRange(min=0),
        default=1,
        show_default=True,
        help="Validators to create, register and launch.",
    )
    @click.option(
        "--num-miners",
        "--num_miners",
        "num_miners",
        type=click.IntRange(min=0),
        default=2,
        show_default=True,
        help="Miners to create, register and launch.",
    )
    @click.option(
        "--subnet-prefix",
        "--subnet_prefix",
        "prefix",
        default="local_subnet_testing_bitagent",
        show_default=True,
        help="Prefix of the wallet names (<prefix>_coldkey_miner_0 ...).",
    )
    @click.option("--skip-wallet", "--skip_wallet", "skip_wallet", is_flag=True, help="Skip wallet creation.")
    @click.option("--skip-faucet", "--skip_faucet", "skip_faucet", is_flag=True, help="Skip funding the wallets.")
    @click.option("--skip-subnet", "--skip_subnet", "skip_subnet", is_flag=True, help="Skip subnet creation.")
    @click.option("--skip-reg", "--skip_reg", "skip_reg", is_flag=True, help="Skip all registrations.")
    @click.option("--skip-val-reg", "--skip_val_reg", "skip_val_reg", is_flag=True, help="Skip validator registration.")
    @click.option(
        "--skip-miner-reg", "--skip_miner_reg", "skip_miner_reg", is_flag=True, help="Skip miner registration."
    )
    @click.option(
        "--skip-launch", "--skip_launch", "skip_launch", is_flag=True, help="Skip launching validators and miners."
    )
    @click.option(
        "--skip-launch-v",
        "--skip-launch_v",
        "--skip_launch_v",
        "skip_launch_v",
        is_flag=True,
        help="Skip launching validators (miners still launch).",
    )
    @click.option(
        "--only-launch",
        "--only_launch",
        "only_launch",
        is_flag=True,
        help="Skip everything but launching (wallets, funds, subnet and registrations exist).",
    )
    @click.option("--test-net", "--test_net", "test_net", is_flag=True, help="Stage on the test network.")
    @click.option(
        "--main-net",
        "--main_net",
        "main_net",
        is_flag=True,
        help="Stage on finney (spending needs --yes-i-mean-mainnet).",
    )
    @click.option("--yes-i-mean-mainnet", is_flag=True, help="Allow steps that spend TAO on finney.")
    @click.option("--netuid", type=click.IntRange(min=1), help="The subnet, when not created here (--skip-subnet).")
    @click.option(
        "--subtensor.chain_endpoint",
        "chain_endpoint",
        help=f"The node to talk to [default: {LOCAL_ENDPOINT} for a local chain].",
    )
    @click.option("--wallet.path", "wallet_path", default="~/.bittensor/wallets", show_default=True)
    @click.option(
        "--staging-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default="staging",
        show_default=True,
        help="Logs, validator state, the local Hugging Face cache, stage.json.",
    )
    @click.option(
        "--fund-tao",
        type=click.FloatRange(min=0),
        default=1000.0,
        show_default=True,
        help="TAO sent to each wallet from the dev account (the owner also gets the subnet's cost).",
    )
    @click.option(
        "--validator-stake",
        type=click.FloatRange(min=0),
        default=100.0,
        show_default=True,
        help="TAO each validator stakes after registering (the chain grants permits by stake).",
    )
    @click.option(
        "--max-registration-cost",
        type=click.FloatRange(min=0),
        default=100.0,
        show_default=True,
        help="Highest burn cost accepted per registration, in TAO.",
    )
    @click.option(
        "--model",
        "--hf-model-name",
        "model",
        help="org/name@revision every miner submits [default: --model-file published locally].",
    )
    @click.option(
        "--model-file",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        help="A GGUF each miner submits through the staging Hugging Face cache [default: the embedded model].",
    )
    @click.option("--backend", default="llama-cpp", show_default=True, help="The validators' backend.")
    @click.option(
        "--validator-arg",
        "validator_args",
        multiple=True,
        help="Extra argument for every validator (repeatable), e.g. --validator-arg=--once.",
    )
    @click.option("--miner-arg", "miner_args", multiple=True, help="Extra argument for every miner (repeatable).")
    @click.option(
        "--launcher",
        type=click.Choice(["auto", "pm2", "process"]),
        default="auto",
        show_default=True,
        help="pm2 apps, or child processes supervised by this command (auto: pm2 when on PATH).",
    )
    @click.option(
        "--base-port",
        type=click.IntRange(1, 65535),
        default=8091,
        show_default=True,
        help="Miner i listens on base-port + i.",
    )
    def stage(
        num_validators: int,
        num_miners: int,
        prefix: str,
        skip_wallet: bool,
        skip_faucet: bool,
        skip_subnet: bool,
        skip_reg: bool,
        skip_val_reg: bool,
        skip_miner_reg: bool,
        skip_launch: bool,
        skip_launch_v: bool,
        only_launch: bool,
        test_net: bool,
        main_net: bool,
        yes_i_mean_mainnet: bool,
        netuid: int | None,
        chain_endpoint: str | None,
        wallet_path: str,
        staging_dir: Path,
        fund_tao: float,
        validator_stake: float,
        max_registration_cost: float,
        model: str | None,
        model_file: Path | None,
        backend: str,
        validator_args: tuple[str, ...],
        miner_args: tuple[str, ...],
        launcher: str,
        base_port: int,
    ) -> None:
        """Stage a subnet: wallets, funding, subnet, registrations, then validators and miners."""
        from bitagent_plugins.operator.chain import ChainError
        from bitagent_plugins.operator.stage import Stage, StageConfig, StageError, default_launch_prefix

        if test_net and main_net:
            raise click.UsageError("--test-net and --main-net exclude each other")
        if model and model_file:
            raise click.UsageError("--model and --model-file exclude each other")
        skipped = {
            "wallet": skip_wallet,
            "faucet": skip_faucet,
            "subnet": skip_subnet,
            "val_reg": skip_reg or skip_val_reg,
            "miner_reg": skip_reg or skip_miner_reg,
            "launch_miners": skip_launch,
            "launch_validators": skip_launch or skip_launch_v,
        }
        if only_launch:
            skipped.update(wallet=True, faucet=True, subnet=True, val_reg=True, miner_reg=True)
        steps = frozenset(step for step, skip in skipped.items() if not skip)
        config = StageConfig(
            num_validators=num_validators,
            num_miners=num_miners,
            prefix=prefix,
            kind="test" if test_net else "main" if main_net else "local",
            endpoint=chain_endpoint,
            netuid=netuid,
            steps=steps,
            wallet_path=Path(wallet_path),
            staging_dir=staging_dir,
            fund_tao=fund_tao,
            validator_stake_tao=validator_stake,
            max_registration_cost_tao=max_registration_cost,
            model=model,
            model_file=model_file,
            backend=backend,
            validator_args=validator_args,
            miner_args=miner_args,
            launcher=launcher,
            base_port=base_port,
            yes_i_mean_mainnet=yes_i_mean_mainnet,
        )
        runner = Stage(
            config,
            substrate_factory=substrate_factory,
            launch_prefix=launch_prefix or default_launch_prefix,
            echo=click.echo,
        )
        try:
            code = runner.run()
        except StageError as exc:
            raise click.ClickException(str(exc)) from None
        except ChainError as exc:
            raise click.ClickException(f"chain: {exc}") from None
        raise SystemExit(code)

    return stage


def update_command() -> click.Command:
    @click.command("update", context_settings={"ignore_unknown_options": False})
    @_opt(
        "--root",
        type=click.Path(file_okay=False, path_type=Path),
        default="~/.bitagent/releases",
        show_default=True,
        env="UPDATE_ROOT",
        help="Release directory: venvs/, the current and previous links (run <root>/current/bin/bitagent).",
    )
    @_opt("--package", default="bitagent", show_default=True, env="UPDATE_PACKAGE")
    @_opt("--extras", default="subnet", show_default=True, env="UPDATE_EXTRAS", help="Extras installed with it.")
    @_opt(
        "--index-url",
        env="UPDATE_INDEX_URL",
        help="Your package index releases come from (this or --find-links is required; pip's default index is "
        "never used).",
    )
    @_opt(
        "--find-links",
        multiple=True,
        env="UPDATE_FIND_LINKS",
        help="A wheel directory or page (repeatable); alone, no index is consulted.",
    )
    @_opt("--no-index", is_flag=True, env="UPDATE_NO_INDEX", help="Only --find-links, no index.")
    @_opt(
        "--wheel-sha256",
        multiple=True,
        env="UPDATE_WHEEL_SHA256",
        help="sha256 of a release wheel you accept (repeatable); this or --hash-file is required.",
    )
    @_opt(
        "--hash-file",
        type=click.Path(dir_okay=False, path_type=Path),
        env="UPDATE_HASH_FILE",
        help="A file of accepted wheel sha256s, one per line (re-read at every check).",
    )
    @_opt("--version", "pinned", env="UPDATE_VERSION", help="Install exactly this version [default: the newest].")
    @_opt(
        "--check-command",
        env="UPDATE_CHECK_COMMAND",
        default=" ".join(DEFAULT_CHECK),
        show_default=True,
        help="Run with the new release before switching ({bin}, {python}, {state} are filled in).",
    )
    @_opt(
        "--state-path",
        type=click.Path(dir_okay=False, path_type=Path),
        env="STATE_PATH",
        default="~/.bitagent/validator/state.sqlite",
        show_default=True,
        help="The validator's state: no update while it marks an evaluation running.",
    )
    @_opt(
        "--probation-minutes",
        type=click.FloatRange(min=0),
        default=10.0,
        show_default=True,
        env="UPDATE_PROBATION_MINUTES",
        help="A crash this soon after the switch rolls back.",
    )
    @_opt(
        "--idle-timeout-minutes",
        type=click.FloatRange(min=0),
        default=360.0,
        show_default=True,
        env="UPDATE_IDLE_TIMEOUT_MINUTES",
        help="Longest wait for a running evaluation to finish (then exit 75).",
    )
    @_opt("--pm2-app", env="UPDATE_PM2_APP", help="Restart this pm2 app around the switch and watch it.")
    @_opt(
        "--auto-update",
        is_flag=True,
        env="AUTO_UPDATE",
        help="Run `<root>/current/bin/bitagent ARGS...` (e.g. validate ...) and keep it updated.",
    )
    @_opt(
        "--interval-minutes",
        type=click.FloatRange(min=0.01),
        default=60.0,
        show_default=True,
        env="UPDATE_INTERVAL_MINUTES",
        help="With --auto-update: minutes between checks for a release.",
    )
    @click.argument("command", nargs=-1, type=click.UNPROCESSED)
    def update(
        root: Path,
        package: str,
        extras: str,
        index_url: str | None,
        find_links: tuple[str, ...],
        no_index: bool,
        wheel_sha256: tuple[str, ...],
        hash_file: Path | None,
        pinned: str | None,
        check_command: str,
        state_path: Path,
        probation_minutes: float,
        idle_timeout_minutes: float,
        pm2_app: str | None,
        auto_update: bool,
        interval_minutes: float,
        command: tuple[str, ...],
    ) -> None:
        """Install a newer release beside the current one, check it, switch, and roll back if it fails.

        With --auto-update, the arguments after `--` are the command to run and keep updated:
        `bitagent update --auto-update -- validate --netuid 20 ...`.
        """
        import shlex
        import sqlite3
        import subprocess

        from bitagent_plugins.operator import update as updater

        if auto_update and not command:
            raise click.UsageError("--auto-update needs the command to run after `--` (e.g. -- validate ...)")
        if command and not auto_update:
            raise click.UsageError(f"unexpected arguments {' '.join(command)!r} (they go with --auto-update)")
        if auto_update and pm2_app:
            raise click.UsageError("--auto-update runs the validator itself; run it as the pm2 app, without --pm2-app")
        config = updater.UpdateConfig(
            root=root.expanduser(),
            package=package,
            extras=extras,
            index_url=index_url,
            find_links=find_links,
            no_index=no_index,
            version=pinned,
            check_command=tuple(shlex.split(check_command)),
            state_path=state_path.expanduser(),
            probation_s=probation_minutes * 60,
            idle_timeout_s=idle_timeout_minutes * 60,
            wheel_sha256=wheel_sha256,
            hash_file=hash_file.expanduser() if hash_file else None,
        )
        try:
            if auto_update:
                raise SystemExit(
                    updater.auto_update(config, list(command), interval_s=interval_minutes * 60, echo=click.echo)
                )
            result = updater.update_once(config, updater.Pm2App(pm2_app) if pm2_app else None, echo=click.echo)
        except updater.UpdateError as exc:
            raise click.ClickException(str(exc)) from None
        except (OSError, subprocess.SubprocessError, sqlite3.Error) as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
        click.echo(result.message)
        if result.state == "updated" and not pm2_app:
            click.echo(f"restart the validator to run {result.version} ({config.root}/current/bin/bitagent)")
        raise SystemExit(result.exit_code)

    return update


@hookimpl
def register_commands(cli: Any) -> None:
    cli.add_command(register_command())
    cli.add_command(stage_command())
    cli.add_command(update_command())
