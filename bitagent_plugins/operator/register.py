"""``bitagent register``: wait for a registration window and an acceptable burn cost, then register.

The loop reads the subnet's registration conditions every block (:class:`RegistrationStatus`) and registers
(``BurnedRegister``) only when all hold: the hotkey is not registered, the window has a free slot, and the
cost is at or under ``max_cost``. It stops -- always with a one-line reason -- when the hotkey is registered,
when an attempt fails for a reason waiting cannot fix (registration disabled, no subnet), when the balance
cannot pay an acceptable cost, or when a cap is reached (attempts, total spend, blocks waited).

Spend is measured, not assumed: the coldkey's balance before and after each attempt (a failed attempt can
still pay fees).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from bitagent_plugins.operator.chain import (
    RAO_PER_TAO,
    OperatorChain,
    RegistrationStatus,
    coldkey_address,
    hotkey_address,
    tao,
)

#: a registration sent now lands in a later block (usually the next): within this many blocks of the window's
#: end it could land in the next window, at that window's cost, which may be above --max-cost. Windows no longer
#: than this (a dev chain's) are not waited out: no block of theirs would do.
WINDOW_END_MARGIN = 2

#: chain errors after which waiting for another block or window can succeed
RETRYABLE = (
    "TooManyRegistrationsThisBlock",
    "TooManyRegistrationsThisInterval",
    "Priority is too low",
    "was not included",
    "Transaction is outdated",
    "Stale",
    "NoNeuronIdAvailable",
)


@attrs.frozen
class RegisterLimits:
    #: the highest burn cost accepted for one registration, in TAO
    max_cost_tao: float
    #: registration extrinsics sent, at most
    max_attempts: int = 3
    #: TAO spent over all attempts (burns and fees), at most; default: ``max_cost_tao`` (one registration)
    max_spend_tao: float | None = None
    #: blocks to wait for a window and a cost before giving up (None: no limit)
    max_blocks: int | None = None

    @property
    def spend_cap_rao(self) -> int:
        cap = self.max_cost_tao if self.max_spend_tao is None else self.max_spend_tao
        return int(round(cap * RAO_PER_TAO))

    @property
    def cost_cap_rao(self) -> int:
        return int(round(self.max_cost_tao * RAO_PER_TAO))


@attrs.frozen
class RegisterOutcome:
    registered: bool
    uid: int | None
    #: ``already`` / ``registered`` / ``gave-up``
    state: str
    reason: str
    attempts: int
    spent_rao: int

    @property
    def exit_code(self) -> int:
        return 0 if self.registered else 1

    def line(self) -> str:
        if self.state == "already":
            return f"already registered as uid {self.uid}: nothing to do"
        if self.registered:
            return f"registered as uid {self.uid} after {self.attempts} attempt(s), spent {tao(self.spent_rao):.9f} TAO"
        return f"gave up: {self.reason} ({self.attempts} attempt(s), spent {tao(self.spent_rao):.9f} TAO)"


@attrs.frozen
class Progress:
    status: RegistrationStatus
    attempts: int
    spent_rao: int
    limits: RegisterLimits
    waiting_for: str

    def line(self) -> str:
        s = self.status
        window = ("open" if s.window_open else "full") + (
            f", next in {s.blocks_to_next_window} blocks" if s.adjustment_interval else ""
        )
        slots = f"{s.registrations_this_interval}/{s.max_per_interval}" if s.max_per_interval else "-"
        return (
            f"block {s.block} | cost {tao(s.cost_rao):.4f} TAO (max {self.limits.max_cost_tao:g}) | "
            f"window {window}, slots {slots} | attempts {self.attempts}/{self.limits.max_attempts} | "
            f"spent {tao(self.spent_rao):.4f}/{tao(self.limits.spend_cap_rao):g} TAO | {self.waiting_for}"
        )


def _retryable(message: str) -> bool:
    return any(marker in message for marker in RETRYABLE)


async def register_when_possible(
    chain: OperatorChain,
    wallet: Any,
    netuid: int,
    limits: RegisterLimits,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    confirm: Callable[[RegistrationStatus], bool] | None = None,
    poll_s: float | None = None,
) -> RegisterOutcome:
    """Register ``wallet``'s hotkey on ``netuid`` once the window and the cost allow, within ``limits``.

    ``confirm`` is asked once, before the first registration is sent (None: no confirmation, ``--yes``).
    """
    hotkey, coldkey = hotkey_address(wallet), coldkey_address(wallet)
    poll = poll_s if poll_s is not None else max(0.05, await chain.block_time() / 2)
    attempts = spent = 0
    confirmed = confirm is None
    first_block: int | None = None
    last_block = -1
    #: after a refused attempt, the next one waits for a later block (the refusal holds for that block)
    retry_after = -1

    def outcome(state: str, reason: str, uid: int | None = None) -> RegisterOutcome:
        return RegisterOutcome(
            registered=state in ("already", "registered"),
            uid=uid,
            state=state,
            reason=reason,
            attempts=attempts,
            spent_rao=spent,
        )

    while True:
        status = await chain.registration_status(netuid, hotkey, coldkey)
        first_block = status.block if first_block is None else first_block
        if status.registered:
            return outcome("registered" if attempts else "already", "", status.uid)
        if not status.subnet_exists:
            return outcome("gave-up", f"subnet {netuid} does not exist")
        if not status.registration_allowed:
            return outcome("gave-up", f"registration is disabled on subnet {netuid}")
        if attempts >= limits.max_attempts:
            return outcome("gave-up", f"{attempts} attempts made (--max-attempts)")
        if limits.max_blocks is not None and status.block - first_block >= limits.max_blocks:
            return outcome(
                "gave-up",
                f"no window with a cost <= {limits.max_cost_tao:g} TAO within "
                f"{limits.max_blocks} blocks (cost now {tao(status.cost_rao):.4f} TAO)",
            )
        waiting = ""
        if status.block <= retry_after:
            waiting = "waiting for the next block"
        elif status.cost_rao > limits.cost_cap_rao:
            waiting = f"waiting: cost above {limits.max_cost_tao:g} TAO"
        elif not status.window_open:
            waiting = "waiting for the next window"
        elif status.adjustment_interval > WINDOW_END_MARGIN >= status.blocks_to_next_window:
            waiting = "waiting: the window ends before a registration could land"
        elif status.balance_rao < status.cost_rao:
            return outcome(
                "gave-up",
                f"insufficient balance: {tao(status.balance_rao):.4f} TAO free, "
                f"registration costs {tao(status.cost_rao):.4f} TAO",
            )
        elif spent + status.cost_rao > limits.spend_cap_rao:
            return outcome(
                "gave-up",
                f"the next attempt ({tao(status.cost_rao):.4f} TAO) would exceed the "
                f"spend cap of {tao(limits.spend_cap_rao):g} TAO",
            )
        if on_progress is not None and (waiting or status.block != last_block):
            on_progress(Progress(status, attempts, spent, limits, waiting or "registering..."))
        last_block = status.block
        if waiting:
            import asyncio  # at use: loading plugins (`bitagent --help`) stays light

            await asyncio.sleep(poll)
            continue
        if not confirmed and confirm is not None:
            if not confirm(status):
                return outcome("gave-up", "not confirmed")
            confirmed = True
        before = await chain.balance(coldkey)
        attempts += 1
        result = await chain.burned_register(netuid, wallet)
        spent += max(0, before - await chain.balance(coldkey))
        if result.success:
            uid = await chain.uid(netuid, hotkey)
            if uid is not None:
                return outcome("registered", "", uid)
            continue  # included but not visible yet: the next read says
        if not _retryable(result.message):
            return outcome("gave-up", f"the chain refused the registration: {result.message}")
        retry_after = await chain.block() + 1
        if on_progress is not None:
            on_progress(Progress(status, attempts, spent, limits, f"attempt refused: {result.message}"))
        import asyncio  # at use: loading plugins (`bitagent --help`) stays light

        await asyncio.sleep(poll)
