"""bitagent: evaluate tool-calling LLMs the way Bittensor Subnet 20 does.

This module is the public surface for plugins (``import bitagent_core as ba``): the contract a plugin is
written against is ``__all__`` (docs/plugins.md documents each name). More names are importable from here for
the built-in plugins and for compatibility (the runner, the decoder's parts, validation helpers); they are
not part of the contract and may change. Anything reached through a submodule (``bitagent_core.runner``,
``bitagent_core.cli``...) is internal.
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
    "PLUGIN_API_VERSION": "plugins",
    "hookimpl": "hookspecs",
    # the data model
    **dict.fromkeys(
        [
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
        ],
        "model",
    ),
    # multi-turn tasks: environments and the safe executor of the model's calls
    **dict.fromkeys(
        [
            "Executor",
            "CALL_TIMEOUT_S",
            "CallTimeout",
            "call_with_deadline",
            "SimpleEnvironment",
            "refuse_argument",
            "score_sample",
        ],
        "agent",
    ),
    # protocols and factories
    **dict.fromkeys(
        [
            "Backend",
            "BackendFactory",
            "Competition",
            "CompetitionFactory",
            "DataProblemLike",
            "Reporter",
            "Scorer",
            "ScorerFactory",
            "TaskSource",
            "TaskSourceFactory",
            "ValidatingTaskSource",
            "Environment",
            "EnvironmentFactory",
            "GuardedEnvironment",
            "TrajectoryScorer",
            "PersistentEnvironment",
            "RegisterBackend",
            "RegisterCompetition",
            "RegisterEnvironment",
            "RegisterScorer",
            "RegisterTaskSource",
            "Registry",
            "RunView",
            "ScoringCompetition",
        ],
        "protocols",
    ),
    # typed backend errors: whose fault, worth another try
    **dict.fromkeys(
        [
            "BackendError",
            "EngineError",
            "Fault",
            "ModelError",
            "ServerUnavailable",
            "backend_error",
            "fault_of",
            "should_retry",
        ],
        "errors",
    ),
    # backend options
    **dict.fromkeys(
        ["BackendOptions", "NoOptions", "OptionError", "parse_option_args", "parse_option_string"], "options"
    ),
    # plugins and runs
    **dict.fromkeys(
        ["PluginLoadError", "PluginRegistry", "Registration", "UnknownPluginObject", "get_registry"], "plugins"
    ),
    **dict.fromkeys(
        [
            "Evaluation",
            "RunConfig",
            "RunInfo",
            "RunObserver",
            "competition_version",
            "config_for_resume",
            "load_tasks",
            "make_task_source",
            "split_spec",
            "task_digest",
        ],
        "runner",
    ),
    "TaskLimit": "cli",
    "render_results": "results_view",
    **dict.fromkeys(["RunDir", "RunDirLocked", "read_samples"], "rundir"),
    # the run directory's typed records (docs/schema.md)
    **dict.fromkeys(
        ["SampleRecord", "RunResults", "CategoryStats", "SchemaError", "confidence_interval", "summarize_samples"],
        "records",
    ),
    # tasks
    **dict.fromkeys(
        ["InvalidTask", "task_problems", "validate_tasks", "check_protocol", "protocol_problems"], "validation"
    ),
    **dict.fromkeys(
        ["check_task", "expected_arguments", "render_expected", "python_literal", "pythonic_name"], "validation"
    ),
    # shared helpers: prompting, decoding, matching, JSON files
    **dict.fromkeys(["build_request", "fold_system_prompt"], "prompting"),
    **dict.fromkeys(
        [
            "Decoded",
            "DecodeError",
            "Dialect",
            "CallReader",
            "ValueReader",
            "ast_python_calls",
            "bind_arguments",
            "decode",
            "decode_pythonic",
            "dotted_name",
            "json_call",
            "literal",
            "MAX_CALLS",
            "MAX_NESTING",
        ],
        "decoding",
    ),
    **dict.fromkeys(["max_weight_matching", "standardize", "STANDARDIZE_DROP"], "matching"),
    **dict.fromkeys(["JsonlError", "read_jsonl", "write_json_atomic"], "jsonio"),
}

#: the contract: what a plugin needs, and all it may rely on
__all__ = sorted(
    [
        "PLUGIN_API_VERSION",
        "hookimpl",
        "__version__",
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
        "fault_of",
        "should_retry",
        # helpers
        "SimpleEnvironment",
        "build_request",
        "decode",
        "Decoded",
        "DecodeError",
        "json_call",
        "read_jsonl",
        "write_json_atomic",
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
    from bitagent_core.agent import (
        CALL_TIMEOUT_S,
        CallTimeout,
        Executor,
        SimpleEnvironment,
        call_with_deadline,
        refuse_argument,
        score_sample,
    )
    from bitagent_core.cli import TaskLimit
    from bitagent_core.decoding import (
        MAX_CALLS,
        MAX_NESTING,
        CallReader,
        Decoded,
        DecodeError,
        Dialect,
        ValueReader,
        ast_python_calls,
        bind_arguments,
        decode,
        decode_pythonic,
        dotted_name,
        json_call,
        literal,
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
    from bitagent_core.jsonio import JsonlError, read_jsonl, write_json_atomic
    from bitagent_core.matching import STANDARDIZE_DROP, max_weight_matching, standardize
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
    from bitagent_core.options import BackendOptions, NoOptions, OptionError, parse_option_args, parse_option_string
    from bitagent_core.plugins import (
        PLUGIN_API_VERSION,
        PluginLoadError,
        PluginRegistry,
        Registration,
        UnknownPluginObject,
        get_registry,
    )
    from bitagent_core.prompting import build_request, fold_system_prompt
    from bitagent_core.protocols import (
        Backend,
        BackendFactory,
        Competition,
        CompetitionFactory,
        DataProblemLike,
        Environment,
        EnvironmentFactory,
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
        ScorerFactory,
        ScoringCompetition,
        TaskSource,
        TaskSourceFactory,
        TrajectoryScorer,
        ValidatingTaskSource,
    )
    from bitagent_core.records import (
        CategoryStats,
        RunResults,
        SampleRecord,
        SchemaError,
        confidence_interval,
        summarize_samples,
    )
    from bitagent_core.results_view import render_results
    from bitagent_core.rundir import RunDir, RunDirLocked, read_samples
    from bitagent_core.runner import (
        Evaluation,
        RunConfig,
        RunInfo,
        RunObserver,
        competition_version,
        config_for_resume,
        load_tasks,
        make_task_source,
        split_spec,
        task_digest,
    )
    from bitagent_core.validation import (
        InvalidTask,
        check_protocol,
        check_task,
        expected_arguments,
        protocol_problems,
        python_literal,
        pythonic_name,
        render_expected,
        task_problems,
        validate_tasks,
    )
