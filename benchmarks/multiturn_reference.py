"""Record BFCL's own multi-turn verdicts on a corpus of trajectories, for ``tests/test_bfcl_multi_turn.py``.

The corpus, from BFCL's multi-turn data (every entry for the ground truth, every ``EVERY``-th entry for
the rest): each entry's ground truth replayed as model output (one step per turn; one step per call), the
same with positional arguments given by keyword, and perturbations: a dropped call, a wrong argument, an
empty turn, a refusal where calls are needed, a call in a turn whose ground truth is empty (miss_param),
a missing turn, an undecodable step, an extra read-only call. BFCL's checker judges each one in
``$BFCL_PYTHON`` (``benchmarks/multiturn_side.py``); the trajectories and verdicts are written to
``tests/data/bfcl_multi_turn_reference.jsonl``, so the tests compare our scorer with BFCL's without BFCL.

    BFCL_PYTHON=/tmp/bfcl-venv/bin/python .venv/bin/python benchmarks/multiturn_reference.py
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bitagent_plugins.bfcl import multi_turn
from bitagent_plugins.bfcl.tasks import locate_data

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "bfcl_multi_turn_reference.jsonl"
EVERY = 5


def step(calls: list[str]) -> str:
    return "[" + ", ".join(calls) + "]"


def keywords(call: str, order: dict[str, list[str]]) -> str:
    """``sort('a')`` -> ``sort(file_name='a')``: positional arguments named by the doc's parameter order."""
    node = ast.parse(call, mode="eval").body
    assert isinstance(node, ast.Call)
    names = order.get(node.func.id, [])  # type: ignore[union-attr]
    for i, arg in enumerate(node.args):
        node.keywords.insert(i, ast.keyword(arg=names[i], value=arg))
    node.args = []
    return ast.unparse(node)


def wrong_argument(call: str) -> str | None:
    """The call with its first string or number argument changed, or None."""
    node = ast.parse(call, mode="eval").body
    for kw in node.keywords:  # type: ignore[union-attr]
        value = kw.value
        if isinstance(value, ast.Constant) and type(value.value) is str:
            kw.value = ast.Constant(value.value + "_x")
            return ast.unparse(node)
        if isinstance(value, ast.Constant) and type(value.value) in (int, float):
            kw.value = ast.Constant(value.value + 7)
            return ast.unparse(node)
    return None


def variants(truth: list[list[str]], order: dict[str, list[str]], every: bool) -> list[tuple[str, list[list[str]]]]:
    out = [("ground_truth", [[step(t)] if t else ["I need more information to do that."] for t in truth])]
    if not every:
        return out
    out.append(("ground_truth_per_call", [[step([c]) for c in t] + ["Done."] for t in truth]))
    out.append(("ground_truth_keywords", [[step([keywords(c, order) for c in t])] if t else [] for t in truth]))
    first = next((i for i, t in enumerate(truth) if t), None)
    if first is not None:
        turns = [list(t) for t in truth]
        dropped = [list(t) for t in truth]
        dropped[first] = dropped[first][:-1]
        out.append(("dropped_call", [[step(t)] if t else [] for t in dropped]))
        for j, call in enumerate(turns[first]):
            changed = wrong_argument(call)
            if changed:
                wrong = [list(t) for t in truth]
                wrong[first][j] = changed
                out.append(("wrong_argument", [[step(t)] if t else [] for t in wrong]))
                break
        out.append(("empty_turn", [[] if i == first else ([step(t)] if t else []) for i, t in enumerate(truth)]))
        out.append(
            (
                "refusal",
                [
                    ["I am sorry, I cannot help with that."] if i == first else ([step(t)] if t else [])
                    for i, t in enumerate(truth)
                ],
            )
        )
        out.append(
            (
                "undecodable_step",
                [["Sure! " + step(t)] if i == first else ([step(t)] if t else []) for i, t in enumerate(truth)],
            )
        )
        out.append(("extra_call", [[step(t), step(t[:1])] if t else [] for t in truth]))
    empty = [i for i, t in enumerate(truth) if not t]
    if empty and empty[0] + 1 < len(truth) and truth[empty[0] + 1]:
        i = empty[0]
        out.append(
            (
                "call_in_empty_turn",
                [[step(truth[i + 1])] if k == i else ([step(t)] if t else []) for k, t in enumerate(truth)],
            )
        )
    if len(truth) > 1:
        out.append(("missing_turn", [[step(t)] if t else [] for t in truth[:-1]]))
    return out


def corpus() -> list[dict[str, Any]]:
    location = locate_data()
    assert location.path is not None
    items = []
    for category in multi_turn.CATEGORIES:
        data = multi_turn.load_category(category, location.path, location.version)
        entries = {}
        with open(location.path / f"BFCL_v4_{category}.json", encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    entries[row["id"]] = row
        for index, task in enumerate(data.tasks):
            truth = task.metadata["ground_truth"]
            tools = list(task.tools) + [t for turn in task.turns for t in turn.add_tools]
            order = {t.name: t.parameter_order for t in tools}
            entry = {k: entries[task.id][k] for k in ("id", "initial_config", "involved_classes")}
            for variant, result in variants(truth, order, index % EVERY == 0):
                items.append(
                    {
                        "task_id": task.id,
                        "category": category,
                        "variant": variant,
                        "result": result,
                        "entry": entry,
                        "ground_truth": truth,
                    }
                )
    return items


def bfcl_verdicts(python: str, items: list[dict[str, Any]]) -> list[list[Any]]:
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for item in items:
            f.write(json.dumps(item) + "\n")
    try:
        side = subprocess.run(
            [python, str(ROOT / "benchmarks" / "multiturn_side.py"), f.name],
            input="",
            capture_output=True,
            text=True,
            check=True,
            timeout=3600,
        )
    finally:
        os.unlink(f.name)
    return json.loads(side.stdout.splitlines()[0])["verdicts"]


def main() -> None:
    python = os.environ.get("BFCL_PYTHON")
    if not python:
        sys.exit("set BFCL_PYTHON to an interpreter where bfcl_eval imports")
    items = corpus()
    verdicts = bfcl_verdicts(python, items)
    with open(OUT, "w", encoding="utf-8") as f:
        for item, (valid, error_type) in zip(items, verdicts):
            f.write(
                json.dumps(
                    {
                        "task_id": item["task_id"],
                        "category": item["category"],
                        "variant": item["variant"],
                        "result": item["result"],
                        "bfcl_valid": valid,
                        "bfcl_error_type": error_type,
                    }
                )
                + "\n"
            )
    print(f"trajectories={len(items)} bfcl_passed={sum(1 for v, _ in verdicts if v)} -> {OUT}")


if __name__ == "__main__":
    main()
