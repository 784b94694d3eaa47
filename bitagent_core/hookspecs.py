"""The hooks a bitagent plugin may implement. A plugin is a module (or object) with ``@hookimpl`` functions,
registered under the ``bitagent`` entry-point group. See docs/plugins.md for one example per hook.

A function marked ``@hookimpl`` whose name is not one of these hooks is a load error (a typo such as
``register_scorer`` would otherwise be silently ignored)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from bitagent_core.protocols import (
        RegisterBackend,
        RegisterCompetition,
        RegisterEnvironment,
        RegisterScorer,
        RegisterTaskSource,
        RunView,
    )
    from bitagent_core.records import RunResults, SampleRecord

hookspec = pluggy.HookspecMarker("bitagent")
hookimpl = pluggy.HookimplMarker("bitagent")


@hookspec
def register_task_sources(register: RegisterTaskSource) -> None:
    """Register task sources: ``register("name", factory, description="")``, ``factory(arg) -> TaskSource``.

    ``arg`` is what follows the colon in ``--tasks name:arg`` (a category, a file path...), else ``None``.
    Registration must not import heavy dependencies."""


@hookspec
def register_backends(register: RegisterBackend) -> None:
    """Register backends: ``register("name", factory, description="", options=OptionsModel)``,
    ``factory(model: str | None, options: OptionsModel) -> Backend``. ``OptionsModel`` subclasses
    :class:`bitagent_core.BackendOptions`; without one the backend takes no options."""


@hookspec
def register_scorers(register: RegisterScorer) -> None:
    """Register scorers: ``register("name", factory, description="")``, ``factory() -> Scorer``."""


@hookspec
def register_competitions(register: RegisterCompetition) -> None:
    """Register competitions: ``register("name", factory, description="")``, ``factory() -> Competition``."""


@hookspec
def register_environments(register: RegisterEnvironment) -> None:
    """Register environments for multi-turn tasks: ``register("name", factory, description="")``,
    ``factory(config: dict) -> Environment`` (a fresh one per trajectory; ``config`` is the task's
    ``EnvironmentSpec.config``)."""


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add click commands or groups to the ``bitagent`` CLI group."""


@hookspec
def on_run_start(run: RunView) -> None:
    """A run begins (before the model loads)."""


@hookspec
def on_sample_scored(run: RunView, sample: SampleRecord) -> None:
    """One sample finished (scored or failed); ``sample`` is the record written to ``samples.jsonl``
    (:class:`bitagent_core.records.SampleRecord`; ``sample.to_json()`` is the line)."""


@hookspec
def on_run_end(run: RunView, results: RunResults) -> None:
    """A run ended (complete, interrupted or failed); ``results`` is what was written to ``results.json``
    (:class:`bitagent_core.records.RunResults`)."""


@hookspec
def on_round_end(round: dict[str, Any], feedback: list[dict[str, Any]]) -> None:
    """A validator round ended (``round``: id, seed, competition, version). ``feedback``: one entry per miner
    whose model was evaluated in it (uid, hotkey, model, score, per-task results); a round's tasks are
    private until this hook."""
