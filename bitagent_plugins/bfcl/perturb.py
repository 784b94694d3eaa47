"""Correct answers with one defect each, for the BFCL scorer's tests and benchmarks: each kind of defect must
fail with its BFCL error type (:data:`PERTURBATIONS`)."""

from __future__ import annotations

import keyword
from typing import Any

from bitagent_core import ExpectedCall, Task
from bitagent_core.toolkit import expected_arguments, python_literal, pythonic_name

#: what each perturbation of a correct answer must fail with, in BFCL's vocabulary
PERTURBATIONS = {
    "wrong_name": "wrong_func_name",
    "missing_required": "missing_required",
    "extra_param": "unexpected_param",
    "wrong_type": "type_error",
    "wrong_value": "value_error",
}
_PLAIN_TYPES = {"string": str, "integer": int, "float": float, "boolean": bool}


def perturb(task: Task, kind: str) -> str | None:
    """The task's rendered ground truth with one defect of ``kind`` (a key of :data:`PERTURBATIONS`) put
    into its first call that can take it; None when no call can take that defect unambiguously."""
    calls = [(e, expected_arguments(task, e)) for e in task.expected_calls]
    if not calls or any(args is None for _, args in calls):
        return None
    names = {tool.name for tool in task.tools}
    for index, (expected, args) in enumerate(calls):
        assert args is not None
        tool = task.tool(expected.name)
        if tool is None:
            continue
        props = tool.properties if isinstance(tool.properties, dict) else {}
        changed = _perturb_call(kind, expected, dict(args), props, tool.required, names)
        if changed is not None:
            name, new_args = changed
            out = [(e.name, a or {}) for e, a in calls]
            out[index] = (name, new_args)
            return (
                "["
                + ", ".join(f"{n}({', '.join(f'{k}={python_literal(v)}' for k, v in a.items())})" for n, a in out)
                + "]"
            )
    return None


def _perturb_call(
    kind: str, expected: ExpectedCall, args: dict[str, Any], props: dict[str, Any], required: list[str], names: set[str]
) -> tuple[str, dict[str, Any]] | None:
    if not pythonic_name(expected.name) or not all(k.isidentifier() and not keyword.iskeyword(k) for k in args):
        return None
    if kind == "wrong_name":
        name = expected.name + "_renamed"
        return (name, args) if name not in names else None
    if kind == "missing_required":
        for param in required:
            if param in args:
                del args[param]
                return expected.name, args
        return None
    if kind == "extra_param":
        if "zz_unexpected" in props:
            return None
        args["zz_unexpected"] = 1
        return expected.name, args
    for param in list(args):
        schema = props.get(param)
        declared = _PLAIN_TYPES.get(str(schema.get("type"))) if isinstance(schema, dict) else None
        options = [o for o in expected.arguments.get(param, ()) if o != ""]
        if declared is None or not options or any(type(o) is not declared for o in options):
            continue  # only plain parameters whose every value has the declared type (no "variables")
        if kind == "wrong_type":
            args[param] = 12345 if declared is str else "not a " + declared.__name__
            return expected.name, args
        if kind == "wrong_value":
            if declared is str:
                new: Any = "zq" + "x" * 7 + "unlikely"
            elif declared is bool:
                if len(set(options)) > 1:
                    continue
                new = not options[0]
            else:
                new = max(options) * 7 + 1013
                if declared is float:
                    new = float(new) + 0.5
            if new in options:
                continue
            args[param] = new
            return expected.name, args
    return None
