"""The toolkit: helpers for scorer, environment and task-source authors, a public namespace of its own
(``from bitagent_core.toolkit import decode``). docs/plugins.md ("The toolkit") documents each name.

The contract (``bitagent_core.__all__``) is what every plugin is written against; the toolkit is what a plugin
may use to do its work the way the built-in plugins do theirs. Names are imported on first use (PEP 562), so
that a plugin importing one helper does not load the decoder or the executor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

_LAZY: dict[str, str] = {
    # reading the model's calls from its text (the shared decoder)
    "Decoded": "bitagent_core.toolkit.decoding",
    "DecodeError": "bitagent_core.toolkit.decoding",
    "Dialect": "bitagent_core.toolkit.decoding",
    "CallReader": "bitagent_core.toolkit.decoding",
    "ValueReader": "bitagent_core.toolkit.decoding",
    "ast_python_calls": "bitagent_core.toolkit.decoding",
    "bind_arguments": "bitagent_core.toolkit.decoding",
    "decode": "bitagent_core.toolkit.decoding",
    "decode_pythonic": "bitagent_core.toolkit.decoding",
    "dotted_name": "bitagent_core.toolkit.decoding",
    "json_call": "bitagent_core.toolkit.decoding",
    "literal": "bitagent_core.toolkit.decoding",
    "MAX_CALLS": "bitagent_core.toolkit.decoding",
    "MAX_NESTING": "bitagent_core.toolkit.decoding",
    # matching calls and values
    "max_weight_matching": "bitagent_core.toolkit.matching",
    "standardize": "bitagent_core.toolkit.matching",
    "STANDARDIZE_DROP": "bitagent_core.toolkit.matching",
    # ground truth written as an answer
    "expected_arguments": "bitagent_core.toolkit.ground_truth",
    "render_expected": "bitagent_core.toolkit.ground_truth",
    "python_literal": "bitagent_core.toolkit.ground_truth",
    "pythonic_name": "bitagent_core.toolkit.ground_truth",
    # the request a task becomes
    "build_request": "bitagent_core.toolkit.prompting",
    "fold_system_prompt": "bitagent_core.toolkit.prompting",
    # environments and the safe executor of the model's calls
    "SimpleEnvironment": "bitagent_core.toolkit.executor",
    "Executor": "bitagent_core.toolkit.executor",
    "CALL_TIMEOUT_S": "bitagent_core.toolkit.executor",
    "CallTimeout": "bitagent_core.toolkit.executor",
    "call_with_deadline": "bitagent_core.toolkit.executor",
    "refuse_argument": "bitagent_core.toolkit.executor",
    # checking tasks and plugin objects
    "InvalidTask": "bitagent_core.toolkit.checks",
    "check_protocol": "bitagent_core.toolkit.checks",
    "check_task": "bitagent_core.toolkit.checks",
    "protocol_problems": "bitagent_core.toolkit.checks",
    "task_problems": "bitagent_core.toolkit.checks",
    "validate_tasks": "bitagent_core.toolkit.checks",
    # statistics over samples
    "confidence_interval": "bitagent_core.records",
    "summarize_samples": "bitagent_core.records",
    # JSON files
    "JsonlError": "bitagent_core.toolkit.jsonio",
    "read_jsonl": "bitagent_core.toolkit.jsonio",
    "write_json_atomic": "bitagent_core.toolkit.jsonio",
    # commands
    "TaskLimit": "bitagent_core.toolkit.commands",
    "parse_option_args": "bitagent_core.options",
}

#: the toolkit's public names
__all__ = sorted(
    [
        # reading the model's calls from its text (the shared decoder)
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
        # matching calls and values
        "max_weight_matching",
        "standardize",
        "STANDARDIZE_DROP",
        # ground truth written as an answer
        "expected_arguments",
        "render_expected",
        "python_literal",
        "pythonic_name",
        # the request a task becomes
        "build_request",
        "fold_system_prompt",
        # environments and the safe executor of the model's calls
        "SimpleEnvironment",
        "Executor",
        "CALL_TIMEOUT_S",
        "CallTimeout",
        "call_with_deadline",
        "refuse_argument",
        # checking tasks and plugin objects
        "InvalidTask",
        "check_protocol",
        "check_task",
        "protocol_problems",
        "task_problems",
        "validate_tasks",
        # statistics over samples
        "confidence_interval",
        "summarize_samples",
        # JSON files
        "JsonlError",
        "read_jsonl",
        "write_json_atomic",
        # commands
        "TaskLimit",
        "parse_option_args",
    ]
)


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bitagent_core.toolkit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # what type checkers and editors see; at run time each name comes from __getattr__
    from bitagent_core.options import parse_option_args
    from bitagent_core.records import confidence_interval, summarize_samples
    from bitagent_core.toolkit.checks import (
        InvalidTask,
        check_protocol,
        check_task,
        protocol_problems,
        task_problems,
        validate_tasks,
    )
    from bitagent_core.toolkit.commands import TaskLimit
    from bitagent_core.toolkit.decoding import (
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
    from bitagent_core.toolkit.executor import (
        CALL_TIMEOUT_S,
        CallTimeout,
        Executor,
        SimpleEnvironment,
        call_with_deadline,
        refuse_argument,
    )
    from bitagent_core.toolkit.ground_truth import expected_arguments, python_literal, pythonic_name, render_expected
    from bitagent_core.toolkit.jsonio import JsonlError, read_jsonl, write_json_atomic
    from bitagent_core.toolkit.matching import STANDARDIZE_DROP, max_weight_matching, standardize
    from bitagent_core.toolkit.prompting import build_request, fold_system_prompt
