"""``bitagent runs show``: a failed run says why; a multi-turn sample shows the prompt of the turn its answer
replies to (the last turn played), not the first turn's."""

from __future__ import annotations

from bitagent_core.records import SampleRecord
from bitagent_plugins.runs.view import last_prompt

LINE = {
    "task_id": "multi_turn_base_1",
    "source": "bfcl",
    "category": "multi_turn_base",
    "status": "ok",
    "score": 0.0,
    "passed": False,
    "messages": [{"role": "system", "content": "tools"}, {"role": "user", "content": "first turn"}],
    "turns": [
        {"messages": [{"role": "user", "content": "second turn"}]},
        {"messages": [{"role": "user", "content": "third turn"}]},
    ],
    "completion": {"text": "the last step's answer"},
}


def steps(n: int) -> list[list[dict]]:
    return [[{"text": f"turn {i}"}] for i in range(n)]


def test_a_multi_turn_sample_shows_the_prompt_of_its_last_played_turn():
    played_all = SampleRecord.from_json({**LINE, "trajectory": {"turns": steps(3)}})
    assert last_prompt(played_all) == "(turn 3) third turn"
    stopped = SampleRecord.from_json({**LINE, "trajectory": {"turns": steps(2)}})
    assert last_prompt(stopped) == "(turn 2) second turn"
    first_only = SampleRecord.from_json({**LINE, "trajectory": {"turns": steps(1)}})
    assert last_prompt(first_only) == "first turn"
    single = SampleRecord.from_json({k: v for k, v in LINE.items() if k != "turns"})
    assert last_prompt(single) == "first turn"


def test_runs_show_of_a_failed_run_says_why(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    run = tmp_path / "20261207T000000Z_bitagent_default"
    run.mkdir()
    (run / "results.json").write_text(
        json.dumps(
            {
                "status": "failed",
                "run_dir": str(run),
                "config": {"tasks": "bitagent", "backend": "openai"},
                "error": "the openai backend could not start: RuntimeError: "
                "the server at http://127.0.0.1:9 is not usable",
                "schema_version": "1.0",
            }
        )
    )
    shown = subprocess.run(
        [str(Path(sys.executable).parent / "bitagent"), "runs", "show", str(run)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())
    assert "failed: the openai backend could not start" in text and "0 of 0 samples" in text
    listed = subprocess.run(
        [str(Path(sys.executable).parent / "bitagent"), "runs", "list", "-o", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    row = next(line for line in listed.stdout.splitlines() if "_bitagent_default" in line)
    assert "0.000" not in row and row.rstrip(" │").endswith("-")  # no score, not a score of 0
