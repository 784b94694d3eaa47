"""bitagent's overhead over a bare llama-cpp-python loop, measured in one run.

Both sides answer the same N bitagent tasks with identical prompts and parameters (temperature 0,
160 tokens, the same n_ctx and threads), model load included on both sides. Rounds alternate
bare/bitagent and the fastest round of each side is kept, so background load hurts both alike.

    .venv/bin/python benchmarks/overhead.py [N] [ROUNDS]

Prints name=value lines; overhead_ratio = bitagent / bare (goal <= 1.03).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time

from bitagent_core._plugins import get_registry
from bitagent_core._runner import Evaluation, RunConfig, load_tasks
from bitagent_core.toolkit.prompting import build_request
from bitagent_plugins.backends.embedded_model import embedded_model_path
from bitagent_plugins.backends.openai_format import to_openai_messages

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 2
THREADS = min(2, os.cpu_count() or 1)
N_CTX = 4096


def bare(tasks) -> tuple[float, list[str]]:
    from llama_cpp import Llama

    started = time.perf_counter()
    llm = Llama(model_path=str(embedded_model_path()), n_ctx=N_CTX, n_threads=THREADS, n_gpu_layers=0, verbose=False)
    texts = []
    for task in tasks:
        messages = to_openai_messages(build_request(task).messages)
        response = llm.create_chat_completion(messages=messages, temperature=0.0, max_tokens=160)
        texts.append(response["choices"][0]["message"]["content"] or "")
    llm.close()
    return time.perf_counter() - started, texts


def through_bitagent(out_dir: str) -> tuple[float, list[str], float]:
    config = RunConfig(
        tasks="bitagent",
        backend="llama-cpp",
        scorer="bitagent",
        limit=N,
        seed=0,
        concurrency=1,
        output_dir=out_dir,
        backend_options={"n_threads": str(THREADS), "n_ctx": str(N_CTX)},
    )
    evaluation = Evaluation(config, get_registry())
    started = time.perf_counter()
    results = asyncio.run(evaluation.run())
    elapsed = time.perf_counter() - started
    texts = [evaluation.records[t.id].completion.text for t in evaluation.tasks]
    return elapsed, texts, results.mean_score


def main() -> None:
    tasks = load_tasks(get_registry(), "bitagent", seed=0, limit=N)
    embedded_model_path()
    bare_times, ours_times = [], []
    with tempfile.TemporaryDirectory() as out_dir:
        for _ in range(ROUNDS):
            t, bare_texts = bare(tasks)
            bare_times.append(t)
            t, our_texts, mean = through_bitagent(out_dir)
            ours_times.append(t)
    print(f"tasks={N}")
    print(f"rounds={ROUNDS}")
    print(f"bare_s={min(bare_times):.3f}")
    print(f"bitagent_s={min(ours_times):.3f}")
    print(f"bare_s_per_task={min(bare_times) / N:.3f}")
    print(f"overhead_ratio={min(ours_times) / min(bare_times):.4f}")
    print(f"identical_outputs={sum(a == b for a, b in zip(bare_texts, our_texts))}/{N}")
    print(f"mean_score={mean:.4f}")


if __name__ == "__main__":
    main()
