"""``bitagent mine``: publish a Hugging Face submission ``org/name[@revision]`` for this hotkey.

Two ways, so a validator finds it either way:

1. an on-chain commitment (``Commitments.set_commitment``; validators read it as ``NeuronCommitment``),
   written at start when the chain does not already hold exactly this text. By default it is a salted hash
   (:mod:`bitagent_plugins.subnet.commitment`): the chain fixes what was submitted and when, not the name;
   the salt is kept in ``<wallet path>/<wallet name>/bitagent-salts/<hotkey>.json``;
2. the HTTP endpoint, published with ``ServeAxon``: our signed ``POST /submission`` (see
   :mod:`bitagent_plugins.subnet.protocol`, it also reveals the salt) and the upstream subnet's
   ``GetHFModelName`` synapse (:mod:`bitagent_plugins.subnet.legacy`), both on one uvicorn server with
   connection, header, body and time limits. Only hotkeys registered on the subnet may ask (on netuid 20 only
   those holding a validator permit); the list is refreshed from the metagraph every ``metagraph_refresh``
   seconds.

The miner runs no model: validators download the submission from Hugging Face and evaluate it themselves.
Reproduce their evaluation locally with ``bitagent evaluate --tasks competition:bitagent``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from bitagent_plugins.subnet import commitment
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
    #: commit a salted hash (the default) rather than the plain name
    hashed_commitment: bool = True
    #: where the salt is kept (default: next to the wallet)
    salt_file: Path | None = None


class Miner:
    def __init__(self, config: MinerConfig, *, substrate: Any = None, wallet: Any = None) -> None:
        from bitagent_plugins.subnet import vetting
        from bitagent_plugins.subnet.chain import load_wallet

        sub = vetting.parse_submission(config.model)  # a clear error before anything is published
        self.submission = str(sub)
        self.config = config
        self.wallet = (
            wallet if wallet is not None else load_wallet(config.wallet_name, config.wallet_hotkey, config.wallet_path)
        )
        self.chain = Chain(config.network, config.netuid, wallet=self.wallet, substrate=substrate)
        require = config.netuid == SUBNET_NETUID if config.require_permit is None else config.require_permit
        self.authorizer = MetagraphAuthorizer(config.netuid, require_permit=require)
        self.salt = self._load_salt() if config.hashed_commitment else None
        self.commitment = commitment.make(self.submission, self.salt) if self.salt is not None else self.submission
        self.server = SubmissionServer(
            self.wallet,
            self.submission,
            netuid=config.netuid,
            salt=self.salt,
            authorize=self.authorizer,
            host=config.host,
            port=config.port,
        )
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
                raise ChainUnavailable(
                    f"hotkey {self.chain.hotkey} is not registered on netuid {self.config.netuid}"
                    f" ({self.config.network}); register it first"
                )
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
                log.info(
                    "mining %s as uid %d on netuid %d; endpoint %s:%d",
                    self.submission,
                    me.uid,
                    self.config.netuid,
                    host,
                    port,
                )
                while not self._stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), self.config.metagraph_refresh_s)
                    if self._stop.is_set():
                        break
                    try:
                        self._update_authorizer(await self.chain.metagraph())
                    except Exception as exc:  # noqa: BLE001 - e.g. out of file descriptors: keep serving
                        log.warning("metagraph refresh failed (keeping the last one): %s: %s", type(exc).__name__, exc)
            finally:
                self.server.stop()
        return 0

    def _load_salt(self) -> str:
        """This submission's salt: the one kept from an earlier start, else a new one (kept before use)."""
        from bitagent_core.toolkit import write_json_atomic

        path = self.config.salt_file
        if path is None:
            base = Path(getattr(self.wallet, "path", "~/.bittensor/wallets")).expanduser()
            path = (
                base
                / str(getattr(self.wallet, "name", self.config.wallet_name))
                / "bitagent-salts"
                / f"{self.chain.hotkey}.json"
            )
        kept: dict[str, str] = {}
        if path.exists():
            try:
                data = json.loads(path.read_text())
                kept = {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}
            except (OSError, ValueError) as exc:
                log.warning("cannot read the salt file %s (%s); making a new salt", path, exc)
        salt = kept.get(self.submission)
        if salt is None:
            salt = kept[self.submission] = commitment.new_salt()
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, kept)
            with contextlib.suppress(OSError):
                path.chmod(0o600)
        return salt

    def _update_authorizer(self, mg: Any) -> None:
        self.authorizer.update({n.hotkey: n.validator_permit for n in mg.neurons})

    async def _commit(self, current: str | None) -> None:
        if current == self.commitment:
            log.info("the chain already holds the commitment %s", self.commitment)
            return
        result = await self.chain.commit(self.commitment)
        if not result.success:  # e.g. the commitment rate limit: validators still reach the endpoint
            log.error("could not commit %s: %s; serving it through the endpoint only", self.submission, result.message)
            return
        log.info("committed %s for %s (%s)", self.commitment, self.submission, result.extrinsic_id or result.message)

    async def _serve_axon(self, host: str, port: int, published: str | None) -> None:
        ip = self.config.external_ip or host
        public_port = self.config.external_port or port
        if ip in ("0.0.0.0", "::"):
            log.warning("not publishing an endpoint: bound to %s; give --external-ip", ip)
            return
        if not is_public_ip(ip) and self.config.network in ("finney", "test"):
            log.warning(
                "not publishing %s:%d on %s: not a public address (validators would not reach it); give --external-ip",
                ip,
                public_port,
                self.config.network,
            )
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
