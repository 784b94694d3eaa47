"""Record BFCL's own format-sensitivity ids and system prompts, for ``tests/test_bfcl_format_sensitivity.py``.

Run by an interpreter where ``bfcl_eval`` imports (``$BFCL_PYTHON``): BFCL loads its 5,200 entries
(``load_dataset_entry("format_sensitivity")``) and builds each system prompt as its prompting handlers do
(``system_prompt_pre_processing_chat_model``); one sha256 over the ids and prompts, in order, and BFCL's
configuration list go to ``tests/data/bfcl_format_sensitivity_reference.json``. The verdicts on answers in
each configuration's format are recorded by ``benchmarks/format_sensitivity_verdicts.py``.

    /tmp/bfcl-venv/bin/python benchmarks/format_sensitivity_reference.py
"""

import hashlib
import json
from pathlib import Path

from bfcl_eval.model_handler.utils import system_prompt_pre_processing_chat_model
from bfcl_eval.utils import get_all_format_sensitivity_configs, load_dataset_entry

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "bfcl_format_sensitivity_reference.json"


def main():
    digest = hashlib.sha256()
    entries = load_dataset_entry("format_sensitivity")
    for entry in entries:
        messages = system_prompt_pre_processing_chat_model(entry["question"][0], entry["function"], entry["id"])
        digest.update(entry["id"].encode() + b"\0" + messages[0]["content"].encode() + b"\n")
    OUT.write_text(
        json.dumps(
            {
                "source": "bfcl-eval 2026.3.23 (benchmarks/format_sensitivity_reference.py)",
                "configs": get_all_format_sensitivity_configs(),
                "n": len(entries),
                "ids_and_prompts_sha256": digest.hexdigest(),
            },
            indent=1,
        )
        + "\n"
    )
    print(f"{len(entries)} prompts: {digest.hexdigest()}")


if __name__ == "__main__":
    main()
