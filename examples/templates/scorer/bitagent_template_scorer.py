"""Template scorer ``template-scorer``: the right functions with acceptable argument values, in any order."""

from __future__ import annotations

from collections import Counter

import bitagent_core as ba
from bitagent_core import toolkit

BITAGENT_PLUGIN_API = "1.0"


def _matches(call: ba.ToolCall, expected: ba.ExpectedCall) -> bool:
    if call.name != expected.name or call.positional:
        return False
    for param, options in expected.arguments.items():
        if param in call.arguments:
            if call.arguments[param] not in options:
                return False
        elif "" not in options:  # "" among the options: the argument may be left out
            return False
    return set(call.arguments) <= set(expected.arguments)


class TemplateScorer:
    name = "template-scorer"
    version = "1"  # change it when a verdict changes

    def score(self, task: ba.Task, completion: ba.Completion) -> ba.Score:
        decoded = toolkit.decode(completion.text, completion.tool_calls)  # never raises, never evaluates
        calls = decoded.calls if decoded.ok else ()
        if task.expects_no_call:  # irrelevance: passing means making no call at all
            ok = not calls
            return ba.Score(
                float(ok),
                {"no_call": float(ok)},
                passed=ok,
                decoded_calls=calls,
                error_type=None if ok else "irrelevance_call",
            )
        if not decoded.ok:
            return ba.Score(0.0, error_type="decode_error", detail=decoded.error or "")
        names_ok = Counter(c.name for c in calls) == Counter(e.name for e in task.expected_calls)
        unmatched = list(task.expected_calls)
        for call in calls:
            hit = next((e for e in unmatched if _matches(call, e)), None)
            if hit is not None:
                unmatched.remove(hit)
        ok = names_ok and not unmatched and len(calls) == len(task.expected_calls)
        value = 0.5 * names_ok + 0.5 * ok
        return ba.Score(
            value,
            {"names": float(names_ok), "arguments": float(ok)},
            passed=ok,
            decoded_calls=calls,
            error_type=None if ok else ("wrong_func_name" if not names_ok else "value_error"),
        )


@ba.hookimpl
def register_scorers(register: ba.RegisterScorer) -> None:
    register("template-scorer", TemplateScorer, description="right functions and argument values, any order")
