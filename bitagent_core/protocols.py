"""What a task source, a backend and a scorer must provide. Plugins implement these; the core only
talks to them through these methods."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from bitagent_core.model import ChatRequest, Completion, Score, Task, ToolCall, Trajectory

if TYPE_CHECKING:
    from bitagent_core.plugins import PluginRegistry


@runtime_checkable
class TaskSource(Protocol):
    name: str
    version: str
    description: str

    def categories(self) -> list[str]:
        """The categories this source can produce (for ``bitagent tasks list``)."""

    def tasks(self, seed: int, limit: int | None) -> Iterator[Task]:
        """The tasks, deterministic for a given seed; ``limit`` caps how many."""


@runtime_checkable
class Backend(Protocol):
    #: requests in flight when ``--concurrency`` is not given
    default_concurrency: int

    async def start(self, run_dir: Path | None) -> None:
        """Load the model or start the server (logs go under ``run_dir``)."""

    async def complete(self, request: ChatRequest) -> Completion:
        """Answer one request. Failures are raised; the core records them per sample."""

    async def close(self) -> None:
        """Release everything ``start`` took. Must be safe to call twice and after a failed start."""

    def describe(self) -> dict[str, Any]:
        """What was evaluated, for ``results.json``: model, sha256 or revision, options."""


@runtime_checkable
class Scorer(Protocol):
    name: str
    version: str

    def score(self, task: Task, completion: Completion) -> Score:
        """Score one completion. Must not raise on any model output."""


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

    The model's calls are dispatched by :mod:`bitagent_core.agent`, never evaluated: only to a public method
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
        ``bitagent_core.agent.SimpleEnvironment`` reads every format the shared decoder knows."""

    def format_result(self, value: Any) -> str:
        """What the model is shown for a call's return value."""


@runtime_checkable
class Competition(Protocol):
    """What a validator evaluates miners on (``register_competitions``). Its task sample is the task source
    ``competition:<name>``, whose ``version`` keys evaluations (changing it regrades every model)."""

    name: str
    version: str
    description: str
    sample_size: int
    scorer: str
    weight_rule: str

    def mix(self, registry: PluginRegistry) -> dict[str, float]:
        """Task source spec -> share of the sample (shares need not sum to 1; they are normalised)."""
