"""The operator's chain calls, through bittensor 11 (the only module of this plugin importing it).

=========================  =================================================================================
registration cost/window   ``client.query`` of ``SubtensorModule.Burn``, ``LastAdjustmentBlock``,
                           ``AdjustmentInterval``, ``RegistrationsThisInterval``, ``TargetRegistrationsPerInterval``
                           (a window admits 3x the target), ``RegistrationsThisBlock``, ``MaxRegistrationsPerBlock``,
                           ``NetworkRegistrationAllowed``, ``Uids`` (already registered?)
balance                    ``client.query(System.Account)`` -> ``data.free``
registration               ``client.execute(bt.BurnedRegister(netuid, hotkey_ss58))`` (MEV-shielded by the SDK)
subnet creation            ``client.execute(bt.RegisterSubnet(hotkey_ss58))`` then ``bt.StartCall(netuid)``
funding                    ``client.execute(bt.Transfer(dest_ss58, amount_tao))`` signed by the dev account
stake (validator permit)   ``client.execute(bt.AddStake(hotkey_ss58, netuid, amount_tao, slippage_protection=False))``
=========================  =================================================================================

``OperatorChain(substrate=...)`` hands any ``bittensor.Substrate`` implementation to ``bittensor.Client``
(the tests use tests/chain_double.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import attrs

RAO_PER_TAO = 10**9
#: the local chain's funded development account
DEV_ACCOUNT_URI = "//Alice"


class ChainError(RuntimeError):
    """The chain could not be reached or read."""


@attrs.frozen
class TxOutcome:
    success: bool
    message: str
    data: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class RegistrationStatus:
    """One subnet's registration conditions for one hotkey, read at one block."""

    block: int
    subnet_exists: bool
    registration_allowed: bool
    #: the burn (recycle) cost of a registration now, in rao
    cost_rao: int
    #: the coldkey's free balance, in rao
    balance_rao: int
    uid: int | None
    registrations_this_interval: int
    #: registrations a window admits (``3 * TargetRegistrationsPerInterval``; 0: no per-window limit)
    max_per_interval: int
    registrations_this_block: int
    max_per_block: int
    last_adjustment_block: int
    adjustment_interval: int

    @property
    def registered(self) -> bool:
        return self.uid is not None

    @property
    def window_open(self) -> bool:
        """A registration would not be refused for lack of a slot (this window's or this block's)."""
        interval_ok = not self.max_per_interval or self.registrations_this_interval < self.max_per_interval
        block_ok = not self.max_per_block or self.registrations_this_block < self.max_per_block
        return interval_ok and block_ok

    @property
    def blocks_to_next_window(self) -> int:
        """Blocks until the next window (and the next cost adjustment); 0 when the chain has no interval."""
        if not self.adjustment_interval:
            return 0
        return max(0, self.last_adjustment_block + self.adjustment_interval - self.block)


def tao(rao: int) -> float:
    return rao / RAO_PER_TAO


def load_wallet(name: str, hotkey: str, path: str | None = None) -> Any:
    """The bittensor 11 ``Wallet`` (its keyfiles are read when a key is first needed)."""
    import bittensor as bt

    return bt.Wallet(name=name, hotkey=hotkey, path=os.path.expanduser(path or "~/.bittensor/wallets"))


def create_wallet(name: str, hotkey: str, path: str | Path) -> tuple[Any, bool]:
    """The wallet ``name``/``hotkey`` under ``path``, creating whichever key is missing (no password).

    Never overwrites a key that exists. Returns ``(wallet, created)``: ``created`` when anything was new.
    """
    import bittensor as bt

    wallet = bt.Wallet(name=name, hotkey=hotkey, path=str(Path(path).expanduser()))
    created = False
    if not wallet.coldkey_file.exists_on_device():
        wallet.create_new_coldkey(use_password=False, overwrite=False, suppress=True)
        created = True
    if not wallet.hotkey_file.exists_on_device():
        wallet.create_new_hotkey(use_password=False, overwrite=False, suppress=True)
        created = True
    return wallet, created


def coldkey_address(wallet: Any) -> str:
    return wallet.coldkeypub.ss58_address


def hotkey_address(wallet: Any) -> str:
    return wallet.hotkey.ss58_address


@attrs.frozen
class DevWallet:
    """The local chain's dev account (``//Alice``) in the wallet shape bittensor 11 accepts."""

    coldkey: Any
    coldkeypub: Any
    hotkey: Any


def dev_wallet(uri: str = DEV_ACCOUNT_URI) -> DevWallet:
    import bittensor_core

    keypair = bittensor_core.Keypair.create_from_uri(uri)
    return DevWallet(coldkey=keypair, coldkeypub=keypair, hotkey=keypair)


class OperatorChain:
    """``async with OperatorChain(network) as chain:``; every method is a coroutine on the caller's loop."""

    def __init__(self, network: str, *, substrate: Any = None) -> None:
        self.network = network
        self._substrate = substrate
        self._client: Any = None

    async def __aenter__(self) -> OperatorChain:
        import bittensor as bt

        kwargs = {"substrate": self._substrate} if self._substrate is not None else {}
        try:
            client = bt.Client(self.network, **kwargs)
            await client.connect()
        except ValueError as exc:  # an unknown network name
            raise ChainError(str(exc)) from None
        except bt.BittensorError as exc:
            raise ChainError(f"cannot connect to {self.network}: {exc}") from None
        self._client = client
        return self

    async def __aexit__(self, *_exc: Any) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    # reads -----------------------------------------------------------------------------------------

    async def _query(self, item: Any, params: list, block: int | None = None) -> Any:
        import bittensor as bt

        try:
            return await self._client.query(item, params, block=block)
        except bt.BittensorError as exc:
            raise ChainError(f"{type(exc).__name__}: {exc}") from None

    async def block(self) -> int:
        return int(await self._client.block())

    async def block_time(self) -> float:
        return float(await self._client.block_time())

    async def balance(self, coldkey_ss58: str, block: int | None = None) -> int:
        import bittensor as bt

        account = await self._query(bt.storage.System.Account, [coldkey_ss58], block)
        return int(((account or {}).get("data") or {}).get("free") or 0)

    async def uid(self, netuid: int, hotkey_ss58: str, block: int | None = None) -> int | None:
        import bittensor as bt

        uid = await self._query(bt.storage.SubtensorModule.Uids, [netuid, hotkey_ss58], block)
        return None if uid is None else int(uid)

    async def subnet_exists(self, netuid: int, block: int | None = None) -> bool:
        import bittensor as bt

        return bool(await self._query(bt.storage.SubtensorModule.NetworksAdded, [netuid], block))

    async def subnet_owner(self, netuid: int) -> str | None:
        import bittensor as bt

        owner = await self._query(bt.storage.SubtensorModule.SubnetOwner, [netuid])
        return None if owner is None else str(owner)

    async def network_lock_cost(self) -> int:
        """The last subnet registration's lock cost, in rao (the next one costs up to twice as much)."""
        import bittensor as bt

        return int(await self._query(bt.storage.SubtensorModule.NetworkLastLockCost, []) or 0)

    async def registration_status(self, netuid: int, hotkey_ss58: str, coldkey_ss58: str) -> RegistrationStatus:
        import bittensor as bt

        st = bt.storage.SubtensorModule
        block = await self.block()  # every read below at this block: a cost and a window from one state

        async def read(item: Any) -> int:
            value = await self._query(item, [netuid], block)
            return int(value or 0)

        exists = await self.subnet_exists(netuid, block)
        allowed = await self._query(st.NetworkRegistrationAllowed, [netuid], block)
        return RegistrationStatus(
            block=block,
            subnet_exists=exists,
            registration_allowed=bool(allowed) if allowed is not None else True,
            cost_rao=await read(st.Burn),
            balance_rao=await self.balance(coldkey_ss58, block),
            uid=await self.uid(netuid, hotkey_ss58, block),
            registrations_this_interval=await read(st.RegistrationsThisInterval),
            max_per_interval=3 * await read(st.TargetRegistrationsPerInterval),
            registrations_this_block=await read(st.RegistrationsThisBlock),
            max_per_block=await read(st.MaxRegistrationsPerBlock),
            last_adjustment_block=await read(st.LastAdjustmentBlock),
            adjustment_interval=await read(st.AdjustmentInterval),
        )

    # writes ----------------------------------------------------------------------------------------

    async def _execute(self, intent: Any, wallet: Any) -> TxOutcome:
        import bittensor as bt

        try:
            result = await self._client.execute(intent, wallet, wait_for_inclusion=True, wait_for_finalization=False)
        except bt.BittensorError as exc:  # PolicyError / ChainError from the SDK's preflight
            return TxOutcome(False, f"{type(exc).__name__}: {exc}")
        return TxOutcome(bool(result.success), str(result.message or ""), dict(result.data or {}))

    async def burned_register(self, netuid: int, wallet: Any, hotkey_ss58: str | None = None) -> TxOutcome:
        import bittensor as bt

        return await self._execute(
            bt.BurnedRegister(netuid=netuid, hotkey_ss58=hotkey_ss58 or hotkey_address(wallet)), wallet
        )

    async def transfer(self, wallet: Any, dest_ss58: str, amount_tao: float) -> TxOutcome:
        import bittensor as bt

        return await self._execute(bt.Transfer(dest_ss58=dest_ss58, amount_tao=amount_tao), wallet)

    async def register_subnet(self, wallet: Any) -> TxOutcome:
        """Create a subnet owned by the wallet's coldkey; ``data["netuid"]`` is the subnet it got."""
        import bittensor as bt

        return await self._execute(bt.RegisterSubnet(hotkey_ss58=hotkey_address(wallet)), wallet)

    async def start_call(self, wallet: Any, netuid: int) -> TxOutcome:
        import bittensor as bt

        return await self._execute(bt.StartCall(netuid=netuid), wallet)

    async def add_stake(self, wallet: Any, netuid: int, amount_tao: float) -> TxOutcome:
        import bittensor as bt

        return await self._execute(
            bt.AddStake(
                hotkey_ss58=hotkey_address(wallet), netuid=netuid, amount_tao=amount_tao, slippage_protection=False
            ),
            wallet,
        )
