"""A chat template that loops on real conversations cannot hold a ``--backend llama-cpp`` validator.

Everything real except the chain (bittensor 11's client over the ``Substrate`` seam, tests/chain_double.py):
``bitagent validate --once`` as a process, the Hugging Face cache read with ``HF_HUB_OFFLINE=1``, SQLite, and
the embedded model with its chat template rewritten (same length, in a copy of the GGUF) to one that renders
vetting's five-message conversation at once but loops for hours on the competition's shorter ones. Vetting's
bounded render passes it; the validator runs llama.cpp as a server process it owns, so the evaluation's
deadline stops it, and so does SIGTERM to the validator.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from chain_double import FileChain, new_chain
from subnet_helpers import DRIVER, ROOT, TEST_PLUGINS, gguf_repo, hf_repo, make_wallet, subprocess_env

from bitagent_plugins.subnet.chain import Chain
from bitagent_plugins.subnet.gguf import read_gguf_file
from bitagent_plugins.subnet.state import ValidatorState

NETUID = 20
PLUGINS = "llama-cpp,servers,bitagent-scorer,bitagent-competition,subnet,city-time-competition"
#: the server backend's stop timeout (its default): SIGTERM to the server, then SIGKILL after this
STOP_TIMEOUT_S = 15
#: renders vetting's conversation (five messages); loops 10^10 times on anything shorter
LOOPING_TEMPLATE = (
    "{%- if messages|length < 4 %}{%- for i in range(100000) %}{%- for j in range(100000) %}{%- endfor %}"
    "{%- endfor %}{%- endif %}"
    "{%- for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _looping_gguf(model: Path, out: Path) -> Path:
    """A copy of ``model`` whose ``tokenizer.chat_template`` is :data:`LOOPING_TEMPLATE`, padded with a Jinja
    comment to the original's byte length (so no offset in the file moves)."""
    original = (read_gguf_file(model).chat_template or "").encode()
    assert len(original) > len(LOOPING_TEMPLATE) + 4
    new = (LOOPING_TEMPLATE + "{#" + "x" * (len(original) - len(LOOPING_TEMPLATE) - 4) + "#}").encode()
    assert len(new) == len(original)
    shutil.copyfile(model, out)
    with open(out, "r+b") as f:
        head = f.read(64 << 20)  # the metadata sits before the tensors
        offset = head.find(original)
        assert offset > 0 and head.find(original, offset + 1) == -1
        f.seek(offset)
        f.write(new)
    assert read_gguf_file(out).chat_template == new.decode()
    return out


class Round:
    def __init__(self, tmp_path: Path, embedded_model: Path) -> None:
        self.tmp = tmp_path
        self.wallet_dir = tmp_path / "wallets"
        wallets = {name: make_wallet(self.wallet_dir, name) for name in ("validator", "loop")}
        self.chain = new_chain(
            tmp_path / "chain.json",
            netuid=NETUID,
            neurons=[
                {"hotkey": w.hotkey.ss58_address, "validator_permit": name == "validator", "stake": 100}
                for name, w in wallets.items()
            ],
        )
        self.cache = tmp_path / "hf-cache"
        self.gguf = _looping_gguf(embedded_model, tmp_path / "looping.gguf")
        self.sha = hf_repo(self.cache, "acme/loop", gguf_repo(self.gguf))
        self.key = f"acme/loop@{self.sha}"
        self.state = tmp_path / "validator" / "state.sqlite"
        self.log = tmp_path / "validator.log"

        async def commit() -> None:
            async with Chain("local", NETUID, wallet=wallets["loop"], substrate=FileChain(self.chain)) as chain:
                assert (await chain.commit(self.key)).success

        asyncio.run(commit())

    def validator(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [
                sys.executable,
                str(DRIVER),
                "validate",
                "--chain-file",
                str(self.chain),
                "--",
                "--netuid",
                str(NETUID),
                "--subtensor.network",
                "local",
                "--wallet.name",
                "validator",
                "--wallet.path",
                str(self.wallet_dir),
                "--backend",
                "llama-cpp",
                "-B",
                "n_threads=2",
                "-B",
                "n_ctx=2048",
                "--cache-dir",
                str(self.cache),
                "--hf-offline",
                "--state-path",
                str(self.state),
                "--allow-private-axons",
                "--sync-interval",
                "5",
                "--once",
                "--reevaluate-blocks",
                "0",
                "--max-download-bytes",
                "1000000000",
                "--competition",
                "city-time",
                *args,
            ],
            cwd=ROOT,
            env=subprocess_env(self.tmp, BITAGENT_PLUGINS=PLUGINS, PYTHONPATH=str(TEST_PLUGINS)),
            stdout=open(self.log, "a"),
            stderr=subprocess.STDOUT,
        )

    def model_processes(self) -> list[psutil.Process]:
        """Processes serving the looping model (its path in the test cache is in their command line)."""
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            try:
                if str(self.cache) in " ".join(proc.info["cmdline"] or ()):
                    found.append(proc)
            except psutil.Error:
                continue
        return found

    def wait_for_log(self, text: str, proc: subprocess.Popen, timeout_s: float = 300.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.log.read_text():
                return
            assert proc.poll() is None, self.log.read_text()[-3000:]
            time.sleep(0.2)
        raise AssertionError(f"{text!r} not logged in {timeout_s} s:\n{self.log.read_text()[-3000:]}")


@contextlib.contextmanager
def _running(proc: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """``proc``, killed if the test ends while it still runs."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.model
def test_a_template_that_loops_misses_the_deadline_by_the_models_fault(tmp_path, embedded_model):
    setup = Round(tmp_path, embedded_model)
    # six tasks that each time out after 20 s cannot finish within 60 s: the first times out well before it
    with _running(
        setup.validator("--sample-size", "6", "--request-timeout", "20", "--evaluation-deadline", "60")
    ) as proc:
        setup.wait_for_log("model ready", proc)
        assert setup.model_processes(), "the model runs in a process of its own"
        code = proc.wait(timeout=600)
    log = setup.log.read_text()
    assert code == 0, log[-3000:]
    assert "vetting passed" in log, log[-3000:]  # the bounded render passed it: only real conversations loop
    assert "deadline of 60 s missed by" in log, log[-3000:]
    assert "VALIDATOR FAILURE" not in log, log[-3000:]
    with ValidatorState(setup.state) as db:
        assert db.check() == []
        (evaluation,) = db.evaluations("city-time")
    assert evaluation.model_key == setup.key
    assert evaluation.status == "failed"
    assert evaluation.error is not None and "deadline of 60 s missed by" in evaluation.error
    over = float(evaluation.error.split("missed by ")[1].split(" s")[0])
    # N is when the evaluation really ended: after the deadline, within the server's stop timeout (+ kill wait)
    assert 0 <= over < STOP_TIMEOUT_S + 30
    assert "of them ran past the request timeout" in evaluation.error
    assert setup.model_processes() == []


@pytest.mark.model
def test_sigterm_while_a_template_loops_ends_the_validator_and_its_model_process(tmp_path, embedded_model):
    setup = Round(tmp_path, embedded_model)
    with _running(
        setup.validator("--sample-size", "2", "--request-timeout", "300", "--evaluation-deadline", "3600")
    ) as proc:
        setup.wait_for_log("model ready", proc)
        servers = setup.model_processes()
        assert servers, "the model runs in a process of its own"
        time.sleep(2)  # the first request is in the template's loop
        proc.send_signal(signal.SIGTERM)
        # the server gets SIGTERM, then SIGKILL after its stop timeout (+ the kill's own wait); the rest of the
        # shutdown takes well under a second: 30 s of slack on a loaded 2-core machine
        code = proc.wait(timeout=STOP_TIMEOUT_S + 5 + 30)
    assert code is not None
    for server in servers:
        assert not server.is_running() or server.status() == psutil.STATUS_ZOMBIE
    assert setup.model_processes() == []


def test_a_missed_deadline_is_the_models_fault_only_when_its_requests_timed_out():
    from bitagent_plugins.subnet.failures import Fault, classify_exception
    from bitagent_plugins.subnet.pipeline import DeadlineMissed

    looped = classify_exception(DeadlineMissed(60, 1.25, answered=2, total=6, timeouts=2))
    assert looped.fault is Fault.MODEL
    assert "deadline of 60 s missed by 1.2 s (2/6 tasks ended, 2 of them ran past the request timeout)" in looped.reason
    slow = classify_exception(DeadlineMissed(60, 0.5, answered=5, total=6, timeouts=0))
    assert slow.fault is Fault.VALIDATOR and "too slow for its deadline" in slow.reason
    assert "--evaluation-deadline" in slow.action


def test_the_validator_runs_llama_cpp_as_a_server_process_and_refuses_a_deadline_shorter_than_a_request(
    fresh_registry, tmp_path
):
    from bitagent_plugins.subnet.pipeline import ModelPipeline

    def pipeline(**kwargs):
        return ModelPipeline(
            registry=fresh_registry,
            competition=None,
            cache_dir=tmp_path,
            hub=None,
            limits=None,
            backend="llama-cpp",
            backend_options={"n_threads": "2", "verbose": "true"},
            runs_dir=tmp_path,
            **kwargs,
        )

    made = pipeline(request_timeout_s=300, deadline_s=3600)
    assert (made.backend, made.engine) == ("llama-cpp", "llama-cpp-server")
    assert made.backend_options == {"n_threads": "2"}  # the server backend takes no verbose/worker_thread
    with pytest.raises(ValueError, match="must be longer than the request timeout"):
        pipeline(request_timeout_s=300, deadline_s=300)
