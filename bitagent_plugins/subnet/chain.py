"""Everything that touches bittensor 11, behind one small class: :class:`Chain`.

The validator and the miner never import bittensor themselves; they call :class:`Chain` (async) and get
plain values back (:class:`Neuron`, :class:`MetagraphView`, :class:`TxResult`). bittensor is imported only
when a wallet is loaded or a chain is opened, so ``bitagent --help`` stays fast.

What goes through which bittensor 11 API:

=====================  =====================================================================================
metagraph sync          ``client.subnets.metagraph(netuid)`` (one runtime-API call + the Commitments maps)
commitments (read)      the same metagraph: ``NeuronCommitment.value`` / ``.block`` per uid
commitment (write)      ``client.submit_call(bt.calls.Commitments.set_commitment(...), wallet, signer="hotkey")``
                        -- bittensor 11 has no intent for it; the raw call is the SDK's documented escape hatch
endpoint (write)        ``client.execute(bt.ServeAxon(netuid, ip, port), wallet)``
weights                 ``client.execute(bt.SetWeights(netuid, uids, weights, version_key=...), wallet)``,
                        which picks plain ``set_mechanism_weights`` or a timelocked commit (commit-reveal)
hyperparameters         ``client.query(storage.SubtensorModule.MinAllowedWeights / MaxWeightsLimit, [netuid])``
=====================  =====================================================================================

``Chain(substrate=...)`` hands any implementation of bittensor's ``Substrate`` protocol to
``bittensor.Client``: the tests pass an in-memory chain there (tests/chain_double.py).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from pathlib import Path
from typing import Any

import attrs

import bitagent_core

log = logging.getLogger("bitagent.subnet.chain")

#: The upstream subnet's netuid on finney.
SUBNET_NETUID = 20
U16_MAX = 65535
#: Raw commitment fields carry at most 128 bytes each (``Raw0`` ... ``Raw128``).
_RAW_FIELD_MAX = 128
#: The most bytes we commit (the chain allows a few fields; a submission is far shorter).
MAX_COMMITMENT_BYTES = 3 * _RAW_FIELD_MAX


def bitagent_version() -> str:
    """This installation's version: the package metadata (setuptools-scm writes it), else the source's."""
    from importlib import metadata

    try:
        return metadata.version("bitagent")
    except metadata.PackageNotFoundError:
        return bitagent_core.__version__


def version_key(version: str | None = None) -> int:
    """The weights version key of a release by upstream's convention, ``1000*major + 10*minor + patch``
    (upstream 1.0.50 -> 1050; bitagent 0.1.0 -> 10). A subnet whose owner set a higher requirement is met
    with ``--weights-version-key``."""
    parts = [int(re.sub(r"\D.*", "", p) or 0) for p in (version or bitagent_version()).split(".")[:3]]
    parts += [0] * (3 - len(parts))
    major, minor, patch = parts
    return major * 1000 + minor * 10 + patch


class ChainUnavailable(RuntimeError):
    """The chain could not be read or written (connection, unknown subnet, unregistered hotkey...)."""


@attrs.frozen
class Neuron:
    uid: int
    hotkey: str
    coldkey: str
    validator_permit: bool
    stake: float
    #: ``ip:port`` the neuron published with ServeAxon, or None
    axon: str | None
    #: the visible (plaintext or revealed) commitment, or None
    commitment: str | None = None
    #: the block the commitment was published at
    commitment_block: int | None = None
    #: the block this hotkey registered at (the submission date of a miner without a commitment)
    registration_block: int | None = None


@attrs.frozen
class MetagraphView:
    """One subnet at one block, as the validator and the miner need it."""

    netuid: int
    block: int
    neurons: tuple[Neuron, ...]

    def by_hotkey(self, hotkey: str) -> Neuron | None:
        for n in self.neurons:
            if n.hotkey == hotkey:
                return n
        return None

    def by_uid(self, uid: int) -> Neuron | None:
        return self.neurons[uid] if 0 <= uid < len(self.neurons) and self.neurons[uid].uid == uid else None

    @property
    def hotkeys(self) -> dict[int, str]:
        return {n.uid: n.hotkey for n in self.neurons}

    def __len__(self) -> int:
        return len(self.neurons)


@attrs.frozen
class TxResult:
    success: bool
    message: str
    block_hash: str | None = None
    extrinsic_id: str | None = None
    data: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class WeightLimits:
    min_allowed_weights: int
    #: the largest share one uid may get, as a fraction (the chain stores it as u16 over 65535)
    max_weight_limit: float
    #: the subnet owner's required ``WeightsVersionKey`` (ours must not be older)
    version_key: int = 0
    #: ``max_weight_limit`` as the chain stores it (u16 over 65535)
    max_weight_limit_u16: int = U16_MAX


def load_wallet(name: str, hotkey: str, path: str | None = None) -> Any:
    """The bittensor 11 ``Wallet``; the hotkey file must exist (it signs everything we send)."""
    import bittensor as bt

    wallet = bt.Wallet(
        name=name, hotkey=hotkey, path=os.path.expanduser(path) if path else str(Path.home() / ".bittensor" / "wallets")
    )
    try:
        wallet.hotkey  # noqa: B018 - loads (and checks) the hotkey file now, not at the first signature
    except Exception as exc:  # noqa: BLE001 - bittensor raises its own keyfile errors
        raise ChainUnavailable(f"cannot load hotkey {hotkey!r} of wallet {name!r} under {wallet.path}: {exc}") from None
    return wallet


def hotkey_address(wallet: Any) -> str:
    return wallet.hotkey.ss58_address


def encode_commitment(text: str) -> dict[str, Any]:
    """The ``CommitmentInfo`` for ``text``: utf-8 split into ``RawN`` fields of at most 128 bytes.

    The decoded storage form is ``{"fields": [{"Raw12": "0x..."}]}`` (what ``NeuronCommitment`` reads and
    concatenates); the call takes the same shape with bytes.
    """
    data = text.encode("utf-8")
    if not data:
        raise ValueError("an empty commitment")
    if len(data) > MAX_COMMITMENT_BYTES:
        raise ValueError(f"a commitment is at most {MAX_COMMITMENT_BYTES} bytes, got {len(data)}")
    chunks = [data[i : i + _RAW_FIELD_MAX] for i in range(0, len(data), _RAW_FIELD_MAX)]
    return {"fields": [{f"Raw{len(chunk)}": chunk} for chunk in chunks]}


def conformed_weights(
    uids: list[int], weights: list[float], max_weight_limit: float, *, self_uid: int | None = None
) -> tuple[list[int], list[int]]:
    """The ``(uids, u16 weights)`` bittensor 11's ``SetWeights`` submits for these weights: its own clip
    (``clip_to_max_weight``) and quantisation (``normalize``), as its ``_conform`` applies them."""
    from bittensor.intents.weights import clip_to_max_weight, normalize

    floats = list(weights)
    limit_u16 = round(max_weight_limit * U16_MAX)
    if uids != [self_uid] and limit_u16 < U16_MAX:
        floats = clip_to_max_weight(floats, limit_u16 / U16_MAX)
    return normalize(uids, floats)


def fit_to_max_weight_limit(uids: list[int], values: list[int], limit_u16: int) -> list[int]:
    """Raise the non-max u16 values (evenly, order kept) until the runtime's check holds:
    ``max / sum <= limit_u16 / 65535``. Rounding to u16 can break a float vector that met the limit; the
    chain then refuses the whole extrinsic (``MaxWeightExceeded``). A single weight is left as is."""
    if limit_u16 >= U16_MAX or len(values) < 2:
        return list(values)
    top = max(values)
    out = list(values)
    others = [i for i, v in enumerate(out) if v != top]
    while others and top * U16_MAX > limit_u16 * sum(out):
        deficit = -(-(top * U16_MAX) // limit_u16) - sum(out)
        step = max(1, -(-deficit // len(others)))
        if any(out[i] + step >= top for i in others):
            break  # no such vector below this max keeps the order; the chain will say so
        for i in others:
            out[i] += step
    return out


def is_public_ip(ip: str) -> bool:
    """Whether ``ip`` is a globally routable address (what a miner should publish on a real network)."""
    try:
        return ipaddress.ip_address(ip).is_global
    except ValueError:
        return False


class Chain:
    """One subnet on one network, read and written through bittensor 11.

    Use as ``async with Chain(...) as chain:``; every method is a coroutine on the caller's loop.
    ``network`` is ``finney`` / ``test`` / ``local`` or a ``ws(s)://`` endpoint; ``substrate`` replaces
    the RPC connection with any ``bittensor.Substrate`` implementation.
    """

    def __init__(
        self,
        network: str,
        netuid: int,
        *,
        wallet: Any = None,
        substrate: Any = None,
        fallback_endpoints: list[str] | None = None,
    ) -> None:
        self.network = network
        self.netuid = int(netuid)
        self.wallet = wallet
        self._substrate = substrate
        self._fallback = fallback_endpoints
        self._client: Any = None

    # lifecycle -------------------------------------------------------------------------------------

    async def connect(self) -> Chain:
        if self._client is not None:
            return self
        import bittensor as bt

        kwargs: dict[str, Any] = {}
        if self._substrate is not None:
            kwargs["substrate"] = self._substrate
        elif self._fallback is not None:
            kwargs["fallback_endpoints"] = self._fallback
        try:
            client = bt.Client(self.network, **kwargs)
            await client.connect()
        except ValueError as exc:  # unknown network name
            raise ChainUnavailable(str(exc)) from None
        except bt.BittensorError as exc:
            raise ChainUnavailable(f"cannot connect to {self.network}: {exc}") from None
        self._client = client
        return self

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def __aenter__(self) -> Chain:
        return await self.connect()

    async def __aexit__(self, *_exc: Any) -> None:
        await self.close()

    @property
    def client(self) -> Any:
        if self._client is None:
            raise ChainUnavailable("the chain is not connected (use `async with Chain(...)`)")
        return self._client

    @property
    def hotkey(self) -> str:
        if self.wallet is None:
            raise ChainUnavailable("no wallet loaded")
        return hotkey_address(self.wallet)

    # reads -----------------------------------------------------------------------------------------

    async def block(self) -> int:
        return int(await self._guard(self.client.block()))

    async def block_time(self) -> float:
        return float(await self._guard(self.client.block_time()))

    async def metagraph(self) -> MetagraphView:
        """Every neuron of the subnet with its permit, stake, endpoint and commitment, at one block."""
        graph = await self._guard(self.client.subnets.metagraph(self.netuid))
        if graph is None:
            raise ChainUnavailable(f"subnet {self.netuid} does not exist on {self.network}")
        neurons = []
        for n in graph.neurons:
            commitment = n.commitment
            visible = commitment.value if commitment is not None and commitment.is_revealed else None
            neurons.append(
                Neuron(
                    uid=int(n.uid),
                    hotkey=str(n.hotkey),
                    coldkey=str(n.coldkey),
                    validator_permit=bool(n.validator_permit),
                    stake=float(n.total_stake.amount),
                    axon=n.axon,
                    commitment=visible,
                    commitment_block=int(commitment.block) if commitment is not None else None,
                    registration_block=_registration_block(n),
                )
            )
        return MetagraphView(netuid=self.netuid, block=int(graph.block), neurons=tuple(neurons))

    async def weight_limits(self) -> WeightLimits:
        """``min_allowed_weights``, ``max_weight_limit`` (as a fraction) and the required version key."""
        import bittensor as bt

        st = bt.storage.SubtensorModule
        min_raw = await self._guard(self.client.query(st.MinAllowedWeights, [self.netuid]))
        max_raw = await self._guard(self.client.query(st.MaxWeightsLimit, [self.netuid]))
        key_raw = await self._guard(self.client.query(st.WeightsVersionKey, [self.netuid]))
        max_u16 = int(max_raw) if max_raw is not None else U16_MAX
        return WeightLimits(
            min_allowed_weights=int(min_raw or 0),
            max_weight_limit=max(0.0, min(1.0, max_u16 / U16_MAX)),
            version_key=int(key_raw or 0),
            max_weight_limit_u16=max_u16,
        )

    # writes (all signed by the wallet's hotkey) ----------------------------------------------------

    async def set_weights(self, uids: list[int], weights: list[int], *, version_key: int) -> TxResult:
        """Submit u16 weights (``SetWeights``: plain or commit-reveal, whichever the subnet runs).

        SetWeights conforms what it is given to the subnet (clip to ``max_weight_limit``, rescale so the
        largest is 65535, drop zeros): a quantised vector that already respects the limit goes through
        unchanged. The result's ``data`` carries ``uids`` and ``weights`` exactly as submitted.
        """
        import bittensor as bt

        if len(uids) != len(weights) or not uids:
            raise ValueError("set_weights needs equal, non-empty uids and weights")
        uids = [int(u) for u in uids]
        floats = [float(w) for w in weights]
        limits = await self.weight_limits()
        sent_uids, sent = conformed_weights(uids, floats, limits.max_weight_limit, self_uid=await self._own_uid())
        if sent != [int(w) for w in weights] or sent_uids != uids:
            log.warning(
                "SetWeights will adjust the weights to the subnet's max_weight_limit: %s -> %s",
                list(zip(uids, weights)),
                list(zip(sent_uids, sent)),
            )
        intent = bt.SetWeights(netuid=self.netuid, uids=uids, weights=floats, version_key=int(version_key))
        result = await self._execute(intent, retries=2)
        return attrs.evolve(result, data={**result.data, "uids": sent_uids, "weights": sent})

    async def _own_uid(self) -> int | None:
        import bittensor as bt

        uid = await self._guard(self.client.query(bt.storage.SubtensorModule.Uids, [self.netuid, self.hotkey]))
        return None if uid is None else int(uid)

    async def commit(self, text: str) -> TxResult:
        """Publish ``text`` as this hotkey's commitment on the subnet (``Commitments.set_commitment``)."""
        import bittensor as bt

        call = bt.calls.Commitments.set_commitment(netuid=self.netuid, info=encode_commitment(text))
        try:
            result = await self.client.submit_call(
                call, self._need_wallet(), signer="hotkey", wait_for_inclusion=True, wait_for_finalization=False
            )
        except bt.BittensorError as exc:
            return TxResult(False, f"{type(exc).__name__}: {exc}")
        return _tx(result)

    async def serve_axon(self, ip: str, port: int, *, protocol: int = 4) -> TxResult:
        """Publish ``ip:port`` as this hotkey's endpoint (``ServeAxon``)."""
        import bittensor as bt

        ipaddress.ip_address(ip)  # a clear error before anything is signed
        intent = bt.ServeAxon(netuid=self.netuid, ip=ip, port=int(port), protocol=protocol, version=version_key())
        return await self._execute(intent)

    # helpers -----------------------------------------------------------------------------------------

    def _need_wallet(self) -> Any:
        if self.wallet is None:
            raise ChainUnavailable("this needs a wallet (--wallet.name / --wallet.hotkey)")
        return self.wallet

    async def _execute(self, intent: Any, retries: int = 0) -> TxResult:
        import bittensor as bt

        try:
            result = await self.client.execute(
                intent, self._need_wallet(), retries=retries, wait_for_inclusion=True, wait_for_finalization=False
            )
        except bt.BittensorError as exc:  # PolicyError, ChainError from preflight (rate limit, not registered)
            return TxResult(False, f"{type(exc).__name__}: {exc}")
        return _tx(result)

    async def _guard(self, awaitable: Any) -> Any:
        import bittensor as bt

        try:
            return await awaitable
        except bt.BittensorError as exc:
            raise ChainUnavailable(f"{type(exc).__name__}: {exc}") from None


def _registration_block(neuron: Any) -> int | None:
    value = getattr(neuron, "block_at_registration", None)
    return int(value) if value is not None else None


def _tx(result: Any) -> TxResult:
    return TxResult(
        success=bool(result.success),
        message=str(result.message or ""),
        block_hash=result.block_hash,
        extrinsic_id=result.extrinsic_id,
        data=dict(result.data or {}),
    )
