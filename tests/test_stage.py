"""``bitagent stage`` as a real process against the file-backed chain double: wallets (never overwritten),
funding from the dev account, subnet creation, registrations and stake through bittensor 11, then real
``bitagent mine`` / ``bitagent validate`` processes on 127.0.0.1 launched and supervised by it, with the upstream
``--skip-*`` flags."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from chain_double import ALICE, RAO, FileChain, add_operator_state, new_chain
from pm2_helpers import pm2_apps
from process_helpers import alive
from subnet_helpers import ROOT, TEST_PLUGINS, make_wallet, subprocess_env

from bitagent_plugins.subnet import commitment

DRIVER = Path(__file__).resolve().parent / "operator_driver.py"
NETUID = 3
PREFIX = "t"
PLUGINS = "llama-cpp,bitagent-tasks,bitagent-scorer,bitagent-competition,subnet,wandb-reporter,city-time-competition"


def _environ(tmp_path: Path) -> dict[str, str]:
    """The stage's environment; the city-time competition (tests/plugins) installed through PYTHONPATH."""
    return subprocess_env(tmp_path, BITAGENT_PLUGINS=PLUGINS, PYTHONPATH=str(TEST_PLUGINS))


def _chain(tmp_path: Path) -> FileChain:
    path = new_chain(tmp_path / "chain.json", netuid=NETUID, neurons=[], block_time=0.1)
    add_operator_state(path, no_subnet=True, burn=1.0, max_registrations_per_block=10, network_cost=100.0)
    return FileChain(path)


def _stage(
    tmp_path: Path, chain: FileChain, *args: str, timeout: float = 300, env: dict | None = None
) -> subprocess.CompletedProcess:
    environ = _environ(tmp_path)
    if env:
        environ.update(PATH=env["PATH"], PM2_HOME=env["PM2_HOME"])
    return subprocess.run(
        [
            sys.executable,
            str(DRIVER),
            "stage",
            "--chain-file",
            str(chain.path),
            "--",
            "--subnet_prefix",
            PREFIX,
            "--wallet.path",
            str(tmp_path / "wallets"),
            "--staging-dir",
            str(tmp_path / "staging"),
            *args,
        ],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _start_stage(tmp_path: Path, chain: FileChain, *args: str) -> subprocess.Popen:
    log = open(tmp_path / "stage.log", "w")
    return subprocess.Popen(
        [
            sys.executable,
            str(DRIVER),
            "stage",
            "--chain-file",
            str(chain.path),
            "--",
            "--subnet_prefix",
            PREFIX,
            "--wallet.path",
            str(tmp_path / "wallets"),
            "--staging-dir",
            str(tmp_path / "staging"),
            "--launcher",
            "process",
            *args,
        ],
        cwd=ROOT,
        env=_environ(tmp_path),
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _wait(predicate, proc: subprocess.Popen, log: Path, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        assert proc.poll() is None, log.read_text()[-4000:]
        time.sleep(0.2)
    raise AssertionError(f"timed out; log:\n{log.read_text()[-4000:]}")


def _hotkey(tmp_path: Path, kind: str, i: int) -> str:
    import bittensor as bt

    return bt.Wallet(
        f"{PREFIX}_coldkey_{kind}_{i}", f"{PREFIX}_hotkey_{kind}_{i}", str(tmp_path / "wallets")
    ).hotkey.ss58_address


@pytest.mark.slow
def test_stage_steps_skips_and_launching_miners(tmp_path):
    chain = _chain(tmp_path)
    # a wallet that exists already is kept, never overwritten
    kept = make_wallet(tmp_path / "wallets", f"{PREFIX}_coldkey_miner_1", f"{PREFIX}_hotkey_miner_1")
    kept_coldkey, kept_hotkey = kept.coldkeypub.ss58_address, kept.hotkey.ss58_address

    done = _stage(tmp_path, chain, "--num_validators", "1", "--num_miners", "2", "--skip-launch")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert f"wallet {PREFIX}_coldkey_miner_1/{PREFIX}_hotkey_miner_1: exists, kept (coldkey {kept_coldkey})" in out
    assert f"wallet {PREFIX}_coldkey_validator_0/{PREFIX}_hotkey_validator_0: created" in out
    assert f"subnet {NETUID} created" in out and "nothing launched" in out
    state = chain.state()
    owner, validator = _hotkey(tmp_path, "owner", 0), _hotkey(tmp_path, "validator", 0)
    miners = [_hotkey(tmp_path, "miner", i) for i in range(2)]
    assert miners[1] == kept_hotkey
    assert [n["hotkey"] for n in state["neurons"]] == [owner, validator, *miners]
    assert state["neurons"][1]["validator_permit"] and state["neurons"][1]["stake"] == 100 * RAO
    assert not any(n["validator_permit"] for n in state["neurons"][2:])
    assert state["balances"][kept_coldkey] == 1000 * RAO - 1 * RAO  # funded, then one burn
    assert state["balances"][ALICE] < 1_000_000 * RAO
    assert json.loads((tmp_path / "staging" / "stage.json").read_text())["netuid"] == NETUID

    # again with funding skipped: the subnet is kept, registrations say "already registered", nothing is spent
    balances = state["balances"]
    done = _stage(tmp_path, chain, "--skip-wallet", "--skip-faucet", "--skip-launch")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"subnet {NETUID} exists, owned by" in done.stdout and done.stdout.count("already registered as uid") == 3
    assert chain.state()["balances"] == balances
    assert len(chain.extrinsics("register_network")) == 1

    # --only-launch --skip-launch_v: the two miners only, as supervised child processes
    model = "acme/staged@" + "a" * 40
    proc = _start_stage(
        tmp_path,
        chain,
        "--only-launch",
        "--skip-launch_v",
        "--model",
        model,
        "--miner-arg=--axon.port=0",
        "--miner-arg=--metagraph-refresh=1",
    )
    log = tmp_path / "stage.log"
    try:
        ready = [tmp_path / "staging" / f"{PREFIX}-miner-{i}.ready" for i in range(2)]
        _wait(lambda: all(r.exists() and r.read_text().strip() for r in ready), proc, log, 120)
        record = json.loads((tmp_path / "staging" / "stage.json").read_text())
        assert set(record["apps"]) == {f"{PREFIX}-miner-0", f"{PREFIX}-miner-1"}  # no validator launched
        pids = [app["pid"] for app in record["apps"].values()]
        assert all(alive(pid) for pid in pids)
        state = chain.state()
        for i, hotkey in enumerate(miners):
            assert state["neurons"][2 + i]["axon"]["port"] == int(ready[i].read_text().split(":")[1])
            (field,) = state["commitments"][hotkey]["info"]["fields"]
            committed = bytes.fromhex(next(iter(field.values()))[2:]).decode()
            # discreet: the chain holds a salted hash of the model, opened by the salt the miner keeps
            (salt_file,) = (tmp_path / "wallets").glob(f"*/bitagent-salts/{hotkey}.json")
            assert commitment.opens(commitment.parse(committed) or "", model, json.loads(salt_file.read_text())[model])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    output = log.read_text()
    assert "stopped: every staged process was stopped" in output
    assert not any(alive(pid) for pid in pids)
    assert (tmp_path / "staging" / "logs" / f"{PREFIX}-miner-0.log").read_text()

    # kill -9 of the supervising `stage` takes its children along (no orphaned miners)
    for r in ready:
        r.unlink()
    proc = _start_stage(
        tmp_path, chain, "--only-launch", "--skip-launch_v", "--model", model, "--miner-arg=--axon.port=0"
    )
    try:
        _wait(lambda: all(r.exists() and r.read_text().strip() for r in ready), proc, log, 120)
        pids = [app["pid"] for app in json.loads((tmp_path / "staging" / "stage.json").read_text())["apps"].values()]
        proc.kill()
        proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while any(alive(pid) for pid in pids):
            assert time.monotonic() < deadline, "a miner outlived its supervisor"
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow
def test_stage_launches_pm2_apps(tmp_path, pm2_env):
    chain = _chain(tmp_path)
    done = _stage(tmp_path, chain, "--num_validators", "0", "--num_miners", "2", "--skip-launch")
    assert done.returncode == 0, done.stdout + done.stderr
    model = "acme/staged@" + "e" * 40
    done = _stage(
        tmp_path,
        chain,
        "--num_validators",
        "0",
        "--num_miners",
        "2",
        "--only-launch",
        "--model",
        model,
        "--miner-arg=--axon.port=0",
        "--launcher",
        "pm2",
        env=pm2_env,
    )
    assert done.returncode == 0, done.stdout + done.stderr  # pm2 keeps them running; stage returns
    names = [f"{PREFIX}-miner-{i}" for i in range(2)]
    assert all(f"pm2 app {name} started" in done.stdout for name in names)
    ready = [tmp_path / "staging" / f"{name}.ready" for name in names]
    deadline = time.monotonic() + 120
    while not all(r.exists() and r.read_text().strip() for r in ready):
        assert time.monotonic() < deadline, [(tmp_path / "staging" / "logs" / f"{n}.log").read_text() for n in names]
        time.sleep(0.2)
    apps = pm2_apps(pm2_env)
    assert {name: apps[name]["pm2_env"]["status"] for name in names} == {name: "online" for name in names}
    state = chain.state()
    assert all(state["commitments"][_hotkey(tmp_path, "miner", i)] for i in range(2))
    assert json.loads((tmp_path / "staging" / "stage.json").read_text())["apps"][names[0]]["launcher"] == "pm2"


def test_main_net_refuses_to_spend_and_test_net_has_no_faucet(tmp_path):
    chain = _chain(tmp_path)
    done = _stage(tmp_path, chain, "--main-net")
    assert done.returncode == 1
    assert (
        "--main-net with steps that spend TAO (faucet, miner_reg, subnet, val_reg): add --yes-i-mean-mainnet"
        in done.stderr
    )
    assert not (tmp_path / "wallets").exists() and chain.extrinsics() == []
    done = _stage(tmp_path, chain, "--test-net", "--skip-subnet", "--skip-reg")
    assert done.returncode == 1 and "no dev account to fund wallets from on the test network" in done.stderr
    done = _stage(tmp_path, chain, "--test-net", "--main-net")
    assert done.returncode == 2 and "exclude each other" in done.stderr


@pytest.mark.model
def test_stage_one_validator_two_miners_then_a_round(tmp_path, embedded_model):
    chain = _chain(tmp_path)
    proc = _start_stage(
        tmp_path,
        chain,
        "--num_validators",
        "1",
        "--num_miners",
        "2",
        "--model-file",
        str(embedded_model),
        "--miner-arg=--axon.port=0",
        "--miner-arg=--metagraph-refresh=1",
        "--validator-arg=--once",
        "--validator-arg=--sample-size=3",
        "--validator-arg=-B",
        "--validator-arg=n_threads=2",
        "--validator-arg=-B",
        "--validator-arg=n_ctx=2048",
        "--validator-arg=--sync-interval=5",
        "--validator-arg=--competition=city-time",
    )
    log = tmp_path / "stage.log"
    try:
        _wait(lambda: "validator-0 exited with code 0" in log.read_text(), proc, log, 900)
        record = json.loads((tmp_path / "staging" / "stage.json").read_text())
        assert not alive(record["apps"][f"{PREFIX}-validator-0"]["pid"])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    # both miners submit the embedded model: the same weights, so the earliest commitment gets the credit and
    # the other is recognised as its copy (vetted, not evaluated again)
    from bitagent_plugins.subnet.state import ValidatorState

    with ValidatorState(tmp_path / "staging" / f"{PREFIX}-validator-0" / "state.sqlite") as db:
        done = [e for e in db.evaluations() if e.status == "done"]
    assert len(done) == 1 and done[0].n_tasks == 3
    # the city-time competition (tests/plugins): the model scores above zero on any sample, so weights are set,
    # all on the one credited miner
    assert done[0].score > 0
    (weights,) = chain.weights_submitted()
    assert weights["signer"] == _hotkey(tmp_path, "validator", 0)
    assert len(set(weights["dests"]) & {2, 3}) == 1
