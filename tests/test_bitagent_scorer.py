"""The bitagent scorer against the upstream subnet's own worked examples, and where we deliberately differ."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitagent_core.model import Completion, ExpectedCall, Message, Task, Tool, ToolCall
from bitagent_plugins.scorers.bitagent_scorer import BitagentScorer, values_equal

DISCOUNT = Tool.from_upstream(
    {
        "name": "calculate_discount",
        "description": "Calculate the discounted price",
        "arguments": {
            "original_price": {"required": True, "type": "number"},
            "discount_percentage": {"required": True, "type": "number"},
            "currency": {"required": False, "type": "str"},
        },
    }
)
WEATHER = Tool(
    "get_weather", "weather", {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
)
TASK = Task(
    id="t",
    messages=(Message("user", "q"),),
    tools=(WEATHER, DISCOUNT),
    expected_calls=(
        ExpectedCall(
            "calculate_discount", {"original_price": (200,), "discount_percentage": (20,), "currency": ("", "USD")}
        ),
    ),
)
IRRELEVANT = Task(id="i", messages=(Message("user", "haiku?"),), tools=(WEATHER,))
scorer = BitagentScorer()


def score(text, task=TASK, calls=()):
    return scorer.score(task, Completion(text=text, tool_calls=tuple(calls)))


@pytest.mark.parametrize(
    "text, value, error",
    [
        # the upstream subnet's worked examples that we keep
        ("calculate_discount(discount_percentage=20, original_price=200)", 1.0, None),
        ("[calculate_discount(discount_percentage=20)]", 0.55, "missing_required"),
        ("[calculate_discount(discount_percentage=20, original_price=200, coupon='X')]", 0.9, "unexpected_param"),
        ("[apply_discount(discount_percentage=20, original_price=200)]", 0.05, "wrong_func_name"),
        ("[calculate_discount(discount_percentage=25, original_price=200)]", 0.7, "value_error"),
        # the upstream subnet's bugs, fixed
        ("[calculate_discount(discount_percentage=20.0, original_price=200)]", 1.0, None),  # seed: 0.7
        ("[calculate_discount(200, 20)]", 1.0, None),  # seed: 0.4
        ("Sure! The final price is $160.", 0.0, "decode_error"),  # seed: -0.5
        # omittable optional given with an acceptable value, or a wrong one
        ("[calculate_discount(original_price=200, discount_percentage=20, currency='usd')]", 1.0, None),
        ("[calculate_discount(original_price=200, discount_percentage=20, currency='EUR')]", 0.9, "value_error"),
        # two calls where one is expected: the extra dilutes (seed: -0.125)
        (
            "[calculate_discount(original_price=200, discount_percentage=20), get_weather(city='Rome')]",
            0.55,
            "wrong_count",
        ),
        ("[]", 0.0, "wrong_count"),
    ],
)
def test_upstream_examples_and_fixes(text, value, error):
    result = score(text)
    assert result.value == pytest.approx(value)
    assert result.error_type == error
    assert result.passed == (error is None)


def test_native_calls_and_json_are_scored_alike():
    native = score("", calls=[ToolCall("calculate_discount", {"original_price": 200, "discount_percentage": 20})])
    tagged = score(
        '<tool_call>{"name": "calculate_discount", "arguments": '
        '{"original_price": 200, "discount_percentage": 20}}</tool_call>'
    )
    assert native.value == tagged.value == 1.0


def test_irrelevance():
    assert score("I can't do that with these tools.", IRRELEVANT).value == 1.0
    assert score("[]", IRRELEVANT).passed
    wrong = score("[get_weather(city='Oslo')]", IRRELEVANT)
    assert wrong.value == 0.0 and wrong.error_type == "irrelevance_error"


def test_parallel_calls_match_in_any_order():
    task = Task(
        id="p",
        messages=(Message("user", "q"),),
        tools=(WEATHER,),
        expected_calls=(
            ExpectedCall("get_weather", {"city": ("Paris",)}),
            ExpectedCall("get_weather", {"city": ("Rome",)}),
        ),
    )
    assert score("[get_weather(city='Rome'), get_weather(city='Paris')]", task).value == 1.0
    half = score("[get_weather(city='Rome')]", task)
    assert half.value == pytest.approx((1 + 9 / 2) / 10) and half.error_type == "wrong_count"


def test_values_equal():
    assert values_equal(20.0, 20) and values_equal(" Paris ", "paris")
    assert not values_equal(True, 1) and not values_equal("20", 20)
    assert values_equal([1, "A"], [1.0, "a"]) and not values_equal([1, 2], [2, 1])
    assert values_equal({"a": [1]}, {"a": [1.0]}) and not values_equal({"a": 1}, {"b": 1})


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_text_scores_in_range_without_raising(text):
    for task in (TASK, IRRELEVANT):
        result = score(text, task)
        assert 0.0 <= result.value <= 1.0
