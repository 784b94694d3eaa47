"""What each kind of plugin object must provide. Plugins implement these; the core talks to them only through
the members declared here (docs/plugins.md documents each one; ``bitagent_testing`` checks them).

Part of the contract: like the data model, the records, the hooks and the options, this module imports nothing
from the machinery (runner, CLI, plugin loading), not even for type checking (``.importlinter`` enforces it).
What a plugin sees of the machinery is declared here as a protocol: :class:`Registry` and :class:`RunView`."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from bitagent_core.model import ChatRequest, Completion, Score, Task, ToolCall, Trajectory

if TYPE_CHECKING:  # contract modules, imported for types only: loading plugins stays light (no pydantic)
    from bitagent_core.options import BackendOptions
    from bitagent_core.records import RunResults, SampleRecord

#: the kinds of plugin object a registry holds
PluginKind = Literal["task_sources", "backends", "scorers", "competitions", "environments"]
#: how a competition's scores become weights
WeightRule = Literal["cubic", "linear", "softmax"]


class Registry(Protocol):
    """What a plugin sees of the plugin registry (:class:`bitagent_core.PluginRegistry` is one): the
    registrations of a kind, and objects built from them."""

    def registrations(self, kind: str) -> Mapping[str, Any]:
        """Name -> registration of every object of ``kind`` registered."""
        ...

    def create(self, kind: str, name: str, *args: Any) -> Any:
        """A new object from the factory registered as ``name`` (given the registry when it takes one)."""
        ...


class RunConfigView(Protocol):
    """What a reporter reads of a run's settings (``RunConfig``)."""

    @property
    def tasks(self) -> str: ...
    @property
    def backend(self) -> str: ...
    @property
    def model(self) -> str | None: ...
    @property
    def scorer(self) -> str: ...
    @property
    def limit(self) -> int | None: ...
    @property
    def seed(self) -> int: ...

    def to_json(self) -> dict[str, Any]: ...


class RunView(Protocol):
    """What the run hooks receive as ``run`` (the runner's ``RunInfo``)."""

    @property
    def run_dir(self) -> Path: ...
    @property
    def config(self) -> RunConfigView: ...
    @property
    def n_tasks(self) -> int: ...
    @property
    def resumed(self) -> bool: ...


@runtime_checkable
class TaskSource(Protocol):
    # Read-only members: a class attribute (``version = "1"``) or a property both satisfy them.
    @property
    def name(self) -> str:
        """The name it is registered under (also recorded as each task's ``source``)."""
        ...

    @property
    def version(self) -> str:
        """Recorded in every run and in every task; change it whenever the tasks for a seed change."""
        ...

    @property
    def description(self) -> str: ...

    def categories(self) -> list[str]:
        """The categories this source can produce (``bitagent tasks list``); each ``name:category`` must be
        accepted by the factory."""
        ...

    def tasks(self, seed: int, limit: int | None) -> Iterator[Task]:
        """The tasks, deterministic for a given seed; ``limit`` caps how many (``None``: all of them, which
        may be a fixed default number for generated sources). Task ids must be unique."""
        ...


@runtime_checkable
class DataProblemLike(Protocol):
    """One problem a task source found in its own data (:meth:`ValidatingTaskSource.validate`)."""

    @property
    def task_id(self) -> str: ...

    @property
    def severity(self) -> str:
        """``error`` (no answer can pass) or ``warning`` (inconsistent but answerable)."""
        ...

    @property
    def message(self) -> str: ...

    def to_json(self) -> dict[str, str]: ...


@runtime_checkable
class ValidatingTaskSource(TaskSource, Protocol):
    """A task source that checks its own data (``bitagent tasks validate`` uses it instead of the generic
    structural check)."""

    def validate(self) -> Sequence[DataProblemLike]: ...


@runtime_checkable
class Backend(Protocol):
    @property
    def default_concurrency(self) -> int:
        """Requests in flight when ``--concurrency`` is not given."""
        ...

    async def start(self, run_dir: Path | None) -> None:
        """Load the model or start the server. Logs go under ``run_dir``; it is ``None`` when there is no
        run directory (tests, ``bitagent plugins check``, embedding applications)."""

    async def complete(self, request: ChatRequest) -> Completion:
        """Answer one request. Failures are raised; the core records them per sample."""
        ...

    async def close(self) -> None:
        """Release everything ``start`` took. Must be safe to call twice and after a failed start."""

    def describe(self) -> dict[str, Any]:
        """What was evaluated, for ``results.json``: model, sha256 or revision, options."""
        ...


@runtime_checkable
class Scorer(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str:
        """Change it whenever a verdict changes (recorded in every run)."""
        ...

    def score(self, task: Task, completion: Completion) -> Score:
        """Score one completion. Must not raise on any model output; a task whose ``expected_calls`` is empty
        (irrelevance) passes only when the model makes no call."""
        ...


@runtime_checkable
class TrajectoryScorer(Protocol):
    """A scorer that can also score multi-turn tasks (tasks with an ``environment``)."""

    name: str
    version: str

    def score_trajectory(self, task: Task, trajectory: Trajectory) -> Score:
        """Score one played (or saved) trajectory. Must not raise on any model output."""


@runtime_checkable
class Environment(Protocol):
    """The stateful world of a multi-turn task, built fresh for each trajectory by the factory registered
    through ``register_environments`` (``factory(config: dict) -> Environment``).

    The model's calls are dispatched by :mod:`bitagent_core._agent`, never evaluated: only to a public method
    (no leading ``_``) defined on the class of one of :meth:`objects`, with literal arguments bound by the
    method's signature. Where two objects define a method of the same name, the later object wins.

    Optionally, ``guard(call) -> str | None`` refuses a call before it runs (the returned text is its error
    result): where a method would take unbounded time or memory on some arguments (a huge integer power),
    since a call that holds the GIL cannot be interrupted.
    """

    def objects(self) -> Sequence[object]:
        """The objects whose public methods the model may call."""

    def decode(self, text: str, native_calls: tuple[ToolCall, ...]) -> tuple[list[ToolCall], str | None]:
        """Read one step of model output: (calls, None), or ([], why) when it is not a call (the turn ends).
        ``bitagent_core.toolkit.SimpleEnvironment`` reads every format the shared decoder knows."""

    def format_result(self, value: Any) -> str:
        """What the model is shown for a call's return value."""


@runtime_checkable
class GuardedEnvironment(Environment, Protocol):
    """An environment that refuses some calls before they run: ``guard(call)`` returns the error text shown to
    the model, or None to let the call run (for methods that could take unbounded time on some arguments)."""

    def guard(self, call: ToolCall) -> str | None: ...


@runtime_checkable
class PersistentEnvironment(Environment, Protocol):
    """An environment whose state outlives one trajectory (BFCL's memory: a prerequisite conversation writes
    the memory a later question reads). The agent loop calls ``prepare`` once before the first request and
    ``finish`` once after the last; both run in a worker thread, and what they raise fails the sample
    (``environment_error``). Tasks that must finish first are named in ``Task.metadata["depends_on"]``: the
    runner starts a task only after those of its dependencies that are in the run have ended (ok or not)."""

    def prepare(self, task: Task, run_dir: Path | None) -> Task:
        """Load the state (from ``run_dir``; None outside a run) and return the task to play: the same id,
        its messages completed with what the state says (a system prompt showing the memory)."""
        ...

    def finish(self, trajectory: Trajectory, error: str | None) -> None:
        """The trajectory was played (``error``: why it stopped early, None when it ran to its end)."""
        ...


@runtime_checkable
class Competition(Protocol):
    """What a validator evaluates miners on (``register_competitions``). Its task sample is the task source
    ``competition:<name>``, whose ``version`` keys evaluations (changing it regrades every model)."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def sample_size(self) -> int: ...

    @property
    def scorer(self) -> str:
        """A registered scorer's name."""
        ...

    @property
    def weight_rule(self) -> str:
        """How scores become weights: ``cubic``, ``linear`` or ``softmax``."""
        ...

    def mix(self, registry: Registry) -> dict[str, float]:
        """Task source spec -> share of the sample (shares need not sum to 1; they are normalised)."""
        ...


@runtime_checkable
class ScoringCompetition(Competition, Protocol):
    """A competition with its own rule for an evaluation's score (the ``bfcl`` competition: BFCL's overall);
    without it, the score is the mean task score. Optional members a validator also reads:
    ``longevity_versions`` and ``longevity_share`` (model longevity: the model's scores under each of the last
    N earlier competition versions, each weighing ``share``; the current version weighs ``1 - N * share``)."""

    def score_samples(self, samples: Sequence[Mapping[str, Any]]) -> float:
        """The evaluation's score from its sample records (``SampleRecord.to_json()``; a missing one is
        ``{"task_id": ..., "status": "failed", "score": 0.0}``)."""
        ...


class Reporter(Protocol):
    """The reporting hooks, as one object: a plugin implementing them with ``@hookimpl`` sees every run.

    A reporter that raises is disabled for the rest of the run (one warning line); it never ends the run."""

    def on_run_start(self, run: RunView) -> None: ...

    def on_sample_scored(self, run: RunView, sample: SampleRecord) -> None: ...

    def on_run_end(self, run: RunView, results: RunResults) -> None: ...


#: ``factory(arg)``: ``arg`` is what follows the colon in ``--tasks name:arg`` (``None`` without a colon)
TaskSourceFactory = Callable[[str | None], TaskSource]
#: ``factory(model, options)``: ``options`` is an instance of the options model registered with the backend.
#: (The second parameter is ``Any`` because each backend narrows it to its own options class.)
BackendFactory = Callable[[str | None, Any], Backend]
ScorerFactory = Callable[[], Scorer]
CompetitionFactory = Callable[[], Competition]
EnvironmentFactory = Callable[[dict[str, Any]], Environment]


class RegisterTaskSource(Protocol):
    def __call__(self, name: str, factory: TaskSourceFactory, description: str = "") -> None: ...


class RegisterBackend(Protocol):
    def __call__(
        self, name: str, factory: BackendFactory, description: str = "", *, options: type[BackendOptions] | None = None
    ) -> None: ...


class RegisterScorer(Protocol):
    def __call__(self, name: str, factory: ScorerFactory, description: str = "") -> None: ...


class RegisterCompetition(Protocol):
    def __call__(self, name: str, factory: CompetitionFactory, description: str = "") -> None: ...


class RegisterEnvironment(Protocol):
    def __call__(self, name: str, factory: EnvironmentFactory, description: str = "") -> None: ...
