"""One path per sample: single- and multi-turn tasks share the request builder, the timeout rule, the scorer
guard and the record constructor; re-scoring uses the same guard. Real plugin modules in a hand-built registry,
the scripted backend of bitagent_testing."""

import asyncio
import json

import attrs

from bitagent_core import rundir
from bitagent_core._plugins import PluginRegistry
from bitagent_core._runner import Evaluation, RunConfig, load_tasks
from bitagent_core.hookspecs import hookimpl
from bitagent_core.model import Score
from bitagent_plugins.runs.score import rescore_run, score_responses
from bitagent_testing import ScriptedBackend
from tests.test_agent import Counter, CounterTasks, FinalValue, SimpleEnvironment


class RaisesOnCount1(FinalValue):
    """Scores like FinalValue, but raises on one task (single- and multi-turn)."""

    name = "raises-on-count-1"

    def score(self, task, completion):
        if task.id == "count-1":
            raise KeyError("boom")
        return Score(1.0, passed=True)

    def score_trajectory(self, task, trajectory):
        if task.id == "count-1":
            raise KeyError("boom")
        return super().score_trajectory(task, trajectory)


class SingleTurnTasks(CounterTasks):
    """The counter tasks without their environment: one question, one answer."""

    name = "single"

    def tasks(self, seed, limit):
        for task in super().tasks(seed, limit):
            yield attrs.evolve(task, environment=None, turns=())


def make_registry(backend):
    class Plugin:
        @hookimpl
        def register_task_sources(self, register):
            register("counter", CounterTasks)
            register("single", SingleTurnTasks)

        @hookimpl
        def register_backends(self, register):
            register("scripted", lambda model, options: backend)

        @hookimpl
        def register_scorers(self, register):
            register("final-value", FinalValue)
            register("raises-on-count-1", RaisesOnCount1)

        @hookimpl
        def register_environments(self, register):
            register("counter", lambda config: SimpleEnvironment(Counter()))

    registry = PluginRegistry()
    registry.register_module(Plugin(), "pipeline-test")
    return registry


def run(tmp_path, backend, scorer, **config):
    config = RunConfig(
        **{
            "tasks": "counter:2",
            "backend": "scripted",
            "scorer": scorer,
            "limit": 3,
            "output_dir": str(tmp_path),
            **config,
        }
    )
    results = asyncio.run(Evaluation(config, make_registry(backend)).run())
    return results, rundir.read_samples(next(tmp_path.iterdir()))


def test_a_raising_score_trajectory_fails_its_sample_and_the_run_completes(tmp_path):
    results, samples = run(tmp_path, ScriptedBackend(), "raises-on-count-1")
    assert results.status == "complete" and results.n_tasks == 3 and len(samples) == 3
    failed = samples["count-1"]
    assert failed.status == "failed" and failed.error_type == "scorer_error" and "KeyError: 'boom'" in failed.detail
    assert failed.trajectory is not None and failed.trajectory.turns  # what was played is kept
    assert samples["count-0"].passed and samples["count-2"].passed
    assert results.n_failed == 1 and results.n_scorer_errors == 1 and results.n_passed == 2


def test_a_multi_turn_step_honours_the_timeout(tmp_path):
    # the second step of count-0 would take 60 s; the backend blocks (as in-process llama.cpp does) and only the
    # request's own deadline stops it
    backend = ScriptedBackend(block_s=lambda r: 60.0 if r.session == "count-0" and len(r.messages) > 2 else 0.0)
    results, samples = run(tmp_path, backend, "final-value", timeout_s=0.5)
    assert {r.timeout_s for r in backend.requests} == {0.5}
    timed_out = samples["count-0"]
    assert timed_out.status == "failed" and timed_out.error_type == "timeout"
    assert "deadline (0.5 s)" in (timed_out.completion.error or "") and "turn 0, step 1" in timed_out.detail
    assert [s.text for s in timed_out.trajectory.turns[0]] == ["[add(n=1)]"]
    assert samples["count-1"].passed and samples["count-2"].passed and results.status == "complete"


def test_single_turn_samples_follow_the_same_rules(tmp_path):
    """A single-turn task is the one-step case: its request carries --timeout too, a blocking answer stops at
    it, and a raising ``score`` fails that sample only."""
    backend = ScriptedBackend(block_s=lambda r: 60.0 if "task 2" in r.messages[-1].content else 0.0)
    results, samples = run(tmp_path, backend, "raises-on-count-1", tasks="single", timeout_s=0.5)
    assert {r.timeout_s for r in backend.requests} == {0.5} and {r.session for r in backend.requests} == {None}
    assert samples["count-0"].passed and samples["count-0"].turns is None and samples["count-0"].trajectory is None
    assert samples["count-1"].error_type == "scorer_error"
    assert samples["count-2"].error_type == "timeout" and results.status == "complete" and results.n_failed == 2


def test_rescoring_guards_the_scorer_like_a_run(tmp_path):
    results, _ = run(tmp_path / "runs", ScriptedBackend(), "final-value")
    assert results.n_passed == 3
    rescored, _ = rescore_run(
        results.run_dir, make_registry(ScriptedBackend()), scorer="raises-on-count-1", output_dir=tmp_path / "rescored"
    )
    samples = rundir.read_samples(next((tmp_path / "rescored").iterdir()))
    assert rescored.status == "complete" and rescored.n_scorer_errors == 1 and rescored.n_passed == 2
    assert samples["count-1"].error_type == "scorer_error" and samples["count-0"].passed


def test_scoring_a_responses_file_guards_the_scorer_too(tmp_path):
    responses = tmp_path / "responses.jsonl"
    responses.write_text(
        "".join(json.dumps({"task_id": f"count-{i}", "response": "[add(n=1)]"}) + "\n" for i in range(3))
    )
    registry = make_registry(ScriptedBackend())
    tasks = load_tasks(registry, "single", 0, 3)
    tally = score_responses(responses, tasks, RaisesOnCount1())
    assert tally.per_task["count-1"] == (0.0, False, "scorer_error")
    assert tally.per_task["count-0"][1] and tally.per_task["count-2"][1]  # the other lines are scored
