"""BFCL's memory categories end to end with the embedded model: `bitagent evaluate` plays a prerequisite
conversation and then questions through the agent loop, with each real memory backend (BM25, the packaged
MiniLM embeddings with faiss, the recursive summary), offline.

A handful of tasks: a data directory made from the bfcl-eval wheel's, with each scenario's prerequisites cut to
the first conversation's first turn (``BITAGENT_BFCL_DATA``), so ``--limit 2`` runs one prerequisite and one
question of one scenario. (A turn may take up to BFCL's 20 steps with calls: on 2 loaded cores a turn of the
0.5B model takes minutes.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bitagent_plugins.bfcl import memory
from bitagent_plugins.bfcl.tasks import wheel_data_dir

BITAGENT = [str(Path(sys.executable).parent / "bitagent")]


def short_data(tmp_path: Path) -> Path:
    source = wheel_data_dir()
    assert source is not None, "the bfcl-eval wheel's data"
    data = tmp_path / "bfcl-data"
    data.mkdir()
    for item in source.iterdir():
        if item.name != "memory_prereq_conversation":
            (data / item.name).symlink_to(item)
    (data / "memory_prereq_conversation").mkdir()
    for scenario in memory.SCENARIOS:
        name = f"memory_{scenario}.json"
        first = json.loads((source / "memory_prereq_conversation" / name).read_text().splitlines()[0])
        first["question"] = first["question"][:1]
        (data / "memory_prereq_conversation" / name).write_text(json.dumps(first) + "\n")
    return data


@pytest.mark.model
@pytest.mark.parametrize("backend", ["kv", "vector", "rec_sum"])
def test_memory_questions_read_what_the_model_wrote_in_their_prerequisite(tmp_path, embedded_model, backend):
    env = {**os.environ, "BITAGENT_BFCL_DATA": str(short_data(tmp_path)), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        BITAGENT
        + [
            "evaluate",
            "--tasks",
            f"bfcl:memory_{backend}",
            "--scorer",
            "bfcl-strict",
            "--limit",
            "2",
            "--seed",
            "0",
            "--max-tokens",
            "120",
            "-B",
            "n_ctx=8192",
            "-B",
            "n_threads=2",
            "--output-dir",
            str(tmp_path / "runs"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=2400,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    assert summary["status"] == "complete" and summary["n_tasks"] == 2 and summary["n_failed"] == 0, summary
    run_dir = Path(summary["run_dir"])
    samples = {s["task_id"]: s for s in map(json.loads, (run_dir / "samples.jsonl").read_text().splitlines())}
    prereqs = [t for t in samples if "_prereq_" in t]
    questions = [t for t in samples if "_prereq_" not in t]
    assert len(prereqs) == 1 and len(questions) == 1
    # the prerequisite played its turn and its snapshot is complete
    assert len(samples[prereqs[0]]["trajectory"]["turns"]) == 1
    snapshot = memory.read_snapshot(run_dir, f"memory_{backend}", prereqs[0])
    loaded = memory.MemoryEnvironment({"backend": backend, "scenario": prereqs[0].split("-")[1]}).memory
    loaded._load(snapshot)
    for task_id in questions:
        sample = samples[task_id]
        system = sample["messages"][0]["content"]
        assert "Here is a list of functions" in system and "For your final answer" in system
        assert loaded._context() in system  # the memory as the prerequisite left it, shown to the question
        assert sample["trajectory"]["turns"][0], "the model answered"
        assert sample["passed"] or sample["error_type"] in ("agentic:answer_not_found", "agentic:no_last_message")
