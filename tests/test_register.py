"""``bitagent register`` through bittensor 11's real client and executor (BurnedRegister, MEV-shielded) over
the chain seam (tests/chain_double.py): costs that fall and rise, full windows, a slot taken by someone else
in the very block, an insufficient balance, caps, the prompt, an already registered hotkey."""

from __future__ import annotations

import pytest
from chain_double import RAO, FileChain, add_operator_state, new_chain
from click.testing import CliRunner
from subnet_helpers import make_wallet

from bitagent_plugins.operator.plugin import register_command

NETUID = 7
START = 1000


@pytest.fixture
def setup(tmp_path):
    wallet_dir = tmp_path / "wallets"
    miner = make_wallet(wallet_dir, "miner")
    owner = make_wallet(wallet_dir, "owner")

    def chain(balance: float = 10.0, **operator) -> FileChain:
        path = new_chain(
            tmp_path / "chain.json",
            netuid=NETUID,
            start_block=START,
            block_time=0.2,
            neurons=[{"hotkey": owner.hotkey.ss58_address, "validator_permit": True}],
        )
        add_operator_state(path, balances={miner.coldkeypub.ss58_address: balance}, **operator)
        return FileChain(path)

    return miner, wallet_dir, chain


def run(chain: FileChain, wallet_dir, *args: str, input: str | None = None):
    command = register_command(lambda: FileChain(chain.path))
    return CliRunner().invoke(
        command,
        [
            "--netuid",
            str(NETUID),
            "--subtensor.network",
            "local",
            "--wallet.name",
            "miner",
            "--wallet.path",
            str(wallet_dir),
            *args,
        ],
        input=input,
        catch_exceptions=False,
    )


def registrations(chain: FileChain) -> list[dict]:
    return chain.extrinsics("burned_register")


def free(chain: FileChain, wallet) -> int:
    return chain.state()["balances"][wallet.coldkeypub.ss58_address]


@pytest.mark.slow
def test_registers_once_the_cost_drops(setup):
    miner, wallet_dir, make = setup
    chain = make(burn=5.0, burn_schedule=[(START + 15, 0.5)])  # 3 s of 0.2 s blocks: seen however slow the start
    result = run(chain, wallet_dir, "--max-cost", "1", "--yes")
    assert result.exit_code == 0, result.output
    assert "registered as uid 1 after 1 attempt(s), spent 0.500000000 TAO" in result.output
    assert "waiting: cost above 1 TAO" in result.output  # the status line while the cost was 5
    (tx,) = registrations(chain)
    assert tx["success"] and tx["block"] >= START + 15 and tx["signer"] == miner.coldkeypub.ss58_address
    assert free(chain, miner) == int(9.5 * RAO)
    assert chain.state()["neurons"][1]["hotkey"] == miner.hotkey.ss58_address


@pytest.mark.slow
def test_waits_for_the_next_window_then_for_the_cost_to_fall_again(setup):
    miner, wallet_dir, make = setup
    others = [{"block": START, "hotkey": f"other-{i}"} for i in range(3)]  # the first window's 3 slots
    chain = make(
        burn=0.5,
        adjustment_interval=20,
        target_registrations=1,
        others=others,
        burn_schedule=[(START + 20, 2.0), (START + 28, 0.8)],
    )
    result = run(chain, wallet_dir, "--max-cost", "1", "--yes")
    assert result.exit_code == 0, result.output
    assert "window full, next in" in result.output and "waiting for the next window" in result.output
    assert "waiting: cost above 1 TAO" in result.output  # the second window opened at 2 TAO
    (tx,) = registrations(chain)
    assert tx["block"] >= START + 28
    assert free(chain, miner) == int(9.2 * RAO)
    assert "registered as uid 4" in result.output


def test_a_slot_taken_by_someone_else_in_the_same_block(setup):
    miner, wallet_dir, make = setup
    chain = make(burn=0.5, max_registrations_per_block=1, others=[{"front_run": True, "hotkey": "sniper"}])
    result = run(chain, wallet_dir, "--max-cost", "1", "--yes")
    assert result.exit_code == 0, result.output
    assert "attempt refused: TooManyRegistrationsThisBlock" in result.output
    first, second = registrations(chain)
    assert not first["success"] and first["error"] == "TooManyRegistrationsThisBlock"
    assert second["success"] and second["block"] > first["block"]
    assert "registered as uid 2 after 2 attempt(s), spent 0.500000000 TAO" in result.output
    hotkeys = [n["hotkey"] for n in chain.state()["neurons"]]
    assert hotkeys[1:] == ["sniper", miner.hotkey.ss58_address]


def test_gives_up_after_max_attempts(setup):
    _, wallet_dir, make = setup
    chain = make(burn=0.5, others=[{"front_run": True, "hotkey": f"sniper-{i}"} for i in range(5)])
    result = run(chain, wallet_dir, "--max-cost", "1", "--max-attempts", "2", "--yes")
    assert result.exit_code == 1, result.output
    assert "gave up: 2 attempts made (--max-attempts) (2 attempt(s), spent 0.000000000 TAO)" in result.output
    assert len(registrations(chain)) == 2


def test_insufficient_balance(setup):
    miner, wallet_dir, make = setup
    chain = make(balance=0.2, burn=0.5)
    result = run(chain, wallet_dir, "--max-cost", "1", "--yes")
    assert result.exit_code == 1
    assert "gave up: insufficient balance: 0.2000 TAO free, registration costs 0.5000 TAO" in result.output
    assert registrations(chain) == [] and free(chain, miner) == int(0.2 * RAO)


@pytest.mark.slow
def test_a_rising_cost_never_registers_and_stops_at_max_blocks(setup):
    miner, wallet_dir, make = setup
    chain = make(burn=2.0, burn_schedule=[(START + 2, 3.0)])
    result = run(chain, wallet_dir, "--max-cost", "1", "--max-blocks", "4", "--yes")
    assert result.exit_code == 1
    assert "gave up: no window with a cost <= 1 TAO within 4 blocks (cost now 3.0000 TAO)" in result.output
    assert registrations(chain) == [] and free(chain, miner) == 10 * RAO


@pytest.mark.slow
def test_the_spend_cap_counts_the_fees_of_failed_attempts(setup):
    miner, wallet_dir, make = setup
    chain = make(burn=0.5, tx_fee=0.3, others=[{"front_run": True, "hotkey": f"sniper-{i}"} for i in range(5)])
    result = run(chain, wallet_dir, "--max-cost", "0.5", "--max-spend", "1", "--max-attempts", "5", "--yes")
    assert result.exit_code == 1, result.output
    assert (
        "gave up: the next attempt (0.5000 TAO) would exceed the spend cap of 1 TAO "
        "(2 attempt(s), spent 0.600000000 TAO)"
    ) in result.output
    assert len(registrations(chain)) == 2 and free(chain, miner) == int(9.4 * RAO)
    result = CliRunner().invoke(
        register_command(lambda: FileChain(chain.path)), ["--max-cost", "1", "--max-spend", "0.5"]
    )
    assert result.exit_code == 2 and "must be at least --max-cost" in result.output


def test_already_registered(setup):
    miner, wallet_dir, make = setup
    chain = make(burn=0.5)
    chain.update(lambda s: s["neurons"].append({**s["neurons"][0], "hotkey": miner.hotkey.ss58_address}))
    result = run(chain, wallet_dir, "--max-cost", "1")  # no --yes: nothing to confirm
    assert result.exit_code == 0
    assert "already registered as uid 1: nothing to do" in result.output
    assert chain.extrinsics() == []


def test_the_prompt(setup):
    miner, wallet_dir, make = setup
    chain = make(burn=0.5)
    result = run(chain, wallet_dir, "--max-cost", "1", input="n\n")
    assert result.exit_code == 1
    assert "now costing 0.5000 TAO" in result.output and "gave up: not confirmed" in result.output
    assert registrations(chain) == []
    result = run(chain, wallet_dir, "--max-cost", "1", input="y\n")
    assert result.exit_code == 0 and "registered as uid 1" in result.output


def test_registration_disabled_and_no_subnet(setup):
    _, wallet_dir, make = setup
    chain = make(registration_allowed=False)
    result = run(chain, wallet_dir, "--max-cost", "1", "--yes")
    assert result.exit_code == 1 and f"gave up: registration is disabled on subnet {NETUID}" in result.output
    chain = make(no_subnet=True)
    result = run(chain, wallet_dir, "--max-cost", "1", "--yes")
    assert result.exit_code == 1 and f"gave up: subnet {NETUID} does not exist" in result.output


def test_a_status_is_read_at_one_block_however_fast_blocks_come(tmp_path):
    """The cost and the window in one status come from one block: read at the head one item at a time, a cost
    from one block beside a window from the next once let a registration pay a new window's higher cost."""
    import asyncio

    from bitagent_plugins.operator.chain import OperatorChain

    miner = make_wallet(tmp_path / "wallets", "miner")
    path = new_chain(tmp_path / "chain.json", netuid=NETUID, start_block=START, block_time=0.005, neurons=[])
    # a cost that changes every block (1 TAO more each block), windows of 7 blocks
    add_operator_state(
        path,
        balances={miner.coldkeypub.ss58_address: 10.0},
        adjustment_interval=7,
        burn_schedule=[(START + i, 1.0 + i) for i in range(5000)],
    )

    async def statuses() -> list:
        async with OperatorChain("local", substrate=FileChain(path)) as chain:
            return [
                await chain.registration_status(NETUID, miner.hotkey.ss58_address, miner.coldkeypub.ss58_address)
                for _ in range(15)
            ]

    seen = asyncio.run(statuses())
    assert len({s.block for s in seen}) > 1  # blocks did advance while reading
    for status in seen:
        assert status.cost_rao == (1 + status.block - START) * RAO
        assert status.last_adjustment_block <= status.block < status.last_adjustment_block + 7


@pytest.mark.parametrize("interval", [20, 2])
def test_no_registration_is_sent_in_the_last_blocks_of_a_window(tmp_path, interval):
    """A registration lands a block or more after it is sent: at the end of a window it could pay the next
    window's cost. Windows no longer than that margin (a dev chain's) are not waited out: no block would do.
    Statuses scripted block by block (the chain's side is covered above)."""
    import asyncio

    import attrs

    from bitagent_plugins.operator.chain import RegistrationStatus, TxOutcome
    from bitagent_plugins.operator.register import WINDOW_END_MARGIN, RegisterLimits, register_when_possible

    miner = make_wallet(tmp_path / "wallets", "miner")
    base = RegistrationStatus(
        block=0,
        subnet_exists=True,
        registration_allowed=True,
        cost_rao=RAO // 2,
        balance_rao=10 * RAO,
        uid=None,
        registrations_this_interval=0,
        max_per_interval=3,
        registrations_this_block=0,
        max_per_block=1,
        last_adjustment_block=START,
        adjustment_interval=interval,
    )
    end = START + interval

    class ScriptedChain:
        def __init__(self) -> None:
            self.block_now = end - WINDOW_END_MARGIN - 1  # the last block a registration may be sent in, minus 1
            self.sent_at: list[int] = []

        async def block_time(self) -> float:
            return 0.001

        async def registration_status(self, netuid, hotkey, coldkey) -> RegistrationStatus:
            self.block_now += 1  # one block per read
            window_start = START + (self.block_now - START) // interval * interval
            return attrs.evolve(
                base, block=self.block_now, uid=1 if self.sent_at else None, last_adjustment_block=window_start
            )

        async def balance(self, coldkey) -> int:
            return 10 * RAO

        async def burned_register(self, netuid, wallet) -> TxOutcome:
            self.sent_at.append(self.block_now)
            return TxOutcome(True, "")

        async def uid(self, netuid, hotkey) -> int | None:
            return 1 if self.sent_at else None

    chain = ScriptedChain()
    lines: list[str] = []
    outcome = asyncio.run(
        register_when_possible(
            chain, miner, NETUID, RegisterLimits(max_cost_tao=1.0), on_progress=lambda p: lines.append(p.line())
        )
    )
    waited = sum("the window ends before a registration could land" in line for line in lines)
    if interval > WINDOW_END_MARGIN:
        assert outcome.registered and chain.sent_at == [end]  # not at end - 2 or end - 1: in the new window
        assert waited == WINDOW_END_MARGIN
    else:
        assert outcome.registered and chain.sent_at == [START] and waited == 0
