"""The upstream wire protocol against the real thing: bittensor 10.5.0 (the last release with Axon/Dendrite)
in a side virtualenv, cached under ``~/.cache/bitagent/test-venvs/bittensor-10.5.0`` (``BITAGENT_TEST_VENVS``
moves it) so later runs are offline. Skipped, saying why, only when that install is impossible.

(a) its ``Dendrite`` asks our miner's endpoint ``GetHFModelName``: a permitted validator gets the name (also
twice in a row: the nonce table), a hotkey without a permit and an unregistered one get the Axon's 403;
(b) our validator's client asks its ``Axon`` serving a miner written the upstream way (synapse subclass,
forward, blacklist with ``force_validator_permit``, stake priority): the name comes back, a hotkey without a
permit is blacklisted, and ``collect_submissions`` finds the upstream miner on the ``legacy`` channel after our
signed endpoint's 404 — and opens a hashed commitment with the salt our miner reveals over the same synapse.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from filelock import FileLock
from subnet_helpers import make_wallet

from bitagent_plugins.subnet import commitment, protocol
from bitagent_plugins.subnet.chain import MetagraphView, Neuron
from bitagent_plugins.subnet.protocol import MetagraphAuthorizer, SubmissionServer

BITTENSOR_10 = "bittensor==10.5.0"
SIDE = Path(__file__).with_name("legacy_side.py")


def _venv_root() -> Path:
    base = os.environ.get("BITAGENT_TEST_VENVS") or Path.home() / ".cache" / "bitagent" / "test-venvs"
    return Path(base)


def _works(python: Path) -> bool:
    if not python.exists():
        return False
    probe = subprocess.run(
        [str(python), "-c", "import bittensor.core.axon, bittensor.core.dendrite"],
        capture_output=True,
        timeout=120,
        env=_env(Path("/tmp")),
    )
    return probe.returncode == 0


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["HOME"] = str(home)  # bittensor writes ~/.bittensor on import
    return env


@pytest.fixture(scope="session")
def bt10_python() -> Path:
    """The side virtualenv's Python, installed once (under a lock: parallel sessions share the cache)."""
    root = _venv_root()
    venv = root / "bittensor-10.5.0"
    python = venv / "bin" / "python"
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(root / ".bittensor-10.5.0.lock"):
        if _works(python):
            return python
        staging = root / f".bittensor-10.5.0.{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            subprocess.run([sys.executable, "-m", "venv", str(staging)], check=True, capture_output=True, timeout=300)
            install = subprocess.run(
                [
                    str(staging / "bin" / "python"),
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    BITTENSOR_10,
                ],
                capture_output=True,
                text=True,
                timeout=1200,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            shutil.rmtree(staging, ignore_errors=True)
            pytest.skip(f"cannot install {BITTENSOR_10} into a side virtualenv: {exc}")
        if install.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            pytest.skip(
                f"cannot install {BITTENSOR_10} into a side virtualenv (no index reachable?): "
                f"{install.stderr.strip().splitlines()[-1:]}"
            )
        shutil.rmtree(venv, ignore_errors=True)
        staging.rename(venv)  # only ``bin/python`` is used: it finds its site-packages wherever the venv is
        assert _works(python), f"{BITTENSOR_10} installed but does not import"
        return python


@pytest.fixture(scope="module")
def wallets(tmp_path_factory):
    directory = tmp_path_factory.mktemp("wallets")
    return directory, {name: make_wallet(directory, name) for name in ("miner", "validator", "plain", "stranger")}


def _hk(wallet) -> str:
    return wallet.hotkey.ss58_address


def _neuron(uid: int, hotkey: str, axon: str | None, *, permit: bool = False, **kwargs) -> Neuron:
    return Neuron(uid=uid, hotkey=hotkey, coldkey="5C", validator_permit=permit, stake=0.0, axon=axon, **kwargs)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _dendrite(python: Path, wallet_dir: Path, who: str, miner_hotkey: str, port: int, repeat: int = 1) -> list[dict]:
    out = subprocess.run(
        [
            str(python),
            str(SIDE),
            "dendrite",
            "--wallet",
            who,
            "--wallet-path",
            str(wallet_dir),
            "--port",
            str(port),
            "--miner-hotkey",
            miner_hotkey,
            "--repeat",
            str(repeat),
            "--timeout",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=_env(wallet_dir),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_the_upstream_dendrite_gets_our_miners_submission(bt10_python, wallets):
    wallet_dir, w = wallets
    authorizer = MetagraphAuthorizer(20, require_permit=True)
    authorizer.update({_hk(w["validator"]): True, _hk(w["plain"]): False, _hk(w["miner"]): False})
    salt = commitment.new_salt()
    with SubmissionServer(w["miner"], "acme/tool-caller@main", netuid=20, authorize=authorizer, salt=salt) as miner:
        _host, port = miner.address
        answers = _dendrite(bt10_python, wallet_dir, "validator", miner.hotkey, port, repeat=2)
        assert [(a["status_code"], a["hf_model_name"]) for a in answers] == [(200, "acme/tool-caller@main")] * 2
        (no_permit,) = _dendrite(bt10_python, wallet_dir, "plain", miner.hotkey, port)
        assert no_permit["status_code"] == 403 and "no validator permit" in no_permit["status_message"]
        assert no_permit["hf_model_name"] is None
        (stranger,) = _dendrite(bt10_python, wallet_dir, "stranger", miner.hotkey, port)
        assert stranger["status_code"] == 403 and "not registered" in stranger["status_message"]
        assert miner.served == 2 and miner.refused == 2


@contextlib.contextmanager
def _upstream_axon(python: Path, wallet_dir: Path, model: str, metagraph: dict, tmp_path: Path):
    port = _free_port()
    (tmp_path / "mg.json").write_text(json.dumps(metagraph))
    ready = tmp_path / "axon.ready"
    log = open(tmp_path / "axon.log", "w")
    proc = subprocess.Popen(
        [
            str(python),
            str(SIDE),
            "axon",
            "--wallet",
            "miner",
            "--wallet-path",
            str(wallet_dir),
            "--port",
            str(port),
            "--model",
            model,
            "--metagraph",
            str(tmp_path / "mg.json"),
            "--ready",
            str(ready),
        ],
        stdin=subprocess.PIPE,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=_env(wallet_dir),
    )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert proc.poll() is None, (tmp_path / "axon.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the upstream Axon did not start"
            time.sleep(0.1)
        yield port
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.mark.slow
def test_our_validator_asks_an_upstream_axon(bt10_python, wallets, tmp_path):
    wallet_dir, w = wallets
    metagraph = {
        "hotkeys": [_hk(w["validator"]), _hk(w["plain"])],
        "validator_permit": [True, False],
        "stake": [100.0, 1.0],
    }
    with _upstream_axon(bt10_python, wallet_dir, "acme/upstream-model", metagraph, tmp_path) as port:
        axon = f"127.0.0.1:{port}"

        async def ask(wallet):
            async with protocol._client(10, 4) as client:
                return await protocol.query_legacy(
                    client, wallet, hotkey=_hk(w["miner"]), axon=axon, allow_private=True
                )

        first = asyncio.run(ask(w["validator"]))
        again = asyncio.run(ask(w["validator"]))
        assert first.model == again.model == "acme/upstream-model" and first.salt is None
        with pytest.raises(protocol.QueryFailed, match="403.*validator permit required"):
            asyncio.run(ask(w["plain"]))
        mg = MetagraphView(
            netuid=20,
            block=50,
            neurons=(_neuron(0, _hk(w["validator"]), None, permit=True), _neuron(1, _hk(w["miner"]), axon)),
        )
        found, missing = asyncio.run(
            protocol.collect_submissions(
                w["validator"], mg, netuid=20, me=_hk(w["validator"]), allow_private=True, timeout_s=10
            )
        )
    assert missing == {}
    assert found[_hk(w["miner"])] == protocol.Collected("acme/upstream-model", "legacy", 50)


@pytest.mark.slow
def test_a_hashed_commitment_is_opened_over_the_legacy_synapse(bt10_python, wallets):
    """Our miner, asked only through ``GetHFModelName`` (its signed endpoint disabled by a wrong netuid), reveals
    name and salt; the validator takes the name because it opens the on-chain hash, and refuses a wrong one."""
    wallet_dir, w = wallets
    authorizer = MetagraphAuthorizer(7, require_permit=False)
    authorizer.update({_hk(w["validator"]): True})
    salt = commitment.new_salt()
    name = "acme/discreet@0123456789abcdef0123456789abcdef01234567"
    with SubmissionServer(w["miner"], name, netuid=7, authorize=authorizer, salt=salt) as miner:
        host, port = miner.address
        (answer,) = _dendrite(bt10_python, wallet_dir, "validator", miner.hotkey, port)  # upstream sees the name
        assert answer["hf_model_name"] == name

        def collect(committed: str):
            mg = MetagraphView(
                netuid=20,
                block=90,
                neurons=(_neuron(1, miner.hotkey, f"{host}:{port}", commitment=committed, commitment_block=12),),
            )
            return asyncio.run(
                protocol.collect_submissions(w["validator"], mg, netuid=20, allow_private=True, timeout_s=10)
            )

        found, missing = collect(commitment.make(name, salt))
        assert found[miner.hotkey] == protocol.Collected(name, "legacy+commitment", 12) and not missing
        found, missing = collect(commitment.make("acme/other@main", salt))
        assert found == {} and "does not match the on-chain commitment" in missing[miner.hotkey]
