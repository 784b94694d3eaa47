"""Checks per second of the ``bfcl`` scorer, and BFCL's own checker on the same pairs in the same run.

The pairs: every BFCL task with ground truth (simple_python, multiple, parallel, parallel_multiple and the
live ones) with its ground truth rendered as a pythonic answer (``gt``), and the same tasks with one defect
each: wrong name, missing required, extra parameter, wrong type, wrong value (``perturbed``). A check is
decode + verdict of one answer: ``BfclScorer.score`` on our side; BFCL's prompting decoder
(``default_decode_ast_prompting``) + ``ast_checker`` on BFCL's.

Our side is timed cold (a fresh scorer: per-task plans built during the round) and warm (plans cached, the
steady state when several models or responses are scored against the same tasks). When ``BFCL_PYTHON``
names an interpreter where ``bfcl_eval`` imports, ``benchmarks/bfcl_side.py`` runs there on the same pairs,
the verdicts are compared pair by pair, and its rounds alternate with ours so background load hits both
alike. Each side keeps its fastest of ROUNDS rounds; both freeze their loaded data out of the garbage
collector's way before timing.

    BFCL_PYTHON=/tmp/bfcl-venv/bin/python .venv/bin/python benchmarks/scoring.py [ROUNDS]

Prints name=value lines, cold beside warm; goal: speedup_vs_bfcl >= 2 on the gt pairs.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

from side_process import SideProcess  # benchmarks/, beside this script

from bitagent_core._plugins import get_registry
from bitagent_core._runner import load_tasks
from bitagent_core.model import Completion
from bitagent_core.toolkit import render_expected
from bitagent_plugins.bfcl.perturb import PERTURBATIONS, perturb
from bitagent_plugins.bfcl.scorer import BfclScorer

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
HERE = Path(__file__).resolve().parent


def build_pairs():
    tasks = [t for t in load_tasks(get_registry(), "bfcl", 0, None) if t.expected_calls]
    gt = [(t, render_expected(t)) for t in tasks]
    perturbed = []
    for i, task in enumerate(tasks):
        kinds = list(PERTURBATIONS)
        for k in range(len(kinds)):  # one defect per task, rotating kinds; the next kind if it does not fit
            answer = perturb(task, kinds[(i + k) % len(kinds)])
            if answer is not None:
                perturbed.append((task, answer))
                break
    return gt, perturbed


def ours_round(completions, scorer) -> float:
    start = time.perf_counter()
    for task, completion in completions:
        scorer.score(task, completion)
    return time.perf_counter() - start


def measure(label, pairs, python) -> None:
    completions = [(task, Completion(text=answer)) for task, answer in pairs]
    verdicts = [BfclScorer().score(task, c) for task, c in completions]
    side = (
        SideProcess(
            python,
            HERE / "bfcl_side.py",
            (
                {
                    "category": task.category,
                    "answer": answer,
                    "functions": [tool.to_json() for tool in task.tools],
                    "ground_truth": [e.to_json() for e in task.expected_calls],
                }
                for task, answer in pairs
            ),
        )
        if python
        else None
    )
    warm_scorer = BfclScorer()
    ours_round(completions, warm_scorer)  # builds the plans once
    cold, warm, theirs = [], [], []
    try:
        for _ in range(ROUNDS):  # alternate: a cold round, a warm round, a BFCL round
            cold.append(ours_round(completions, BfclScorer()))
            warm.append(ours_round(completions, warm_scorer))
            if side:
                theirs.append(side.round())
    finally:
        if side:
            side.close()
    n = len(pairs)
    ours_warm, ours_cold = n / min(warm), n / min(cold)
    print(f"{label}_pairs={n}")
    print(f"{label}_passed={sum(v.passed for v in verdicts)}")
    print(f"{label}_checks_per_s={ours_warm:.0f}")
    print(f"{label}_checks_per_s_cold={ours_cold:.0f}")
    if label == "perturbed":
        print(f"{label}_error_types={json.dumps(Counter(v.error_type for v in verdicts), sort_keys=True)}")
    if side is None:
        return
    rate = n / min(theirs)
    agree = sum(verdicts[i].passed == bool(side.verdicts[i][0]) for i in range(n))
    print(f"{label}_bfcl_checks_per_s={rate:.0f}")
    print(f"{label}_bfcl_passed={sum(bool(v[0]) for v in side.verdicts)}")
    print(f"{label}_verdicts_agree={agree}/{n}")
    print(f"{label}_speedup_vs_bfcl={ours_warm / rate:.2f}")
    print(f"{label}_speedup_vs_bfcl_cold={ours_cold / rate:.2f}")
    if label == "gt":  # the headline: warm (plans cached over earlier rounds) beside cold (each task scored once)
        print(f"speedup_vs_bfcl={ours_warm / rate:.2f}")
        print(f"speedup_vs_bfcl_cold={ours_cold / rate:.2f}")
    for i in range(n):
        if verdicts[i].passed != bool(side.verdicts[i][0]):
            task, answer = pairs[i]
            print(
                f"# differs {task.id}: ours={verdicts[i].passed}/{verdicts[i].error_type} "
                f"bfcl={side.verdicts[i][0]}/{side.verdicts[i][1]} answer={answer[:160]!r}"
            )


def main() -> None:
    gt, perturbed = build_pairs()
    gc.freeze()  # the loaded tasks stay out of the collector's way (bfcl_side.py does the same)
    python = os.environ.get("BFCL_PYTHON")
    print(f"rounds={ROUNDS}")
    for label, pairs in (("gt", gt), ("perturbed", perturbed)):
        measure(label, pairs, python)


if __name__ == "__main__":
    main()
