"""bitagent: evaluate tool-calling LLMs the way Bittensor Subnet 20 does.

This module is the public surface for plugins (``import bitagent_core as ba``): the contract a plugin is
written against is ``__all__`` (docs/plugins.md documents each name), nothing more. Helpers for scorer,
environment and task-source authors (decoding, matching, ground-truth rendering, prompting, the safe executor,
task checks, JSON files) are the toolkit, their own public namespace: ``bitagent_core.toolkit``. The contract
modules (``model``, ``protocols``, ``hookspecs``, ``records``, ``options``, ``errors``, ``rundir``) are
public; modules with a leading underscore (``_runner``, ``_agent``, ``_plugins``, ``_cli``...) are the
machinery: internal, they may change in any release.
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

try:
    __version__ = _version("bitagent")  # one place: the git tag the package was built from (setuptools-scm)
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0+unknown"

from typing import TYPE_CHECKING

# Names are imported on first use (PEP 562), so that loading plugins -- every ``bitagent`` command, ``--help``
# included -- does not import the decoder, the runner or pydantic until something needs them.
_LAZY: dict[str, str] = {
    # the contract
    "PLUGIN_API_VERSION": "_plugins",
    "hookimpl": "hookspecs",
    # the data model
    "ChatRequest": "model",
    "Completion": "model",
    "EnvironmentSpec": "model",
    "ExpectedCall": "model",
    "Message": "model",
    "Score": "model",
    "Step": "model",
    "Task": "model",
    "Tool": "model",
    "ToolCall": "model",
    "Trajectory": "model",
    "Turn": "model",
    # protocols: what each plugin object provides, and what a plugin sees of the machinery
    "Backend": "protocols",
    "Competition": "protocols",
    "Environment": "protocols",
    "GuardedEnvironment": "protocols",
    "PersistentEnvironment": "protocols",
    "Registry": "protocols",
    "Reporter": "protocols",
    "RunView": "protocols",
    "Scorer": "protocols",
    "ScoringCompetition": "protocols",
    "TaskSource": "protocols",
    "TrajectoryScorer": "protocols",
    "ValidatingTaskSource": "protocols",
    "RegisterBackend": "protocols",
    "RegisterCompetition": "protocols",
    "RegisterEnvironment": "protocols",
    "RegisterScorer": "protocols",
    "RegisterTaskSource": "protocols",
    # backend options
    "BackendOptions": "options",
    "NoOptions": "options",
    "OptionError": "options",
    # the registry
    "PluginRegistry": "_plugins",
    "UnknownPluginObject": "_plugins",
    "get_registry": "_plugins",
    # running an evaluation (the validator and the runs commands drive runs through these)
    "Evaluation": "_runner",
    "RunConfig": "_runner",
    "RunObserver": "_runner",
    "competition_version": "_runner",
    "load_tasks": "_runner",
    "make_task_source": "_runner",
    "task_digest": "_runner",
    "render_results": "_results_view",
    # the run log
    "RunDir": "rundir",
    "RunDirLocked": "rundir",
    "RunResults": "records",
    "SampleRecord": "records",
    "score_sample": "_agent",
    # typed backend errors: whose fault a failure is, and whether another try may help
    "BackendError": "errors",
    "EngineError": "errors",
    "ModelError": "errors",
    "ServerUnavailable": "errors",
    "Fault": "errors",
    "backend_error": "errors",
    "fault_of": "errors",
    "should_retry": "errors",
}

#: the contract: what a plugin needs, and all it may rely on
__all__ = sorted(
    [
        "__version__",
        # the contract
        "PLUGIN_API_VERSION",
        "hookimpl",
        # the data model
        "ChatRequest",
        "Completion",
        "EnvironmentSpec",
        "ExpectedCall",
        "Message",
        "Score",
        "Step",
        "Task",
        "Tool",
        "ToolCall",
        "Trajectory",
        "Turn",
        # protocols: what each plugin object provides, and what a plugin sees of the machinery
        "Backend",
        "Competition",
        "Environment",
        "GuardedEnvironment",
        "PersistentEnvironment",
        "Registry",
        "Reporter",
        "RunView",
        "Scorer",
        "ScoringCompetition",
        "TaskSource",
        "TrajectoryScorer",
        "ValidatingTaskSource",
        "RegisterBackend",
        "RegisterCompetition",
        "RegisterEnvironment",
        "RegisterScorer",
        "RegisterTaskSource",
        # backend options
        "BackendOptions",
        "NoOptions",
        "OptionError",
        # the registry
        "PluginRegistry",
        "UnknownPluginObject",
        "get_registry",
        # running an evaluation (the validator and the runs commands drive runs through these)
        "Evaluation",
        "RunConfig",
        "RunObserver",
        "competition_version",
        "load_tasks",
        "make_task_source",
        "task_digest",
        "render_results",
        # the run log
        "RunDir",
        "RunDirLocked",
        "RunResults",
        "SampleRecord",
        "score_sample",
        # typed backend errors: whose fault a failure is, and whether another try may help
        "BackendError",
        "EngineError",
        "ModelError",
        "ServerUnavailable",
        "Fault",
        "backend_error",
        "fault_of",
        "should_retry",
    ]
)


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bitagent_core' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"bitagent_core.{module}"), name)
    globals()[name] = value  # once
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # what type checkers and editors see; at run time each name comes from __getattr__
    from bitagent_core._agent import score_sample
    from bitagent_core._plugins import PLUGIN_API_VERSION, PluginRegistry, UnknownPluginObject, get_registry
    from bitagent_core._results_view import render_results
    from bitagent_core._runner import (
        Evaluation,
        RunConfig,
        RunObserver,
        competition_version,
        load_tasks,
        make_task_source,
        task_digest,
    )
    from bitagent_core.errors import (
        BackendError,
        EngineError,
        Fault,
        ModelError,
        ServerUnavailable,
        backend_error,
        fault_of,
        should_retry,
    )
    from bitagent_core.hookspecs import hookimpl
    from bitagent_core.model import (
        ChatRequest,
        Completion,
        EnvironmentSpec,
        ExpectedCall,
        Message,
        Score,
        Step,
        Task,
        Tool,
        ToolCall,
        Trajectory,
        Turn,
    )
    from bitagent_core.options import BackendOptions, NoOptions, OptionError
    from bitagent_core.protocols import (
        Backend,
        Competition,
        Environment,
        GuardedEnvironment,
        PersistentEnvironment,
        RegisterBackend,
        RegisterCompetition,
        RegisterEnvironment,
        RegisterScorer,
        RegisterTaskSource,
        Registry,
        Reporter,
        RunView,
        Scorer,
        ScoringCompetition,
        TaskSource,
        TrajectoryScorer,
        ValidatingTaskSource,
    )
    from bitagent_core.records import RunResults, SampleRecord
    from bitagent_core.rundir import RunDir, RunDirLocked
