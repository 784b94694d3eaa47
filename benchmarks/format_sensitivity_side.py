"""BFCL's own format-sensitivity verdicts over the answers ``benchmarks/format_sensitivity_reference.py`` feeds
it (run by ``$BFCL_PYTHON``): JSON lines ``{"id", "config", "functions", "answer", "ground_truth"}`` in, one
``{"verdicts": [[valid, error_type], ...]}`` line out.

Each answer goes through what ``format_sensitivity_runner`` does for a prompting model: the configuration's
return format and tag, ``default_decode_ast_prompting``, the output-format check, then ``ast_checker`` with the
original id as the category (BFCL passes ``index.split(':')[-1]``).
"""

import json
import sys
import types

# ast_checker reads only MODEL_CONFIG_MAPPING[model].underscore_to_dot; the real module imports every vendor SDK,
# so a venv with bfcl-eval --no-deps gets this one entry instead (a prompting model that keeps dots in names)
_config = types.ModuleType("bfcl_eval.constants.model_config")
_config.MODEL_CONFIG_MAPPING = {"qwen3-0.6b": types.SimpleNamespace(underscore_to_dot=False)}
sys.modules.setdefault("bfcl_eval.constants.model_config", _config)

from bfcl_eval.constants.enums import Language, ReturnFormat  # noqa: E402
from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker  # noqa: E402
from bfcl_eval.model_handler.utils import default_decode_ast_prompting, parse_prompt_variation_params  # noqa: E402
from bfcl_eval.utils import is_function_calling_format_output  # noqa: E402


def verdict(item):
    ret, tag, _, _, _ = parse_prompt_variation_params(item["config"])
    try:
        decoded = default_decode_ast_prompting(item["answer"], ReturnFormat(ret), tag)
    except Exception:  # noqa: BLE001 - BFCL: any decoding failure fails the entry
        return [False, "ast_decoder:decoder_failed"]
    if not is_function_calling_format_output(decoded):
        return [False, "ast_decoder:decoder_wrong_output_format"]
    try:
        checked = ast_checker(
            item["functions"], decoded, item["ground_truth"], Language.PYTHON, item["id"].split(":")[-1], "qwen3-0.6b"
        )
    except Exception as exc:  # noqa: BLE001
        return [False, f"exception:{type(exc).__name__}"]
    return [bool(checked["valid"]), None if checked["valid"] else checked["error_type"]]


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        items = [json.loads(line) for line in f]
    print(json.dumps({"verdicts": [verdict(i) for i in items]}), flush=True)
    for _ in sys.stdin:
        pass


if __name__ == "__main__":
    main()
