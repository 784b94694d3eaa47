"""The hooks a bitagent plugin may implement. A plugin is a module with ``@hookimpl`` functions,
registered under the ``bitagent`` entry-point group. See docs/plugins.md for one example per hook."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from bitagent_core.records import RunResults, SampleRecord

hookspec = pluggy.HookspecMarker("bitagent")
hookimpl = pluggy.HookimplMarker("bitagent")

#: ``register(name, factory, description="")``; registration must not import heavy dependencies.
Register = Callable[..., None]


@hookspec
def register_task_sources(register: Register) -> None:
    """Register task sources: ``register("name", factory)``, ``factory(arg: str | None) -> TaskSource``.

    ``arg`` is what follows the colon in ``--tasks name:arg`` (a category, a file path...)."""


@hookspec
def register_backends(register: Register) -> None:
    """Register backends: ``register("name", factory)``, ``factory(model: str | None, options: dict) -> Backend``."""


@hookspec
def register_scorers(register: Register) -> None:
    """Register scorers: ``register("name", factory)``, ``factory() -> Scorer``."""


@hookspec
def register_competitions(register: Register) -> None:
    """Register competitions: ``register("name", factory)``, ``factory() -> Competition``."""


@hookspec
def register_commands(cli: Any) -> None:
    """Add click commands or groups to the ``bitagent`` CLI group."""


@hookspec
def on_run_start(run: Any) -> None:
    """A run begins. ``run`` is a :class:`bitagent_core.runner.RunInfo`."""


@hookspec
def on_sample_scored(run: Any, sample: SampleRecord) -> None:
    """One sample finished (scored or failed); ``sample`` is the record written to ``samples.jsonl``
    (:class:`bitagent_core.records.SampleRecord`; ``sample.to_json()`` is the line)."""


@hookspec
def on_run_end(run: Any, results: RunResults) -> None:
    """A run ended (complete, interrupted or failed); ``results`` is what was written to ``results.json``
    (:class:`bitagent_core.records.RunResults`)."""
