"""Java/JavaScript scoring: answers scored per second by ``bfcl-strict`` against BFCL's own reader and checker on the
same answers in one run (``benchmarks/java_js_side.py`` in ``$BFCL_PYTHON``, else in this interpreter: the wheel
is installed ``--no-deps`` and the ``bfcl-java`` extra gives its tree-sitter), rounds alternating so background
load hits both alike; verdicts compared.

    .venv/bin/python benchmarks/java_js.py [ROUNDS]

Prints ``name=value`` lines. The answers: ``benchmarks/java_js_reference.py`` (the 150 ground truths of
simple_java and simple_javascript written as source, and 5,667 variants). Nothing is cached across answers
but what the scorer compiles per process (the tree-sitter parsers, as BFCL's modules build theirs at import).
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from java_js_reference import corpus  # noqa: E402
from side_process import SideProcess  # noqa: E402

from bitagent_core._plugins import get_registry  # noqa: E402
from bitagent_core._runner import load_tasks  # noqa: E402
from bitagent_core.model import Completion  # noqa: E402
from bitagent_plugins.bfcl.scorer import BfclScorer  # noqa: E402
from bitagent_plugins.bfcl.tasks import wheel_data_dir  # noqa: E402

ROUNDS = int(next((a for a in sys.argv[1:] if a.isdigit()), "3"))


def main() -> None:
    data = wheel_data_dir()
    if data is None:
        sys.exit("the bfcl-eval wheel is not installed (make install)")
    rows = corpus(data)
    tasks = {t.id: t for t in load_tasks(get_registry(), "bfcl:simple_java,simple_javascript", 0, None)}
    pairs = [(tasks[r["task_id"]], Completion(text=r["response"])) for r in rows]
    scorer = BfclScorer(strict=True)

    def ours() -> tuple[float, list]:
        started = time.perf_counter()
        verdicts = [scorer.score(task, completion) for task, completion in pairs]
        return time.perf_counter() - started, verdicts

    python = os.environ.get("BFCL_PYTHON", sys.executable)
    side = SideProcess(
        python, HERE / "java_js_side.py", ({k: r[k] for k in ("entry", "category", "response")} for r in rows)
    )
    mine, theirs, verdicts = [], [], []
    try:
        for _ in range(ROUNDS):
            seconds, verdicts = ours()
            mine.append(seconds)
            theirs.append(side.round())
    finally:
        side.close()
    n = len(pairs)
    rate, bfcl_rate = n / min(mine), n / min(theirs)
    agree = sum(v.passed == bool(b[0]) for v, b in zip(verdicts, side.verdicts))
    print(f"answers={n}")
    print(f"passed={sum(v.passed for v in verdicts)}")
    print(f"error_types={dict(sorted(Counter(v.error_type or 'passed' for v in verdicts).items()))}")
    print(f"answers_per_s={rate:.0f}")
    print(f"bfcl_answers_per_s={bfcl_rate:.0f}")
    print(f"verdicts_agree={agree}/{n}")
    print(f"speedup_vs_bfcl={rate / bfcl_rate:.2f}")


if __name__ == "__main__":
    main()
