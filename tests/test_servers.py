"""Server backends. sglang and vLLM need CUDA, so their exact command and environment are checked, and
their start/ready/teardown runs with a real ``llama_cpp.server`` standing in for the HTTP side. The
llama-cpp-server and openai backends run for real, end to end through ``bitagent evaluate``."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from process_helpers import ours

from bitagent_core.errors import EngineError
from bitagent_core.model import Task
from bitagent_core.toolkit.prompting import build_request
from bitagent_plugins.backends import local_server
from bitagent_plugins.backends.local_server import MARKER_ENV, ManagedServer, read_records
from bitagent_plugins.backends.servers import (
    LlamaCppServerBackend,
    OpenAIBackend,
    SglangBackend,
    VllmBackend,
    split_model,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX process groups and signals")

PY = sys.executable
BITAGENT = str(Path(sys.executable).parent / "bitagent")

TASKS = [
    {
        "id": f"weather-{city}",
        "category": "single_call",
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
    for city in ("Paris", "Rome", "Oslo", "Lima", "Cairo", "Tokyo", "Quito", "Dakar")
]


def environ_of(pid: int) -> dict[str, str]:
    import psutil

    return psutil.Process(pid).environ()


def llama_argv(model: Path, port: int | str, n_ctx: int = 1024, *extra: str) -> list[str]:
    return [
        PY,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
        "--n_threads",
        "1",
        *extra,
    ]


@pytest.fixture
def tasks_jsonl(tmp_path) -> Path:
    path = tmp_path / "tasks.jsonl"
    path.write_text("".join(json.dumps(t) + "\n" for t in TASKS))
    return path


def evaluate(*args: str, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([BITAGENT, "evaluate", *args], cwd=cwd, capture_output=True, text=True, timeout=600, **kwargs)


def only_run_dir(out: Path) -> Path:
    (run_dir,) = list(out.iterdir())
    return run_dir


def samples(run_dir: Path) -> dict[str, dict]:
    records = {}
    for line in (run_dir / "samples.jsonl").read_text().splitlines():
        record = json.loads(line)
        records[record["task_id"]] = record
    return records


def wait_for_samples(run_dir_parent: Path, n: int, proc: subprocess.Popen, limit_s: float = 300) -> Path:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        for path in run_dir_parent.glob("*/samples.jsonl"):
            if len(path.read_text().splitlines()) >= n:
                return path.parent
        if proc.poll() is not None:
            pytest.fail(f"the run ended first: {proc.stderr.read()}")
        time.sleep(0.05)
    pytest.fail("no sample written")


# ------------------------------------------------------------------------- commands and environment


#: Stand-ins for sglang's and vLLM's server entry points, with the flags of the real ones (sglang 0.5
#: ``launch_server``, vLLM 0.32 ``vllm.entrypoints.openai.api_server``; the real vLLM runs in
#: tests/test_engine.py, sglang cannot run here: its CPU backend needs Intel AMX): argparse refuses any flag the
#: real server would not know. Each records what it was given (arguments, CUDA_VISIBLE_DEVICES, the address it
#: bound) and answers ``/v1/models`` and ``/v1/chat/completions`` like an OpenAI-compatible server.
STAND_IN = r"""
import argparse, json, os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

def serve(args, model):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.answer({"object": "list", "data": [{"id": model}]})
        def do_POST(self):
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.answer({"choices": [{"message": {"role": "assistant", "content": "[f(a=1)]"},
                                      "finish_reason": "stop"}], "usage": {}})
        def answer(self, body):
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        def log_message(self, *a):
            pass
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    with open(os.environ["STAND_IN_RECORD"], "w") as f:
        json.dump({"args": vars(args), "bound": server.server_address[0],
                   "devices": os.environ.get("CUDA_VISIBLE_DEVICES")}, f)
    server.serve_forever()
"""

SGLANG_MAIN = (
    STAND_IN
    + r"""
parser = argparse.ArgumentParser()
for flag in ("--model-path", "--revision", "--host", "--mem-fraction-static", "--context-length",
             "--tool-call-parser"):
    parser.add_argument(flag)
for flag in ("--port", "--tp-size", "--dp-size"):
    parser.add_argument(flag, type=int)
parser.add_argument("--enable-metrics", action="store_true")
args = parser.parse_args()
serve(args, args.model_path)
"""
)

VLLM_MAIN = (
    STAND_IN
    + r"""
parser = argparse.ArgumentParser()
for flag in ("--model", "--revision", "--host", "--gpu-memory-utilization", "--served-model-name",
             "--tool-call-parser"):
    parser.add_argument(flag)
for flag in ("--port", "--max-model-len", "--tensor-parallel-size", "--data-parallel-size",
             "--kv-cache-memory-bytes"):
    parser.add_argument(flag, type=int)
parser.add_argument("--enable-auto-tool-choice", action="store_true")
args = parser.parse_args()
serve(args, args.served_model_name or args.model)
"""
)


@pytest.fixture
def stand_ins(tmp_path, monkeypatch) -> Path:
    """``sglang.launch_server`` and ``vllm.entrypoints.openai.api_server`` on PYTHONPATH; returns the record file."""
    root = tmp_path / "stand-ins"
    for module, source in (
        ("sglang/launch_server.py", SGLANG_MAIN),
        ("vllm/entrypoints/openai/api_server.py", VLLM_MAIN),
    ):
        path = root / module
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
        for package in path.relative_to(root).parents:
            if str(package) != ".":
                (root / package / "__init__.py").touch()
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    record = tmp_path / "stand-in.json"
    monkeypatch.setenv("STAND_IN_RECORD", str(record))
    return record


@pytest.mark.parametrize(
    ("backend_class", "model", "options", "given"),
    [
        (
            SglangBackend,
            "Qwen/Qwen2.5-7B-Instruct@0123abcd",
            {
                "mem_fraction_static": "0.8",
                "context_length": "25000",
                "tp": "2",
                "dp": "2",
                "visible_devices": "2,3",
                "extra_args": "--enable-metrics",
            },
            {
                "model_path": "Qwen/Qwen2.5-7B-Instruct",
                "revision": "0123abcd",
                "mem_fraction_static": "0.8",
                "context_length": "25000",
                "tp_size": 2,
                "dp_size": 2,
                "enable_metrics": True,
            },
        ),
        (
            SglangBackend,
            "org/model",
            {},
            {
                "model_path": "org/model",
                "revision": None,
                "mem_fraction_static": "0.85",
                "tp_size": None,
                "context_length": "25000",
                "tool_call_parser": "pythonic",
            },
        ),
        (
            VllmBackend,
            "meta/llama",
            {
                "revision": "abc",
                "gpu_memory_utilization": "0.7",
                "max_model_len": "8192",
                "tp": "4",
                "dp": "2",
                "visible_devices": "0,1,2,3",
                "extra_args": "--served-model-name 'm x'",
            },
            {
                "model": "meta/llama",
                "revision": "abc",
                "gpu_memory_utilization": "0.7",
                "max_model_len": 8192,
                "tensor_parallel_size": 4,
                "data_parallel_size": 2,
                "served_model_name": "m x",
                "enable_auto_tool_choice": True,
                "tool_call_parser": "pythonic",
                "kv_cache_memory_bytes": None,
            },
        ),
        (
            VllmBackend,
            "meta/llama",
            {"kv_cache_gib": "2", "tool_call_parser": "hermes"},
            {
                "max_model_len": 25000,
                "gpu_memory_utilization": "0.85",
                "kv_cache_memory_bytes": 2 * 2**30,
                "tool_call_parser": "hermes",
            },
        ),
    ],
)
def test_sglang_and_vllm_get_what_they_understand_bind_loopback_and_answer(
    backend_class, model, options, given, stand_ins, server_records, owner_token, tmp_path
):
    backend = backend_class(model, {**options, "server_python": PY, "ready_timeout": "60"})

    async def main():
        await backend.start(tmp_path)
        try:
            completion = await backend.complete(build_request(Task.from_json(TASKS[0])))
            return completion, backend.servers[0].port, backend.servers[0].pid
        finally:
            await backend.close()

    completion, port, pid = asyncio.run(main())
    record = json.loads(stand_ins.read_text())
    assert completion.text == "[f(a=1)]"
    assert {k: record["args"].get(k) for k in given} == given  # parsed by the real flags' names
    assert record["bound"] == "127.0.0.1" and record["args"]["port"] == port
    assert record["devices"] == options.get("visible_devices", os.environ.get("CUDA_VISIBLE_DEVICES"))
    assert (tmp_path / "server.log").exists()
    assert not local_server.is_running(pid) and ours(owner_token) == [] and read_records(server_records) == []


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_llama_cpp_server_replicas_split_the_cores_for_prompts_and_generation(embedded_model, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    backend = LlamaCppServerBackend(None, {"replicas": "2", "n_ctx": "2048", "seed": "7"})
    backend.prepare()
    assert backend.default_concurrency == 2 and backend.replicas == 2
    for replica in range(2):
        argv = backend.command(40000, replica)
        assert flag(argv, "--n_threads") == flag(argv, "--n_threads_batch") == "4"  # 8 cores, 2 replicas
        assert flag(argv, "--model") == str(embedded_model) and flag(argv, "--host") == "127.0.0.1"
    assert [backend.log_name(i) for i in range(2)] == ["server-0.log", "server-1.log"]
    assert backend.describe()["sha256"] == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    given = LlamaCppServerBackend(None, {"replicas": "3", "n_threads": "1"})
    assert given.options["n_threads"] == given.options["n_threads_batch"] == 1  # batch follows what was given
    one = LlamaCppServerBackend(None, {})
    assert one.default_concurrency == 1 and one.options["n_threads"] == one.options["n_threads_batch"] == 8
    assert one.log_name(0) == "server.log"


@pytest.mark.parametrize(
    ("backend", "model", "options", "message"),
    [
        (SglangBackend, None, {}, "needs --model"),
        (SglangBackend, "org/m@", {}, "empty revision"),
        (SglangBackend, "org/m@a", {"revision": "b"}, "two revisions"),
        (SglangBackend, "org/m", {"tp": "two"}, "tp=.two.: Input should be a valid integer"),
        (SglangBackend, "org/m", {"mem_fraction_static": "1.5"}, r"fraction of GPU memory"),
        (SglangBackend, "org/m", {"n_ctx": "1"}, "has no option 'n_ctx'"),
        (VllmBackend, "org/m", {"context_length": "4096"}, "has no option 'context_length'"),
        (LlamaCppServerBackend, None, {"replicas": "0"}, "must be > 0"),
        (OpenAIBackend, None, {}, "needs --base-url"),
        (OpenAIBackend, None, {"base_url": "localhost:8000"}, "must start with http"),
        (
            OpenAIBackend,
            None,
            {"base_url": "http://127.0.0.1:1", "api_key_env": "BITAGENT_TEST_UNSET_KEY"},
            "BITAGENT_TEST_UNSET_KEY .* is not set",
        ),
    ],
)
def test_bad_options_are_clear_errors(backend, model, options, message):
    with pytest.raises(ValueError, match=message):
        backend(model, options)


def test_model_and_revision():
    assert split_model("org/m@abc", None, "x") == ("org/m", "abc")
    assert split_model("org/m", "abc", "x") == ("org/m", "abc")
    assert split_model("org/m@abc", "abc", "x") == ("org/m", "abc")
    assert split_model("/models/m", None, "x") == ("/models/m", None)


# --------------------------------------------------- sglang / vLLM lifecycle, llama.cpp standing in


@pytest.mark.parametrize("backend_class", [SglangBackend, VllmBackend])
def test_sglang_and_vllm_lifecycle_with_a_llama_server_standing_in(
    backend_class, embedded_model, server_records, owner_token, tmp_path
):
    backend = backend_class("org/model@rev1", {"visible_devices": "3", "ready_timeout": "120", "stop_timeout": "5"})
    real_command = backend.command(12345, 0)
    backend.launch_argv = lambda port, replica: llama_argv(embedded_model, port)
    task = Task.from_json(TASKS[0])

    async def main():
        await backend.start(tmp_path)
        try:
            server = backend.servers[0]
            env = environ_of(server.pid)
            assert env["CUDA_VISIBLE_DEVICES"] == "3" and env[MARKER_ENV] == server.server_id
            assert [r["pid"] for r in read_records(server_records)] == [server.pid]
            completion = await backend.complete(build_request(task))
            described = backend.describe()
            return server, completion, described
        finally:
            await backend.close()

    server, completion, described = asyncio.run(main())
    assert "get_weather" in completion.text and completion.completion_tokens > 0
    assert described["revision"] == "rev1" and described["served_model"] == str(embedded_model)
    assert (tmp_path / "server.log").read_text().count("llama_model_loader") > 0
    assert real_command[:3] in ([PY, "-m", "sglang.launch_server"], [PY, "-m", "vllm.entrypoints.openai.api_server"])
    assert server.pid is None and read_records(server_records) == [] and ours(owner_token) == []
    asyncio.run(backend.close())  # idempotent
    with pytest.raises(RuntimeError, match="not started"):
        asyncio.run(backend.complete(build_request(task)))


def test_a_server_that_fails_to_start_is_reported_and_torn_down(server_records, owner_token, tmp_path):
    backend = SglangBackend("org/model", {"ready_timeout": "60"})  # sglang is not installed here

    async def main():
        try:
            await backend.start(tmp_path)
        finally:
            await backend.close()

    with pytest.raises(EngineError) as info:  # the validator's side: the engine is missing
        asyncio.run(main())
    message = str(info.value)
    assert info.value.action == "install the engine into --server-python (see docs/servers.md)"
    assert "sglang is not installed for that interpreter" in message and "--server-python" in message
    assert "No module named 'sglang'" in message and "sglang.launch_server --model-path org/model" in message
    assert ours(owner_token) == [] and read_records(server_records) == []


# --------------------------------------------------------------------- llama-cpp-server replicas


def test_replicas_share_the_requests_and_survive_one_dying(embedded_model, server_records, owner_token, tmp_path):
    backend = LlamaCppServerBackend(None, {"replicas": "2", "n_threads": "1", "n_ctx": "1024"})
    task = Task.from_json(TASKS[0])

    async def main():
        await backend.start(tmp_path)
        try:
            first = await asyncio.gather(*(backend.complete(build_request(task)) for _ in range(4)))
            spread = [s["requests"] for s in backend.client.stats()]
            victim = backend.servers[0]
            os.killpg(victim.pid, signal.SIGKILL)
            while victim.returncode() is None:
                await asyncio.sleep(0.05)
            after = await asyncio.gather(*(backend.complete(build_request(task)) for _ in range(2)))
            return first, spread, after, [s["requests"] for s in backend.client.stats()]
        finally:
            await backend.close()

    first, spread, after, final = asyncio.run(main())
    assert spread == [2, 2]
    assert all("get_weather" in c.text for c in first + after)
    assert final == [2, 4]  # the dead replica is no longer chosen
    assert (tmp_path / "server-0.log").exists() and (tmp_path / "server-1.log").exists()
    assert ours(owner_token) == [] and read_records(server_records) == []


# ------------------------------------------------------------------------------ bitagent evaluate


def test_evaluate_with_llama_cpp_server_end_to_end(embedded_model, server_records, owner_token, tasks_jsonl, tmp_path):
    done = evaluate(
        "--backend",
        "llama-cpp-server",
        "--tasks",
        f"jsonl:{tasks_jsonl}",
        "-n",
        "3",
        "-B",
        "n_threads=1",
        "-B",
        "n_ctx=1024",
        "--ready-timeout",
        "120",
        "-o",
        "out",
        "--json",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert results["status"] == "complete" and results["n_scored"] == 3 and results["n_failed"] == 0
    assert results["mean_score"] > 0.5
    model = results["model"]
    assert model["backend"] == "llama-cpp-server" and model["sha256"].startswith("1d9614638d18")
    assert model["options"]["ready_timeout"] == 120.0
    assert results["config"]["backend_options"] == {"n_threads": "1", "n_ctx": "1024", "ready_timeout": "120"}
    run_dir = only_run_dir(tmp_path / "out")
    log = (run_dir / "server.log").read_text()
    assert "--host 127.0.0.1" in log and "POST /v1/chat/completions" in log
    assert ours(owner_token) == [] and read_records(server_records) == []


def test_a_server_killed_mid_run_keeps_finished_samples_and_resume_completes(
    embedded_model, server_records, owner_token, tasks_jsonl, tmp_path
):
    run = subprocess.Popen(
        [
            BITAGENT,
            "evaluate",
            "--backend",
            "llama-cpp-server",
            "--tasks",
            f"jsonl:{tasks_jsonl}",
            "-n",
            "8",
            "-B",
            "n_threads=1",
            "-B",
            "n_ctx=1024",
            "-o",
            "out",
            "--json",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run_dir = wait_for_samples(tmp_path / "out", 1, run)
    (record,) = read_records(server_records)
    os.killpg(record["pgid"], signal.SIGKILL)  # the server dies; the evaluator goes on
    out, err = run.communicate(timeout=300)
    assert run.returncode == 0, err
    results = json.loads(out)
    assert results["status"] == "complete"
    assert results["n_scored"] >= 1 and results["n_failed"] >= 1
    assert results["n_scored"] + results["n_failed"] == 8
    failed = [r for r in samples(run_dir).values() if r["status"] == "failed"]
    assert all(
        "exited with code -9" in r["completion"]["error"] and "--resume" in r["completion"]["error"] for r in failed
    )
    finished = {k for k, r in samples(run_dir).items() if r["status"] == "ok"}
    assert ours(owner_token) == [] and read_records(server_records) == []

    resumed = evaluate("--resume", str(run_dir), "--json", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    results = json.loads(resumed.stdout)
    assert results["status"] == "complete" and results["n_scored"] == 8 and results["n_failed"] == 0
    lines = (run_dir / "samples.jsonl").read_text().splitlines()
    assert len(lines) == 8 + len(failed)  # finished samples were not asked again
    assert finished <= {k for k, r in samples(run_dir).items() if r["status"] == "ok"}
    assert (run_dir / "server.log").read_text().count("# command: ") == 2
    assert ours(owner_token) == [] and read_records(server_records) == []


def test_sigterm_to_evaluate_stops_the_server_and_resume_completes(
    embedded_model, server_records, owner_token, tasks_jsonl, tmp_path
):
    run = subprocess.Popen(
        [
            BITAGENT,
            "evaluate",
            "--backend",
            "llama-cpp-server",
            "--tasks",
            f"jsonl:{tasks_jsonl}",
            "-n",
            "4",
            "-B",
            "n_threads=1",
            "-B",
            "n_ctx=1024",
            "-o",
            "out",
            "--json",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run_dir = wait_for_samples(tmp_path / "out", 1, run)
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 130 and "--resume" in err
    assert json.loads((run_dir / "results.json").read_text())["status"] == "interrupted"
    assert ours(owner_token) == [] and read_records(server_records) == []
    resumed = evaluate("--resume", str(run_dir), "--json", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["n_scored"] == 4
    assert ours(owner_token) == []


def test_base_url_attaches_to_a_running_server(
    embedded_model, server_records, owner_token, tasks_jsonl, tmp_path, monkeypatch
):
    key = uuid.uuid4().hex
    server = ManagedServer(
        lambda port: llama_argv(embedded_model, port, 1024, "--api_key", key),
        headers={"Authorization": f"Bearer {key}"},
        ready_timeout=120,
    )
    asyncio.run(server.start())
    try:
        monkeypatch.setenv("BITAGENT_TEST_KEY", key)
        done = evaluate(
            "--backend",
            "openai",
            "--base-url",
            server.base_url,
            "--api-key-env",
            "BITAGENT_TEST_KEY",
            "--tasks",
            f"jsonl:{tasks_jsonl}",
            "-n",
            "2",
            "-o",
            "out",
            "--json",
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr
        results = json.loads(done.stdout)
        assert results["n_scored"] == 2 and results["n_failed"] == 0
        assert results["model"] == {
            "backend": "openai",
            "model": str(embedded_model),
            "base_urls": [server.base_url],
            "api_key_env": "BITAGENT_TEST_KEY",
            "options": {
                "api_key_env": "BITAGENT_TEST_KEY",
                "ready_timeout": 60.0,
                "request_timeout": 300.0,
                "retries": 3,
            },
        }
        assert key not in (only_run_dir(tmp_path / "out") / "results.json").read_text()
        assert server.running  # attached, not owned: the run left it alone
        monkeypatch.setenv("BITAGENT_TEST_KEY", "wrong")
        refused = evaluate(
            "--backend",
            "openai",
            "--base-url",
            server.base_url,
            "--api-key-env",
            "BITAGENT_TEST_KEY",
            "--tasks",
            f"jsonl:{tasks_jsonl}",
            "-n",
            "1",
            "-o",
            "out2",
            cwd=tmp_path,
        )
        assert refused.returncode == 3 and "HTTP 401" in refused.stderr
    finally:
        server.stop()
    assert ours(owner_token) == []


@pytest.mark.slow
def test_server_flags_go_only_to_backends_that_take_them(tasks_jsonl, tmp_path, monkeypatch):
    refused = evaluate("--backend", "llama-cpp", "--server-python", PY, "--tasks", f"jsonl:{tasks_jsonl}", cwd=tmp_path)
    assert refused.returncode == 2 and "does not take --server-python" in refused.stderr
    clash = evaluate(
        "--backend",
        "llama-cpp-server",
        "-B",
        "ready_timeout=5",
        "--ready-timeout",
        "6",
        "--tasks",
        f"jsonl:{tasks_jsonl}",
        cwd=tmp_path,
    )
    assert clash.returncode == 2 and "ready_timeout given twice" in clash.stderr
    # from the environment, a flag the backend does not take is meant for other backends: left out
    monkeypatch.setenv("BITAGENT_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("BITAGENT_SERVER_PYTHON", PY)
    ignored = evaluate(
        "--backend",
        "llama-cpp",
        "-m",
        str(tmp_path / "absent.gguf"),
        "--tasks",
        f"jsonl:{tasks_jsonl}",
        "-o",
        "out",
        "--json",
        cwd=tmp_path,
    )
    assert ignored.returncode == 3 and "no such model file" in ignored.stderr
    assert "base_url" not in ignored.stderr and "server_python" not in ignored.stderr
