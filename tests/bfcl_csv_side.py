"""BFCL's own leaderboard CSVs for a table of accuracies (run in a side process by tests/test_bfcl_summary.py).

    python tests/bfcl_csv_side.py ACCURACIES.json OUT_DIR MODEL_NAME

Runs ``generate_leaderboard_csv`` from the installed bfcl-eval wheel (2026.3.23) on ``{model: accuracies}``.
The wheel is installed without its dependencies, so what its imports pull but this code path never uses
stands in as empty modules: pandas (used only to upload to W&B), filelock (file locks for result writing),
numpy where absent (used only for latency percentiles; the table has no latencies). The model registry
(which imports every vendor SDK) stands in as one entry for MODEL_NAME, a local model with no price, as
BFCL's own registry holds for open models; its display name is MODEL_NAME, its link, organization and
license ``N/A``.
"""

import json
import os
import sys
import tempfile
import types
from pathlib import Path

os.environ["BFCL_PROJECT_ROOT"] = tempfile.mkdtemp(prefix="bfcl-csv-side-")
os.environ.pop("WANDB_BFCL_PROJECT", None)


class _NoLock:
    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


for name in ("pandas", "filelock", "numpy"):
    try:
        __import__(name)
    except ImportError:
        module = types.ModuleType(name)
        module.FileLock = _NoLock  # type: ignore[attr-defined]
        sys.modules[name] = module


class Config:
    def __init__(self, name):
        self.display_name = name
        self.url = "N/A"
        self.org = "N/A"
        self.license = "N/A"
        self.input_price = None
        self.output_price = None
        self.underscore_to_dot = False


def main():
    accuracies_file, out_dir, model = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    registry = types.ModuleType("bfcl_eval.constants.model_config")
    registry.MODEL_CONFIG_MAPPING = {model: Config(model)}  # type: ignore[attr-defined]
    sys.modules[registry.__name__] = registry
    from bfcl_eval.eval_checker.eval_runner_helper import generate_leaderboard_csv

    with open(accuracies_file, encoding="utf-8") as f:
        table = json.load(f)
    out_dir.mkdir(parents=True, exist_ok=True)
    generate_leaderboard_csv({model: table}, out_dir)


if __name__ == "__main__":
    main()
