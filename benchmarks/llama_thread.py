"""Why the llama-cpp backend generates on the event loop's thread: the same requests through one
llama-cpp-python model, called from the main thread and from a worker thread, alternating rounds.

    .venv/bin/python benchmarks/llama_thread.py [N] [ROUNDS]

Prints name=value lines; worker_over_main > 1 means a worker thread is slower.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from bitagent_core._plugins import get_registry
from bitagent_core._runner import load_tasks
from bitagent_core.toolkit.prompting import build_request
from bitagent_plugins.backends.embedded_model import embedded_model_path
from bitagent_plugins.backends.openai_format import to_openai_messages

N = int(sys.argv[1]) if len(sys.argv) > 1 else 6
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 2


def main() -> None:
    from llama_cpp import Llama

    tasks = load_tasks(get_registry(), "bitagent", seed=0, limit=N)
    prompts = [to_openai_messages(build_request(t).messages) for t in tasks]
    llm = Llama(model_path=str(embedded_model_path()), n_ctx=4096, n_threads=min(2, os.cpu_count() or 1), verbose=False)

    def answer_all() -> float:
        started = time.perf_counter()
        for messages in prompts:
            llm.create_chat_completion(messages=messages, temperature=0.0, max_tokens=160)
        return time.perf_counter() - started

    def in_worker() -> float:
        out: list[float] = []
        worker = threading.Thread(target=lambda: out.append(answer_all()))
        worker.start()
        worker.join()
        return out[0]

    main_s, worker_s = [], []
    for _ in range(ROUNDS):
        main_s.append(answer_all())
        worker_s.append(in_worker())
    print(f"tasks={N}")
    print(f"main_thread_s={min(main_s):.3f}")
    print(f"worker_thread_s={min(worker_s):.3f}")
    print(f"worker_over_main={min(worker_s) / min(main_s):.4f}")


if __name__ == "__main__":
    main()
