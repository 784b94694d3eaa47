"""A failure nobody can attribute is retried like the validator's own before it ever counts as the model's.

The validator runs in-process with everything real except the chain (tests/chain_double.py) and the backend: a
backend plugin whose ``start`` raises an untyped error (no :class:`bitagent_core.BackendError` says whose fault it
is), registered the way a third-party package registers one.
"""

from __future__ import annotations

import asyncio
import sys
import types

import pytest
from chain_double import FileChain, new_chain
from subnet_helpers import TEST_PLUGINS, hf_repo, make_wallet, safetensors_repo

import bitagent_core as ba
from bitagent_plugins.subnet.failures import UNKNOWN_RETRIES
from bitagent_plugins.subnet.state import ValidatorState

NETUID = 20


class UntypedFailure:
    """Fails every evaluation with an error whose cause nothing classifies."""

    default_concurrency = 1
    starts = 0

    def __init__(self, model, options):
        pass

    async def start(self, run_dir):
        UntypedFailure.starts += 1
        raise RuntimeError("the backend went wrong in a way nobody classified")

    async def complete(self, request):
        raise AssertionError("never started")

    async def close(self):
        pass

    def describe(self):
        return {"model": "untyped-failure"}


def _plugin() -> types.ModuleType:
    module = types.ModuleType("untyped_failure_plugin")
    module.BITAGENT_PLUGIN_API = "1"  # type: ignore[attr-defined]

    @ba.hookimpl
    def register_backends(register):
        register("untyped-failure", UntypedFailure, "fails with an error of unknown cause")

    module.register_backends = register_backends  # type: ignore[attr-defined]
    return module


def test_an_unknown_cause_is_retried_then_counted_as_the_models(tmp_path, monkeypatch):
    from bitagent_core import PluginRegistry
    from bitagent_plugins.subnet.validator import Validator, ValidatorConfig

    monkeypatch.syspath_prepend(str(TEST_PLUGINS))
    monkeypatch.setitem(sys.modules, "untyped_failure_plugin", _plugin())
    registry = PluginRegistry()
    registry.load_entry_points({"bitagent-scorer", "bitagent-competition", "subnet", "city-time-competition"})
    registry.register_module(sys.modules["untyped_failure_plugin"], "untyped-failure")
    assert not registry.failed_plugins(), registry.failed_plugins()

    wallets = {name: make_wallet(tmp_path / "wallets", name) for name in ("validator", "miner")}
    chain_file = new_chain(
        tmp_path / "chain.json",
        netuid=NETUID,
        block_time=0.05,
        neurons=[{"hotkey": w.hotkey.ss58_address, "validator_permit": n == "validator"} for n, w in wallets.items()],
    )
    cache = tmp_path / "hf-cache"
    sha = hf_repo(cache, "acme/model", safetensors_repo(shapes={"w": [4, 16]}))
    state_path = tmp_path / "state" / "state.sqlite"
    with ValidatorState(state_path) as db:  # the miner's submission, as a collection would have stored it
        db.sync_neurons({0: wallets["validator"].hotkey.ss58_address, 1: wallets["miner"].hotkey.ss58_address}, 1)
        db.upsert_submission(wallets["miner"].hotkey.ss58_address, 1, "acme/model", None, sha, 1)
    config = ValidatorConfig(
        netuid=NETUID,
        network="local",
        state_path=state_path,
        cache_dir=cache,
        backend="untyped-failure",
        competition="city-time",
        sample_size=2,
        hf_offline=True,
        sync_interval=1,
        heartbeat_s=60,
        tick_s=0.01,
        max_download_bytes=10**8,
    )
    validator = Validator(config, substrate=FileChain(chain_file), wallet=wallets["validator"], registry=registry)
    UntypedFailure.starts = 0

    async def run_until_counted() -> None:
        runner = asyncio.create_task(validator.run())
        try:
            for _ in range(6000):  # the retries wait 20 and 40 blocks of 0.05 s
                if UntypedFailure.starts > UNKNOWN_RETRIES or runner.done():
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.5)  # the last failure is recorded
        finally:
            validator.stop()
            await asyncio.wait_for(runner, 60)

    asyncio.run(run_until_counted())
    own = [reason for kind, reason in validator.events if kind == "own-failure" and "nobody classified" in reason]
    assert UntypedFailure.starts == UNKNOWN_RETRIES + 1, validator.events
    assert len(own) == UNKNOWN_RETRIES, "each retry is the validator's: no score moves"
    with ValidatorState(state_path) as db:
        evaluations = [e for e in db.evaluations() if e.model_key == f"acme/model@{sha}"]
    assert [e.status for e in evaluations] == ["failed"], evaluations
    assert "nobody classified" in (evaluations[0].error or ""), evaluations


def test_a_plugin_the_validator_lacks_is_its_own_fault():
    from bitagent_core import PluginRegistry
    from bitagent_plugins.subnet.failures import classify_exception

    with pytest.raises(ba.UnknownPluginObject) as raised:
        PluginRegistry().create("task_sources", "not-installed")
    failure = classify_exception(raised.value, context="evaluation")
    assert failure.ours and "bitagent plugins" in failure.action
