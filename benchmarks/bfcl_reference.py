"""Record BFCL's own verdicts on a corpus of answers, for ``tests/test_bfcl_reference.py``.

The corpus: every 20th task of each BFCL category, each answered several ways (its ground truth, the five
perturbations, type and string variants, reordered parallel calls, other formats, positional arguments,
expressions; for irrelevance and relevance tasks: no call, ``[]``, a call). BFCL's prompting decoder and
``ast_checker`` judge each answer in ``$BFCL_PYTHON`` (``benchmarks/bfcl_side.py``); the verdicts are written to
``tests/data/bfcl_reference.jsonl``, so the tests compare our scorer with BFCL without needing BFCL installed.

    BFCL_PYTHON=/tmp/bfcl-venv/bin/python .venv/bin/python benchmarks/bfcl_reference.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bitagent_core._plugins import get_registry
from bitagent_core._runner import load_tasks
from bitagent_core.model import Task
from bitagent_core.toolkit import expected_arguments, python_literal, pythonic_name, render_expected
from bitagent_plugins.bfcl.perturb import PERTURBATIONS, perturb

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "bfcl_reference.jsonl"
EVERY = 20


def pythonic(calls: list[tuple[str, list[str]]]) -> str:
    return "[" + ", ".join(f"{name}({', '.join(parts)})" for name, parts in calls) + "]"


def keyword_parts(args: dict[str, Any]) -> list[str]:
    return [f"{k}={python_literal(v)}" for k, v in args.items()]


def variants(task: Task) -> list[tuple[str, str]]:
    """(label, answer) pairs for one task."""
    if not task.expected_calls:
        out = [("no_call", "I am sorry, none of the functions can be used for this request."), ("empty_list", "[]")]
        tool = task.tools[0] if task.tools else None
        if tool is not None and pythonic_name(tool.name):
            out.append(("call", f"[{tool.name}()]"))
        return out
    gt = render_expected(task)
    out = [("gt", gt)]
    for kind in PERTURBATIONS:
        answer = perturb(task, kind)
        if answer is not None:
            out.append((kind, answer))
    calls = [(e, expected_arguments(task, e)) for e in task.expected_calls]
    if any(args is None for _, args in calls) or not all(pythonic_name(e.name) for e, _ in calls):
        return out
    if not all(k.isidentifier() for _, args in calls for k in args):
        return out
    base = [(e.name, keyword_parts(args)) for e, args in calls]
    out += [
        ("fenced_plain", f"```\n{gt}\n```"),
        ("fenced_python", f"```python\n{gt}\n```"),
        ("prose_prefix", f"Sure, here is the call: {gt}"),
        ("json_format", json.dumps([{"function": e.name, "parameters": args} for e, args in calls])),
        ("wrong_count", pythonic(base + base[:1])),
    ]
    if len(base) > 1:
        out.append(("reordered", pythonic(list(reversed(base)))))
    first, args = calls[0]
    tool = task.tool(first.name)
    props = tool.properties if tool is not None else {}
    # positional: the leading parameters in the doc's order, given without names
    leading = []
    for name in props:
        if name not in args:
            break
        leading.append(name)
    if leading:
        parts = [python_literal(args[n]) for n in leading]
        parts += [f"{k}={python_literal(v)}" for k, v in args.items() if k not in leading]
        out.append(("positional", pythonic([(first.name, parts)] + base[1:])))
    for param, value in args.items():
        declared = (props.get(param) or {}).get("type")
        options = [o for o in first.arguments.get(param, ()) if o != ""]

        def with_value(text: str, param: str = param) -> str:
            parts = [f"{k}={text if k == param else python_literal(v)}" for k, v in args.items()]
            return pythonic([(first.name, parts)] + base[1:])

        if declared == "integer" and type(value) is int and value >= 2:
            out.append(("expression", with_value(f"{value - 1} + 1")))
            out.append(("float_for_int", with_value(repr(float(value)))))
        if declared == "float" and type(value) is float and value.is_integer() and abs(value) < 1e15:
            out.append(("int_for_float", with_value(str(int(value)))))
        if declared == "string" and type(value) is str and options and all(type(o) is str for o in options):
            out.append(("string_upper", with_value(python_literal(value.upper()))))
            out.append(("string_spaced", with_value(python_literal(value.replace(" ", "  ") + " ."))))
        if declared == "array" and type(value) is list and value:
            out.append(("tuple_for_list", with_value(python_literal(tuple(value)))))
        if declared == "boolean" and type(value) is bool:
            out.append(("json_bool", with_value("true" if value else "false")))
    return out


def main() -> None:
    python = os.environ.get("BFCL_PYTHON")
    if not python:
        sys.exit("set BFCL_PYTHON to an interpreter where bfcl_eval imports")
    tasks = load_tasks(get_registry(), "bfcl", 0, None)
    chosen: list[Task] = []
    seen: dict[str, int] = {}
    for task in tasks:
        index = seen.get(task.category, 0)
        seen[task.category] = index + 1
        if index % EVERY == 0:
            chosen.append(task)
    rows = [(task, label, answer) for task in chosen for label, answer in variants(task)]
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8") as f:
        for task, _, answer in rows:
            f.write(
                json.dumps(
                    {
                        "category": task.category,
                        "answer": answer,
                        "functions": [tool.to_json() for tool in task.tools],
                        "ground_truth": [e.to_json() for e in task.expected_calls],
                    }
                )
                + "\n"
            )
        path = f.name
    try:
        done = subprocess.run(
            [python, str(ROOT / "benchmarks" / "bfcl_side.py"), path],
            input="",
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    finally:
        os.unlink(path)
    if done.returncode != 0:
        sys.exit(done.stderr[-2000:])
    verdicts = json.loads(done.stdout.splitlines()[0])["verdicts"]
    version = subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(m.version('bfcl-eval'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(json.dumps({"bfcl_eval": version, "every": EVERY, "n": len(rows)}) + "\n")
        for (task, label, answer), (valid, error_type) in zip(rows, verdicts):
            f.write(
                json.dumps(
                    {
                        "task_id": task.id,
                        "category": task.category,
                        "label": label,
                        "response": answer,
                        "bfcl_valid": bool(valid),
                        "bfcl_error_type": error_type,
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )
    print(f"wrote {len(rows)} verdicts for {len(chosen)} tasks to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
