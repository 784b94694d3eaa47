"""The plugin contract: one public surface, versioned and checked loading, typed options from every source,
and plugin boundaries that never lose work. Plugins here are real modules (in-process or as throwaway
distributions on PYTHONPATH, loaded through entry points)."""

import ast
import asyncio
import json
import logging
from pathlib import Path

import pytest

import bitagent_core as ba
import bitagent_testing as testing
from bitagent_core import toolkit
from bitagent_core._plugins import PluginLoadError, PluginSelectionError
from tests.test_plugins import make_dist, run_cli

ROOT = Path(__file__).resolve().parent.parent


# --- one public surface ----------------------------------------------------------------------------------


def test_every_public_name_exists():
    for name in ba.__all__:
        assert hasattr(ba, name), name


def _imports(path: Path) -> list[str]:
    modules = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.append(node.module)
        elif isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
    return modules


@pytest.mark.parametrize(
    "path",
    sorted((ROOT / "bitagent_plugins").rglob("*.py"))
    + sorted((ROOT / "bitagent_testing").rglob("*.py"))
    + sorted((ROOT / "examples").rglob("*.py")),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_plugins_import_only_the_public_surface_and_never_each_other(path):
    parts = path.relative_to(ROOT).parts
    own = parts[1] if parts[0] == "bitagent_plugins" and len(parts) > 2 else None
    for module in _imports(path):
        if module.startswith("bitagent_core"):
            assert module in ("bitagent_core", "bitagent_core.toolkit"), f"{path}: imports {module}"
        if module.startswith("bitagent_testing"):  # the conformance kit is for tests, not for a plugin's code
            assert parts[0] != "bitagent_plugins", f"{path}: imports the conformance kit"
        if module.startswith("bitagent_plugins"):
            assert own is not None and module.split(".")[1] == own, f"{path}: imports another plugin: {module}"


def test_the_core_never_imports_a_plugin():
    for path in (ROOT / "bitagent_core").rglob("*.py"):
        assert not [m for m in _imports(path) if m.startswith("bitagent_plugins")], path


def test_the_core_does_not_probe_plugins_with_getattr():
    import re

    for path in (ROOT / "bitagent_core").glob("*.py"):
        for call in re.findall(r"getattr\(([^)]*)\)", path.read_text()):
            for member in ("OPTION_TYPES", "default_concurrency", "version", "validate", "describe", "categories"):
                assert member not in call, f"{path.name}: getattr({call})"


def test_py_typed_ships_with_both_packages():
    assert (ROOT / "bitagent_core" / "py.typed").exists() and (ROOT / "bitagent_plugins" / "py.typed").exists()


# --- loading: API version, hook names, BITAGENT_PLUGINS ---------------------------------------------------

SCORER_PLUGIN = """
from bitagent_core import Score, hookimpl
{api}

class Echo:
    name, version = "echo-{n}", "1"
    def score(self, task, completion):
        return Score(1.0, passed=True)

@hookimpl
def {hook}(register):
    register("echo-{n}", Echo)
"""


@pytest.fixture
def versioned_plugins(tmp_path: Path) -> Path:
    cases = {
        "same": ('BITAGENT_PLUGIN_API = "1.0"', "register_scorers"),
        "major": ('BITAGENT_PLUGIN_API = "2"', "register_scorers"),
        "newer": ('BITAGENT_PLUGIN_API = "1.7"', "register_scorers"),
        "undeclared": ("", "register_scorers"),
        "typo": ("", "register_scorer"),
    }
    for n, (api, hook) in cases.items():
        make_dist(
            tmp_path / n,
            f"plugin_{n}",
            {f"p-{n}": f"mod_{n}"},
            {f"mod_{n}": SCORER_PLUGIN.format(api=api, n=n, hook=hook)},
        )
    return tmp_path


def test_plugins_for_another_api_version_or_with_unknown_hooks_are_reported_not_loaded(versioned_plugins):
    path = ":".join(str(versioned_plugins / n) for n in ("same", "major", "newer", "undeclared", "typo"))
    out = run_cli(["plugins", "--json"], None, PYTHONPATH=path)
    rows = {row["name"]: row for row in json.loads(out.stdout)}
    assert rows["p-same"]["error"] is None and rows["p-same"]["provides"] == {"scorers": ["echo-same"]}
    assert rows["p-same"]["api_version"] == "1.0"
    assert rows["p-undeclared"]["error"] is None
    assert "built for bitagent plugin API 2" in rows["p-major"]["error"] and rows["p-major"]["provides"] == {}
    assert "API 1.7" in rows["p-newer"]["error"]
    assert "register_scorer" in rows["p-typo"]["error"] and "not a bitagent hook" in rows["p-typo"]["error"]
    # the refused plugins' objects are not half-registered, and "unknown" says why
    out = run_cli(["evaluate", "--scorer", "echo-major", "--tasks", "bitagent"], None, PYTHONPATH=path)
    assert out.returncode == 1 and "unknown scorer 'echo-major'" in out.stderr
    assert "p-major: PluginLoadError: built for bitagent plugin API 2" in out.stderr


def test_register_module_refuses_what_entry_points_refuse():
    class Typo:
        @ba.hookimpl
        def register_scorer(self, register):
            pass

    class Unmarked:
        def register_scorers(self, register):
            pass

    class Future:
        BITAGENT_PLUGIN_API = "3.0"

    registry = ba.PluginRegistry()
    for plugin, message in (
        (Typo(), "not a bitagent hook"),
        (Unmarked(), "not marked @hookimpl"),
        (Future(), "API 3.0"),
    ):
        with pytest.raises(PluginLoadError, match=message):
            registry.register_module(plugin, type(plugin).__name__)
    assert registry.pm.get_plugins() == set()


def test_a_misspelt_bitagent_plugins_name_is_an_error():
    registry = ba.PluginRegistry()
    with pytest.raises(PluginSelectionError, match="BITAGENT_PLUGINS: no installed plugin is named 'bitagnet-scorer'"):
        registry.load_entry_points({"bitagent-scorer", "bitagnet-scorer"})
    out = run_cli(["scorers", "list"], None, BITAGENT_PLUGINS="bitagent-scorer,bitagnet-scorer")
    assert out.returncode == 2 and "BITAGENT_PLUGINS: no installed plugin is named 'bitagnet-scorer'" in out.stderr


# --- typed options: -B, the environment, config files ----------------------------------------------------

ECHO_PLUGIN = """
from bitagent_core import BackendOptions, Completion, ExpectedCall, Message, Task, Tool, hookimpl

class EchoOptions(BackendOptions):
    answer: str = "[ping()]"
    delay: float = 0.0

class Echo:
    default_concurrency = 1
    def __init__(self, model, options: EchoOptions):
        self.options = options
    async def start(self, run_dir):
        pass
    async def complete(self, request):
        return Completion(text=self.options.answer)
    async def close(self):
        pass
    def describe(self):
        return {"model": "echo", "options": self.options.model_dump()}

class Ping:
    name, version, description = "ping", "1", "one task"
    def __init__(self, arg):
        pass
    def categories(self):
        return ["single_call"]
    def tasks(self, seed, limit):
        yield Task(id="ping", messages=(Message("user", "ping"),), tools=(Tool("ping"), Tool("f")),
                   expected_calls=(ExpectedCall("ping", {}),), category="single_call")

@hookimpl
def register_backends(register):
    register("echo", Echo, options=EchoOptions)

@hookimpl
def register_task_sources(register):
    register("ping", Ping)
"""


@pytest.fixture
def echo_dir(tmp_path: Path) -> Path:
    make_dist(tmp_path / "site", "echo_plugin", {"echo": "echo_mod"}, {"echo_mod": ECHO_PLUGIN})
    return tmp_path


def _answer(echo_dir: Path, *args: str, **env: str) -> tuple[int, str, str | None]:
    out = run_cli(
        ["evaluate", "-b", "echo", "-t", "ping", "--json", "-o", str(echo_dir / "runs"), *args],
        echo_dir / "site",
        **env,
    )
    if out.returncode != 0:
        return out.returncode, out.stderr, None
    results = json.loads(out.stdout)
    return 0, out.stderr, results["model"]["options"]["answer"]


@pytest.mark.slow
def test_option_values_pass_through_intact_from_the_command_line_and_the_environment(echo_dir):
    assert _answer(echo_dir, "-B", "answer=[f(a=1, b=2)]")[2] == "[f(a=1, b=2)]"
    assert _answer(echo_dir, "-B", 'answer=it\'s "quoted" = fine')[2] == 'it\'s "quoted" = fine'
    assert _answer(echo_dir, BITAGENT_BACKEND_OPTIONS="answer='[f(a=1, b=2)]' delay=0")[2] == "[f(a=1, b=2)]"


@pytest.mark.slow
def test_unknown_and_mistyped_options_name_their_source(echo_dir):
    code, err, _ = _answer(echo_dir, "-B", "anwser=x")
    assert code == 2 and "-B anwser: the echo backend has no option 'anwser' (known: answer, delay)" in err
    code, err, _ = _answer(echo_dir, "-B", "delay=soon")
    assert code == 2 and "-B delay: backend option delay='soon'" in err
    code, err, _ = _answer(echo_dir, BITAGENT_BACKEND_OPTIONS="colour=red")
    assert code == 2 and "BITAGENT_BACKEND_OPTIONS: the echo backend has no option 'colour'" in err
    code, err, _ = _answer(echo_dir, "-B", "no-equals-sign")
    assert code == 2 and "expected key=value" in err


@pytest.mark.slow
def test_config_files_are_checked_key_by_key_with_file_and_line(echo_dir):
    def run(text: str) -> tuple[int, str, str | None]:
        config = echo_dir / "bitagent.toml"
        config.write_text(text)
        return _answer(echo_dir, BITAGENT_CONFIG=str(config))

    config = str(echo_dir / "bitagent.toml")
    assert run('seed = 1\n\n[evaluate.backend_options]\nanswer = "[f(a=1, b=2)]"\n')[2] == "[f(a=1, b=2)]"
    assert run('[evaluate]\nbackend_option = ["answer=[g()]"]\n')[2] == "[g()]"
    code, err, _ = run("seed = 1\n[evaluate]\nlimt = 3\n")
    assert code == 2 and f"{config}:3: the evaluate command has no option 'limt'" in err
    code, err, _ = run("[evaluat]\nlimit = 3\n")
    assert code == 2 and f"{config}:1: [evaluat] is not a command" in err
    code, err, _ = run('seed = 2\n[evaluate.backend_options]\nanswer = "x"\ncolour = "red"\n')
    assert code == 2 and f"{config}:4: the echo backend has no option 'colour'" in err
    code, err, _ = run("sede = 2\n")
    assert code == 2 and f"{config}:1: no command has an option 'sede'" in err


def test_options_models_forbid_unknown_keys_and_convert_strings():
    class Options(ba.BackendOptions):
        n_ctx: int = 4096
        verbose: bool = False

    assert Options.coerce({"n_ctx": "2048", "verbose": "true"}) == Options(n_ctx=2048, verbose=True)
    with pytest.raises(ba.OptionError, match="has no option 'n_cxt'"):
        Options.coerce({"n_cxt": "1"})
    assert toolkit.parse_option_args(["a=b=c", "x= spaced value "]) == {"a": "b=c", "x": " spaced value "}


# --- boundaries -------------------------------------------------------------------------------------------


class ListSource:
    name, version, description = "list", "1", "tasks given in the test"
    tasks_to_yield: list = []

    def __init__(self, arg):
        pass

    def categories(self):
        return ["single_call"]

    def tasks(self, seed, limit):
        yield from ListSource.tasks_to_yield[:limit]


class Answering:
    default_concurrency = 2
    started = 0

    def __init__(self, model, options):
        pass

    async def start(self, run_dir):
        Answering.started += 1

    async def complete(self, request):
        return ba.Completion(text=f"[{request.tools[0].name}()]")

    async def close(self):
        pass

    def describe(self):
        return {"model": "answering"}


class Picky:
    """Raises on one task, returns a float on another, a NaN score on a third."""

    name, version = "picky", "1"

    def score(self, task, completion):
        if task.id == "raise":
            raise KeyError("boom")
        if task.id == "float":
            return 0.5
        if task.id == "nan-breakdown":
            return ba.Score(1.0, breakdown={"x": float("nan")}, passed=True)
        return ba.Score(1.0, passed=True)


class Loud:
    def __init__(self, fail_in: str):
        self.fail_in, self.calls = fail_in, []

    @ba.hookimpl
    def on_run_start(self, run):
        self.calls.append("start")
        if self.fail_in == "start":
            raise RuntimeError("dashboard down")

    @ba.hookimpl
    def on_sample_scored(self, run, sample):
        self.calls.append("sample")
        if self.fail_in == "sample":
            raise RuntimeError("dashboard down")

    @ba.hookimpl
    def on_run_end(self, run, results):
        self.calls.append("end")


class Harness:
    @ba.hookimpl
    def register_task_sources(self, register):
        register("list", ListSource)

    @ba.hookimpl
    def register_backends(self, register):
        register("answering", Answering)

    @ba.hookimpl
    def register_scorers(self, register):
        register("picky", Picky)


def _task(task_id: str, **kw) -> ba.Task:
    fields = {
        "messages": (ba.Message("user", "q"),),
        "tools": (ba.Tool("t"),),
        "expected_calls": (ba.ExpectedCall("t", {}),),
    }
    fields.update(kw)
    return ba.Task(id=task_id, **fields)


def _registry(*plugins) -> ba.PluginRegistry:
    registry = ba.PluginRegistry()
    registry.register_module(Harness(), "harness")
    for i, plugin in enumerate(plugins):
        registry.register_module(plugin, f"extra-{i}")
    return registry


def _run(tmp_path, registry, n=5):
    config = ba.RunConfig(tasks="list", backend="answering", scorer="picky", limit=n, output_dir=str(tmp_path))
    evaluation = ba.Evaluation(config, registry)
    return evaluation, asyncio.run(evaluation.run())


def test_a_scorer_that_raises_or_returns_garbage_fails_only_its_sample(tmp_path):
    ListSource.tasks_to_yield = [_task(i) for i in ("ok-1", "raise", "float", "nan-breakdown", "ok-2")]
    _, results = _run(tmp_path, _registry())
    assert results.status == "complete" and results.n_scored == 2 and results.n_scorer_errors == 3
    assert results.sources["list"]["version"] == "1"  # every run records the source's version
    samples = {s["task_id"]: s for s in map(json.loads, (Path(results.run_dir) / "samples.jsonl").open())}
    assert len(samples) == 5
    assert samples["raise"]["error_type"] == "scorer_error" and "KeyError: 'boom'" in samples["raise"]["detail"]
    assert "returned a float, not a Score" in samples["float"]["detail"]
    assert "Out of range float values" in samples["nan-breakdown"]["detail"]
    assert samples["raise"]["completion"]["text"] == "[t()]"  # the model's answer is kept for re-scoring
    assert samples["ok-2"]["status"] == "ok"


@pytest.mark.parametrize("fail_in", ["start", "sample"])
def test_a_reporter_that_raises_is_disabled_with_one_warning(tmp_path, caplog, fail_in):
    ListSource.tasks_to_yield = [_task(f"t{i}") for i in range(4)]
    loud, quiet = Loud(fail_in), Loud("never")
    with caplog.at_level(logging.WARNING, logger="bitagent"):
        evaluation, results = _run(tmp_path, _registry(loud, quiet))
    assert results.status == "complete" and results.n_scored == 4
    saved = json.loads((Path(results.run_dir) / "results.json").read_text())
    assert saved["status"] == "complete"
    warnings = [r for r in caplog.records if "disabled" in r.getMessage()]
    assert len(warnings) == 1 and "dashboard down" in warnings[0].getMessage()
    assert loud.calls == (["start"] if fail_in == "start" else ["start", "sample"])
    assert quiet.calls == ["start"] + ["sample"] * 4 + ["end"]  # the others still hear everything


@pytest.mark.parametrize(
    ("tasks", "task_id", "problem"),
    [
        ([_task("a", tools=(ba.Tool(""),), expected_calls=())], "a", "tools[0] has no name"),
        ([_task("a", tools=(ba.Tool(None),), expected_calls=())], "a", "tools[0] has no name"),
        ([_task("a", messages=())], "a", "no messages"),
        ([{"id": "a", "messages": []}], "#0", "not a Task but a dict"),
        ([_task("a", expected_calls=(ba.ExpectedCall("other", {}),))], "a", "'other', which is not among the task's"),
        ([_task("a"), _task("b"), _task("a")], "a", "the same id as an earlier task"),
    ],
)
def test_an_invalid_task_fails_before_the_model_loads(tmp_path, tasks, task_id, problem):
    ListSource.tasks_to_yield = tasks
    Answering.started = 0
    with pytest.raises(toolkit.InvalidTask) as caught:
        _run(tmp_path, _registry())
    assert f"task source 'list': task {task_id}: " in str(caught.value) and problem in str(caught.value)
    assert Answering.started == 0 and not list(tmp_path.iterdir())  # no model, no run directory


BAD_SOURCE = """
from bitagent_core import ExpectedCall, Message, Task, Tool, hookimpl

class Bad:
    name, version, description = "bad", "1", "broken tasks"
    def __init__(self, arg):
        pass
    def categories(self):
        return []
    def tasks(self, seed, limit):
        q = (Message("user", "q"),)
        yield Task(id="a", messages=q, tools=(Tool("t"),), expected_calls=(ExpectedCall("t", {}),))
        yield Task(id="a", messages=q, tools=(Tool("t"),))
        yield Task(id="b", messages=q, tools=(Tool(""),))
        yield Task(id="c", messages=q, tools=(Tool("t"),), expected_calls=(ExpectedCall("u", {}),))

@hookimpl
def register_task_sources(register):
    register("bad", Bad)
"""


def test_tasks_validate_reports_unusable_tasks_and_duplicate_ids(tmp_path):
    make_dist(tmp_path, "bad_plugin", {"bad": "bad_mod"}, {"bad_mod": BAD_SOURCE})
    out = run_cli(["tasks", "validate", "bad", "--json"], tmp_path)
    assert out.returncode == 1, out.stderr
    report = json.loads(out.stdout)
    messages = {(p["task_id"], p["message"]) for p in report["problems"]}
    assert ("a", "the same id as an earlier task (ids must be unique)") in messages
    assert ("b", "tools[0] has no name ('')") in messages
    assert report["tasks_with_errors"] == ["a", "b", "c"]
    out = run_cli(["evaluate", "--tasks", "bad", "-o", str(tmp_path / "runs")], tmp_path)
    assert out.returncode == 1 and "task source 'bad': task a: the same id as an earlier task" in out.stderr
    assert not (tmp_path / "runs").exists()


# --- the conformance kit ----------------------------------------------------------------------------------


def test_the_kit_passes_the_built_in_plugins():
    registry = ba.PluginRegistry()
    registry.load_entry_points(
        {"bitagent-tasks", "bitagent-scorer", "bfcl-scorer", "jsonl-tasks", "bitagent-competition", "bfcl-tasks"}
    )
    for name in ("bitagent", "bfcl"):
        testing.check_registered(registry, name, kind="scorers").assert_ok()
    testing.check_registered(registry, "bitagent", kind="task_sources").assert_ok()
    testing.check_registered(registry, "bitagent", kind="competitions").assert_ok()


def test_the_kit_catches_broken_plugins():
    class RaisingScorer:
        name, version = "raising", "1"

        def score(self, task, completion):
            return ba.Score(1.0 if "[" in completion.text else 0.0, passed="[" in completion.text)

    report = testing.check_scorer(RaisingScorer())
    failed = {c.name for c in report.failures}
    assert any("irrelevance" in name for name in failed)  # it passes calls on irrelevance tasks
    with pytest.raises(AssertionError, match="irrelevance"):
        report.assert_ok()

    class NoVersion:
        name = "x"

        def score(self, task, completion):
            raise ValueError

    assert "has no 'version'" in testing.check_scorer(NoVersion()).failures[0].message

    class Picky:
        name, version, description = "picky", "1", ""

        def __init__(self, arg):
            if arg is not None:
                raise ValueError("no argument")

        def categories(self):
            return ["single_call"]

        def tasks(self, seed, limit):
            yield _task("same")
            yield _task("same")

    failures = {(c.subject, c.name) for c in testing.check_task_source(Picky).failures}
    assert ("task source:single_call", "the factory accepts 'single_call'") in failures
    assert ("task source", "seed 0: tasks are usable, ids unique, limit respected") in failures

    class Fragile(Answering):
        closed = 0

        async def close(self):
            Fragile.closed += 1
            if Fragile.closed > 1:
                raise RuntimeError("closed twice")

    names = {c.name for c in testing.check_backend(Fragile, start=False).failures}
    assert "close() before start, twice" in names
    testing.check_backend(Answering).assert_ok()


@pytest.mark.slow
def test_plugins_check_runs_the_kit_from_the_command_line(echo_dir):
    out = run_cli(["plugins", "check", "echo", "--json"], echo_dir / "site")
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["ok"] is True
    out = run_cli(["plugins", "check", "ping"], echo_dir / "site")
    assert out.returncode == 0 and "0 of" in out.stdout
    out = run_cli(["plugins", "check", "nothing-here"], echo_dir / "site")
    assert out.returncode == 1 and "nothing is registered as 'nothing-here'" in out.stderr
