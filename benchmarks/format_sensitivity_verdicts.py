"""Record BFCL's own verdicts on format-sensitivity answers, for ``tests/test_bfcl_format_sensitivity.py``.

Every 8th of BFCL's 200 format-sensitivity entries, under each of the 26 configurations: the ground truth
written in the configuration's answer format (python, BFCL's JSON, verbose or concise XML; in ``<TOOLCALL>``
tags when asked), the same with one value wrong, the same without the tags the configuration asks for, and a
python answer whatever was asked. BFCL's checker judges each one in ``$BFCL_PYTHON``
(``benchmarks/format_sensitivity_side.py``); answers and verdicts go to
``tests/data/bfcl_format_sensitivity_verdicts.json`` (the answers are rebuilt by :func:`corpus`, in the same
order, so only the verdicts and each answer's sha256 prefix are kept).

    BFCL_PYTHON=/tmp/bfcl-venv/bin/python .venv/bin/python benchmarks/format_sensitivity_verdicts.py
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from bitagent_core._plugins import get_registry
from bitagent_core._runner import load_tasks
from bitagent_plugins.bfcl import format_sensitivity as fs
from bitagent_plugins.bfcl.tasks import locate_data

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "bfcl_format_sensitivity_verdicts.json"
XML_TYPES = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array", dict: "dict"}


def chosen(ground_truth: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Each expected call with the first acceptable value of each parameter (optional ones left out)."""
    calls = []
    for call in ground_truth:
        ((name, params),) = call.items()
        calls.append((name, {k: v[0] for k, v in params.items() if v and v[0] != ""}))
    return calls


def render(calls: list[tuple[str, dict[str, Any]]], fmt: str) -> str:
    if fmt == "python":
        return "[" + ", ".join(f"{n}(" + ", ".join(f"{k}={v!r}" for k, v in a.items()) + ")" for n, a in calls) + "]"
    if fmt == "json":
        return json.dumps([{"function": n, "parameters": a} for n, a in calls])
    out = "<functions>"
    for name, args in calls:
        out += f"<function name={quoteattr(name)}>"
        if fmt == "verbose_xml":
            out += (
                "<params>"
                + "".join(
                    f"<param name={quoteattr(k)} value={quoteattr(v if isinstance(v, str) else repr(v))} "
                    f'type="{XML_TYPES.get(type(v), "string")}"/>'
                    for k, v in args.items()
                )
                + "</params>"
            )
        else:
            out += "".join(
                f'<param name={quoteattr(k)} type="{XML_TYPES.get(type(v), "string")}">'
                f"{escape(v if isinstance(v, str) else repr(v))}</param>"
                for k, v in args.items()
            )
        out += "</function>"
    return out + "</functions>"


def wrong(calls: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]] | None:
    for i, (name, args) in enumerate(calls):
        for key, value in args.items():
            if type(value) in (int, float, str):
                changed = dict(args, **{key: value + 7 if type(value) is not str else value + "x"})
                return calls[:i] + [(name, changed)] + calls[i + 1 :]
    return None


def corpus() -> list[dict[str, Any]]:
    location = locate_data()
    assert location.path is not None
    truth: dict[str, Any] = {}
    for category in fs.id_file(location.path):
        for line in (location.path / "possible_answer" / f"BFCL_v4_{category}.json").read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                truth[row["id"]] = row["ground_truth"]
    items = []
    tasks = load_tasks(get_registry(), "bfcl:format_sensitivity", 0, None)
    for task in tasks:
        index, config, original = task.id.split(":")
        if int(index.rsplit("_", 1)[1]) // len(fs.CONFIGS) % 8:
            continue
        cfg = fs.Config.parse(config)
        calls = chosen(truth[original])
        tag = (lambda text: f"<TOOLCALL>{text}</TOOLCALL>") if cfg.tool_call_tag else (lambda text: text)
        answers = {"right": tag(render(calls, cfg.return_format)), "python_anyway": tag(render(calls, "python"))}
        bad = wrong(calls)
        if bad:
            answers["wrong_value"] = tag(render(bad, cfg.return_format))
        if cfg.tool_call_tag:
            answers["untagged"] = render(calls, cfg.return_format)
        functions = [t.to_json() for t in task.tools]
        for variant, answer in answers.items():
            items.append(
                {
                    "id": task.id,
                    "config": config,
                    "variant": variant,
                    "answer": answer,
                    "functions": functions,
                    "ground_truth": truth[original],
                }
            )
    return items


def answer_key(item: dict[str, Any]) -> str:
    """A short digest of one answer and its task, so a changed corpus is caught."""
    return hashlib.sha256((item["id"] + "\0" + item["answer"]).encode()).hexdigest()[:12]


def main() -> None:
    python = os.environ.get("BFCL_PYTHON")
    if not python:
        sys.exit("set BFCL_PYTHON to an interpreter where bfcl_eval imports")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from side_process import SideProcess

    items = corpus()
    side = SideProcess(python, Path(__file__).resolve().parent / "format_sensitivity_side.py", items)
    side.close()
    rows = [
        [answer_key(item), valid, error_type] for item, (valid, error_type) in zip(items, side.verdicts, strict=True)
    ]
    OUT.write_text(
        json.dumps({"source": "bfcl-eval 2026.3.23 (benchmarks/format_sensitivity_verdicts.py)", "verdicts": rows})
        + "\n"
    )
    print(f"wrote {len(items)} verdicts to {OUT}")


if __name__ == "__main__":
    main()
