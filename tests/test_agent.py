"""The agent loop and the safe executor: dispatch rules, hostile trajectories (fuzzed), bounds, and the runner's
multi-turn path (failed requests, --resume, step limits) with in-test plugins (real plugin modules)."""

import asyncio
import json
import sys
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitagent_core import BackendOptions, rundir
from bitagent_core import _agent as agent
from bitagent_core._plugins import PluginRegistry, get_registry
from bitagent_core._runner import Evaluation, RunConfig, load_tasks
from bitagent_core.hookspecs import hookimpl
from bitagent_core.model import (
    Completion,
    EnvironmentSpec,
    Message,
    Score,
    Step,
    Task,
    Tool,
    ToolCall,
    Trajectory,
    Turn,
)
from bitagent_core.toolkit.executor import ERROR_PREFIX, MAX_RESULT_CHARS, Executor, SimpleEnvironment
from bitagent_plugins.bfcl.multi_turn import BfclEnvironment
from bitagent_plugins.bfcl.multi_turn_scorer import score_trajectory
from bitagent_plugins.bfcl.reading import Expression  # a reader's expression kept as text

# --- what execution may touch: Python's audit hooks see every exec, import, process and file open ------------

_AUDIT = {"on": False, "events": []}
_WATCHED = (
    "exec",
    "os.system",
    "subprocess.Popen",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.fork",
    "open",
    "socket.connect",
    "os.remove",
    "os.unlink",
    "import",
    "builtins.input",
    "ctypes.dlopen",
)


def _audit(event, args):
    if _AUDIT["on"] and event.startswith(_WATCHED):
        _AUDIT["events"].append((event, repr(args)[:120]))


sys.addaudithook(_audit)


class Watch:
    """Records the audited events inside the block (imports of already-loaded modules are not events)."""

    def __enter__(self):
        _AUDIT["events"].clear()
        _AUDIT["on"] = True
        return _AUDIT["events"]

    def __exit__(self, *exc):
        _AUDIT["on"] = False


class Counter:
    def __init__(self):
        self.value = 0
        self._secret = "s"

    def add(self, n: int = 1) -> int:
        self.value += n
        return self.value

    def boom(self) -> None:
        raise RuntimeError("it broke")

    @property
    def dangerous(self):  # a property is never read by dispatch
        raise AssertionError("property was read")


def executor(**kwargs):
    counter = Counter()
    return counter, Executor([counter], SimpleEnvironment().format_result, **kwargs)


def test_dispatch_only_to_public_methods_with_literal_arguments():
    counter, run = executor()
    assert run.execute(ToolCall("add", {"n": 2})) == "2"
    assert run.execute(ToolCall("add", {}, (3,))) == "5"  # positional bound by position
    assert counter.value == 5
    refused = [
        (ToolCall("_secret"), "name '_secret' is not defined"),
        (ToolCall("__init__"), "name '__init__' is not defined"),
        (ToolCall("dangerous"), "name 'dangerous' is not defined"),
        (ToolCall("value"), "name 'value' is not defined"),
        (ToolCall("add.__globals__"), "name 'add' is not defined"),
        (ToolCall("eval", {"source": "1"}), "name 'eval' is not defined"),
        (ToolCall("add", {"n": Expression("2 ** 99999999")}), "expressions are never evaluated: 2 ** 99999999"),
        (ToolCall("add", {"n": object()}), "object is not a literal"),
    ]
    for call, message in refused:
        assert run.execute(call) == ERROR_PREFIX + message
    assert counter.value == 5
    # a method's own exception and a wrong signature are error results, worded as Python (and BFCL) word them
    assert run.execute(ToolCall("boom")) == ERROR_PREFIX + "it broke"
    assert run.execute(ToolCall("add", {"m": 1})).startswith(ERROR_PREFIX + "Counter.add() got an unexpected keyword")
    strict = Executor([counter], str, bind_positional=False)
    assert strict.execute(ToolCall("add", {}, (100,))) == "6"  # positional dropped, as BFCL's decoder does
    # an instance attribute cannot shadow the class's method
    counter.add = lambda n=1: "hijacked"
    assert run.execute(ToolCall("add")) == "7"


def test_calls_per_step_and_result_size_are_bounded():
    counter, run = executor(max_calls_per_step=3)
    results = run.execute_step([ToolCall("add")] * 5)
    assert results[:3] == ["1", "2", "3"] and results[3:] == [ERROR_PREFIX + "more than 3 calls in one step"] * 2

    class Big:
        def blob(self):
            return "x" * (MAX_RESULT_CHARS * 3)

    result = Executor([Big()], str).execute(ToolCall("blob"))
    assert len(result) < MAX_RESULT_CHARS + 100 and result.endswith("characters]")


def test_a_call_past_its_deadline_marks_the_environment_broken():
    stop = threading.Event()

    class Slow:
        calls = 0

        def spin(self):
            while not stop.is_set():  # a runaway pure-Python loop (bounded by the test's own stop)
                pass

        def ok(self):
            Slow.calls += 1
            return "ok"

    run = Executor([Slow()], str, call_timeout_s=0.3)
    try:
        # the deadline returns (the loop never ends by itself while the test runs): no wall-clock assertion needed
        assert run.execute(ToolCall("spin")).startswith(ERROR_PREFIX + "environment stopped: a call ran longer")
        assert run.broken and run.execute(ToolCall("ok")).startswith(ERROR_PREFIX + "environment stopped")
        assert Slow.calls == 0  # nothing runs on a broken environment
        assert Executor([Slow()], str).execute(ToolCall("ok")) == "ok"  # other environments are unaffected
    finally:
        stop.set()


HOSTILE = [
    "[__import__('os').system('touch /tmp/bitagent_pwned')]",
    "[exec(\"import os; os.system('id')\")]",
    "[eval('1+1')]",
    "[_load_scenario(scenario={'root': {}})]",
    "[ls.__globals__]",
    "[ls(a=ls.__globals__)]",
    "[getattr(ls, '__globals__')]",
    "[cd(folder=__import__('os').getcwd())]",
    "[cd(folder=open('/etc/passwd').read())]",
    "[cd(folder=(lambda: 1)())]",
    "[cd(folder=[x for x in ().__class__.__base__.__subclasses__()])]",
    "[cd(folder=ls(a=True))]",
    "[cd(folder={'ls': {'a': True}})]",
    "[cd(folder=1 + 1)]",
    "[cd(folder=" + "[" * 500 + "]" * 500 + ")]",
    "[cd(folder='" + "a" * 70_000 + "')]",
    "[" + ", ".join(["pwd()"] * 200) + "]",
    "[power(base=10, exponent=" + "9" * 5000 + ")]",
    "[cd(**{'folder': 'x'})]",
    "[cd(*['x'])]",
    "[os.system('id')]",
    "[GorillaFileSystem.cd(folder='document')]",
    "[breakpoint()]",
]


@pytest.fixture(scope="module")
def bfcl_task():
    return next(t for t in load_tasks(get_registry(), "bfcl:multi_turn_base", 0, None) if t.id == "multi_turn_base_0")


def test_hostile_trajectories_execute_nothing_outside_the_environment(bfcl_task, tmp_path):
    env = BfclEnvironment(bfcl_task.environment.config)
    run = Executor(env.objects(), env.format_result)
    for strict in (True, False):  # modules imported at first use are imported here, outside the watch
        score_trajectory(bfcl_task, Trajectory(((Step(text="[ls()]"),),)), strict=strict)
    env.decode("[ls()]", ())
    with Watch() as events:
        for text in HOSTILE:
            calls, why = env.decode(text, ())
            run.execute_step(calls)
        for strict in (True, False):
            score = score_trajectory(bfcl_task, Trajectory(tuple((Step(text=h),) for h in HOSTILE[:4])), strict=strict)
            assert not score.passed
    assert events == []
    assert not (tmp_path / "bitagent_pwned").exists()
    # what the model is told for each
    calls, _ = env.decode("[__import__(name='os')]", ())
    assert run.execute_step(calls) == [ERROR_PREFIX + "name '__import__' is not defined"]
    calls, _ = env.decode("[cd(folder={'ls': {'a': True}})]", ())
    assert run.execute_step(calls) == [ERROR_PREFIX + "expressions are never evaluated: ls(a=True)"]


FRAGMENTS = st.sampled_from(
    [
        "cd",
        "ls",
        "_load_scenario",
        "__import__",
        "exec",
        "eval",
        "getattr",
        "__globals__",
        "__class__",
        ".",
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        "=",
        ",",
        "'os'",
        "'x'",
        "1",
        "2**99",
        "folder",
        "a",
        "True",
        " ",
        "lambda: 0",
        "*",
        "**",
        ":",
        "\n",
        "`",
        "mkdir",
        "dir_name",
        "rm",
        "file_name",
        "'/'",
        "..",
        "x" * 300,
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.lists(FRAGMENTS, max_size=40).map("".join), max_size=4), min_size=1, max_size=5))
def test_fuzzed_trajectories_stay_inside_and_bounded(bfcl_task, turns):
    trajectory = Trajectory.from_json(turns)
    with Watch() as events:  # bounded: the test's timeout fails a trajectory that runs away
        for strict in (True, False):
            score = score_trajectory(bfcl_task, trajectory, strict=strict)
            assert 0.0 <= score.value <= 1.0
    assert events == []


# --- the runner's multi-turn path ---------------------------------------------------------------------------

ADD = Tool("add", "Add n to the counter.", {"type": "object", "properties": {"n": {"type": "integer"}}})


class CounterTasks:
    name, version, description = "counter", "1", "count up over turns"

    def __init__(self, arg):
        self.turns = int(arg or 2)

    def categories(self):
        return ["count"]

    def tasks(self, seed, limit):
        for i in range(limit or 3):
            yield Task(
                id=f"count-{i}",
                messages=(Message("user", f"task {i}: add 1"),),
                tools=(ADD,),
                category="count",
                environment=EnvironmentSpec("counter", {"start": i}),
                turns=tuple(Turn((Message("user", "add 1 again"),)) for _ in range(self.turns - 1)),
                max_steps_per_turn=3,
                metadata={"want": i + self.turns},
            )


class ScriptedAgentOptions(BackendOptions):
    loop: str = ""
    fail: str = ""
    stall: str = ""


class ScriptedAgent:
    """Calls add(n=1) once per turn, then answers; 'loop' in options: calls forever; 'fail': the second
    request of count-1 raises; 'stall': count-2 never answers."""

    default_concurrency = 2
    requests: list[tuple[str, int]] = []

    def __init__(self, model, options):
        self.options = options

    async def start(self, run_dir):
        pass

    async def complete(self, request):
        ScriptedAgent.requests.append((request.session, len(request.messages)))
        if self.options.fail and request.session == "count-1" and len(request.messages) > 2:
            raise ConnectionError("server went away")
        if self.options.stall and request.session == "count-2":
            await asyncio.sleep(30)
        if self.options.loop or request.messages[-1].role == "user":
            return Completion(text="[add(n=1)]", prompt_tokens=len(request.messages), completion_tokens=4)
        return Completion(text="Done.", prompt_tokens=len(request.messages), completion_tokens=2)

    async def close(self):
        pass

    def describe(self):
        return {"model": "scripted-agent"}


class FinalValue:
    name, version = "final-value", "1"

    def score(self, task, completion):
        return Score(0.0)

    def score_trajectory(self, task, trajectory):
        value = task.environment.config["start"]
        value += sum(c.arguments.get("n", 1) for turn in trajectory.turns for s in turn for c in s.calls)
        ok = value == task.metadata["want"] and trajectory.terminated is None
        return Score(1.0 if ok else 0.0, passed=ok, error_type=None if ok else "wrong_value")


class AgentPlugin:
    @hookimpl
    def register_task_sources(self, register):
        register("counter", CounterTasks)

    @hookimpl
    def register_backends(self, register):
        register("scripted-agent", ScriptedAgent, options=ScriptedAgentOptions)

    @hookimpl
    def register_scorers(self, register):
        register("final-value", FinalValue)

    @hookimpl
    def register_environments(self, register):
        register("counter", lambda config: SimpleEnvironment(Counter()))


def saved_samples(run_dir):
    """The run's samples.jsonl lines, as JSON (the last line per task)."""
    return {task_id: record.to_json() for task_id, record in rundir.read_samples(run_dir).items()}


def registry():
    reg = PluginRegistry()
    reg.register_module(AgentPlugin(), "agent-test")
    return reg


def evaluate(tmp_path, resume=None, **options):
    config = RunConfig(
        tasks="counter:3",
        backend="scripted-agent",
        scorer="final-value",
        limit=3,
        output_dir=str(tmp_path),
        backend_options=options,
        timeout_s=1.0,
    )
    return asyncio.run(Evaluation(config, registry(), resume_dir=resume).run())


def test_every_step_of_every_turn_is_saved(tmp_path):
    ScriptedAgent.requests.clear()
    results = evaluate(tmp_path)
    assert results.status == "complete" and results.n_passed == 3
    samples = saved_samples(tmp_path / next(p.name for p in tmp_path.iterdir()))
    sample = samples["count-0"]
    turns = sample["trajectory"]["turns"]
    assert [[s["text"] for s in steps] for steps in turns] == [["[add(n=1)]", "Done."]] * 3
    assert turns[0][0]["calls"] == [{"name": "add", "arguments": {"n": 1}}] and turns[0][0]["results"] == ["1"]
    assert turns[2][0]["results"] == ["3"]  # state kept across turns
    assert sum(len(steps) for steps in turns) == 6
    assert sample["completion"]["prompt_tokens"] == sum(s["prompt_tokens"] for steps in turns for s in steps)
    json.dumps(sample)  # JSON-serialisable as written
    # each request carries its trajectory (the session a backend keeps on one model instance / slot)
    assert {session for session, _ in ScriptedAgent.requests} == {"count-0", "count-1", "count-2"}
    # a step's prompt extends the previous one: the conversation grows by the new messages only
    sizes = [n for session, n in ScriptedAgent.requests if session == "count-0"]
    assert sizes == [2, 4, 6, 8, 10, 12]  # system+user | +call, result | +answer, next user ...


def test_a_turn_past_its_step_limit_terminates_the_trajectory(tmp_path):
    results = evaluate(tmp_path, loop="1")
    run_dir = next(tmp_path.iterdir())
    sample = saved_samples(run_dir)["count-0"]
    assert sample["status"] == "ok" and not sample["passed"]
    trajectory = sample["trajectory"]
    assert trajectory["terminated"] == "turn 0 ran more than 3 steps"
    assert [len(steps) for steps in trajectory["turns"]] == [4]  # BFCL's count: the 4th step with calls ends it
    assert results.n_passed == 0


@pytest.mark.slow
def test_failed_and_timed_out_trajectories_are_retried_on_resume(tmp_path):
    results = evaluate(tmp_path, fail="1", stall="1")
    run_dir = next(tmp_path.iterdir())
    samples = saved_samples(run_dir)
    assert samples["count-0"]["passed"] and results.n_failed == 2
    failed = samples["count-1"]
    assert failed["status"] == "failed" and "server went away" in failed["completion"]["error"]
    assert failed["trajectory"]["turns"][0][0]["text"] == "[add(n=1)]"  # what was played is kept
    assert "timeout after 1 s" in samples["count-2"]["completion"]["error"]
    resumed = evaluate(tmp_path, resume=run_dir)
    assert resumed.status == "complete" and resumed.n_passed == 3 and resumed.n_failed == 0


def test_an_environment_that_cannot_be_built_fails_its_sample_only(tmp_path):
    class Broken(AgentPlugin):
        @hookimpl
        def register_environments(self, register):
            register("counter", lambda config: 1 / 0)

    reg = PluginRegistry()
    reg.register_module(Broken(), "broken")
    config = RunConfig(
        tasks="counter", backend="scripted-agent", scorer="final-value", limit=2, output_dir=str(tmp_path)
    )
    results = asyncio.run(Evaluation(config, reg).run())
    assert results.status == "complete" and results.n_failed == 2
    sample = saved_samples(next(tmp_path.iterdir()))["count-0"]
    assert sample["error_type"] == "environment_error" and "ZeroDivisionError" in sample["detail"]


def test_a_scorer_without_score_trajectory_is_a_clear_failure(tmp_path):
    reg = registry()
    reg.load_entry_points({"bitagent-scorer"})
    config = RunConfig(tasks="counter", backend="scripted-agent", scorer="bitagent", limit=1, output_dir=str(tmp_path))
    results = asyncio.run(Evaluation(config, reg).run())
    sample = saved_samples(next(tmp_path.iterdir()))["count-0"]
    assert results.n_failed == 1 and sample["error_type"] == "scorer_error"
    assert "cannot score multi-turn tasks" in sample["detail"]


def test_bfcls_math_api_cannot_be_made_to_hold_the_process():
    """A huge integer power or precision would hold the GIL (no deadline can stop it): refused before it runs."""
    env = BfclEnvironment({"involved_classes": ["MathAPI"], "initial_config": {}})
    run = Executor(env.objects(), env.format_result, guard=env.guard)
    texts = [
        "[power(base=10, exponent=1000000000)]",
        "[power(10, 99999999999)]",
        "[logarithm(value=2, base=10, precision=100000000)]",
        "[square_root(number=2, precision=10**9)]",
        "[square_root(number=2, precision=1000000000)]",
    ]
    results = [run.execute_step(env.decode(text, ())[0]) for text in texts]  # refused: nothing is computed
    assert results[0] == [ERROR_PREFIX + "result too large (more than 1000000 bits)"]
    assert results[1] == [ERROR_PREFIX + "result too large (more than 1000000 bits)"]
    assert results[2] == [ERROR_PREFIX + "precision above 10000"]
    assert results[3] == [ERROR_PREFIX + "expressions are never evaluated: 10 ** 9"]
    assert results[4] == [ERROR_PREFIX + "precision above 10000"]
    assert run.execute_step(env.decode("[power(base=2, exponent=10)]", ())[0]) == ['{"result": 1024}']


def test_ctrl_c_between_steps_stops_the_trajectory():
    """An in-process backend answers synchronously, so asyncio.wait_for swallows a cancellation that arrives
    during generation; the loop must still stop before the next step (Ctrl-C, SIGTERM)."""

    class Synchronous:
        asked = 0
        outer = None

        async def complete(self, request):
            Synchronous.asked += 1
            if Synchronous.asked == 2:
                Synchronous.outer.cancel()  # the signal arrives while the model generates
            return Completion(text="[add(n=1)]")

    task = next(CounterTasks("3").tasks(0, 1))

    async def main():
        Synchronous.outer = asyncio.current_task()
        await agent.play(task, Synchronous(), SimpleEnvironment(Counter()))

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(main())
    assert Synchronous.asked == 2
