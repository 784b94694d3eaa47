"""The atheris harnesses under fuzz/ run a short fuzzing run on every ``make test``, so a harness that breaks
(as fuzz_multi_turn.py did: it exited 77 on its first input, its own audit hook tripped by a lazy import)
fails CI instead of waiting for someone to run it by hand.

Each run starts from fuzz/corpus (read only: new inputs go to a temporary directory), with a fixed seed and a
bounded number of inputs; libFuzzer exits 0 after ``-runs`` inputs and non-zero on any finding."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: inputs per harness, the corpus included (48 seeds)
RUNS = 400


@pytest.mark.parametrize("harness,max_len", [("fuzz_decode.py", 4096), ("fuzz_multi_turn.py", 2048)])
def test_a_fuzz_harness_runs_a_bounded_fuzzing_run_cleanly(tmp_path, harness, max_len):
    import importlib.util

    assert importlib.util.find_spec("atheris"), "atheris is in the dev extra: pip install -e '.[dev]'"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "fuzz" / harness),
            str(tmp_path),
            str(ROOT / "fuzz" / "corpus"),
            f"-runs={RUNS}",
            f"-max_len={max_len}",
            "-seed=1",
            "-timeout=60",
            "-print_final_stats=1",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0, tail
    done = [line for line in proc.stderr.splitlines() if line.startswith("Done ")]
    assert done and int(done[-1].split()[1]) >= RUNS, tail
    assert not list(tmp_path.glob("crash-*")) and not list(tmp_path.glob("timeout-*"))
