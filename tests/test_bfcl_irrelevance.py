"""Irrelevance: an answer that tries to call but cannot be read. BFCL counts it as an abstention (its issues
#443 and #1362); ``bfcl-strict`` keeps that rule and marks the answer, the lenient ``bfcl`` fails it."""

import pytest

from bitagent_core.model import Completion, Message, Task, Tool
from bitagent_plugins.bfcl.scorer import BfclScorer, attempts_call

TOOL = Tool.from_json(
    {
        "name": "get_weather",
        "description": "",
        "parameters": {"type": "dict", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
)
TASK = Task(id="irr", messages=(Message("user", "Tell me a joke"),), tools=(TOOL,), category="irrelevance")


@pytest.mark.parametrize(
    "text",
    [
        "get_weather(city='Paris'",  # unbalanced
        "[get_weather(city=Paris Texas)]",
        '<tool_call>{"name": "get_weather", "arguments": {"city": </tool_call>',
        'Calling get_weather(city="Paris" now',
    ],
)
def test_an_unreadable_call_fails_leniently_and_is_marked_strictly(text):
    lenient = BfclScorer().score(TASK, Completion(text=text))
    assert not lenient.passed and lenient.error_type == "unparseable_call"
    assert lenient.breakdown == {"unparseable_call": 1.0}
    strict = BfclScorer(strict=True).score(TASK, Completion(text=text))
    assert strict.passed and strict.breakdown == {"unparseable_call": 1.0}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Why did the chicken cross the road? To get to the other side.",
        "I can't get the weather for that; the tools do not fit.",
        "get_weathering(is fun",
    ],
)
def test_a_real_abstention_passes_both(text):
    for scorer in (BfclScorer(), BfclScorer(strict=True)):
        score = scorer.score(TASK, Completion(text=text))
        assert score.passed and not score.breakdown, (scorer.name, text)


def test_a_readable_call_fails_both():
    for scorer in (BfclScorer(), BfclScorer(strict=True)):
        score = scorer.score(TASK, Completion(text="get_weather(city='Paris')"))
        assert not score.passed and score.error_type == "irrelevance_error"


def test_what_counts_as_an_attempt():
    assert attempts_call(TASK, "x = get_weather( 'Paris'")
    assert not attempts_call(TASK, "my_get_weather(1")  # another name that ends like a tool's
    assert not attempts_call(TASK, "get_weather is not what you need")
    assert not attempts_call(TASK, None)
