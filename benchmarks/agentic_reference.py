"""Record BFCL's own agentic verdicts on a corpus of results, for ``tests/test_bfcl_agentic.py``.

The corpus, from BFCL's memory and web-search questions and their possible answers: per question, the answer
in BFCL's requested format after a memory call, and perturbations (case and punctuation changed, the answer
inside a longer word, a wrong answer, no final message, a final message followed by a call, an empty final
message, two turns, an undecodable step, quotes swapped). BFCL's checker judges each one in ``$BFCL_PYTHON``
(``benchmarks/agentic_side.py``); results and verdicts go to ``tests/data/bfcl_agentic_reference.jsonl``, so the
tests compare our scorer with BFCL's without BFCL.

    BFCL_PYTHON=/tmp/bfcl-venv/bin/python .venv/bin/python benchmarks/agentic_reference.py
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from bitagent_plugins.bfcl import memory, web_search
from bitagent_plugins.bfcl.tasks import locate_data

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "bfcl_agentic_reference.jsonl"
CALL = "[memory_retrieve()]"


def variants(answer: str) -> list[tuple[str, list[list[str]]]]:
    said = "{'answer': '" + answer + "', 'context': 'from my memory'}"
    return [
        ("answer", [[CALL, said]]),
        ("answer_only", [[said]]),
        ("upper_punctuated", [[CALL, f"The answer is {answer.upper()}."]]),
        ("hyphenated", [[CALL, f"It is -{answer}- (sure)"]]),
        ("inside_a_word", [[CALL, f"It is x{answer}y"]]),
        ("wrong", [[CALL, "{'answer': 'I do not know', 'context': 'I do not know'}"]]),
        ("no_final_message", [[CALL]]),
        ("answer_then_call", [[said, CALL]]),
        ("empty_final", [[said, ""]]),
        ("two_turns", [[CALL, said], ["ok"]]),
        ("undecodable_last", [[said, "[memory_retrieve("]]),
        ("double_quotes", [[CALL, '{"answer": "' + answer + '"}']]),
        ("spaced", [[CALL, " ".join(answer)]]),
    ]


def corpus() -> list[dict[str, Any]]:
    location = locate_data()
    assert location.path is not None
    tasks = list(memory.load_category("memory_kv", location.path, location.version).questions)
    tasks += list(web_search.load_category("web_search_base", location.path, location.version))
    items = []
    for task in tasks:
        answers = task.metadata["answers"]
        for name, result in variants(answers[0]):
            items.append({"task_id": task.id, "variant": name, "result": result, "answers": answers})
    return items


def main() -> None:
    python = os.environ.get("BFCL_PYTHON")
    if not python:
        sys.exit("set BFCL_PYTHON to an interpreter where bfcl_eval imports")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from side_process import SideProcess

    items = corpus()
    side = SideProcess(python, Path(__file__).resolve().parent / "agentic_side.py", items)
    side.close()
    with open(OUT, "w", encoding="utf-8") as f:
        for item, (valid, error_type) in zip(items, side.verdicts, strict=True):
            f.write(json.dumps({**item, "valid": valid, "error_type": error_type}) + "\n")
    print(f"wrote {len(items)} verdicts to {OUT}")


if __name__ == "__main__":
    main()
