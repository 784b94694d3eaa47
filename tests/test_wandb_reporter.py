"""The wandb reporter with the real wandb package in its offline mode (``WANDB_MODE=offline``): runs are
written to a local ``.wandb`` file; nothing leaves the machine. Off unless ``BITAGENT_WANDB=1``."""

from __future__ import annotations

from pathlib import Path

import pytest

from bitagent_core._runner import RunConfig, RunInfo
from bitagent_core.records import RunResults, SampleRecord
from bitagent_plugins.reporters import wandb_reporter


def _sample(i: int, score: float) -> SampleRecord:
    return SampleRecord.from_json(
        {
            "task_id": f"t{i}",
            "status": "ok",
            "score": score,
            "passed": score == 1.0,
            "completion": {"latency_s": 0.25, "completion_tokens": 12},
        }
    )


def _results(run_dir: Path) -> RunResults:
    return RunResults.from_json(
        {
            "status": "complete",
            "mean_score": 0.75,
            "n_tasks": 2,
            "n_scored": 2,
            "n_failed": 0,
            "n_passed": 1,
            "duration_s": 1.5,
            "mean_latency_s": 0.25,
            "prompt_tokens": 100,
            "completion_tokens": 24,
            "per_category": {"single_call": {"n": 2, "mean_score": 0.75, "passed": 1}},
            "model": {"model": "acme/reporter-test-model"},
            "run_dir": str(run_dir),
        }
    )


@pytest.fixture
def offline(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("BITAGENT_WANDB_DIR", str(tmp_path / "wandb-dir"))
    monkeypatch.setenv("BITAGENT_WANDB_PROJECT", "bitagent-tests")
    (tmp_path / "wandb-dir").mkdir()
    return tmp_path / "wandb-dir"


def _run(tmp_path: Path) -> RunInfo:
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    return RunInfo(run_dir, RunConfig(tasks="competition:bitagent", backend="llama-cpp", model="acme/x", seed=4), 2)


def test_off_unless_asked(tmp_path, offline, monkeypatch):
    monkeypatch.delenv("BITAGENT_WANDB", raising=False)
    run = _run(tmp_path)
    wandb_reporter.on_run_start(run=run)
    wandb_reporter.on_sample_scored(run=run, sample=_sample(0, 1.0))
    wandb_reporter.on_run_end(run=run, results=_results(run.run_dir))
    assert list(offline.iterdir()) == []


@pytest.mark.slow
def test_a_run_is_written_to_an_offline_wandb_run(tmp_path, offline, monkeypatch):
    monkeypatch.setenv("BITAGENT_WANDB", "1")
    run = _run(tmp_path)
    wandb_reporter.on_run_start(run=run)
    wandb_reporter.on_sample_scored(run=run, sample=_sample(0, 1.0))
    wandb_reporter.on_sample_scored(run=run, sample=_sample(1, 0.5))
    wandb_reporter.on_run_end(run=run, results=_results(run.run_dir))
    (record,) = list(offline.glob("wandb/offline-run-*/run-*.wandb"))
    data = record.read_bytes()
    # the transaction log holds protobuf records: keys and JSON-encoded values appear as plain strings
    for needle in (
        b"bitagent-tests",
        b"competition:bitagent",
        b"llama-cpp",
        b"mean_score_so_far",
        b"0.75",
        b"mean_score/single_call",
        b"acme/reporter-test-model",
        b"completion_tokens",
    ):
        assert needle in data, needle
    assert wandb_reporter._runs == {}


def test_a_wandb_failure_never_breaks_the_run(tmp_path, offline, monkeypatch):
    import wandb

    monkeypatch.setenv("BITAGENT_WANDB", "1")

    def refuse(**kwargs):
        raise wandb.errors.UsageError("no API key")

    monkeypatch.setattr(wandb, "init", refuse)
    run = _run(tmp_path)
    wandb_reporter.on_run_start(run=run)  # logged, not raised
    wandb_reporter.on_sample_scored(run=run, sample=_sample(0, 1.0))
    wandb_reporter.on_run_end(run=run, results=_results(run.run_dir))
    assert wandb_reporter._runs == {}


def test_a_finished_round_reports_the_miners_feedback_table(tmp_path, offline, monkeypatch):
    monkeypatch.setenv("BITAGENT_WANDB", "1")
    feedback = [
        {
            "uid": 3,
            "hotkey": "5Hk",
            "model": "acme/m@" + "a" * 40,
            "credited": True,
            "score": 0.5,
            "tasks": [
                {
                    "task_id": "t1",
                    "category": "single_call",
                    "status": "ok",
                    "score": 1.0,
                    "answer": "[get_weather(city='Paris')]",
                    "expected_calls": [{"name": "get_weather"}],
                }
            ],
        }
    ]
    wandb_reporter.on_round_end(round={"id": 7, "competition": "bitagent"}, feedback=feedback)
    (record,) = list(offline.glob("wandb/offline-run-*/run-*.wandb"))
    assert b"round-7" in record.read_bytes()
    tables = list(offline.glob("wandb/offline-run-*/files/media/table/*.table.json"))
    assert len(tables) == 1
    text = tables[0].read_text()
    assert "get_weather(city='Paris')" in text and "5Hk" in text and '"task_id"' in text
