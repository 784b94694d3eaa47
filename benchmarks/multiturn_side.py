"""BFCL's own multi-turn evaluation over trajectories ``benchmarks/multiturn_reference.py`` and
``benchmarks/multiturn.py`` feed it (run by ``$BFCL_PYTHON``, an interpreter where ``bfcl_eval`` imports).

Reads JSON lines ``{"entry": <BFCL test entry>, "ground_truth": [[...]], "result": [[step, ...], ...]}``,
prints ``{"verdicts": [[valid, error_type], ...]}``, then times one round over all trajectories per ``round``
line on stdin, printing ``{"seconds": ...}``.

Each trajectory goes through what BFCL's ``_evaluate_single_multi_turn_entry`` does for a prompting model
(its glue is repeated here because importing ``eval_runner`` pulls every model handler): the turn-count
check (``multi_turn:force_terminated``), each step decoded by ``default_decode_execute_prompting`` with empty
and undecodable steps skipped, then BFCL's ``multi_turn_checker``. BFCL keeps instances in ``globals()``
keyed by model name and entry id, so each trajectory gets its own model name.
"""

import itertools
import json
import sys
import time

from bfcl_eval.eval_checker.multi_turn_eval.multi_turn_checker import multi_turn_checker
from bfcl_eval.eval_checker.multi_turn_eval.multi_turn_utils import is_empty_execute_response
from bfcl_eval.model_handler.utils import default_decode_execute_prompting

_names = itertools.count()


def verdict(item):
    entry, truth, result = item["entry"], item["ground_truth"], item["result"]
    if not isinstance(result, list):
        return [False, "multi_turn:inference_error"]
    if len(result) != len(truth):
        return [False, "multi_turn:force_terminated"]
    decoded_turns = []
    for turn in result:
        decoded = []
        for step in turn:
            try:
                calls = default_decode_execute_prompting(step, has_tool_call_tag=False)
                if is_empty_execute_response(calls):
                    continue
                decoded.append(calls)
            except Exception:  # noqa: BLE001 - BFCL skips any step that fails to decode
                continue
        decoded_turns.append(decoded)
    category = entry["id"].rsplit("_", 1)[0]
    try:
        checked = multi_turn_checker(decoded_turns, truth, dict(entry), category, f"ref{next(_names)}")
    except Exception as exc:  # noqa: BLE001
        return [False, f"exception:{type(exc).__name__}"]
    return [bool(checked["valid"]), None if checked["valid"] else checked.get("error_type")]


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        items = [json.loads(line) for line in f if line.strip()]
    print(json.dumps({"verdicts": [verdict(item) for item in items]}), flush=True)
    for command in sys.stdin:
        if command.strip() != "round":
            break
        started, cpu = time.perf_counter(), time.process_time()
        for item in items:
            verdict(item)
        print(
            json.dumps({"seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu}), flush=True
        )


if __name__ == "__main__":
    main()
