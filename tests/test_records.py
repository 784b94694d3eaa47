"""The typed records of a run directory: round trips, open to new fields, versioned; the statistics; the
progress lines."""

from __future__ import annotations

import io

import pytest

from bitagent_core.records import RunResults, SampleRecord, SchemaError, confidence_interval, summarize

LINE = {
    "task_id": "t1",
    "source": "bfcl",
    "category": "simple",
    "status": "ok",
    "score": 0.5,
    "passed": False,
    "error_type": "value_error",
    "breakdown": {"name": 3.0},
    "decoded_calls": [{"name": "f", "arguments": {"a": 1}}],
    "detail": "a: 1 is not 2",
    "completion": {
        "text": "[f(a=1)]",
        "tool_calls": [],
        "prompt_tokens": 10,
        "completion_tokens": 4,
        "latency_s": 0.25,
        "finish_reason": "stop",
        "error": None,
    },
    "messages": [{"role": "user", "content": "q"}],
    "tools": [{"name": "f", "description": "", "parameters": {"type": "object"}}],
    "expected_calls": [{"f": {"a": [2]}}],
}


def test_a_sample_line_round_trips_and_keeps_fields_it_does_not_know():
    line = {
        **LINE,
        "schema_version": "1.0",
        "turns": [{"step": 0, "text": "x", "calls": [], "results": []}],
        "my_plugin": {"judge": "ok"},
    }
    record = SampleRecord.from_json(line)
    assert record.turns == ({"step": 0, "text": "x", "calls": [], "results": []},)
    assert record.extra == {"my_plugin": {"judge": "ok"}}
    assert record.to_json() == line


def test_lines_from_before_the_schema_read_as_1_0_and_a_newer_major_is_refused():
    old = SampleRecord.from_json(LINE)  # no schema_version
    assert old.schema_version == "1.0" and old.completion.latency_s == 0.25 and old.decoded_calls[0].name == "f"
    assert SampleRecord.from_json({**LINE, "schema_version": "1.7"}).schema_version == "1.7"  # a newer minor reads
    with pytest.raises(SchemaError, match="newer than this bitagent reads"):
        SampleRecord.from_json({**LINE, "schema_version": "2.0"})
    with pytest.raises(SchemaError, match="newer"):
        RunResults.from_json({"status": "complete", "schema_version": "2.0"})
    with pytest.raises(SchemaError, match="task_id"):
        SampleRecord.from_json({"score": 1})


def test_results_round_trip():
    data = {
        "status": "complete",
        "run_dir": "/r",
        "config": {"tasks": "x"},
        "mean_score": 0.5,
        "per_category": {"a": {"n": 2, "mean_score": 0.5, "passed": 1, "ci_low": 0.1, "ci_high": 0.9}},
        "future_field": [1],
    }
    results = RunResults.from_json(data)
    assert results.extra == {"future_field": [1]} and results.per_category["a"].passed == 1
    assert RunResults.from_json(results.to_json()) == results


def test_confidence_intervals_and_summary():
    assert confidence_interval([]) == (0.0, 1.0)
    low, high = confidence_interval([1.0] * 10)
    assert high == 1.0 and 0.65 < low < 0.75  # Wilson: 10 of 10 is not certainty
    low, high = confidence_interval([0.5, 0.7, 0.6, 0.4])
    assert low < 0.55 < high
    ok = SampleRecord.from_json(LINE)
    failed = SampleRecord.from_json(
        {**LINE, "task_id": "t2", "status": "failed", "score": 0.0, "completion": {"error": "HTTP 400: too long"}}
    )
    summary = summarize([("t1", "a"), ("t2", "a"), ("t3", "b")], {"t1": ok, "t2": failed})
    assert summary["n_tasks"] == 3 and summary["mean_score"] == pytest.approx(0.5 / 3, abs=1e-6)
    assert summary["n_failed"] == 1 and summary["top_errors"] == {"HTTP 400: too long": 1}
    partial = summarize([("t1", "a"), ("t2", "a"), ("t3", "b")], {"t1": ok, "t2": failed}, partial=True)
    assert partial["n_tasks"] == 2 and list(partial["per_category"]) == ["a"]


def test_plain_progress_lines_count_earlier_samples_in_the_mean():
    from bitagent_core._progress import ConsoleProgress
    from bitagent_core._runner import RunConfig

    out = io.StringIO()
    progress = ConsoleProgress(out, interval_s=0.0, tty=False)
    progress.header(
        RunConfig(tasks="bfcl:simple_python", limit=2), 2, {"bfcl:simple_python": {"taken": 2, "available": 400}}
    )
    done = SampleRecord.from_json({**LINE, "score": 1.0})
    progress.start(3, [done])
    progress.sample(SampleRecord.from_json({**LINE, "task_id": "t2", "score": 0.0}))
    progress.sample(SampleRecord.from_json({**LINE, "task_id": "t3", "score": 0.5}))
    progress.stop()
    text = out.getvalue()
    assert "bfcl:simple_python (2 of 400 tasks)" in text and "limit 2" in text
    assert "resuming: 1 of 3 samples already done (mean 1.000)" in text
    assert "[2/3] 67% mean 0.500" in text and "[3/3] 100% mean 0.500" in text and "ETA" in text
