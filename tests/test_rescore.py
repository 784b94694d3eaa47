"""``bitagent score``: saved responses re-scored by the real CLI, with real files, without any model."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bitagent_core._plugins import get_registry
from bitagent_core._runner import load_tasks
from bitagent_core.toolkit import render_expected
from bitagent_plugins.runs.score import completion_from_response

BIN = Path(sys.executable).parent


def bitagent(*args, cwd=None):
    return subprocess.run([str(BIN / "bitagent"), *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def write(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def read(path: Path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


RESPONSES = [
    {"task_id": "simple_python_0", "response": "[calculate_triangle_area(base=10, height=5)]", "id": "r1"},
    {"task_id": "simple_python_0", "response": "[calculate_triangle_area(base=10, height=6)]", "id": "r2"},
    {
        "task_id": "simple_python_0",
        "response": {
            "tool_calls": [
                {
                    "type": "function",
                    "function": {
                        "name": "calculate_triangle_area",
                        "arguments": '{"base": 10, "height": 5, "unit": "units"}',
                    },
                }
            ]
        },
    },
    {
        "task_id": "simple_python_0",
        "response": {"tool_calls": [{"name": "calculate_triangle_area", "arguments": {"base": 10}}]},
    },
    {
        "task_id": "parallel_0",
        "response": "[spotify.play(artist='Maroon 5', duration=15), spotify.play(artist='Taylor Swift', duration=20)]",
    },
    {"task_id": "irrelevance_0", "response": "None of these functions can do that."},
    {"task_id": "irrelevance_0", "response": "[calculate_triangle_area(base=1, height=1)]", "extra": [1, 2]},
    {"task_id": "live_relevance_0-0-0", "response": "[generate_image(prompt='a masked woman')]"},
]


def test_scores_every_line_and_keeps_its_fields(tmp_path):
    out = tmp_path / "scored.jsonl"
    done = bitagent(
        "score", "--tasks", "bfcl", "--responses", str(write(tmp_path / "r.jsonl", RESPONSES)), "--output", str(out)
    )
    assert done.returncode == 0, done.stderr
    lines = read(out)
    assert [(line["passed"], line["error_type"]) for line in lines] == [
        (True, None),
        (False, "value_error"),
        (True, None),
        (False, "missing_required"),
        (True, None),
        (True, None),
        (False, "irrelevance_error"),
        (True, None),
    ]
    for line, given in zip(lines, RESPONSES):
        assert {k: v for k, v in line.items() if k not in ("score", "passed", "error_type")} == given
        assert line["score"] == (1.0 if line["passed"] else 0.0)
    for name in ("simple_python", "parallel", "irrelevance", "live_relevance", "all"):
        assert name in done.stdout  # the summary table


@pytest.mark.slow
def test_json_summary_per_task_with_duplicates_and_coverage(tmp_path):
    """Each task counts once (its last answer); duplicates are reported; unanswered tasks count as failures
    unless --partial."""
    path = str(write(tmp_path / "r.jsonl", RESPONSES))
    done = bitagent("score", "-t", "bfcl", "-r", path, "--json", "--partial")
    summary = json.loads(done.stdout)
    assert summary["n_responses"] == 8 and summary["n_answered"] == 4
    assert summary["n_scored"] == 4 and summary["n_passed"] == 2 and summary["accuracy"] == 0.5
    assert summary["per_category"]["simple_python"] == {"n": 1, "passed": 0, "accuracy": 0.0, "mean_score": 0.0}
    assert summary["error_types"] == {"irrelevance_error": 1, "missing_required": 1}
    assert summary["duplicate_task_ids"] == {"irrelevance_0": [6, 7], "simple_python_0": [1, 2, 3, 4]}
    assert summary["unknown_task_ids"] == {} and summary["bad_lines"] == []
    assert "answers for 4 of" in done.stderr and "more than once" in done.stderr
    whole = json.loads(bitagent("score", "-t", "bfcl", "-r", path, "--json").stdout)
    assert whole["n_scored"] == whole["n_tasks"] > 3000 and whole["n_passed"] == 2
    assert whole["accuracy"] == pytest.approx(2 / whole["n_tasks"], abs=1e-6)
    assert whole["error_types"]["no_answer"] > 3000


def test_empty_input_is_an_error(tmp_path):
    done = bitagent("score", "-t", "bfcl", "-r", str(write(tmp_path / "r.jsonl", [])))
    assert done.returncode == 1 and "nothing was scored" in done.stderr


def test_unknown_task_ids_and_bad_lines_are_named_and_the_rest_scored(tmp_path):
    rows = [
        RESPONSES[0],
        {"task_id": "simple_python_9999", "response": "[f()]"},
        "{not json",
        {"task_id": "nope", "response": "x"},
        {"response": "no id"},
        {"task_id": "simple_python_0"},
        {"task_id": "simple_python_0", "response": 42},
        {"task_id": "nope", "response": "again"},
        RESPONSES[1],
    ]
    out = tmp_path / "scored.jsonl"
    done = bitagent("score", "-t", "bfcl:simple_python", "-r", str(write(tmp_path / "r.jsonl", rows)), "-o", str(out))
    assert done.returncode == 1
    assert (
        "3 response(s) name task ids that bfcl:simple_python does not have (not scored): "
        "nope (line 4, 8), simple_python_9999 (line 2)" in done.stderr
    )
    for lineno in (3, 5, 6, 7):
        assert f"r.jsonl:{lineno}:" in done.stderr
    assert [line.get("id") for line in read(out)] == ["r1", "r2"]


def test_unreadable_tool_calls_score_as_decode_errors(tmp_path):
    rows = [
        {"task_id": "simple_python_0", "response": {"tool_calls": [{"nameless": True}]}},
        {"task_id": "simple_python_0", "response": {"tool_calls": "not a list"}},
        {"task_id": "simple_python_0", "response": {"content": "[calculate_triangle_area(base=10, height=5)]"}},
    ]
    out = tmp_path / "scored.jsonl"
    assert bitagent("score", "-t", "bfcl", "-r", str(write(tmp_path / "r.jsonl", rows)), "-o", str(out)).returncode == 0
    assert [line["error_type"] for line in read(out)] == ["decode_error", "decode_error", None]
    assert completion_from_response(None)[0].text == ""


def test_hostile_outputs_are_scored_safely(tmp_path):
    marker = tmp_path / "pwned"
    hostile = [
        f"[calculate_triangle_area(base=1 + __import__('os').system('touch {marker}'), height=5)]",
        f"__import__('os').system('touch {marker}')",
        f"[calculate_triangle_area(base=(lambda: __import__('os').system('touch {marker}'))(), height=5)]",
        f'<functions><function name="calculate_triangle_area"><param name="base" type="array">'
        f"__import__('os').system('touch {marker}')</param></function></functions>",
        "[calculate_triangle_area(base=" + "[" * 10_000 + "]" * 10_000 + ", height=5)]",
        "[calculate_triangle_area(base=10, height=5, unit='" + "x" * 70_000 + "')]",
        "[" + "calculate_triangle_area(base=10, height=5), " * 1400 + "]",
        "[calculate_triangle_area(base=" + "1+" * 20_000 + "1, height=5)]",
        "\x00\ud800" * 100,
        '<tool_call>{"name": "calculate_triangle_area", "arguments": ' + "[" * 30_000 + "}</tool_call>",
        '<!DOCTYPE x [<!ENTITY a "aaaa">]><functions><function name="f">&a;</function></functions>',
    ]
    rows = [
        {"task_id": task_id, "response": text}
        for text in hostile
        for task_id in ("simple_python_0", "irrelevance_0", "parallel_0")
    ]
    out = tmp_path / "scored.jsonl"
    done = bitagent("score", "-t", "bfcl", "-r", str(write(tmp_path / "r.jsonl", rows)), "-o", str(out), "--json")
    assert done.returncode == 0, done.stderr
    assert not marker.exists()
    lines = read(out)
    assert len(lines) == len(rows) and not any(line["passed"] for line in lines if line["task_id"] != "irrelevance_0")
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_other_scorers_and_seeded_sources(tmp_path):
    shuffled = load_tasks(get_registry(), "bfcl-shuffle:call", 3, 5)
    rows = [{"task_id": t.id, "response": render_expected(t)} for t in shuffled]
    path = write(tmp_path / "r.jsonl", rows)
    right_seed = json.loads(
        bitagent("score", "-t", "bfcl-shuffle:call", "--seed", "3", "-r", str(path), "--json").stdout
    )
    assert right_seed["n_passed"] == 5
    wrong_seed = bitagent("score", "-t", "bfcl-shuffle:call", "--seed", "4", "-r", str(path), "--json")
    assert wrong_seed.returncode == 1 and json.loads(wrong_seed.stdout)["n_answered"] == 0
    upstream_scorer = json.loads(
        bitagent(
            "score", "-t", "bfcl-shuffle:call", "--seed", "3", "-s", "bitagent", "-r", str(path), "--json", "--partial"
        ).stdout
    )
    assert upstream_scorer["mean_score"] == 1.0
    strict = bitagent(
        "score",
        "-t",
        "bfcl",
        "-s",
        "bfcl-strict",
        "-r",
        str(
            write(
                tmp_path / "s.jsonl",
                [
                    {
                        "task_id": "simple_python_0",
                        "response": "```python\n[calculate_triangle_area(base=10, height=5)]\n```",
                    }
                ],
            )
        ),
        "--json",
        "--partial",
    )
    assert json.loads(strict.stdout)["error_types"] == {"decode_error": 1}
    unknown = bitagent("score", "-t", "bfcl", "-s", "nope", "-r", str(path))
    assert unknown.returncode != 0 and "unknown scorer 'nope'" in unknown.stderr


def test_every_ground_truth_through_the_cli(tmp_path):
    """The whole of live_simple: its ground truths pass, except the two entries no answer can pass."""
    tasks = load_tasks(get_registry(), "bfcl:live_simple", 0, None)
    path = write(tmp_path / "r.jsonl", [{"task_id": t.id, "response": render_expected(t)} for t in tasks])
    summary = json.loads(bitagent("score", "-t", "bfcl:live_simple", "-r", str(path), "--json").stdout)
    assert summary["n_scored"] == 258 and summary["n_passed"] == 256
    assert summary["error_types"] == {"missing_required": 2}
    env_less = {k: v for k, v in os.environ.items() if not k.startswith("BITAGENT_")}
    done = subprocess.run(
        [str(BIN / "bitagent"), "score", "-r", str(path)], capture_output=True, text=True, env=env_less, timeout=60
    )
    assert done.returncode == 2 and "--tasks" in done.stderr


@pytest.mark.slow
def test_score_streams_its_input_and_output(tmp_path):
    """Ten times the lines take about the same memory: lines are read, scored and written one at a time."""
    import tracemalloc

    from bitagent_plugins.runs.score import LineWriter, score_responses

    registry = get_registry()
    tasks = load_tasks(registry, "bfcl:simple_python", 0, 50)
    scorer = registry.get("scorers", "bfcl").factory()
    peaks = []
    for n in (2_000, 20_000):
        rows = [
            {"task_id": tasks[i % 50].id, "response": render_expected(tasks[i % 50]), "note": "x" * 1000}
            for i in range(n)
        ]
        path = write(tmp_path / f"r{n}.jsonl", rows)
        del rows
        writer = LineWriter(tmp_path / f"out{n}.jsonl")
        tracemalloc.start()
        tally = score_responses(path, tasks, scorer, writer)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        writer.close()
        assert tally.n_lines == n and len(tally.per_task) == 50
        assert sum(1 for _ in open(tmp_path / f"out{n}.jsonl")) == n
    assert peaks[1] < 2 * peaks[0] and peaks[1] < 20e6  # holding 20,000 lines of 1 KB would be 20 MB and more
