"""``bitagent mine``: publish a Hugging Face submission ``org/name[@revision]`` for this hotkey.

Two ways, so a validator finds it either way:

1. an on-chain commitment (``Commitments.set_commitment``; validators read it as ``NeuronCommitment``),
   written at start when the chain does not already hold exactly this text;
2. the signed HTTP endpoint (``POST /submission``, see :mod:`bitagent_plugins.subnet.protocol`), published
   with ``ServeAxon``. Only hotkeys registered on the subnet may ask (on netuid 20 only those holding a
   validator permit); the list is refreshed from the metagraph every ``metagraph_refresh`` seconds.

The miner runs no model: validators download the submission from Hugging Face and evaluate it themselves.
Reproduce their evaluation locally with ``bitagent evaluate --tasks competition:bitagent``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from bitagent_plugins.subnet.chain import SUBNET_NETUID, Chain, ChainUnavailable, is_public_ip
from bitagent_plugins.subnet.protocol import MetagraphAuthorizer, SubmissionServer

log = logging.getLogger("bitagent.subnet.miner")


@attrs.define
class MinerConfig:
    model: str
    netuid: int = SUBNET_NETUID
    network: str = "finney"
    wallet_name: str = "default"
    wallet_hotkey: str = "default"
    wallet_path: str | None = None
    #: address the endpoint binds to
    host: str = "127.0.0.1"
    port: int = 8091
    #: address and port published with ServeAxon (default: the bound ones)
    external_ip: str | None = None
    external_port: int | None = None
    commit: bool = True
    serve_axon: bool = True
    metagraph_refresh_s: float = 120.0
    #: with ``None``: a permit is required on netuid 20 only
    require_permit: bool | None = None
    #: once listening, write ``host:port`` here (for supervisors and tests)
    ready_file: Path | None = None


class Miner:
    def __init__(self, config: MinerConfig, *, substrate: Any = None, wallet: Any = None) -> None:
        from bitagent_plugins.subnet import vetting
        from bitagent_plugins.subnet.chain import load_wallet

        sub = vetting.parse_submission(config.model)  # a clear error before anything is published
        self.submission = str(sub)
        self.config = config
        self.wallet = wallet if wallet is not None else load_wallet(config.wallet_name, config.wallet_hotkey,
                                                                    config.wallet_path)
        self.chain = Chain(config.network, config.netuid, wallet=self.wallet, substrate=substrate)
        require = config.netuid == SUBNET_NETUID if config.require_permit is None else config.require_permit
        self.authorizer = MetagraphAuthorizer(config.netuid, require_permit=require)
        self.server = SubmissionServer(self.wallet, self.submission, netuid=config.netuid,
                                       authorize=self.authorizer, host=config.host, port=config.port)
        self._stop: asyncio.Event | None = None

    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    async def run(self, *, on_ready: Callable[[str, int], None] | None = None) -> int:
        self._stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self._stop.set)
        async with self.chain:
            mg = await self.chain.metagraph()
            me = mg.by_hotkey(self.chain.hotkey)
            if me is None:
                raise ChainUnavailable(f"hotkey {self.chain.hotkey} is not registered on netuid {self.config.netuid}"
                                       f" ({self.config.network}); register it first")
            self._update_authorizer(mg)
            if self.config.commit:
                await self._commit(me.commitment)
            host, port = self.server.start()
            try:
                if self.config.serve_axon:
                    await self._serve_axon(host, port, me.axon)
                if self.config.ready_file is not None:
                    self.config.ready_file.write_text(f"{host}:{port}\n")
                if on_ready is not None:
                    on_ready(host, port)
                log.info("mining %s as uid %d on netuid %d; endpoint %s:%d", self.submission, me.uid,
                         self.config.netuid, host, port)
                while not self._stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), self.config.metagraph_refresh_s)
                    if self._stop.is_set():
                        break
                    try:
                        self._update_authorizer(await self.chain.metagraph())
                    except ChainUnavailable as exc:
                        log.warning("metagraph refresh failed (keeping the last one): %s", exc)
            finally:
                self.server.stop()
        return 0

    def _update_authorizer(self, mg: Any) -> None:
        self.authorizer.update({n.hotkey: n.validator_permit for n in mg.neurons})

    async def _commit(self, current: str | None) -> None:
        if current == self.submission:
            log.info("the chain already holds the commitment %s", self.submission)
            return
        result = await self.chain.commit(self.submission)
        if not result.success:  # e.g. the commitment rate limit: validators still reach the endpoint
            log.error("could not commit %s: %s; serving it through the endpoint only", self.submission,
                      result.message)
            return
        log.info("committed %s (%s)", self.submission, result.extrinsic_id or result.message)

    async def _serve_axon(self, host: str, port: int, published: str | None) -> None:
        ip = self.config.external_ip or host
        public_port = self.config.external_port or port
        if ip in ("0.0.0.0", "::"):
            log.warning("not publishing an endpoint: bound to %s; give --external-ip", ip)
            return
        if not is_public_ip(ip) and self.config.network in ("finney", "test"):
            log.warning("not publishing %s:%d on %s: not a public address (validators would not reach it); "
                        "give --external-ip", ip, public_port, self.config.network)
            return
        wanted = f"[{ip}]:{public_port}" if ":" in ip else f"{ip}:{public_port}"
        if published == wanted:
            log.info("the chain already holds the endpoint %s", wanted)
            return
        result = await self.chain.serve_axon(ip, public_port)
        if not result.success:  # e.g. the serving rate limit: the commitment still works
            log.warning("could not publish the endpoint %s: %s", wanted, result.message)
        else:
            log.info("published the endpoint %s", wanted)


def run_miner(config: MinerConfig, **kwargs: Any) -> int:
    return asyncio.run(Miner(config, **kwargs).run())
