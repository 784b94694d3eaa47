"""BFCL's own agentic evaluation over results ``benchmarks/agentic_reference.py`` and ``benchmarks/agentic.py``
feed it (run by ``$BFCL_PYTHON``, an interpreter where ``bfcl_eval`` imports).

Reads JSON lines ``{"result": [[step, ...]], "answers": [...]}``, prints ``{"verdicts": [[valid, error_type],
...]}``, then times one round over all results per ``round`` line on stdin, printing ``{"seconds": ...}``.

Each result goes through what BFCL's ``_evaluate_single_agentic_entry`` does for a prompting model (its glue
is repeated here because importing ``eval_runner`` pulls every model handler): exactly one turn, each step
decoded by ``default_decode_execute_prompting``, the last step that fails to decode or decodes to nothing
taken as the final answer, then BFCL's ``agentic_checker``.
"""

import json
import sys
import time

from bfcl_eval.eval_checker.agentic_eval.agentic_checker import agentic_checker
from bfcl_eval.eval_checker.multi_turn_eval.multi_turn_utils import is_empty_execute_response
from bfcl_eval.model_handler.utils import default_decode_execute_prompting


def verdict(item):
    result, answers = item["result"], item["answers"]
    if type(result) is not list or len(result) != 1:
        return [False, "agentic:inference_error"]
    last = None
    for step in result[0]:
        try:
            decoded = default_decode_execute_prompting(step, has_tool_call_tag=False)
            if is_empty_execute_response(decoded):
                last = step
                continue
        except Exception:  # noqa: BLE001 - BFCL takes any step that fails to decode as a candidate
            last = step
            continue
    if not last:
        return [False, "agentic:no_last_message"]
    checked = agentic_checker(last, answers)
    return [bool(checked["valid"]), None if checked["valid"] else checked["error_type"]]


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        items = [json.loads(line) for line in f]
    print(json.dumps({"verdicts": [verdict(i) for i in items]}), flush=True)
    for _ in sys.stdin:
        started = time.perf_counter()
        for item in items:
            verdict(item)
        print(json.dumps({"seconds": time.perf_counter() - started}), flush=True)


if __name__ == "__main__":
    main()
