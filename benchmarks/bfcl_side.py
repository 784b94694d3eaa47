"""BFCL's own decode + check over the pairs ``benchmarks/scoring.py`` feeds it (run by ``$BFCL_PYTHON``).

Runs in an interpreter that has ``bfcl-eval`` importable. Reads a JSON-lines file of pairs
``{"category", "functions", "answer", "ground_truth"}``, prints ``{"verdicts": [[valid, error_type], ...]}``,
then times one round over all pairs per ``round`` line on stdin, printing ``{"seconds": ...}``.

Each pair goes through what BFCL's evaluation does for a prompting model: ``default_decode_ast_prompting``
(the base OSS handler's decoder), the output-format check, then ``ast_checker``; for irrelevance and
relevance categories, BFCL's "did it decode to a non-empty call list" rule. An exception BFCL raises is a
failed verdict, with ``error_type`` ``exception:<type>``.
"""

import gc
import json
import sys
import time

from bfcl_eval.constants.enums import Language, ReturnFormat
from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker
from bfcl_eval.model_handler.utils import default_decode_ast_prompting
from bfcl_eval.utils import is_empty_output, is_function_calling_format_output

MODEL = "qwen3-0.6b"  # a prompting model BFCL knows whose function names keep their dots


def verdict(pair):
    category, answer = pair["category"], pair["answer"]
    if "relevance" in category:
        try:
            decoded = default_decode_ast_prompting(answer, ReturnFormat.PYTHON)
            has_call = not is_empty_output(decoded)
        except Exception:  # noqa: BLE001 - BFCL: a decode failure means no call
            has_call = False
        if "irrelevance" in category:
            return [not has_call, None if not has_call else "irrelevance_error:decoder_success"]
        return [has_call, None if has_call else "relevance_error:decoder_failed"]
    try:
        decoded = default_decode_ast_prompting(answer, ReturnFormat.PYTHON)
    except Exception:  # noqa: BLE001
        return [False, "ast_decoder:decoder_failed"]
    if not is_function_calling_format_output(decoded):
        return [False, "ast_decoder:decoder_wrong_output_format"]
    try:
        result = ast_checker(pair["functions"], decoded, pair["ground_truth"], Language.PYTHON, category, MODEL)
    except Exception as exc:  # noqa: BLE001
        return [False, f"exception:{type(exc).__name__}"]
    return [bool(result["valid"]), None if result["valid"] else result.get("error_type")]


def main():
    """Verdicts first (one JSON line), then one timed round per "round" line read from stdin: the caller
    alternates these rounds with its own, so background load hits both sides alike."""
    path = sys.argv[1]
    with open(path, encoding="utf-8") as f:
        pairs = [json.loads(line) for line in f if line.strip()]
    print(json.dumps({"verdicts": [verdict(p) for p in pairs]}), flush=True)
    gc.freeze()  # what is loaded stays out of the collector's way, as on our side
    for command in sys.stdin:
        if command.strip() != "round":
            break
        start = time.perf_counter()
        for pair in pairs:
            verdict(pair)
        print(json.dumps({"seconds": time.perf_counter() - start}), flush=True)


if __name__ == "__main__":
    main()
