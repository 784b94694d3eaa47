"""Peak memory of ``bitagent score`` as its input grows: it streams the responses in and the scored lines out,
so ten times the lines should take about the same memory (before streaming, 1 M lines of 1.17 KB took ~1.2 GB).

The baseline, measured in the same run, is the same command on a tenth of the lines. Each size runs in its
own process; its peak RSS comes from ``getrusage(RUSAGE_CHILDREN)`` of a wrapper process that runs only it.

    .venv/bin/python benchmarks/score_memory.py [LINES]      # default 100000

Prints name=value lines; goal: rss_ratio close to 1 (memory does not grow with the lines).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

BIN = Path(sys.executable).parent
PEAK = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def peak_rss_kb(responses: Path, out: Path) -> int:
    argv = [
        str(BIN / "bitagent"),
        "score",
        "-t",
        "bfcl:simple_python",
        "-r",
        str(responses),
        "-o",
        str(out),
        "--partial",
        "--json",
    ]
    done = subprocess.run([sys.executable, "-c", PEAK, *argv], capture_output=True, text=True, check=True)
    return int(done.stdout.strip().splitlines()[-1])


def main() -> None:
    lines = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bitagent_core._plugins import get_registry
    from bitagent_core._runner import load_tasks
    from bitagent_core.toolkit import render_expected

    tasks = load_tasks(get_registry(), "bfcl:simple_python", 0, None)
    answers = [json.dumps({"task_id": t.id, "response": render_expected(t), "note": "x" * 1000}) for t in tasks]
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for n in (lines // 10, lines):
            path = Path(tmp) / f"r{n}.jsonl"
            with open(path, "w") as f:
                for i in range(n):
                    f.write(answers[i % len(answers)] + "\n")
            results[n] = peak_rss_kb(path, Path(tmp) / f"out{n}.jsonl")
            print(f"score_peak_rss_mb_{n}_lines={results[n] / 1024:.1f}")
        print(f"rss_ratio={results[lines] / results[lines // 10]:.2f}")


if __name__ == "__main__":
    main()
