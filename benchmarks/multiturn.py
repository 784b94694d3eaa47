"""Multi-turn: trajectories scored per second (ours vs BFCL's checker), and prompt tokens evaluated per step.

1. Scoring. The trajectories of ``benchmarks/multiturn_reference.py`` (ground truths and perturbations of
   BFCL's multi-turn entries) scored by ``bfcl-strict``; with ``BFCL_PYTHON`` set, BFCL's own checker scores
   the same trajectories in that interpreter (``benchmarks/multiturn_side.py``), rounds alternating with ours
   so background load hits both alike, and the verdicts are compared.
2. Prefix reuse, on the embedded model (skipped with ``--no-model``): one BFCL multi-turn entry played by the
   agent loop through the llama-cpp backend. For each step: the conversation's length in tokens and the
   prompt tokens llama.cpp actually evaluated (its perf counter ``n_p_eval``). A step should cost its new
   tokens only, since its prompt extends the previous one and llama.cpp keeps the cached prefix.

    BFCL_PYTHON=/tmp/bfcl-venv/bin/python .venv/bin/python benchmarks/multiturn.py [ROUNDS] [--no-model]

Prints ``name=value`` lines.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import attrs

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from multiturn_reference import corpus  # noqa: E402
from side_process import SideProcess  # noqa: E402

from bitagent_core.model import Trajectory  # noqa: E402
from bitagent_plugins.bfcl.multi_turn_scorer import score_trajectory  # noqa: E402

ROUNDS = int(next((a for a in sys.argv[1:] if a.isdigit()), "3"))
SAMPLE = 600  # trajectories per round


def scoring() -> None:
    from bitagent_core._plugins import get_registry
    from bitagent_core._runner import load_tasks

    tasks = {t.id: t for t in load_tasks(get_registry(), "bfcl:multi_turn", 0, None)}
    items = corpus()
    step = max(1, len(items) // SAMPLE)
    items = items[::step][:SAMPLE]
    pairs = [(tasks[i["task_id"]], Trajectory.from_json(i["result"])) for i in items]

    cpu: list[float] = []  # process CPU time per round: what a loaded machine's scheduling does not change

    def ours() -> tuple[float, list]:
        started, cpu_started = time.perf_counter(), time.process_time()
        verdicts = [score_trajectory(task, trajectory, strict=True) for task, trajectory in pairs]
        cpu.append(time.process_time() - cpu_started)
        return time.perf_counter() - started, verdicts

    python = os.environ.get("BFCL_PYTHON")
    side = SideProcess(python, HERE / "multiturn_side.py", items) if python else None
    mine, theirs = [], []
    verdicts: list = []
    try:
        for _ in range(ROUNDS):
            seconds, verdicts = ours()
            mine.append(seconds)
            if side:
                theirs.append(side.round())
    finally:
        if side:
            side.close()
    n = len(pairs)
    rate = n / min(mine)
    print(f"trajectories={n}")
    print(f"passed={sum(v.passed for v in verdicts)}")
    print(f"error_types={json.dumps(Counter(v.error_type or 'passed' for v in verdicts), sort_keys=True)}")
    print(f"trajectories_per_s={rate:.0f}")
    if side is None:
        return
    bfcl_rate = n / min(theirs)
    agree = sum((v.passed, v.error_type) == (bool(b[0]), b[1]) for v, b in zip(verdicts, side.verdicts))
    print(f"bfcl_trajectories_per_s={bfcl_rate:.0f}")
    print(f"verdicts_agree={agree}/{n}")
    print(f"speedup_vs_bfcl={rate / bfcl_rate:.2f}")
    print(f"first_round_speedup_vs_bfcl={theirs[0] / mine[0]:.2f}")  # before any per-task replay is kept
    if side.cpu_seconds:
        print(f"cpu_speedup_vs_bfcl={min(side.cpu_seconds) / min(cpu):.2f}")


async def prefix_reuse() -> None:
    import llama_cpp

    from bitagent_core._agent import PlayConfig, make_environment, play
    from bitagent_core._plugins import get_registry
    from bitagent_core._runner import load_tasks

    registry = get_registry()
    task = next(t for t in load_tasks(registry, "bfcl:multi_turn_base", 0, None) if t.id == "multi_turn_base_9")
    # BFCL's full prompt (~6k tokens); at most 4 steps a turn, so a model that repeats a call costs minutes, not
    # an hour, on 2 shared cores (the prefix reuse per step is what is measured)
    task = attrs.evolve(task, max_steps_per_turn=3)
    backend = registry.get("backends", "llama-cpp").factory(None, {"n_ctx": "8192", "n_threads": "2"})
    await backend.start(None)
    llm = backend._llm  # the benchmark reads llama.cpp's own counters
    rows = []
    inner = backend.complete

    async def counted(request):
        llama_cpp.llama_perf_context_reset(llm.ctx)
        completion = await inner(request)
        perf = llama_cpp.llama_perf_context(llm.ctx)
        rows.append((completion.prompt_tokens, perf.n_p_eval))
        return completion

    backend.complete = counted
    try:
        environment = make_environment(registry, task)
        trajectory = await play(task, backend, environment, PlayConfig(max_tokens=96, timeout_s=600))
    finally:
        await backend.close()
    for i, (conversation, evaluated) in enumerate(rows):
        print(f"step{i}_conversation_tokens={conversation} step{i}_evaluated_tokens={evaluated}")
    later = rows[1:]
    print(f"steps={len(rows)} turns={len(trajectory.turns)}")
    if later:
        total = sum(c for c, _ in later)
        evaluated = sum(e for _, e in later)
        print(f"first_step_evaluated_tokens={rows[0][1]}")
        print(f"later_steps_conversation_tokens={total}")
        print(f"later_steps_evaluated_tokens={evaluated}")
        print(f"later_steps_evaluated_fraction={evaluated / total:.3f}")


def main() -> None:
    scoring()
    if "--no-model" not in sys.argv:
        asyncio.run(prefix_reuse())


if __name__ == "__main__":
    main()
