"""The core loop with real files, driven by small in-test plugins (real plugin modules, not mocks)."""

import asyncio
import json
from pathlib import Path

import pytest

from bitagent_core import BackendOptions, rundir
from bitagent_core._plugins import PluginRegistry
from bitagent_core._runner import (
    Evaluation,
    ResumeConflict,
    RunConfig,
    RunObserver,
    StartupError,
    config_for_resume,
)
from bitagent_core.hookspecs import hookimpl
from bitagent_core.model import Completion, Task
from bitagent_core.records import RunResults, SampleRecord
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
    fail_start: str = ""


class ScriptedBackend:
    """Answers from ANSWERS; fails or stalls for the ids named in its options."""

    default_concurrency = 2
    asked: list[str] = []

    def __init__(self, model, options):
        self.fail = set(options.fail.split(",")) - {""}
        self.stall = set(options.stall.split(",")) - {""}
        self.closed = 0
        self.fail_start = options.fail_start == "1"

    async def start(self, run_dir):
        if self.fail_start:
            raise OSError("no such model file: /nowhere/model.gguf")

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
        self.seen.append(sample.task_id)

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
    return RunConfig(
        **{"tasks": "list", "backend": "scripted", "scorer": "bitagent", "limit": 3, "output_dir": str(tmp_path), **kw}
    )


def lines(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]


def test_a_run_writes_every_sample_and_the_results(tmp_path, registry):
    results = asyncio.run(Evaluation(config(tmp_path), registry).run())
    assert isinstance(results, RunResults)
    run_dir = Path(results.run_dir)
    assert run_dir.parent == tmp_path.resolve() and run_dir.name.endswith("_list_default")
    assert results.status == "complete"
    assert results.mean_score == 1.0
    row = results.per_category["irrelevance"]
    assert (row.n, row.mean_score, row.passed) == (1, 1.0, 1) and row.ci_low < 1.0 == row.ci_high
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved["schema_version"] == "1.0" and len(saved["task_digest"]) == 64
    assert RunResults.from_json(saved) == results
    assert saved["config"]["tasks"] == "list" and saved["model"] == {"model": "scripted"}
    assert saved["scorer"] == {"name": "bitagent", "version": "1"}
    records = {r["task_id"]: r for r in lines(run_dir)}
    assert set(records) == {"discount", "weather", "no-tool"}
    assert records["weather"]["decoded_calls"] == [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    assert records["weather"]["messages"][0]["role"] == "system"
    assert "get_weather" in records["weather"]["messages"][0]["content"]
    assert sorted(registry.test_plugin.seen) == sorted(records)
    assert all(SampleRecord.from_json(r).to_json() == r for r in records.values())  # lines round-trip


def test_a_failed_sample_is_recorded_and_resume_retries_only_it(tmp_path, registry):
    first = asyncio.run(Evaluation(config(tmp_path, backend_options={"fail": "weather"}), registry).run())
    assert first.status == "complete"
    assert first.n_failed == 1 and first.n_scored == 2
    assert first.mean_score == pytest.approx(2 / 3)
    assert first.top_errors == {"ConnectionError: server went away": 1}
    run_dir = Path(first.run_dir)
    failed = [r for r in lines(run_dir) if r["status"] == "failed"]
    assert failed[0]["task_id"] == "weather"
    assert "ConnectionError: server went away" in failed[0]["completion"]["error"]

    ScriptedBackend.asked = []
    resumed_config, changed = config_for_resume(run_dir, {"backend_options": {"fail": ""}, "timeout_s": 9.0})
    assert changed == {"backend_options": [{"fail": "weather"}, {"fail": ""}], "timeout_s": [300.0, 9.0]}
    second = asyncio.run(Evaluation(resumed_config, registry, resume_dir=run_dir, resume_changes=changed).run())
    assert ScriptedBackend.asked == ["weather"]
    assert second.mean_score == 1.0 and second.n_failed == 0
    assert second.run_dir == str(run_dir.resolve())
    assert second.config["timeout_s"] == 9.0 and second.resumes[0]["changed"] == changed


def test_resume_survives_a_torn_last_line(tmp_path, registry):
    first = asyncio.run(Evaluation(config(tmp_path), registry).run())
    run_dir = Path(first.run_dir)
    data = (run_dir / "samples.jsonl").read_bytes()
    (run_dir / "samples.jsonl").write_bytes(data[: len(data) - 25])  # crash mid-write of the last line
    ScriptedBackend.asked = []
    second = asyncio.run(Evaluation(config_for_resume(run_dir)[0], registry, resume_dir=run_dir).run())
    assert len(ScriptedBackend.asked) == 1
    assert second.mean_score == 1.0
    assert all(json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines())


def test_a_stalled_request_times_out_and_the_run_goes_on(tmp_path, registry):
    results = asyncio.run(
        Evaluation(config(tmp_path, backend_options={"stall": "discount"}, timeout_s=0.2), registry).run()
    )
    record = [r for r in lines(Path(results.run_dir)) if r["task_id"] == "discount"][0]
    assert record["status"] == "failed" and "timeout" in record["completion"]["error"]
    assert record["error_type"] == "timeout"
    assert results.n_scored == 2


def test_cancelling_keeps_finished_samples_and_marks_the_run_interrupted(tmp_path, registry):
    evaluation = Evaluation(config(tmp_path, backend_options={"stall": "no-tool"}, concurrency=1), registry)

    async def main():
        task = asyncio.ensure_future(evaluation.run())
        while len(evaluation.records) < 2 and not task.done():  # a run that ended early fails below, never hangs
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    results = rundir.read_results(evaluation.run_dir)
    assert results.status == "interrupted"
    assert results.n_scored == 2
    assert len(lines(evaluation.run_dir)) == 2
    assert evaluation.backend.closed == 1


def test_tasks_are_never_mutated_by_prompting(registry):
    from bitagent_core.toolkit.prompting import build_request

    task = Task.from_json(SIMPLE_TASKS[0])
    first = build_request(task)
    second = build_request(task)
    assert first == second  # the second prompt is built like the first, not on top of it
    assert first.messages[0].content.count("Here is a list of functions") == 1


def test_request_stop_finishes_the_request_in_flight_and_starts_no_more(tmp_path, registry):
    class StopAfterFirst(RunObserver):
        def sample(self, record):
            evaluation.request_stop()

    evaluation = Evaluation(config(tmp_path, concurrency=1), registry, observer=StopAfterFirst())
    results = asyncio.run(evaluation.run())
    assert results.status == "interrupted" and results.n_scored == 1 and len(ScriptedBackend.asked) == 1
    assert len(lines(evaluation.run_dir)) == 1


def test_a_backend_that_cannot_start_marks_the_run_failed_not_interrupted(tmp_path, registry):
    evaluation = Evaluation(config(tmp_path, backend_options={"fail_start": "1"}), registry)
    with pytest.raises(StartupError, match="no such model file"):
        asyncio.run(evaluation.run())
    results = rundir.read_results(evaluation.run_dir)
    assert results.status == "failed" and "no such model file" in results.error
    assert evaluation.backend.closed == 1 and ScriptedBackend.asked == []


def test_resume_refuses_flags_that_change_the_tasks_or_the_scoring(tmp_path, registry):
    first = asyncio.run(Evaluation(config(tmp_path), registry).run())
    run_dir = Path(first.run_dir)
    for flags in (
        {"limit": 2},
        {"seed": 1},
        {"tasks": "other"},
        {"scorer": "bfcl"},
        {"model": "x.gguf"},
        {"temperature": 0.7},
    ):
        with pytest.raises(ResumeConflict, match=next(iter(flags))):
            config_for_resume(run_dir, flags)
    same, changed = config_for_resume(run_dir, {"limit": 3, "seed": 0, "concurrency": 1})
    assert changed == {"concurrency": [None, 1]} and same.limit == 3


def test_resume_refuses_a_task_list_that_changed_and_a_run_in_use(tmp_path, registry):
    first = asyncio.run(Evaluation(config(tmp_path, limit=2), registry).run())
    run_dir = Path(first.run_dir)
    results = json.loads((run_dir / "results.json").read_text())
    results["task_digest"] = "0" * 64
    (run_dir / "results.json").write_text(json.dumps(results))
    with pytest.raises(ResumeConflict, match="no longer the ones"):
        Evaluation(config_for_resume(run_dir)[0], registry, resume_dir=run_dir).prepare()
    held = rundir.lock(run_dir)
    try:
        with pytest.raises(rundir.RunDirLocked, match="in use"):
            Evaluation(config_for_resume(run_dir)[0], registry, resume_dir=run_dir).prepare()
    finally:
        held.release()


def test_several_task_specs_and_absolute_paths(tmp_path, registry, monkeypatch):
    monkeypatch.chdir(tmp_path)
    results = asyncio.run(Evaluation(config(tmp_path, limit=1, output_dir="out"), registry).run())
    assert Path(results.config["output_dir"]).is_absolute()
    with pytest.raises(ValueError, match="produced the task id 'discount' and 'list' too"):
        Evaluation(config(tmp_path, tasks="list,list:again"), registry).prepare()
    assert results.sources == {"list": {"version": "1", "taken": 1, "available": 3}}  # the version is recorded


def test_a_sample_that_cannot_be_written_ends_the_run_failed_with_whole_lines(tmp_path, registry):
    """samples.jsonl cannot grow past its first line (RLIMIT_FSIZE in a child process): the run stops with
    the error in results.json, and the file holds whole lines only."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import asyncio, resource, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
        from tests.test_runner import ScriptedBackend, InTestPlugin, config
        from bitagent_core._plugins import PluginRegistry
        from bitagent_core._runner import Evaluation, RunIOError
        from pathlib import Path
        reg = PluginRegistry(); reg.load_entry_points({{"bitagent-scorer"}}); reg.register_module(InTestPlugin(), "t")
        evaluation = Evaluation(config(Path({str(tmp_path)!r}), concurrency=1), reg)
        evaluation.prepare = (lambda prepare: lambda: (prepare(), resource.setrlimit(resource.RLIMIT_FSIZE,
                              (4000, 4000)))[0])(evaluation.prepare)
        try:
            asyncio.run(evaluation.run())
        except RunIOError as exc:
            print("RunIOError:", exc.strerror)
            sys.exit(5)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 5, done.stderr
    assert "cannot write" in done.stdout and "Traceback" not in done.stderr
    run_dir = next(tmp_path.glob("*_list_default"))
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "failed" and "cannot write" in results["error"]
    kept = lines(run_dir)  # every line whole
    assert results["n_scored"] == len(kept) < 3


def test_absolute_paths_keep_symlinks(tmp_path, monkeypatch):
    """A Hugging Face cache's model.gguf is a symlink to a blob without the suffix: keep the link's name."""
    blob = tmp_path / "blobs" / "b6d945"
    blob.parent.mkdir()
    blob.write_bytes(b"GGUF")
    (tmp_path / "snapshot").mkdir()
    (tmp_path / "snapshot" / "model.gguf").symlink_to(blob)
    monkeypatch.chdir(tmp_path)
    config = RunConfig(model="snapshot/model.gguf", tasks="jsonl:snapshot/model.gguf,bitagent").with_absolute_paths()
    assert config.model == str(tmp_path / "snapshot" / "model.gguf")
    assert config.tasks == f"jsonl:{tmp_path / 'snapshot' / 'model.gguf'},bitagent"
    assert RunConfig(model="acme/model").with_absolute_paths().model == "acme/model"  # a hub id stays


def test_several_specs_and_commas_inside_a_source_argument():
    from bitagent_core._runner import split_specs

    known = {"bfcl", "bitagent", "jsonl"}
    assert split_specs("bfcl:live_simple,live_multiple, bitagent", known) == [
        "bfcl:live_simple,live_multiple",
        "bitagent",
    ]
    assert split_specs("bitagent,bfcl:simple_python", known) == ["bitagent", "bfcl:simple_python"]
    assert split_specs("jsonl:a.jsonl,jsonl:b.jsonl", known) == ["jsonl:a.jsonl", "jsonl:b.jsonl"]
