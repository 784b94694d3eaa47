"""The core loop with real files, driven by small in-test plugins (real plugin modules, not mocks)."""

import asyncio
import json
from pathlib import Path

import pytest

from bitagent_core import BackendOptions, rundir
from bitagent_core.hookspecs import hookimpl
from bitagent_core.model import Completion, Task
from bitagent_core.plugins import PluginRegistry
from bitagent_core.runner import Evaluation, RunConfig, config_for_resume
from tests.conftest import SIMPLE_TASKS

ANSWERS = {
    "discount": "[calculate_discount(original_price=200, discount_percentage=20)]",
    "weather": '[get_weather(city="Paris")]',
    "no-tool": "I cannot help with that using these tools.",
}


class ListSource:
    name, version, description = "list", "1", "the conftest tasks"

    def __init__(self, arg):
        self.arg = arg

    def categories(self):
        return ["single_call", "irrelevance"]

    def tasks(self, seed, limit):
        return iter([Task.from_json(t) for t in SIMPLE_TASKS][:limit])


class ScriptedOptions(BackendOptions):
    fail: str = ""
    stall: str = ""


class ScriptedBackend:
    """Answers from ANSWERS; fails or stalls for the ids named in its options."""

    default_concurrency = 2
    asked: list[str] = []

    def __init__(self, model, options):
        self.fail = set(options.fail.split(",")) - {""}
        self.stall = set(options.stall.split(",")) - {""}
        self.closed = 0

    async def start(self, run_dir):
        pass

    async def complete(self, request):
        question = request.messages[-1].content
        task_id = next(t["id"] for t in SIMPLE_TASKS if t["messages"][-1]["content"] == question)
        ScriptedBackend.asked.append(task_id)
        if task_id in self.fail:
            raise ConnectionError("server went away")
        if task_id in self.stall:
            await asyncio.sleep(30)
        return Completion(text=ANSWERS[task_id], prompt_tokens=10, completion_tokens=5)

    async def close(self):
        self.closed += 1

    def describe(self):
        return {"model": "scripted"}


class InTestPlugin:
    @hookimpl
    def register_task_sources(self, register):
        register("list", ListSource)

    @hookimpl
    def register_backends(self, register):
        register("scripted", ScriptedBackend, options=ScriptedOptions)

    @hookimpl
    def on_sample_scored(self, run, sample):
        self.seen.append(sample["task_id"])

    def __init__(self):
        self.seen = []


@pytest.fixture
def registry():
    reg = PluginRegistry()
    reg.load_entry_points({"bitagent-scorer"})
    plugin = InTestPlugin()
    reg.register_module(plugin, "test")
    reg.test_plugin = plugin
    ScriptedBackend.asked = []
    return reg


def config(tmp_path: Path, **kw) -> RunConfig:
    return RunConfig(tasks="list", backend="scripted", scorer="bitagent", limit=3, output_dir=str(tmp_path), **kw)


def lines(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]


def test_a_run_writes_every_sample_and_the_results(tmp_path, registry):
    results = asyncio.run(Evaluation(config(tmp_path), registry).run())
    run_dir = Path(results["run_dir"])
    assert run_dir.parent == tmp_path and run_dir.name.endswith("_list_default")
    assert results["status"] == "complete"
    assert results["mean_score"] == 1.0
    assert results["per_category"]["irrelevance"] == {"n": 1, "mean_score": 1.0, "passed": 1}
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved["config"]["tasks"] == "list" and saved["model"] == {"model": "scripted"}
    assert saved["scorer"] == {"name": "bitagent", "version": "1"}
    records = {r["task_id"]: r for r in lines(run_dir)}
    assert set(records) == {"discount", "weather", "no-tool"}
    assert records["weather"]["decoded_calls"] == [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    assert records["weather"]["messages"][0]["role"] == "system"
    assert "get_weather" in records["weather"]["messages"][0]["content"]
    assert sorted(registry.test_plugin.seen) == sorted(records)


def test_a_failed_sample_is_recorded_and_resume_retries_only_it(tmp_path, registry):
    first = asyncio.run(Evaluation(config(tmp_path, backend_options={"fail": "weather"}), registry).run())
    assert first["status"] == "complete"
    assert first["n_failed"] == 1 and first["n_scored"] == 2
    assert first["mean_score"] == pytest.approx(2 / 3)
    run_dir = Path(first["run_dir"])
    failed = [r for r in lines(run_dir) if r["status"] == "failed"]
    assert failed[0]["task_id"] == "weather"
    assert "ConnectionError: server went away" in failed[0]["completion"]["error"]

    ScriptedBackend.asked = []
    resumed_config = config_for_resume(run_dir)
    resumed_config.backend_options = {}
    second = asyncio.run(Evaluation(resumed_config, registry, resume_dir=run_dir).run())
    assert ScriptedBackend.asked == ["weather"]
    assert second["mean_score"] == 1.0 and second["n_failed"] == 0
    assert second["run_dir"] == str(run_dir)


def test_resume_survives_a_torn_last_line(tmp_path, registry):
    first = asyncio.run(Evaluation(config(tmp_path), registry).run())
    run_dir = Path(first["run_dir"])
    data = (run_dir / "samples.jsonl").read_bytes()
    (run_dir / "samples.jsonl").write_bytes(data[: len(data) - 25])  # crash mid-write of the last line
    ScriptedBackend.asked = []
    second = asyncio.run(Evaluation(config_for_resume(run_dir), registry, resume_dir=run_dir).run())
    assert len(ScriptedBackend.asked) == 1
    assert second["mean_score"] == 1.0
    assert all(json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines())


def test_a_stalled_request_times_out_and_the_run_goes_on(tmp_path, registry):
    results = asyncio.run(Evaluation(config(tmp_path, backend_options={"stall": "discount"}, timeout_s=0.2),
                                     registry).run())
    record = [r for r in lines(Path(results["run_dir"])) if r["task_id"] == "discount"][0]
    assert record["status"] == "failed" and "timeout" in record["completion"]["error"]
    assert results["n_scored"] == 2


def test_cancelling_keeps_finished_samples_and_marks_the_run_interrupted(tmp_path, registry):
    evaluation = Evaluation(config(tmp_path, backend_options={"stall": "no-tool"}, concurrency=1), registry)

    async def main():
        task = asyncio.ensure_future(evaluation.run())
        while len(evaluation.records) < 2:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    results = rundir.read_results(evaluation.run_dir)
    assert results["status"] == "interrupted"
    assert results["n_scored"] == 2
    assert len(lines(evaluation.run_dir)) == 2
    assert evaluation.backend.closed == 1


def test_tasks_are_never_mutated_by_prompting(registry):
    from bitagent_core.prompting import build_request

    task = Task.from_json(SIMPLE_TASKS[0])
    first = build_request(task)
    second = build_request(task)
    assert first == second  # the second prompt is built like the first, not on top of it
    assert first.messages[0].content.count("Here is a list of functions") == 1
