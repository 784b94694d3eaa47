"""Conformance checks for plugin authors: the contract of docs/plugins.md, executed.

Use them from your plugin's own tests::

    import bitagent_testing as testing

    def test_my_scorer_conforms():
        testing.check_scorer(MyScorer()).assert_ok()

or from the command line: ``bitagent plugins check NAME`` runs the same checks on whatever is registered
under NAME. Each ``check_*`` returns a :class:`Report` (every check, passed or not) and never raises for a
plugin's fault: a plugin that raises is a failed check.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import tempfile
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import attrs

from bitagent_core import (
    Backend,
    BackendOptions,
    ChatRequest,
    Competition,
    Completion,
    ExpectedCall,
    Message,
    NoOptions,
    PluginRegistry,
    Score,
    Scorer,
    Task,
    TaskSource,
    Tool,
    ToolCall,
    UnknownPluginObject,
    hookimpl,
)
from bitagent_core.toolkit import build_request, check_task, protocol_problems, render_expected, task_problems
from bitagent_testing.scripted import ScriptedBackend

__all__ = [
    "Check",
    "Report",
    "ScriptedBackend",
    "check_backend",
    "check_competition",
    "check_registered",
    "check_reporter",
    "check_scorer",
    "check_task_source",
    "hostile_completions",
    "sample_tasks",
]


@attrs.frozen
class Check:
    subject: str
    name: str
    ok: bool
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.define
class Report:
    """The outcome of every check run on one plugin object."""

    checks: list[Check] = attrs.field(factory=list)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    @property
    def ok(self) -> bool:
        return not self.failures

    def add(self, subject: str, name: str, problem: str | None = None) -> bool:
        self.checks.append(Check(subject, name, problem is None, problem or ""))
        return problem is None

    def run(self, subject: str, name: str, check: Callable[[], str | None]) -> bool:
        """Run ``check`` (returns a problem or ``None``); an exception is a failure naming it."""
        try:
            problem = check()
        except Exception as exc:  # noqa: BLE001 - a plugin's exception is what we report
            problem = f"raised {type(exc).__name__}: {exc}" + _where(exc)
        return self.add(subject, name, problem)

    def extend(self, other: Report) -> Report:
        self.checks.extend(other.checks)
        return self

    def assert_ok(self) -> None:
        """For pytest: one AssertionError listing every failed check."""
        if self.failures:
            raise AssertionError(
                "conformance checks failed:\n"
                + "\n".join(f"  {c.subject}: {c.name}: {c.message}" for c in self.failures)
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "n_checks": len(self.checks),
            "n_failed": len(self.failures),
            "checks": [c.to_json() for c in self.checks],
        }


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    return f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""


# --- sample data ---------------------------------------------------------------------------------------

_WEATHER = Tool(
    "get_weather",
    "Current weather in a city.",
    {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "City name"},
            "unit": {"type": "string", "enum": ["c", "f"]},
        },
        "required": ["city"],
    },
)
_DISCOUNT = Tool(
    "calculate_discount",
    "Price after a discount.",
    {
        "type": "object",
        "properties": {"price": {"type": "number"}, "percent": {"type": "integer"}},
        "required": ["price", "percent"],
    },
)


def sample_tasks() -> list[Task]:
    """A few generic tasks: a single call, a call with a number, two calls, and an irrelevance task."""
    return [
        Task(
            id="conformance-single",
            messages=(Message("user", "What's the weather in Paris?"),),
            tools=(_WEATHER, _DISCOUNT),
            expected_calls=(ExpectedCall("get_weather", {"city": ("Paris",), "unit": ("", "c")}),),
            source="conformance",
            category="single_call",
            version="1",
        ),
        Task(
            id="conformance-number",
            messages=(Message("user", "200 dollars with 20 percent off?"),),
            tools=(_DISCOUNT, _WEATHER),
            expected_calls=(ExpectedCall("calculate_discount", {"price": (200, 200.0), "percent": (20,)}),),
            source="conformance",
            category="single_call",
            version="1",
        ),
        Task(
            id="conformance-parallel",
            messages=(Message("user", "Weather in Oslo and in Lima?"),),
            tools=(_WEATHER,),
            expected_calls=(
                ExpectedCall("get_weather", {"city": ("Oslo",), "unit": ("",)}),
                ExpectedCall("get_weather", {"city": ("Lima",), "unit": ("",)}),
            ),
            source="conformance",
            category="parallel",
            version="1",
        ),
        Task(
            id="conformance-irrelevance",
            messages=(Message("user", "Write me a poem about the sea."),),
            tools=(_WEATHER, _DISCOUNT),
            expected_calls=(),
            source="conformance",
            category="irrelevance",
            version="1",
        ),
    ]


def hostile_completions(task: Task) -> Iterator[tuple[str, Completion]]:
    """Model outputs a scorer must survive: nothing, garbage, code, huge and deeply nested text, odd
    characters, calls to tools the task does not offer, arguments of every JSON type."""
    name = task.tools[0].name if task.tools else "f"
    yield "empty text", Completion(text="")
    yield "whitespace", Completion(text=" \n\t ")
    yield "python code", Completion(text="__import__('os').system('id')")
    yield "unbalanced brackets", Completion(text=f"[{name}(city='Paris'")
    yield "deep nesting", Completion(text="[" * 5000 + "]" * 5000)
    yield "huge text", Completion(text=f"[{name}(city='" + "x" * 200_000 + "')]")
    yield "control and surrogate characters", Completion(text=f"[{name}(city='\x00\ud800\u202e')]")
    yield "json garbage", Completion(text='{"name": null, "arguments": [1, {"a": NaN}]}')
    yield "unknown tool", Completion(text="[no_such_tool_xyz(a=1)]")
    yield "native call to an unknown tool", Completion(tool_calls=(ToolCall("no_such_tool_xyz", {"a": 1}),))
    yield (
        "native call with odd arguments",
        Completion(
            tool_calls=(
                ToolCall(name, {"city": None, "unit": {"nested": [1, 2.5, True, None]}, "": "empty key"}, (1, "two")),
            )
        ),
    )
    yield "native call with an empty name", Completion(tool_calls=(ToolCall("", {}),))
    yield "many calls", Completion(text="[" + ", ".join(f"{name}(city='c{i}')" for i in range(500)) + "]")


def _score_problem(score: object) -> str | None:
    if not isinstance(score, Score):
        return f"returned a {type(score).__name__}, not a Score"
    if not isinstance(score.value, int | float) or math.isnan(score.value) or not 0.0 <= score.value <= 1.0:
        return f"value {score.value!r} is not in [0, 1]"
    try:
        json.dumps(score.to_json(), allow_nan=False)
    except (TypeError, ValueError) as exc:
        return f"the score cannot be written to samples.jsonl: {exc}"
    return None


# --- scorers -------------------------------------------------------------------------------------------


def check_scorer(scorer: object, tasks: Iterable[Task] | None = None, *, subject: str | None = None) -> Report:
    """A scorer implements :class:`~bitagent_core.Scorer`, never raises on hostile output, returns a valid
    :class:`~bitagent_core.Score`, is deterministic, passes each task's own ground truth, and scores
    irrelevance tasks (no expected call) the documented way: no call passes, any call fails."""
    subject = subject or f"scorer {getattr(scorer, 'name', type(scorer).__name__)!r}"
    report = Report()
    problems = protocol_problems(scorer, Scorer)
    if not report.add(subject, "implements the Scorer protocol", "; ".join(problems) or None):
        return report
    assert isinstance(scorer, Scorer)
    report.add(
        subject,
        "name and version are non-empty strings",
        None
        if all(isinstance(v, str) and v for v in (scorer.name, scorer.version))
        else f"name={scorer.name!r}, version={scorer.version!r}",
    )
    all_tasks = list(tasks) if tasks is not None else sample_tasks()
    if not any(t.expects_no_call for t in all_tasks):
        all_tasks += [t for t in sample_tasks() if t.expects_no_call]
    for task in all_tasks:

        def hostile(task: Task = task) -> str | None:
            bad = []
            for label, completion in hostile_completions(task):
                try:
                    problem = _score_problem(scorer.score(task, completion))
                except Exception as exc:  # noqa: BLE001
                    problem = f"raised {type(exc).__name__}: {str(exc)[:200]}{_where(exc)}"
                if problem:
                    bad.append(f"{label}: {problem}")
            return "; ".join(bad) or None

        report.run(subject, f"task {task.id}: survives hostile outputs", hostile)

        def deterministic(task: Task = task) -> str | None:
            completion = Completion(text=render_expected(task) or "No function fits.")
            first, second = scorer.score(task, completion), scorer.score(task, completion)
            problem = _score_problem(first)
            if problem:
                return problem
            return None if first == second else f"two calls gave {first} and {second}"

        report.run(subject, f"task {task.id}: deterministic", deterministic)
        if task.expects_no_call:

            def irrelevance(task: Task = task) -> str | None:
                no_call = scorer.score(task, Completion(text="None of the functions can answer that."))
                call = scorer.score(
                    task,
                    Completion(text=f"[{task.tools[0].name}(city='Paris')]")
                    if task.tools
                    else Completion(text="[anything()]"),
                )
                native = scorer.score(
                    task,
                    Completion(tool_calls=(ToolCall(task.tools[0].name, {}),))
                    if task.tools
                    else Completion(text="[anything()]"),
                )
                problems = []
                if not no_call.passed:
                    problems.append(f"an answer with no call must pass, got {no_call}")
                for label, verdict in (("a call in text", call), ("a native call", native)):
                    if verdict.passed or verdict.value >= no_call.value:
                        problems.append(f"{label} must fail and score below no call, got {verdict}")
                return "; ".join(problems) or None

            report.run(subject, f"task {task.id}: irrelevance (no call passes, any call fails)", irrelevance)
        else:

            def ground_truth(task: Task = task) -> str | None:
                verdict = scorer.score(task, Completion(text=render_expected(task)))
                return None if verdict.passed else f"the task's own ground truth fails: {verdict}"

            report.run(subject, f"task {task.id}: its ground truth passes", ground_truth)
    return report


# --- task sources --------------------------------------------------------------------------------------


def check_task_source(
    factory: Callable[[str | None], object],
    args: Iterable[str | None] | None = None,
    *,
    limit: int = 20,
    seeds: tuple[int, ...] = (0, 1),
    subject: str = "task source",
) -> Report:
    """A task source factory accepts each argument in ``args`` (default: ``None``, then every category the
    source advertises), and each source implements :class:`~bitagent_core.TaskSource`, yields only usable
    tasks with unique ids, respects ``limit``, is deterministic per seed, and works with ``limit=None``."""
    report = Report()
    advertised: list[str] = []
    todo: list[str | None] = list(args) if args is not None else [None]
    checked: set[str | None] = set()
    while todo:
        arg = todo.pop(0)
        if arg in checked:
            continue
        checked.add(arg)
        label = subject if arg is None else f"{subject}:{arg}"
        source_box: list[object] = []

        def build(arg: str | None = arg, box: list[object] = source_box) -> str | None:
            box.append(factory(arg))
            return None

        if not report.run(label, "the factory accepts " + ("no argument" if arg is None else repr(arg)), build):
            continue
        source = source_box[0]
        problems = protocol_problems(source, TaskSource)
        if not report.add(label, "implements the TaskSource protocol", "; ".join(problems) or None):
            continue
        assert isinstance(source, TaskSource)
        report.add(
            label,
            "name, version and description are strings (name and version non-empty)",
            None
            if isinstance(source.name, str)
            and source.name
            and isinstance(source.version, str)
            and source.version
            and isinstance(source.description, str)
            else f"name={source.name!r}, version={source.version!r}, description={source.description!r}",
        )

        def categories(source: TaskSource = source, first: bool = arg is None and args is None) -> str | None:
            cats = source.categories()
            if not isinstance(cats, list) or not all(isinstance(c, str) and c for c in cats):
                return f"categories() must return a list of non-empty strings, got {cats!r}"
            if first:  # every advertised category must be accepted as the factory's argument
                advertised.extend(cats)
            return None

        report.run(label, "categories() is a list of strings", categories)
        for seed in seeds:
            report.run(
                label,
                f"seed {seed}: tasks are usable, ids unique, limit respected",
                functools.partial(_tasks_problem, source, seed, limit),
            )
            report.run(label, f"seed {seed}: deterministic", functools.partial(_deterministic, source, seed, limit))
        report.run(label, "limit=None yields tasks (all of them)", functools.partial(_limit_none, source, limit))
        report.run(
            label,
            "ground truth fits the tools (parameters, declared types, enums)",
            functools.partial(_ground_truth_problem, source, limit),
        )
        if arg is None and args is None:
            todo.extend(advertised)
    return report


def _ids(source: TaskSource, seed: int, limit: int) -> list[object]:
    return [t.to_json() if isinstance(t, Task) else repr(t) for t in source.tasks(seed=seed, limit=limit)]


def _deterministic(source: TaskSource, seed: int, limit: int) -> str | None:
    same = _ids(source, seed, limit) == _ids(source, seed, limit)
    return None if same else "two calls with the same seed gave different tasks"


def _limit_none(source: TaskSource, limit: int) -> str | None:
    return None if list(itertools.islice(source.tasks(seed=0, limit=None), limit)) else "no task at all"


def _tasks_problem(source: TaskSource, seed: int, limit: int) -> str | None:
    tasks = list(itertools.islice(source.tasks(seed=seed, limit=limit), limit + 1))
    if len(tasks) > limit:
        return f"limit={limit} gave more than {limit} tasks"
    problems, seen = [], set()
    for index, task in enumerate(tasks):
        found = task_problems(task)
        task_id = task.id if isinstance(task, Task) else f"#{index}"
        if not found and task.id in seen:
            found = ["the same id as an earlier task"]
        if found:
            problems.append(f"task {task_id}: {'; '.join(found)}")
        elif isinstance(task, Task):
            seen.add(task.id)
    return "; ".join(problems[:5]) or None


def _ground_truth_problem(source: TaskSource, limit: int) -> str | None:
    """What a scorer would see wrongly: expected values of another type than the parameter declares (``"3"``
    for an integer passes as itself and fails the right answer ``3``), values outside an enum, parameters the
    tool does not have."""
    problems = []
    for task in itertools.islice(source.tasks(seed=0, limit=limit), limit):
        if isinstance(task, Task) and not task_problems(task):
            problems += [f"task {task.id}: {message}" for _, message in check_task(task)]
    return "; ".join(problems[:5]) or None


# --- backends ------------------------------------------------------------------------------------------


def check_backend(
    factory: Callable[[str | None, Any], object],
    model: str | None = None,
    options: BackendOptions | None = None,
    *,
    start: bool = True,
    failing_model: str | None = "/nonexistent/bitagent-conformance-model.gguf",
    subject: str = "backend",
) -> Report:
    """A backend implements :class:`~bitagent_core.Backend`; ``close`` is safe before ``start``, twice, and
    after a failed start; with ``start`` it starts with ``run_dir=None``, answers one request with a
    :class:`~bitagent_core.Completion`, and starts and closes a second time."""
    options = options if options is not None else NoOptions()
    report = Report()
    box: list[object] = []

    def build() -> str | None:
        box.append(factory(model, options))
        return None

    if not report.run(subject, "the factory builds it", build):
        return report
    backend = box[0]
    problems = protocol_problems(backend, Backend)
    if not report.add(subject, "implements the Backend protocol", "; ".join(problems) or None):
        return report
    assert isinstance(backend, Backend)
    report.add(
        subject,
        "default_concurrency is a positive int",
        None
        if isinstance(backend.default_concurrency, int) and backend.default_concurrency >= 1
        else f"got {backend.default_concurrency!r}",
    )
    report.run(subject, "describe() is a JSON object before start", lambda: _json_object(backend.describe()))
    report.run(subject, "close() before start, twice", lambda: _run(_close_twice(backend)))
    if failing_model is not None:
        report.run(
            subject, "close() after a failed start", lambda: _run(_failed_start(factory, failing_model, options))
        )
    if start:
        for attempt in (1, 2):
            report.run(
                subject,
                f"start #{attempt}: start(None), one request, close() twice",
                lambda: _run(_round_trip(backend)),
            )
        report.run(subject, "describe() is a JSON object after close", lambda: _json_object(backend.describe()))
    return report


def _json_object(value: object) -> str | None:
    if not isinstance(value, dict):
        return f"got a {type(value).__name__}"
    json.dumps(value, default=str)
    return None


def _run(coro: Any) -> str | None:
    import asyncio  # here: `bitagent --help` loads this package (its plugin) but needs no event loop

    return asyncio.run(coro)  # type: ignore[no-any-return]


async def _close_twice(backend: Backend) -> None:
    await backend.close()
    await backend.close()


async def _failed_start(
    factory: Callable[[str | None, Any], object], model: str, options: BackendOptions
) -> str | None:
    try:
        backend = factory(model, options)
    except Exception:  # noqa: BLE001 - refusing the model up front is a fine way to fail
        return None
    assert isinstance(backend, Backend)
    try:
        await backend.start(None)
    except Exception:  # noqa: BLE001 - the failure we wanted
        pass
    await backend.close()
    await backend.close()
    return None


async def _round_trip(backend: Backend) -> str | None:
    task = sample_tasks()[0]
    request = build_request(task, max_tokens=16)
    await backend.start(None)
    try:
        completion = await backend.complete(request)
    finally:
        await backend.close()
    await backend.close()
    if not isinstance(completion, Completion):
        return f"complete() returned a {type(completion).__name__}, not a Completion"
    json.dumps(completion.to_json())
    return None


# --- competitions --------------------------------------------------------------------------------------


def check_competition(competition: object, registry: PluginRegistry, *, subject: str = "competition") -> Report:
    """A competition implements :class:`~bitagent_core.Competition`, its ``mix(registry)`` names registered
    task sources with positive shares, and its scorer is registered."""
    report = Report()
    problems = protocol_problems(competition, Competition)
    if not report.add(subject, "implements the Competition protocol", "; ".join(problems) or None):
        return report
    assert isinstance(competition, Competition)
    report.add(
        subject,
        "sample_size is a positive int",
        None
        if isinstance(competition.sample_size, int) and competition.sample_size >= 1
        else f"got {competition.sample_size!r}",
    )

    def mix() -> str | None:
        shares = competition.mix(registry)
        if not isinstance(shares, dict) or not shares:
            return f"mix(registry) must return a non-empty dict of spec -> share, got {shares!r}"
        bad = []
        for spec, share in shares.items():
            if not isinstance(share, int | float) or share < 0:
                bad.append(f"{spec}: share {share!r}")
            try:
                registry.get("task_sources", spec.partition(":")[0])
            except UnknownPluginObject as exc:
                bad.append(str(exc))
        if not any(isinstance(s, int | float) and s > 0 for s in shares.values()):
            bad.append("no positive share")
        return "; ".join(bad) or None

    report.run(subject, "mix(registry) names registered task sources with shares >= 0", mix)
    report.run(subject, "its scorer is registered", lambda: (registry.get("scorers", competition.scorer), None)[1])
    return report


# --- reporters -----------------------------------------------------------------------------------------


class _OneSource:
    name, version, description = "conformance", "1", "conformance tasks"

    def __init__(self, arg: str | None) -> None:
        pass

    def categories(self) -> list[str]:
        return ["single_call", "irrelevance"]

    def tasks(self, seed: int, limit: int | None) -> Iterator[Task]:
        return iter(sample_tasks()[:limit])


class _EchoBackend:
    default_concurrency = 2

    def __init__(self, model: str | None, options: BackendOptions) -> None:
        pass

    async def start(self, run_dir: object) -> None:
        pass

    async def complete(self, request: ChatRequest) -> Completion:
        return Completion(text="[get_weather(city='Paris')]", prompt_tokens=3, completion_tokens=2)

    async def close(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {"model": "conformance-echo"}


class _FirstCallScorer:
    name, version = "conformance", "1"

    def score(self, task: Task, completion: Completion) -> Score:
        ok = bool(task.expected_calls) == ("[" in completion.text)
        return Score(float(ok), passed=ok)


class _Harness:
    @hookimpl
    def register_task_sources(self, register: Any) -> None:
        register("conformance", _OneSource)

    @hookimpl
    def register_backends(self, register: Any) -> None:
        register("conformance-echo", _EchoBackend)

    @hookimpl
    def register_scorers(self, register: Any) -> None:
        register("conformance", _FirstCallScorer)


def check_reporter(plugin: object, *, subject: str = "reporter") -> Report:
    """A reporter plugin (an object or module with ``on_run_start`` / ``on_sample_scored`` / ``on_run_end``
    hooks) loads, and a real run of four samples calls it without any hook raising."""
    from bitagent_core import Evaluation, RunConfig

    report = Report()
    registry = PluginRegistry()
    registry.register_module(_Harness(), "conformance-harness")
    if not report.run(
        subject, "registers as a plugin", lambda: registry.register_module(plugin, "reporter-under-test")
    ):
        return report
    hooks = sorted(
        n
        for n in ("on_run_start", "on_sample_scored", "on_run_end")
        if any(i.plugin_name == "reporter-under-test" for i in getattr(registry.pm.hook, n).get_hookimpls())
    )
    report.add(subject, "implements at least one reporting hook", None if hooks else "no on_run_* hook")
    with tempfile.TemporaryDirectory() as tmp:
        config = RunConfig(
            tasks="conformance", backend="conformance-echo", scorer="conformance", limit=4, output_dir=tmp
        )
        evaluation = Evaluation(config, registry)
        box: list[Any] = []

        def run() -> None:
            import asyncio

            box.append(asyncio.run(evaluation.run()))

        report.run(subject, "a run completes", run)
        report.add(subject, "no hook raised during the run", "; ".join(evaluation.reporters.disabled.values()) or None)
        if box:
            report.add(
                subject,
                "the run's results are complete",
                None if box[0].status == "complete" and box[0].n_scored == 4 else str(box[0].status),
            )
    return report


# --- by name (``bitagent plugins check NAME``) ---------------------------------------------------------


def _build(report: Report, subject: str, factory: Callable[[], object]) -> object | None:
    box: list[object] = []

    def build() -> None:
        box.append(factory())

    report.run(subject, "the factory builds it", build)
    return box[0] if box else None


def check_registered(
    registry: PluginRegistry,
    name: str,
    *,
    kind: str | None = None,
    args: list[str] | None = None,
    model: str | None = None,
    backend_options: dict[str, str] | None = None,
    start: bool = True,
) -> Report:
    """Run the checks on whatever is registered under ``name`` (a task source, backend, scorer or
    competition), or, when ``name`` is a plugin with reporting hooks, on that plugin as a reporter."""
    report = Report()
    kinds = [kind] if kind else list(PluginRegistry.KINDS)
    found = False
    # NAME is what is registered, or else the plugin (entry point) that registered it: `bitagent plugins`
    # lists plugins by their entry-point names
    targets = [(k, name) for k in kinds if name in registry.registrations(k)]
    if not targets:
        targets = [(k, r.name) for k in kinds for r in registry.registrations(k).values() if r.plugin == name]
    for k, registered in targets:
        registrations = registry.registrations(k)
        found = True
        registration = registrations[registered]
        if k == "task_sources":
            report.extend(check_task_source(registration.factory, args, subject=f"task source {registered!r}"))
        elif k == "scorers":
            scorer = _build(report, f"scorer {registered!r}", registration.factory)
            if scorer is not None:
                report.extend(check_scorer(scorer, subject=f"scorer {registered!r}"))
        elif k == "backends":
            options = registry.backend_options(registered, backend_options or {})
            report.extend(
                check_backend(registration.factory, model, options, start=start, subject=f"backend {registered!r}")
            )
        elif k == "competitions":
            competition = _build(report, f"competition {registered!r}", registration.factory)
            if competition is not None:
                report.extend(check_competition(competition, registry, subject=f"competition {registered!r}"))
    if kind is None:
        for info in registry.plugins:
            if info.name == name and info.error is None and any(h.startswith("on_") for h in info.hooks):
                plugin = registry.pm.get_plugin(name)
                report.extend(check_reporter(plugin, subject=f"reporter {name!r}"))
                found = True
            elif info.name == name and info.error is not None:
                report.add(f"plugin {name!r}", "loads", info.error)
                found = True
    if not found:
        raise UnknownPluginObject(
            f"nothing is registered as {name!r} (see `bitagent plugins`)"
            + (
                ""
                if not registry.failed_plugins()
                else "; plugins that failed to load: "
                + "; ".join(f"{p.name}: {p.error}" for p in registry.failed_plugins())
            )
        )
    return report
