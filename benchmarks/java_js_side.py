"""BFCL's own reader and checker over Java/JavaScript answers (``benchmarks/java_js.py`` and
``tests/test_bfcl_java_js.py`` run it in a side process: ``.venv/bin/python`` with the ``bfcl-java`` extra and
the ``bfcl-eval`` wheel installed ``--no-deps``, or ``$BFCL_PYTHON``).

Reads JSON lines ``{"entry": <BFCL entry with ground_truth>, "category": ..., "response": ...}``, prints
``{"verdicts": [[valid, error_type], ...]}``, then times one round over all answers per ``round`` line on stdin,
printing ``{"seconds": ...}``.

What runs is BFCL's: its tree-sitter readers (``model_handler/parser/{java,js}_parser.py``), its type converters
and ``ast_checker``. Its glue is repeated here because the modules holding it import every vendor SDK:
``default_decode_ast_prompting`` (strip backticks and line breaks, wrap in ``[ ]``, hand the reader what is
inside) and ``is_function_calling_format_output`` from ``_evaluate_single_ast_entry``. ``ast_checker`` imports
the model registry only to map dotted names for function-calling models; where that registry does not import,
a registry that maps nothing (a prompting model) stands in for it.
"""

import os
import sys
import tempfile
import types

os.environ.setdefault("BFCL_PROJECT_ROOT", tempfile.mkdtemp(prefix="bfcl-side-"))
try:
    from bfcl_eval.constants.model_config import MODEL_CONFIG_MAPPING  # noqa: F401
except Exception:  # noqa: BLE001 - vendor SDKs missing: a prompting model's registry entry stands in

    class _Config:
        underscore_to_dot = False

    stub = types.ModuleType("bfcl_eval.constants.model_config")
    stub.MODEL_CONFIG_MAPPING = {"prompting-model": _Config()}  # type: ignore[attr-defined]
    sys.modules[stub.__name__] = stub

from bfcl_eval.constants.enums import Language  # noqa: E402
from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker  # noqa: E402
from bfcl_eval.model_handler.parser.java_parser import parse_java_function_call  # noqa: E402
from bfcl_eval.model_handler.parser.js_parser import parse_javascript_function_call  # noqa: E402

MODEL = "prompting-model"


def decode(result, category):
    result = result.strip("`\n ")
    if not result.startswith("["):
        result = "[" + result
    if not result.endswith("]"):
        result = result + "]"
    reader = parse_java_function_call if category == "simple_java" else parse_javascript_function_call
    return reader(result[1:-1])


def is_function_calling_format_output(decoded):
    if type(decoded) is not list:
        return False
    return all(type(item) is dict and len(item) == 1 and type(list(item.values())[0]) is dict for item in decoded)


def verdict(item):
    entry, category = item["entry"], item["category"]
    try:
        decoded = decode(item["response"], category)
    except Exception:  # noqa: BLE001 - as BFCL's runner
        return [False, "ast_decoder:decoder_failed"]
    if not is_function_calling_format_output(decoded):
        return [False, "ast_decoder:decoder_wrong_output_format"]
    language = Language.JAVA if category == "simple_java" else Language.JAVASCRIPT
    try:
        result = ast_checker(entry["function"], decoded, entry["ground_truth"], language, category, MODEL)
    except Exception as exc:  # noqa: BLE001 - BFCL's runner would stop here; recorded as a crash
        return [None, f"crash:{type(exc).__name__}"]
    return [bool(result["valid"]), result.get("error_type")]


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from side_process import serve

    serve(verdict)
