"""BFCL v4's agentic checker (memory and web search), without BFCL: scorers ``bfcl-strict`` and ``bfcl`` on
agentic tasks (tasks whose ``metadata["agentic"]`` is set).

As bfcl-eval 2026.3.23 scores an agentic entry (``_evaluate_single_agentic_entry`` + ``agentic_checker``):

* the result must hold exactly one turn (``agentic:inference_error`` otherwise);
* the final answer is the *last step that is not a call*: each step is decoded for execution as BFCL's
  prompting handlers do; a step that does not decode, or decodes to no call, is a candidate, the last one wins
  (``agentic:no_last_message`` when there is none, or when it is the empty string);
* the answer passes when one of the possible answers, normalised, occurs in the normalised final answer as a
  whole word (``\\b...\\b``); normalising drops ``, . / - _ * ^ ( )``, lowercases and turns ``'`` into ``"``
  (whitespace is kept, although BFCL's docstring says otherwise) -- ``agentic:answer_not_found`` otherwise.

``bfcl`` (lenient) differs in one place, a plain bug of BFCL's: the final answer is the trajectory's *last*
step, and a trajectory that ended on a call (force-terminated after 20 steps) has no final answer, where BFCL
goes back to an earlier non-call step (a model that answered, then kept calling until it was cut off, passes
there). docs/bfcl.md shows both.

Prerequisite conversations of the memory categories (``metadata["agentic"] == "memory_prereq"``) are not
scored by BFCL; here they pass when they were played (their memory snapshot is what counts).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

from bitagent_core import Score, Task, ToolCall, Trajectory

#: BFCL's ``standardize_string``: these characters are dropped before matching
_DROP = re.compile(r"[,./\-_*^()]")
AGENTIC_KINDS = ("memory", "memory_prereq", "web_search")


def standardize(text: str) -> str:
    """BFCL's normalisation of an answer: drop ``,./-_*^()``, lowercase, single quotes to double quotes."""
    return _DROP.sub("", text).lower().replace("'", '"')


@functools.lru_cache(maxsize=4096)
def _whole_word(answer: str) -> re.Pattern[str]:
    return re.compile(rf"\b{re.escape(standardize(answer))}\b")


def answer_found(response: Any, possible_answers: Sequence[str]) -> bool:
    """Whether one of ``possible_answers`` occurs, normalised, as a whole word in the normalised
    ``response`` (BFCL's ``agentic_checker``; a list response is its first element, anything else ``str``)."""
    if type(response) is list:
        response = response[0]
    if type(response) is not str:
        response = str(response)
    text = standardize(response)
    return any(_whole_word(answer).search(text) for answer in possible_answers)


def _is_call(text: str) -> bool:
    """Whether a step decodes, for execution as BFCL's prompting handlers decode it, to at least one call."""
    if "(" not in text:
        return False  # every call has one: no need to parse (most final answers)
    from bitagent_plugins.bfcl.multi_turn import decode_step  # same plugin: loading it stays light

    calls = decode_step(text)
    return bool(calls)


def final_answer(texts: Sequence[str], *, strict: bool = True) -> str | None:
    """The final answer among one turn's step texts: BFCL's last step that is not a call (``strict``), or
    the last step when it is not a call (lenient); None when there is none (or it is empty)."""
    candidates = reversed(texts) if strict else texts[-1:]
    for text in candidates:  # from the end: the first non-call found is the last one
        if not _is_call(text):
            return text or None
    return None


def _fail(error_type: str, detail: str) -> Score:
    return Score(0.0, {"answer": 0.0}, error_type=error_type, passed=False, detail=detail[:2000])


def score_agentic(task: Task, trajectory: Trajectory, *, strict: bool) -> Score:
    """One agentic trajectory's verdict (see the module docstring)."""
    kind = task.metadata.get("agentic")
    if kind == "memory_prereq":
        return Score(
            1.0,
            {"answer": 1.0},
            passed=True,
            detail="prerequisite conversation: not scored by BFCL; its memory snapshot was written",
        )
    answers = task.metadata.get("answers")
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        raise ValueError(f"task {task.id}: no possible answers in its metadata")
    if len(trajectory.turns) != 1:
        return _fail("agentic:inference_error", f"the result holds {len(trajectory.turns)} turns, not one")
    texts = [step.text if isinstance(step.text, str) else str(step.text) for step in trajectory.turns[0]]
    answer = final_answer(texts, strict=strict)
    if answer is None:
        return _fail(
            "agentic:no_last_message",
            "no step that is not a function call" + ("" if strict else " ends the trajectory"),
        )
    if not answer_found(answer, answers):
        return _fail("agentic:answer_not_found", f"none of {answers!r} in the final answer {answer[:500]!r}")
    return Score(1.0, {"answer": 1.0}, passed=True)


class BfclStepReading:
    """What the agentic environments share with BFCL's multi-turn one: steps read by BFCL's prompting decoder
    for execution, results shown as BFCL renders them."""

    def decode(self, text: str, native_calls: tuple[ToolCall, ...]) -> tuple[list[ToolCall], str | None]:
        from bitagent_plugins.bfcl.multi_turn import decode_step

        calls = decode_step(text, native_calls)
        return ([], "not a call list (BFCL's decoder)") if calls is None else (calls, None)

    def format_result(self, value: Any) -> str:
        from bitagent_plugins.bfcl.multi_turn import format_result

        return format_result(value)
