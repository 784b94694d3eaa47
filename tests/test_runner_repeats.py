"""``--repeats k``: each task runs k times, each sample records its repeat index, ``--resume`` runs only the
missing repeats, and the summary reports pass@k and pass^k (tau2-bench, MCPMark)."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from bitagent_core._plugins import PluginRegistry
from bitagent_core._results_view import render
from bitagent_core._runner import Evaluation, ResumeConflict, RunConfig, config_for_resume
from bitagent_core.hookspecs import hookimpl
from bitagent_core.model import Completion
from bitagent_core.records import RunResults, SampleRecord, pass_at_k, pass_hat_k, summarize_repeats
from tests.conftest import SIMPLE_TASKS
from tests.test_runner import InTestPlugin

RIGHT = {
    "discount": "[calculate_discount(original_price=200, discount_percentage=20)]",
    "weather": '[get_weather(city="Paris")]',
    "no-tool": "[get_weather(city='Paris')]",  # a call where none is right: never passes
}


class FlakyBackend:
    """``discount`` always right, ``weather`` right on its first request only, ``no-tool`` never."""

    default_concurrency = 2
    asked: list[str] = []

    def __init__(self, model, options):
        pass

    async def start(self, run_dir):
        pass

    async def complete(self, request):
        question = request.messages[-1].content
        task_id = next(t["id"] for t in SIMPLE_TASKS if t["messages"][-1]["content"] == question)
        FlakyBackend.asked.append(task_id)
        if task_id == "weather" and FlakyBackend.asked.count("weather") > 1:
            return Completion(text='[get_weather(city="Rome")]')
        return Completion(text=RIGHT[task_id])

    async def close(self):
        pass

    def describe(self):
        return {"model": "flaky"}


class RepeatsPlugin(InTestPlugin):
    """test_runner's plugin (the ``list`` source), with the flaky backend."""

    @hookimpl
    def register_backends(self, register):
        register("flaky", FlakyBackend)


@pytest.fixture
def registry():
    reg = PluginRegistry()
    reg.load_entry_points({"bitagent-scorer"})
    reg.register_module(RepeatsPlugin(), "test")
    FlakyBackend.asked = []
    return reg


def test_pass_at_k_and_pass_hat_k_follow_their_definitions():
    assert pass_at_k(4, 2, 2) == pytest.approx(1 - 1 / 6) and pass_hat_k(4, 2, 2) == pytest.approx(1 / 6)
    assert pass_at_k(5, 0, 3) == 0.0 and pass_hat_k(5, 5, 3) == 1.0
    assert pass_at_k(5, 4, 2) == 1.0  # every pair holds a correct sample
    for n, c in ((3, 1), (4, 3), (8, 5)):
        assert pass_at_k(n, c, 1) == pytest.approx(c / n) == pass_hat_k(n, c, 1)
        assert pass_hat_k(n, c, n) == float(c == n)
        assert pass_hat_k(n, c, 2) == pytest.approx(math.comb(c, 2) / math.comb(n, 2))


def test_summarize_repeats_counts_missing_and_failed_samples_as_not_passed():
    def record(task_id: str, repeat: int, passed: bool, status: str = "ok") -> SampleRecord:
        return SampleRecord(task_id=task_id, status=status, passed=passed, score=float(passed), repeat=repeat)

    records = {
        r.key: r
        for r in (
            record("a", 0, True),
            record("a", 1, True),
            record("b", 0, True),
            record("b", 1, True, status="failed"),
        )
    }
    summary = summarize_repeats([("a", "x"), ("b", "x"), ("c", "y")], records, 2)
    assert summary["per_category"]["x"] == {"tasks": 2, "pass@1": 0.75, "pass^1": 0.75, "pass@2": 1.0, "pass^2": 0.5}
    assert summary["per_category"]["y"]["pass@2"] == 0.0 and summary["all"]["tasks"] == 3


def test_each_task_runs_k_times_and_the_summary_reports_pass_at_k_and_pass_hat_k(tmp_path, registry):
    config = RunConfig(tasks="list", backend="flaky", scorer="bitagent", limit=3, output_dir=str(tmp_path), repeats=3)
    results = asyncio.run(Evaluation(config, registry).run())
    run_dir = Path(results.run_dir)
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert sorted((s["task_id"], s["repeat"]) for s in samples) == [
        (t, r) for t in ("discount", "no-tool", "weather") for r in range(3)
    ]
    assert results.n_tasks == 9 and results.n_passed == 4  # discount 3, weather 1
    pass_k = json.loads((run_dir / "results.json").read_text())["pass_k"]
    assert pass_k["k"] == 3
    assert pass_k["per_category"]["single_call"] == pytest.approx(
        {
            "tasks": 2,
            "pass@1": (1 + 1 / 3) / 2,
            "pass^1": (1 + 1 / 3) / 2,
            "pass@2": (1 + 2 / 3) / 2,
            "pass^2": 0.5,
            "pass@3": 1.0,
            "pass^3": 0.5,
        }
    )
    assert pass_k["per_category"]["irrelevance"]["pass@3"] == 0.0
    assert pass_k["all"]["pass^3"] == pytest.approx(1 / 3) and pass_k["all"]["pass@3"] == pytest.approx(2 / 3)
    assert RunResults.from_json(json.loads((run_dir / "results.json").read_text())).extra["pass_k"] == pass_k
    table = render(results)
    assert "pass@3 0.667  pass^3 0.333" in table and "single_call: pass@1 0.667" in table
    # resume: only the repeats missing from samples.jsonl run again; k cannot change
    kept = [line for line in (run_dir / "samples.jsonl").read_text().splitlines() if json.loads(line)["repeat"] != 2]
    (run_dir / "samples.jsonl").write_text("\n".join(kept) + "\n")
    FlakyBackend.asked = []
    resumed = asyncio.run(Evaluation(config_for_resume(run_dir)[0], registry, resume_dir=run_dir).run())
    assert sorted(FlakyBackend.asked) == ["discount", "no-tool", "weather"]
    assert resumed.n_tasks == 9 and resumed.extra["pass_k"]["per_category"]["single_call"]["pass@3"] == 1.0
    with pytest.raises(ResumeConflict, match="repeats"):
        config_for_resume(run_dir, {"repeats": 2})


def test_without_repeats_samples_carry_no_repeat_index(tmp_path, registry):
    config = RunConfig(tasks="list", backend="flaky", scorer="bitagent", limit=3, output_dir=str(tmp_path))
    results = asyncio.run(Evaluation(config, registry).run())
    samples = [json.loads(line) for line in (Path(results.run_dir) / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 3 and not any("repeat" in s for s in samples) and "pass_k" not in results.extra


@pytest.mark.model
def test_repeats_with_the_embedded_model(tmp_path, embedded_model):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bitagent_core",
            "evaluate",
            "--tasks",
            "bitagent",
            "--limit",
            "2",
            "--repeats",
            "2",
            "--temperature",
            "0.8",
            "--seed",
            "4",
            "-B",
            "n_threads=1",
            "-o",
            str(tmp_path),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    results = json.loads(out.stdout)
    assert results["n_tasks"] == 4 and results["config"]["repeats"] == 2
    samples = [json.loads(line) for line in (Path(results["run_dir"]) / "samples.jsonl").read_text().splitlines()]
    per_task: dict[str, list[bool]] = {}
    for sample in samples:
        per_task.setdefault(sample["task_id"], []).append(sample["passed"])
    assert sorted(s["repeat"] for s in samples) == [0, 0, 1, 1] and len(per_task) == 2
    expected_at = sum(any(p) for p in per_task.values()) / 2
    expected_hat = sum(all(p) for p in per_task.values()) / 2
    assert results["pass_k"]["all"]["pass@2"] == pytest.approx(expected_at)
    assert results["pass_k"]["all"]["pass^2"] == pytest.approx(expected_hat)
