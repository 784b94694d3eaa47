"""Agentic scoring: results scored per second, ours (``bfcl-strict``) vs BFCL's agentic checker.

The results of ``benchmarks/agentic_reference.py`` (BFCL's memory and web-search questions answered right
and wrong in 13 ways) scored by :func:`bitagent_plugins.bfcl.agentic.score_agentic`; with ``BFCL_PYTHON``
set, BFCL's own glue and checker score the same results in that interpreter (``benchmarks/agentic_side.py``),
rounds alternating with ours so background load hits both alike, and the verdicts are compared.

    BFCL_PYTHON=/tmp/bfcl-venv/bin/python .venv/bin/python benchmarks/agentic.py [ROUNDS]

Prints ``name=value`` lines (``speedup_vs_bfcl`` = BFCL's median seconds per round / ours).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from agentic_reference import corpus  # noqa: E402
from side_process import SideProcess  # noqa: E402

from bitagent_core.model import Message, Task, Trajectory  # noqa: E402
from bitagent_plugins.bfcl.agentic import score_agentic  # noqa: E402

ROUNDS = int(next((a for a in sys.argv[1:] if a.isdigit()), "5"))


def main() -> None:
    items = corpus()
    pairs = [
        (
            Task(
                id=i["task_id"],
                messages=(Message("user", "?"),),
                tools=(),
                metadata={"agentic": "memory", "answers": i["answers"]},
            ),
            Trajectory.from_json(i["result"]),
        )
        for i in items
    ]

    def ours() -> tuple[float, list]:
        started = time.perf_counter()
        verdicts = [score_agentic(task, trajectory, strict=True) for task, trajectory in pairs]
        return time.perf_counter() - started, verdicts

    python = os.environ.get("BFCL_PYTHON")
    side = SideProcess(python, HERE / "agentic_side.py", items) if python else None
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
    print(f"results={len(items)}")
    print(f"ours_results_per_s={len(items) / statistics.median(mine):.0f}")
    if side is None:
        print("bfcl=skipped (set BFCL_PYTHON)")
        return
    agree = sum((v.passed, v.error_type) == (bool(b[0]), b[1]) for v, b in zip(verdicts, side.verdicts, strict=True))
    print(f"bfcl_results_per_s={len(items) / statistics.median(theirs):.0f}")
    print(f"speedup_vs_bfcl={statistics.median(theirs) / statistics.median(mine):.2f}")
    print(f"agree={agree}/{len(items)}")


if __name__ == "__main__":
    main()
