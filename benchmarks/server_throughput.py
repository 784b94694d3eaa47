"""Throughput of the managed llama.cpp server path, and what the client costs.

1. Tasks per second through ``llama-cpp-server`` with 1 and 2 replicas, the CPU threads split evenly
   (replicas=1: all threads in one process; replicas=2: half each), ``--concurrency`` = replicas.
2. The client's overhead against a bare httpx loop sending the same payloads one at a time: to the
   same llama.cpp server (paired requests; the model's time dominates and its noise is of the same
   order) and to a canned-answer HTTP server on 127.0.0.1 (no model: the client's own cost).

    .venv/bin/python benchmarks/server_throughput.py [--tasks 8] [--threads T] [--stub-requests 1000]

3. With ``--vllm-model DIR --vllm-python PY`` (only this part runs): the real vLLM server (its CPU build on a
   machine without a GPU) at 1, 8 and 32 requests in flight on the same tasks, prefix caching off so that no
   level reuses another's prompts: ``vllm_c{N}_tasks_per_s`` and ``speedup_c8_vs_c1`` (vLLM batches the
   requests in flight; llama.cpp's server answers one at a time). The vllm backend's ``default_concurrency``
   follows it.

    .venv/bin/python benchmarks/server_throughput.py --vllm-model DIR --vllm-python PY [--tasks 32]

Prints ``name=value`` lines. Tasks come from a task source (default ``bitagent``), prompted as the
validator does (BFCL-style system prompt, temperature 0, 160 new tokens).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bitagent_core._plugins import get_registry  # noqa: E402
from bitagent_core._runner import load_tasks  # noqa: E402
from bitagent_core.model import ChatRequest  # noqa: E402
from bitagent_core.toolkit.prompting import build_request  # noqa: E402
from bitagent_plugins.backends.openai_client import OpenAIClient, v1_url  # noqa: E402
from bitagent_plugins.backends.servers import LlamaCppServerBackend, VllmBackend  # noqa: E402


def emit(name: str, value: Any) -> None:
    if isinstance(value, float):
        value = f"{value:.4f}"
    print(f"{name}={value}", flush=True)


async def run_backend(requests: list[ChatRequest], replicas: int, threads: int, run_dir: Path) -> dict[str, Any]:
    per_server = max(1, threads // replicas)
    backend = LlamaCppServerBackend(
        None, {"replicas": str(replicas), "n_threads": str(per_server), "n_ctx": "4096", "ready_timeout": "300"}
    )
    started = time.perf_counter()
    await backend.start(run_dir)
    start_s = time.perf_counter() - started
    try:
        # one warm-up request per replica (first-touch of the mmapped weights), not timed
        await asyncio.gather(*(backend.complete(requests[0]) for _ in range(replicas)))
        limiter = asyncio.Semaphore(backend.default_concurrency)

        async def one(request: ChatRequest) -> str:
            async with limiter:
                return (await backend.complete(request)).text

        t0 = time.perf_counter()
        await asyncio.gather(*(one(r) for r in requests))
        elapsed = time.perf_counter() - t0
        result = {
            "start_s": start_s,
            "elapsed_s": elapsed,
            "threads_per_server": per_server,
            "spread": [s["requests"] for s in backend.client.stats()],
        }
        if replicas == 1:
            result["overhead"] = await overhead_against(backend, requests)
        return result
    finally:
        await backend.close()


async def overhead_against(backend: LlamaCppServerBackend, requests: list[ChatRequest]) -> dict[str, Any]:
    """Each payload twice, back to back: once through a bare httpx loop, once through the client
    (which goes first alternates), so bursts of load from other processes hit both alike; the figure is
    the median of the paired differences.

    llama.cpp reuses the KV cache of the previous prompt's common prefix, and a repeated prompt both runs
    faster and can decode differently. So before every timed request an untimed one-token "breaker"
    request puts a different prompt in the cache: both timed requests then do the same work from the
    same state, and must give the same answer.
    """
    client = backend.client
    url = v1_url(backend.servers[0].base_url) + "/chat/completions"
    breaker = {
        "model": backend.served_model,
        "messages": [{"role": "user", "content": "ok"}],
        "max_tokens": 1,
        "temperature": 0.0,
        **client.extra_body,
    }
    bare_s, client_s, diffs = [], [], []
    same = True
    async with httpx.AsyncClient(timeout=300, trust_env=False) as bare:
        for i, request in enumerate(requests):
            payload = client.chat_payload(request, backend.served_model)
            timed, texts = {}, {}
            for who in ("bare", "client") if i % 2 == 0 else ("client", "bare"):
                (await bare.post(url, json=breaker)).raise_for_status()
                t0 = time.perf_counter()
                if who == "bare":
                    response = await bare.post(url, json=payload)
                    response.raise_for_status()
                    texts[who] = response.json()["choices"][0]["message"]["content"]
                else:
                    texts[who] = (await client.chat(request, backend.served_model)).text
                timed[who] = time.perf_counter() - t0
            bare_s.append(timed["bare"])
            client_s.append(timed["client"])
            diffs.append(timed["client"] - timed["bare"])
            same = same and texts["bare"] == texts["client"]
    return {
        "bare_mean": statistics.fmean(bare_s),
        "client_mean": statistics.fmean(client_s),
        "diff_median": statistics.median(diffs),
        "same_answers": same,
    }


async def stub_overhead(requests: list[ChatRequest], n: int) -> dict[str, float]:
    """The client against a canned-answer keep-alive HTTP server in this process: no model time."""
    body = json.dumps(
        {
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "[f(a=1)]"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1},
        }
    ).encode()
    answer = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )

    handlers: set[asyncio.Task] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.add(asyncio.current_task())
        try:
            while await reader.readline():
                length = 0
                while (header := await reader.readline()) not in (b"\r\n", b""):
                    if header.lower().startswith(b"content-length:"):
                        length = int(header.split(b":")[1])
                await reader.readexactly(length)
                writer.write(answer)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    client = OpenAIClient([base], trust_env=False)
    url = v1_url(base) + "/chat/completions"
    payloads = [client.chat_payload(r, "m") for r in requests]
    try:
        async with httpx.AsyncClient(trust_env=False) as bare:
            for _ in range(20):  # warm both paths
                await bare.post(url, json=payloads[0])
                await client.chat(requests[0], "m")
            bare_s, client_s = [], []
            for i in range(n):  # interleaved, so load from other processes hits both alike
                request, payload = requests[i % len(requests)], payloads[i % len(payloads)]
                t0 = time.perf_counter()
                (await bare.post(url, json=payload)).json()
                t1 = time.perf_counter()
                await client.chat(request, "m")
                t2 = time.perf_counter()
                bare_s.append(t1 - t0)
                client_s.append(t2 - t1)
    finally:
        await client.aclose()
        if handlers:  # both clients closed their connections: let the handlers see it and end
            await asyncio.wait(handlers, timeout=5)
        server.close()
        await server.wait_closed()
    return {
        "bare_mean": statistics.fmean(bare_s),
        "client_mean": statistics.fmean(client_s),
        "bare_median": statistics.median(bare_s),
        "client_median": statistics.median(client_s),
    }


async def run_vllm(
    requests: list[ChatRequest],
    model: str,
    python: str,
    run_dir: Path,
    extra_args: str = "",
    levels: tuple[int, ...] = (1, 8, 32),
) -> dict[int, float]:
    """Tasks per second through one vLLM server at each concurrency level (the same requests each time)."""
    backend = VllmBackend(
        model,
        {
            "server_python": python,
            "kv_cache_gib": "2",
            "max_model_len": "4096",
            "extra_args": f"--no-enable-prefix-caching {extra_args}",
            "ready_timeout": "900",
            "request_timeout": "900",
        },
    )
    started = time.perf_counter()
    await backend.start(run_dir)
    emit("vllm_start_s", time.perf_counter() - started)
    per_second = {}
    try:
        await backend.complete(requests[0])  # warm-up, not timed

        async def one(request: ChatRequest, limiter: asyncio.Semaphore) -> str:
            async with limiter:
                return (await backend.complete(request)).text

        for level in levels:
            limiter = asyncio.Semaphore(level)
            t0 = time.perf_counter()
            await asyncio.gather(*(one(r, limiter) for r in requests))
            per_second[level] = len(requests) / (time.perf_counter() - t0)
            emit(f"vllm_c{level}_tasks_per_s", per_second[level])
    finally:
        await backend.close()
    return per_second


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=8, help="tasks per measurement")
    parser.add_argument("--task-source", default="bitagent")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads in all")
    parser.add_argument("--stub-requests", type=int, default=1000)
    parser.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "bench-server-throughput")
    parser.add_argument("--vllm-model", help="an HF model folder: measure vLLM at concurrency 1, 8, 32 instead")
    parser.add_argument("--vllm-python", help="the interpreter that has vLLM (e.g. its CPU build's venv)")
    parser.add_argument("--vllm-extra-args", default="", help="appended to vLLM's command (e.g. -O0: no torch.compile)")
    args = parser.parse_args()
    if args.vllm_model:
        tasks = load_tasks(get_registry(), args.task_source, seed=0, limit=args.tasks)
        requests = [build_request(t) for t in tasks]
        emit("cpu_count", os.cpu_count() or 1)
        emit("tasks", len(requests))
        emit("task_source", args.task_source)
        emit("loadavg_1m_at_start", os.getloadavg()[0])
        args.run_dir.mkdir(parents=True, exist_ok=True)
        per_second = await run_vllm(
            requests, args.vllm_model, args.vllm_python or sys.executable, args.run_dir, args.vllm_extra_args
        )
        emit("speedup_c8_vs_c1", per_second[8] / per_second[1])
        emit("speedup_c32_vs_c1", per_second[32] / per_second[1])
        emit("loadavg_1m_at_end", os.getloadavg()[0])
        return

    tasks = load_tasks(get_registry(), args.task_source, seed=0, limit=args.tasks)
    requests = [build_request(t) for t in tasks]
    emit("cpu_count", os.cpu_count() or 1)
    emit("threads_total", args.threads)
    emit("tasks", len(requests))
    emit("task_source", args.task_source)
    emit("loadavg_1m_at_start", os.getloadavg()[0])  # other processes on the machine skew everything below

    per_second = {}
    for replicas in (1, 2):
        run_dir = args.run_dir / f"replicas-{replicas}"
        run_dir.mkdir(parents=True, exist_ok=True)
        result = await run_backend(requests, replicas, args.threads, run_dir)
        per_second[replicas] = len(requests) / result["elapsed_s"]
        emit(f"replicas_{replicas}_threads_per_server", result["threads_per_server"])
        emit(f"replicas_{replicas}_start_s", result["start_s"])
        emit(f"replicas_{replicas}_elapsed_s", result["elapsed_s"])
        emit(f"replicas_{replicas}_tasks_per_s", per_second[replicas])
        emit(f"replicas_{replicas}_requests_per_server", ",".join(map(str, result["spread"])))
        if "overhead" in result:
            o = result["overhead"]
            emit("llama_bare_httpx_s_per_request_mean", o["bare_mean"])
            emit("llama_client_s_per_request_mean", o["client_mean"])
            emit("llama_client_overhead_ms_per_request_median", 1000 * o["diff_median"])
            emit("llama_same_answers", str(o["same_answers"]).lower())
    emit("speedup_replicas_2_vs_1", per_second[2] / per_second[1])

    stub = await stub_overhead(requests, args.stub_requests)
    emit("stub_requests", args.stub_requests)
    for stat in ("mean", "median"):
        emit(f"stub_bare_httpx_us_per_request_{stat}", 1e6 * stub[f"bare_{stat}"])
        emit(f"stub_client_us_per_request_{stat}", 1e6 * stub[f"client_{stat}"])
        emit(f"stub_client_overhead_us_per_request_{stat}", 1e6 * (stub[f"client_{stat}"] - stub[f"bare_{stat}"]))
    emit("loadavg_1m_at_end", os.getloadavg()[0])


if __name__ == "__main__":
    asyncio.run(main())
