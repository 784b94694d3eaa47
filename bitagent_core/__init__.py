"""bitagent: evaluate tool-calling LLMs the way Bittensor Subnet 20 does.

This module is the public surface for plugins (``import bitagent_core as ba``): everything a plugin may use
is listed in ``__all__``, and the built-in plugins import nothing else from ``bitagent_core``. Anything
reached through a submodule instead (``bitagent_core.runner``, ``bitagent_core.cli``...) is internal and may
change without notice. docs/plugins.md documents each name.
"""

__version__ = "0.1.0"

from typing import TYPE_CHECKING

# Names are imported on first use (PEP 562), so that loading plugins -- every ``bitagent`` command, ``--help``
# included -- does not import the decoder, the runner or pydantic until something needs them.
_LAZY: dict[str, str] = {
    # the contract
    "PLUGIN_API_VERSION": "plugins", "hookimpl": "hookspecs",
    # the data model
    **dict.fromkeys(["ChatRequest", "Completion", "EnvironmentSpec", "ExpectedCall", "Message", "Score", "Step", "Task",
                     "Tool", "ToolCall", "Trajectory", "Turn"], "model"),
    # multi-turn tasks: environments and the safe executor of the model's calls
    **dict.fromkeys(["Executor", "SimpleEnvironment", "refuse_argument"], "agent"),
    # protocols and factories
    **dict.fromkeys(["Backend", "BackendFactory", "Competition", "CompetitionFactory", "DataProblemLike", "Reporter",
                     "Scorer", "ScorerFactory", "TaskSource", "TaskSourceFactory", "ValidatingTaskSource",
                     "Environment", "EnvironmentFactory", "GuardedEnvironment", "TrajectoryScorer",
                     "RegisterBackend", "RegisterCompetition", "RegisterEnvironment", "RegisterScorer",
                     "RegisterTaskSource"], "protocols"),
    # typed backend errors: whose fault, worth another try
    **dict.fromkeys(["BackendError", "EngineError", "Fault", "ModelError", "ServerUnavailable", "backend_error",
                     "fault_of", "should_retry"], "errors"),
    # backend options
    **dict.fromkeys(["BackendOptions", "NoOptions", "OptionError", "parse_option_args", "parse_option_string"],
                    "options"),
    # plugins and runs
    **dict.fromkeys(["PluginLoadError", "PluginRegistry", "Registration", "UnknownPluginObject", "get_registry"],
                    "plugins"),
    **dict.fromkeys(["Evaluation", "RunConfig", "RunInfo", "RunObserver", "competition_version", "config_for_resume",
                     "load_tasks", "make_task_source", "split_spec", "task_digest"], "runner"),
    "TaskLimit": "cli",
    "read_samples": "rundir",
    # the run directory's typed records (docs/schema.md)
    **dict.fromkeys(["SampleRecord", "RunResults", "CategoryStats", "SchemaError", "confidence_interval"], "records"),
    # tasks
    **dict.fromkeys(["InvalidTask", "task_problems", "validate_tasks", "check_protocol", "protocol_problems"],
                    "validation"),
    **dict.fromkeys(["check_task", "expected_arguments", "render_expected", "python_literal", "pythonic_name"],
                    "validation"),
    # shared helpers: prompting, decoding, matching, JSON files
    **dict.fromkeys(["build_request", "fold_system_prompt"], "prompting"),
    **dict.fromkeys(["Decoded", "DecodeError", "Dialect", "CallReader", "ValueReader", "ast_python_calls",
                     "bind_arguments", "decode", "decode_pythonic", "dotted_name", "json_call", "literal", "MAX_CALLS",
                     "MAX_NESTING"], "decoding"),
    **dict.fromkeys(["max_weight_matching", "standardize", "STANDARDIZE_DROP"], "matching"),
    **dict.fromkeys(["JsonlError", "read_jsonl", "write_json_atomic"], "jsonio"),
}

__all__ = sorted(_LAZY) + ["__version__"]


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
    from bitagent_core.agent import Executor, SimpleEnvironment, refuse_argument
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
        RegisterBackend,
        RegisterCompetition,
        RegisterEnvironment,
        RegisterScorer,
        RegisterTaskSource,
        Reporter,
        Scorer,
        ScorerFactory,
        TaskSource,
        TaskSourceFactory,
        TrajectoryScorer,
        ValidatingTaskSource,
    )
    from bitagent_core.records import CategoryStats, RunResults, SampleRecord, SchemaError, confidence_interval
    from bitagent_core.rundir import read_samples
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
