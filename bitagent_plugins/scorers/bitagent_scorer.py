"""Scorer ``bitagent``: the upstream subnet's criteria, with its bugs fixed.

Per task (max 10 points for a call, 3 for irrelevance; the score is points / max, clamped to [0, 1]):

=================  ===  ==========================================================================
criterion          max  rule
=================  ===  ==========================================================================
format             1    the answer decodes as calls; otherwise the task scores 0 (seed: -0.5)
function name      3    exact match; otherwise -0.5 and no points for arguments
argument names     3    a missing required argument -> 0; else 3 - (#extra + #missing expected), >= 0
argument values    3    3 x correct / checked; a wrong value of a required argument -> 0
irrelevance        3    no call decoded -> 3; any call -> 0 (seed: -1)
=================  ===  ==========================================================================

Deviations from upstream, each deliberate:
  * numbers compare by value: ``20.0`` answers ``20`` (upstream scored it 0.7);
  * positional arguments are bound through the tool's parameter order (upstream scored them 0.4);
  * several calls are matched to the expected calls by a maximum-weight assignment and the points are
    averaged over max(#expected, #given), so an extra call dilutes and a missing one counts 0 (upstream
    scored any two-call answer -0.125);
  * scores are clamped to [0, 1] so means stay comparable (upstream went to -0.5);
  * an argument whose acceptable values include ``""`` may be omitted (BFCL's convention).
Strings compare case-insensitively after trimming; lists in order; dicts key by key.
"""

from __future__ import annotations

import math
from typing import Any

from bitagent_core import Completion, ExpectedCall, Score, Task, ToolCall
from bitagent_core.toolkit import bind_arguments, decode, max_weight_matching

CALL_MAX = 10.0  # format 1 + name 3 + argument names 3 + argument values 3


def values_equal(given: Any, expected: Any) -> bool:
    """Lenient equality: numbers by value, strings case-insensitive, containers element-wise."""
    if isinstance(expected, bool) or isinstance(given, bool):
        return isinstance(given, bool) and isinstance(expected, bool) and given == expected
    if isinstance(expected, (int, float)) and isinstance(given, (int, float)):
        return math.isclose(given, expected, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(expected, str) and isinstance(given, str):
        return given.strip().casefold() == expected.strip().casefold()
    if isinstance(expected, (list, tuple)) and isinstance(given, (list, tuple)):
        return len(given) == len(expected) and all(values_equal(g, e) for g, e in zip(given, expected))
    if isinstance(expected, dict) and isinstance(given, dict):
        return given.keys() == expected.keys() and all(values_equal(given[k], expected[k]) for k in expected)
    return given == expected


def score_call(task: Task, expected: ExpectedCall, call: ToolCall) -> tuple[dict[str, float], str | None]:
    """Points for one call against one expected call (format excluded) and the first error found."""
    if call.name != expected.name:
        return {"function_name": -0.5, "argument_names": 0.0, "argument_values": 0.0}, "wrong_func_name"
    tool = task.tool(expected.name)
    given, problems = bind_arguments(call, tool)
    omittable = {k for k, options in expected.arguments.items() if "" in options}
    wanted = {k for k in expected.arguments if k not in omittable}
    required = set(tool.required) if tool else wanted  # without the tool's schema, all wanted are required
    missing = wanted - given.keys()
    extra = given.keys() - expected.arguments.keys()
    error: str | None = None
    if missing & required:
        names_points = 0.0
        error = "missing_required"
    else:
        names_points = max(0.0, 3.0 - len(extra) - len(missing))
        if extra:
            error = "unexpected_param"
        elif missing:
            error = "missing_optional"
    checked = [k for k in expected.arguments if k in wanted or k in given]
    correct = 0
    wrong_required = False
    for key in checked:
        if key not in given:
            continue  # already counted as missing
        if any(values_equal(given[key], option) for option in expected.arguments[key] if option != ""):
            correct += 1
        else:
            error = error or "value_error"
            wrong_required |= key in required
    values_points = 3.0 if not checked else 3.0 * correct / len(checked)
    if wrong_required:
        values_points = 0.0
    if problems and error is None:
        error = "unexpected_param"
    return {"function_name": 3.0, "argument_names": names_points, "argument_values": values_points}, error


class BitagentScorer:
    name = "bitagent"
    version = "1"

    def score(self, task: Task, completion: Completion) -> Score:
        decoded = decode(completion.text, completion.tool_calls)
        calls = decoded.calls
        if task.expects_no_call:
            if calls:
                return Score(
                    0.0,
                    {"irrelevance": 0.0},
                    error_type="irrelevance_error",
                    decoded_calls=calls,
                    detail=f"called {calls[0].name} where no call was right",
                )
            return Score(1.0, {"irrelevance": 3.0}, passed=True)
        if not decoded.ok:
            return Score(0.0, {"format": 0.0}, error_type="decode_error", detail=decoded.error or "")
        if not calls:
            return Score(0.0, {"format": 1.0}, error_type="wrong_count", detail="no call given")

        expected = task.expected_calls
        table = [[score_call(task, e, c) for c in calls] for e in expected]
        weights = [[sum(points.values()) + 0.5 + 1e-6 for points, _ in row] for row in table]  # > 0 even if -0.5
        pairs = max_weight_matching(weights)
        n = max(len(expected), len(calls))
        totals = {"format": 1.0, "function_name": 0.0, "argument_names": 0.0, "argument_values": 0.0}
        errors: list[str] = []
        for i, j in pairs:
            points, error = table[i][j]
            for key, value in points.items():
                totals[key] += value / n
            if error:
                errors.append(error)
        if len(calls) != len(expected):
            errors.insert(0, "wrong_count")
        value = sum(totals.values()) / CALL_MAX
        value = min(1.0, max(0.0, value))
        passed = not errors and math.isclose(value, 1.0)
        return Score(
            value,
            {k: round(v, 6) for k, v in totals.items()},
            error_type=None if passed else errors[0],
            passed=passed,
            decoded_calls=calls,
        )
