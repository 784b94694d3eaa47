"""The ``operator`` plugin: adds ``bitagent register``, ``bitagent stage`` and ``bitagent update``.

Options read ``BITAGENT_*`` environment variables like ``mine``/``validate``; the upstream scripts' flag
spellings (``--num_validators``, ``--skip-launch_v``, ``--subtensor.network`` ...) work as aliases.
``register_command(substrate_factory=...)`` / ``stage_command(...)`` build the same commands against any
``bittensor.Substrate`` implementation (the tests' chain double).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

import click

from bitagent_core.hookspecs import hookimpl

ENV = "BITAGENT_"


def _opt(*names: str, env: str, **kwargs: Any) -> Callable[[Any], Any]:
    return click.option(*names, envvar=ENV + env, show_envvar=True, **kwargs)


def _network_options(func: Any) -> Any:
    for decorator in reversed([
        _opt("--subtensor.network", "network", default="finney", show_default=True, env="SUBTENSOR_NETWORK",
             help="finney, test, local, or a ws(s):// endpoint."),
        _opt("--subtensor.chain_endpoint", "chain_endpoint", env="SUBTENSOR_CHAIN_ENDPOINT",
             help="A ws(s):// endpoint; overrides --subtensor.network."),
    ]):
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
    @_opt("--max-cost", type=click.FloatRange(min=0), required=True, env="REGISTER_MAX_COST",
          help="Highest burn cost accepted for the registration, in TAO.")
    @_opt("--max-attempts", type=click.IntRange(min=1), default=3, show_default=True, env="REGISTER_MAX_ATTEMPTS",
          help="Registration extrinsics sent, at most.")
    @_opt("--max-spend", type=click.FloatRange(min=0), env="REGISTER_MAX_SPEND",
          help="TAO spent over all attempts (burns and fees), at most [default: --max-cost].")
    @_opt("--max-blocks", type=click.IntRange(min=1), env="REGISTER_MAX_BLOCKS",
          help="Give up after waiting this many blocks [default: wait until stopped].")
    @_opt("--yes", "-y", "yes", is_flag=True, env="REGISTER_YES", help="Register without asking (unattended).")
    def register(netuid: int, network: str, chain_endpoint: str | None, wallet_name: str, wallet_hotkey: str,
                 wallet_path: str, max_cost: float, max_attempts: int, max_spend: float | None,
                 max_blocks: int | None, yes: bool) -> None:
        """Wait for a registration window and a burn cost <= --max-cost, then register the hotkey."""
        from bitagent_plugins.operator.chain import ChainError, OperatorChain, load_wallet, tao
        from bitagent_plugins.operator.register import RegisterLimits, register_when_possible

        if max_spend is not None and max_spend < max_cost:
            raise click.BadParameter("must be at least --max-cost", param_hint="--max-spend")
        limits = RegisterLimits(max_cost_tao=max_cost, max_attempts=max_attempts, max_spend_tao=max_spend,
                                max_blocks=max_blocks)
        wallet = load_wallet(wallet_name, wallet_hotkey, wallet_path)
        try:
            hotkey = wallet.hotkey.ss58_address
        except Exception as exc:  # noqa: BLE001 - bittensor's keyfile errors
            raise click.ClickException(f"cannot load hotkey {wallet_hotkey!r} of wallet {wallet_name!r}: {exc}") \
                from None
        line = StatusLine()

        def confirm(status: Any) -> bool:
            line.done()
            return click.confirm(
                f"Register hotkey {hotkey} on subnet {netuid}, now costing {tao(status.cost_rao):.4f} TAO "
                f"(at most {max_cost:g} TAO per attempt, {tao(limits.spend_cap_rao):g} TAO in total)?",
                default=False, err=True)

        async def run() -> Any:
            substrate = substrate_factory() if substrate_factory else None
            async with OperatorChain(chain_endpoint or network, substrate=substrate) as chain:
                return await register_when_possible(chain, wallet, netuid, limits,
                                                    on_progress=lambda p: line.show(p.line()),
                                                    confirm=None if yes else confirm)

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


@hookimpl
def register_commands(cli: Any) -> None:
    cli.add_command(register_command())
