"""bitagent: evaluate tool-calling LLMs the way Bittensor Subnet 20 does.

This module is the public surface for plugins (``import bitagent_core as ba``): everything a plugin may use
is listed in ``__all__``, and the built-in plugins import nothing else from ``bitagent_core``. Anything
reached through a submodule instead (``bitagent_core.runner``, ``bitagent_core.cli``...) is internal and may
change without notice. docs/plugins.md documents each name.
"""

__version__ = "0.1.0"

# ruff: noqa: E402 - __version__ comes first: the submodules below read it
from bitagent_core.decoding import Decoded, DecodeError, Expression, bind_arguments, decode, decode_pythonic, json_call
from bitagent_core.hookspecs import hookimpl
from bitagent_core.jsonio import JsonlError, read_jsonl, write_json_atomic
from bitagent_core.matching import max_weight_matching
from bitagent_core.model import ChatRequest, Completion, ExpectedCall, Message, Score, Task, Tool, ToolCall
from bitagent_core.options import BackendOptions, NoOptions, OptionError, parse_option_args, parse_option_string
from bitagent_core.plugins import (
    PLUGIN_API_VERSION,
    PluginLoadError,
    PluginRegistry,
    Registration,
    UnknownPluginObject,
    get_registry,
)
from bitagent_core.prompting import build_request
from bitagent_core.protocols import (
    Backend,
    BackendFactory,
    Competition,
    CompetitionFactory,
    DataProblemLike,
    RegisterBackend,
    RegisterCompetition,
    RegisterScorer,
    RegisterTaskSource,
    Reporter,
    Scorer,
    ScorerFactory,
    TaskSource,
    TaskSourceFactory,
    ValidatingTaskSource,
)
from bitagent_core.rescore import check_task
from bitagent_core.runner import Evaluation, RunConfig, RunInfo, config_for_resume, make_task_source, split_spec
from bitagent_core.validation import InvalidTask, check_protocol, protocol_problems, task_problems, validate_tasks

# The typed run records (SampleRecord, RunResults: bitagent_core.records) and the multi-turn Environment
# protocol join this surface when they land; add them to the imports and to __all__ below.

__all__ = [
    # the contract
    "PLUGIN_API_VERSION", "hookimpl",
    # the data model
    "ChatRequest", "Completion", "ExpectedCall", "Message", "Score", "Task", "Tool", "ToolCall",
    # protocols and factories
    "Backend", "BackendFactory", "Competition", "CompetitionFactory", "DataProblemLike", "Reporter", "Scorer",
    "ScorerFactory", "TaskSource", "TaskSourceFactory", "ValidatingTaskSource",
    "RegisterBackend", "RegisterCompetition", "RegisterScorer", "RegisterTaskSource",
    # backend options
    "BackendOptions", "NoOptions", "OptionError", "parse_option_args", "parse_option_string",
    # plugins and runs
    "PluginLoadError", "PluginRegistry", "Registration", "UnknownPluginObject", "get_registry",
    "Evaluation", "RunConfig", "RunInfo", "config_for_resume", "make_task_source", "split_spec",
    # tasks
    "InvalidTask", "check_task", "task_problems", "validate_tasks", "check_protocol", "protocol_problems",
    # shared helpers: prompting, decoding, matching, JSON files
    "build_request", "Decoded", "DecodeError", "Expression", "bind_arguments", "decode", "decode_pythonic",
    "json_call", "max_weight_matching", "JsonlError", "read_jsonl", "write_json_atomic",
    "__version__",
]
