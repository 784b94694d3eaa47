"""bitagent_plugins/subnet/chain.py through bittensor 11's real client, intents and executor, against the chain double
behind the SDK's ``Substrate`` protocol (tests/chain_double.py). Every extrinsic is signed by a real
sr25519 hotkey and its signature verified by the double before it is applied."""

from __future__ import annotations

import asyncio

import pytest
from chain_double import FileChain, new_chain
from hypothesis import given, settings
from hypothesis import strategies as st
from subnet_helpers import make_wallet

from bitagent_plugins.subnet import chain as chain_module
from bitagent_plugins.subnet.chain import (
    Chain,
    ChainUnavailable,
    bitagent_version,
    conformed_weights,
    encode_commitment,
    fit_to_max_weight_limit,
    is_public_ip,
    load_wallet,
    version_key,
)

NETUID = 20


@pytest.fixture(scope="module")
def wallet_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("wallets")


@pytest.fixture(scope="module")
def wallets(wallet_dir):
    return {name: make_wallet(wallet_dir, name) for name in ("validator", "miner", "other", "stranger")}


@pytest.fixture
def chain_file(tmp_path, wallets):
    return new_chain(
        tmp_path / "chain.json",
        netuid=NETUID,
        neurons=[
            {
                "hotkey": wallets["validator"].hotkey.ss58_address,
                "coldkey": wallets["validator"].coldkeypub.ss58_address,
                "validator_permit": True,
                "stake": 1500.5,
            },
            {"hotkey": wallets["miner"].hotkey.ss58_address},
            {"hotkey": wallets["other"].hotkey.ss58_address},
        ],
        hyperparameters={"MinAllowedWeights": 2, "MaxWeightsLimit": 40000, "WeightsVersionKey": 7},
    )


def run(coro):
    return asyncio.run(coro)


def open_chain(chain_file, wallet=None, netuid=NETUID):
    return Chain("local", netuid, wallet=wallet, substrate=FileChain(chain_file))


def test_version_key_follows_the_release():
    # upstream's convention: 1000*major + 10*minor + patch (its 1.0.50 -> 1050)
    assert version_key("1.0.50") == 1050
    assert version_key("0.1.0") == 10
    assert version_key("1.2.3") == 1023
    assert version_key("2.0.0rc1") == 2000
    assert version_key() == version_key(bitagent_version())


def test_the_metagraph_has_uids_hotkeys_permits_stake_endpoints_and_commitments(chain_file, wallets):
    async def main():
        async with open_chain(chain_file, wallets["miner"]) as chain:
            assert (await chain.commit("acme/model@main")).success
            assert (await chain.serve_axon("127.0.0.1", 8091)).success
            return await chain.metagraph(), await chain.block()

    mg, block = run(main())
    assert mg.netuid == NETUID and len(mg) == 3 and mg.block <= block
    validator, miner, other = mg.neurons
    assert validator.uid == 0 and validator.validator_permit and validator.stake == pytest.approx(1500.5)
    assert validator.coldkey == wallets["validator"].coldkeypub.ss58_address
    assert miner.hotkey == wallets["miner"].hotkey.ss58_address and not miner.validator_permit
    assert miner.commitment == "acme/model@main" and miner.commitment_block is not None
    assert miner.axon == "127.0.0.1:8091"
    assert other.commitment is None and other.axon is None
    assert mg.by_hotkey(wallets["other"].hotkey.ss58_address) is other and mg.by_uid(1) is miner
    assert mg.by_hotkey("5Nobody") is None and mg.by_uid(9) is None
    assert mg.hotkeys == {0: validator.hotkey, 1: miner.hotkey, 2: other.hotkey}


def test_commitments_are_written_as_raw_fields_and_read_back(chain_file, wallets):
    long = "acme/" + "m" * 90 + "@" + "f" * 40  # 136 bytes: two Raw fields
    assert encode_commitment("a/b") == {"fields": [{"Raw3": b"a/b"}]}
    assert [list(f)[0] for f in encode_commitment(long)["fields"]] == ["Raw128", "Raw8"]
    with pytest.raises(ValueError):
        encode_commitment("")
    with pytest.raises(ValueError):
        encode_commitment("x" * (chain_module.MAX_COMMITMENT_BYTES + 1))

    async def main():
        async with open_chain(chain_file, wallets["miner"]) as chain:
            assert (await chain.commit(long)).success
            return await chain.metagraph()

    mg = run(main())
    assert mg.by_uid(1).commitment == long
    stored = FileChain(chain_file).state()["commitments"][wallets["miner"].hotkey.ss58_address]
    assert stored["info"]["fields"][0] == {"Raw128": "0x" + long.encode()[:128].hex()}


def test_set_weights_submits_the_u16_vector_with_the_version_key(chain_file, wallets):
    async def main():
        async with open_chain(chain_file, wallets["validator"]) as chain:
            limits = await chain.weight_limits()
            # 65535 / (65535 + 50000) = 0.567 <= 40000 / 65535 = 0.610: within the limit, sent as is
            within = await chain.set_weights([1, 2], [65535, 50000], version_key=version_key())
            # 65535 / 95535 = 0.686: over the limit, SetWeights clips; the result says what was sent
            over = await chain.set_weights([1, 2], [65535, 30000], version_key=version_key())
            return limits, within, over

    limits, within, over = run(main())
    assert limits.min_allowed_weights == 2 and limits.version_key == 7
    assert limits.max_weight_limit == pytest.approx(40000 / 65535)
    assert within.success and over.success, (within.message, over.message)
    submitted = FileChain(chain_file).weights_submitted()
    signer = wallets["validator"].hotkey.ss58_address
    assert [(s["signer"], s["dests"], s["weights"], s["version_key"]) for s in submitted] == [
        (signer, [1, 2], [65535, 50000], version_key()),
        (signer, [1, 2], [65535, 41836], version_key()),
    ]
    assert (within.data["uids"], within.data["weights"]) == ([1, 2], [65535, 50000])
    assert (over.data["uids"], over.data["weights"]) == ([1, 2], [65535, 41836])
    assert 65535 * 65535 <= 40000 * (65535 + 41836)  # what the runtime checks


def test_set_weights_failures_come_back_as_results(chain_file, wallets):
    async def main():
        async with open_chain(chain_file, wallets["miner"]) as chain:  # registered, no validator permit
            no_permit = await chain.set_weights([1, 2], [65535, 30000], version_key=version_key())
        async with open_chain(chain_file, wallets["stranger"]) as chain:  # not registered
            unregistered = await chain.set_weights([1, 2], [65535, 30000], version_key=version_key())
        async with open_chain(chain_file, wallets["validator"]) as chain:
            old_key = await chain.set_weights([1, 2], [65535, 30000], version_key=6)
            too_few = await chain.set_weights([1], [65535], version_key=version_key())
        return no_permit, unregistered, old_key, too_few

    no_permit, unregistered, old_key, too_few = run(main())
    assert not no_permit.success and "NeuronNoValidatorPermit" in no_permit.message
    assert not unregistered.success and "not registered" in unregistered.message
    assert not old_key.success and "IncorrectWeightVersionKey" in old_key.message
    assert not too_few.success and "at least 2" in too_few.message  # caught by SetWeights' preflight
    assert FileChain(chain_file).weights_submitted() == []
    with pytest.raises(ValueError):
        run(open_chain(chain_file, wallets["validator"]).set_weights([], [], version_key=1))


def test_on_a_commit_reveal_subnet_weights_go_as_a_timelocked_commit(tmp_path, wallets):
    path = new_chain(
        tmp_path / "cr.json",
        netuid=NETUID,
        neurons=[
            {"hotkey": wallets["validator"].hotkey.ss58_address, "validator_permit": True},
            {"hotkey": wallets["miner"].hotkey.ss58_address},
        ],
        hyperparameters={"CommitRevealWeightsEnabled": True},
    )

    async def main():
        async with open_chain(path, wallets["validator"]) as chain:
            return await chain.set_weights([1], [65535], version_key=version_key())

    result = run(main())
    assert result.success and result.data["reveal_round"] > 0
    (extrinsic,) = FileChain(path).extrinsics()
    assert extrinsic["function"] == "commit_timelocked_mechanism_weights"
    assert extrinsic["params"]["reveal_round"] == result.data["reveal_round"]
    assert FileChain(path).weights_submitted() == []  # nothing in the clear


def test_writes_need_a_registered_hotkey(chain_file, wallets):
    async def main():
        async with open_chain(chain_file, wallets["stranger"]) as chain:
            return await chain.commit("acme/x"), await chain.serve_axon("127.0.0.1", 9000)

    commit, serve = run(main())
    assert not commit.success and "AccountNotAllowedCommit" in commit.message
    assert not serve.success and "HotKeyNotRegisteredInSubNet" in serve.message
    with pytest.raises(ValueError):
        run(open_chain(chain_file, wallets["miner"]).serve_axon("not-an-ip", 1))


def test_reads_fail_clearly(tmp_path, chain_file, wallets):
    async def missing_subnet():
        async with open_chain(chain_file, wallets["miner"], netuid=3) as chain:
            return await chain.metagraph()

    with pytest.raises(ChainUnavailable, match="subnet 3 does not exist"):
        run(missing_subnet())
    with pytest.raises(ChainUnavailable, match="cannot connect"):
        run(open_chain(tmp_path / "nowhere.json").connect())
    with pytest.raises(ChainUnavailable, match="Unknown network"):
        run(Chain("atlantis", NETUID).connect())
    with pytest.raises(ChainUnavailable, match="not connected"):
        run(Chain("local", NETUID).block())
    with pytest.raises(ChainUnavailable, match="no wallet"):
        _ = Chain("local", NETUID).hotkey


def test_wallets_load_from_their_directory(wallet_dir, wallets):
    wallet = load_wallet("miner", "default", str(wallet_dir))
    assert wallet.hotkey.ss58_address == wallets["miner"].hotkey.ss58_address
    with pytest.raises(ChainUnavailable, match="cannot load hotkey 'nope'"):
        load_wallet("miner", "nope", str(wallet_dir))


def test_public_addresses():
    assert is_public_ip("8.8.8.8") and is_public_ip("2001:4860::8888")
    assert not any(is_public_ip(ip) for ip in ("127.0.0.1", "10.1.2.3", "192.168.0.1", "::1", "0.0.0.0", "x"))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(min_value=1, max_value=65535), min_size=2, max_size=40),
    st.integers(min_value=1000, max_value=65534),
)
def test_fitting_to_the_max_weight_limit_meets_the_runtime_check_and_survives_set_weights(values, limit_u16):
    values = [round(v * 65535 / max(values)) for v in values]  # quantised: the largest is 65535
    uids = list(range(len(values)))
    fitted = fit_to_max_weight_limit(uids, values, limit_u16)
    assert max(fitted) == 65535 and all(f >= v for f, v in zip(fitted, values))
    assert all((a < b) <= (fa <= fb) for a, b, fa, fb in zip(values, values[1:], fitted, fitted[1:]))  # order kept
    others = [v for v in values if v != 65535]
    # raising every other weight by the same amount (which keeps their order) can meet the limit
    reachable = sum(values) + len(others) * (65534 - max(others)) if others else sum(values)
    if 65535 * 65535 <= limit_u16 * reachable:
        assert 65535 * 65535 <= limit_u16 * sum(fitted)  # what the runtime checks
        assert conformed_weights(uids, [float(f) for f in fitted], limit_u16 / 65535) == (uids, fitted)
    else:
        assert fitted == values  # nothing to gain: the chain will refuse it and say so
    assert fit_to_max_weight_limit(uids, [65535] * len(values), limit_u16) == [65535] * len(values)
