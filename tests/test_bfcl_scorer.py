"""The bfcl scorer: BFCL's rules one by one, the deliberate differences, and the whole BFCL data set (every
ground truth passes except the documented data errors; every perturbation fails with the right type)."""

import sys
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitagent_core._plugins import get_registry
from bitagent_core._runner import load_tasks
from bitagent_core.model import Completion, ExpectedCall, Message, Task, Tool, ToolCall
from bitagent_core.toolkit import render_expected
from bitagent_plugins.bfcl.perturb import PERTURBATIONS, perturb
from bitagent_plugins.bfcl.scorer import BfclScorer, standardize
from tests.decoding_helpers import examples

#: the error types the scorer can give, in BFCL's vocabulary (docs/bfcl.md lists them)
ERROR_TYPES = {
    "wrong_func_name",
    "missing_required",
    "unexpected_param",
    "missing_optional",
    "type_error",
    "value_error",
    "wrong_count",
    "decode_error",
    "irrelevance_error",
    "relevance_error",
}
#: entries whose ground truth contradicts their function docs: no answer passes them (docs/bfcl.md)
DATA_ERRORS = {
    "live_simple_106-63-0",
    "live_simple_112-68-0",
    "live_multiple_507-149-4",
    "live_multiple_862-181-3",
    "live_multiple_964-207-0",
}

DOC = Tool.from_json(
    {
        "name": "trip.plan",
        "description": "",
        "parameters": {
            "type": "dict",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "budget": {"type": "float"},
                "flexible": {"type": "boolean"},
                "stops": {"type": "array", "items": {"type": "string"}},
                "coords": {"type": "tuple", "items": {"type": "float"}},
                "prefs": {"type": "dict"},
                "legs": {"type": "array", "items": {"type": "dict"}},
                "weights": {"type": "array", "items": {"type": "float"}},
                "note": {"type": "any"},
                "mode": {"type": "string"},
            },
            "required": ["city", "days"],
        },
    }
)
TASK = Task(
    id="trip",
    messages=(Message("user", "q"),),
    tools=(DOC,),
    category="simple_python",
    expected_calls=(
        ExpectedCall.from_json(
            {
                "trip.plan": {
                    "city": ["New York, NY", "NYC"],
                    "days": [3],
                    "budget": [1500.0, ""],
                    "flexible": [True, ""],
                    "stops": [["Boston", "Washington D.C."], ""],
                    "coords": [[40.7, -74.0], ""],
                    "prefs": [{"hotel": ["cheap", "budget"], "breakfast": [True, ""]}, ""],
                    "legs": [[{"from": ["NYC"], "to": ["Boston"]}], ""],
                    "weights": [[1.0, 2.0], ""],
                    "note": ["", "none"],
                    "mode": ["", "train"],
                }
            }
        ),
    ),
)
scorer = BfclScorer()
strict = BfclScorer(strict=True)


def score(text, task=TASK, s=scorer):
    return s.score(task, Completion(text=text))


def verdict(text, task=TASK, s=scorer):
    result = score(text, task, s)
    assert result.value == (1.0 if result.passed else 0.0)
    assert result.passed == (result.error_type is None)
    return result.error_type


BASE = "trip.plan(city='New York, NY', days=3"


@pytest.mark.parametrize(
    "args, error",
    [
        ("", None),
        (", budget=1500.0, flexible=True", None),
        # names
        ("", None),
        # required, unexpected, omittable
        (", extra=1", "unexpected_param"),
        # strict types, int for float
        (", budget=1500", None),
        (", flexible=1", "type_error"),
        (", budget='1500'", "type_error"),
        (", budget=1500.0000001", "value_error"),  # no float tolerance
        # strings: spaces and ,./-_*^ removed, lowercased
        (", mode='TRAIN'", None),
        (", mode='t-r_a.i*n^'", None),
        (", mode='bus'", "value_error"),
        # lists: order matters, string items normalised, items type-checked one level deep
        (", stops=['boston', 'Washington DC']", None),
        (", stops=['Washington D.C.', 'Boston']", "value_error"),
        (", stops=('Boston', 'Washington D.C.')", "type_error"),  # a tuple is no list
        # an omittable list (its options hold "") skips the item type check, as in BFCL; values still compare
        (", stops=['Boston', 7]", "value_error"),
        (", weights=[1.0, 2.0]", None),
        (", weights=[1, 2]", None),
        # tuples: a list or a tuple
        (", coords=(40.7, -74.0)", None),
        (", coords=[40.7, -74.0]", None),
        # dicts: one level, key by key, values normalised; missing keys must be omittable
        (", prefs={'hotel': 'Cheap'}", None),
        (", prefs={'hotel': 'budget', 'breakfast': True}", None),
        (", prefs={'hotel': 'luxury'}", "value_error"),
        (", prefs={'hotel': 'cheap', 'spa': True}", "value_error"),
        (", prefs={'breakfast': True}", "value_error"),
        (", prefs='cheap'", "type_error"),
        (", legs=[{'from': 'nyc', 'to': 'boston'}]", None),
        (", legs=[{'from': 'NYC'}]", "value_error"),
        (", legs=[]", None),  # BFCL: the omittable "" option matches an empty list of dicts
        # "any" reads as a string in BFCL
        (", note='none'", None),
        (", note=None", "type_error"),
    ],
)
def test_rules(args, error):
    assert verdict(f"[{BASE}{args})]") == error


def test_names_required_and_optional():
    assert verdict("[trip.plan_x(city='NYC', days=3)]") == "wrong_func_name"
    assert verdict("[trip_plan(city='NYC', days=3)]") == "wrong_func_name"
    assert verdict("[trip.plan(city='NYC')]") == "missing_required"
    assert verdict("[trip.plan(days=3, city='nyc')]") is None
    no_omit = Task(
        id="o",
        messages=TASK.messages,
        tools=(DOC,),
        category="simple_python",
        expected_calls=(ExpectedCall("trip.plan", {"city": ("NYC",), "days": (3,), "mode": ("train",)}),),
    )
    assert verdict("[trip.plan(city='NYC', days=3)]", no_omit) == "missing_optional"
    assert verdict("[trip.plan(city='NYC', days=3, mode='Train')]", no_omit) is None
    assert verdict("[trip.plan(city='NYC', days=3, budget=1.0)]", no_omit) == "unexpected_param"  # not in truth


def test_list_items_are_type_checked_one_level_deep():
    task = Task(
        id="n",
        messages=TASK.messages,
        tools=(DOC,),
        category="simple_python",
        expected_calls=(
            ExpectedCall(
                "trip.plan", {"city": ("NYC",), "days": (3,), "weights": ([1.0, 2.0],), "stops": (["a", "b"],)}
            ),
        ),
    )
    assert verdict("[trip.plan(city='NYC', days=3, weights=[1.0, 2.0], stops=['A', 'B'])]", task) is None
    assert verdict("[trip.plan(city='NYC', days=3, weights=[1, 2], stops=['A', 'B'])]", task) == "type_error"
    assert verdict("[trip.plan(city='NYC', days=3, weights=[1.0, 2.0], stops=['A', 2])]", task) == "type_error"


def test_true_is_no_integer_and_float_is_no_integer():
    assert verdict("[trip.plan(city='NYC', days=True)]") == "type_error"
    assert verdict("[trip.plan(city='NYC', days=3.0)]") == "type_error"
    assert verdict("[trip.plan(city='NYC', days='3')]") == "type_error"
    assert verdict("[trip.plan(city='NYC', days=true)]") == "type_error"  # BFCL reads `true` as the text "true"


def test_variables_compare_exactly():
    task = Task(
        id="v",
        messages=TASK.messages,
        tools=(DOC,),
        category="simple_python",
        expected_calls=(ExpectedCall("trip.plan", {"city": ("NYC",), "days": ("num_days",)}),),
    )
    assert verdict("[trip.plan(city='NYC', days='num_days')]", task) is None
    assert verdict("[trip.plan(city='NYC', days=num_days)]", task) is None  # a bare name reads as its text
    assert verdict("[trip.plan(city='NYC', days='Num_Days')]", task) == "value_error"  # no normalisation
    assert verdict("[trip.plan(city='NYC', days=3)]", task) == "value_error"


def test_standardize():
    assert standardize("New York, NY") == standardize("newyork ny") == "newyorkny"
    assert standardize("it's") == 'it"s' and standardize("a-b_c.d/e*f^g") == "abcdefg"


# --- counts: simple, multiple, parallel, irrelevance, relevance ----------------------------------------

WEATHER = Tool.from_json(
    {
        "name": "weather",
        "parameters": {
            "type": "dict",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city"],
        },
    }
)
TIME = Tool.from_json(
    {"name": "time", "parameters": {"type": "dict", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}}
)


def task(category, *expected, tools=(WEATHER, TIME)):
    return Task(
        id=f"{category}-{len(expected)}",
        messages=(Message("user", "q"),),
        tools=tools,
        category=category,
        expected_calls=tuple(ExpectedCall.from_json(e) for e in expected),
    )


PARALLEL = task(
    "parallel",
    {"weather": {"city": ["Paris"], "unit": ["", "C"]}},
    {"weather": {"city": ["Rome"], "unit": ["", "C"]}},
    {"time": {"zone": ["CET"]}},
)


def test_multiple_is_exactly_one_call():
    multiple = task("multiple", {"time": {"zone": ["UTC"]}})
    assert verdict("[time(zone='utc')]", multiple) is None
    assert verdict("[weather(city='Paris')]", multiple) == "wrong_func_name"
    assert verdict("[time(zone='utc'), time(zone='utc')]", multiple) == "wrong_count"
    assert verdict("[]", multiple) == "wrong_count"
    assert verdict("", multiple) == "wrong_count"  # BFCL reads an empty answer as []
    assert verdict("no idea", multiple) == "decode_error"


def test_parallel_is_the_same_count_in_any_order():
    assert verdict("[weather(city='Paris'), weather(city='Rome'), time(zone='CET')]", PARALLEL) is None
    assert verdict("[time(zone='cet'), weather(city='rome', unit='C'), weather(city='PARIS')]", PARALLEL) is None
    assert verdict("[weather(city='Paris'), weather(city='Rome')]", PARALLEL) == "wrong_count"
    assert verdict("[weather(city='Paris'), weather(city='Oslo'), time(zone='CET')]", PARALLEL) == "value_error"
    assert verdict("[weather(city='Paris'), weather(city='Paris'), time(zone='CET')]", PARALLEL) == "value_error"
    result = score("[weather(city='Paris'), weather(city='Rome'), time(place='CET')]", PARALLEL)
    assert result.error_type == "missing_required" and "time" in result.detail
    assert result.breakdown == {"calls_matched": 2.0, "calls_expected": 3.0}


def test_irrelevance_and_relevance():
    irrelevance = task("irrelevance")
    assert verdict("I cannot answer with these tools.", irrelevance) is None
    assert verdict("[]", irrelevance) is None and verdict("", irrelevance) is None
    assert verdict("[weather(city='Paris')]", irrelevance) == "irrelevance_error"
    assert verdict('{"name": "weather", "arguments": {"city": "Paris"}}', irrelevance) == "irrelevance_error"
    relevance = task("live_relevance")
    assert verdict("[weather(city='anything')]", relevance) is None
    assert verdict("[time()]", relevance) is None  # any call: BFCL does not check it
    assert verdict("I'd need more details.", relevance) == "relevance_error"
    assert verdict("[]", relevance) == "relevance_error"


def test_native_calls_score_like_text():
    call = ToolCall("weather", {"city": "Paris"})
    single = task("simple_python", {"weather": {"city": ["Paris"], "unit": ["", "C"]}})
    assert scorer.score(single, Completion(tool_calls=(call,))).passed
    assert strict.score(single, Completion(tool_calls=(call,))).passed


# --- deliberate differences ---------------------------------------------------------------------------


def test_difference_expressions_are_never_evaluated():
    """BFCL evals ``days=1+2`` (and would pass it); we decode it as text that matches nothing."""
    seen = []
    state = {"on": True}
    sys.addaudithook(
        lambda event, args: (
            seen.append(args)
            if state["on"] and event == "exec" and not getattr(args[0], "co_filename", "").endswith(".py")
            else None
        )
    )
    try:
        for s in (scorer, strict):
            result = score("[trip.plan(city='NYC', days=1 + 2)]", s=s)
            assert result.error_type == "value_error" and "never evaluated" in result.detail
            assert score("[trip.plan(city='NYC', days=1 + __import__('os').getpid())]", s=s).error_type == "value_error"
    finally:
        state["on"] = False
    assert seen == []


def test_difference_parallel_calls_are_matched_by_bipartite_matching():
    """Expected A accepts 1 or 2, expected B only 1. Greedy (BFCL) gives the answer's first call (a=1) to A,
    then B finds no match; a maximum matching pairs A with a=2 and B with a=1."""
    tool = Tool.from_json(
        {"name": "f", "parameters": {"type": "dict", "properties": {"a": {"type": "integer"}}, "required": ["a"]}}
    )
    trap = task("parallel", {"f": {"a": [1, 2]}}, {"f": {"a": [1]}}, tools=(tool,))
    assert verdict("[f(a=1), f(a=2)]", trap) is None
    assert verdict("[f(a=2), f(a=1)]", trap) is None
    assert verdict("[f(a=2), f(a=2)]", trap) == "value_error"


def test_difference_a_unary_plus_keeps_the_sign():
    assert verdict("[trip.plan(city='NYC', days=+3)]") is None  # BFCL reads -3
    assert verdict("[trip.plan(city='NYC', days=-3)]") == "value_error"
    assert verdict("[trip.plan(city='NYC', days=not 3)]") == "decode_error"


def test_difference_positional_arguments_are_bound_not_dropped():
    assert verdict("[trip.plan('NYC', 3)]") is None  # BFCL drops them: missing_required
    assert verdict("[trip.plan('NYC', days=3)]") is None
    assert (
        verdict("[trip.plan('NYC', 3, 1500.0, True, [], (1.0, 2.0), {}, [], [], 'x', 'train', 'extra')]")
        == "unexpected_param"
    )
    assert verdict("[trip.plan('NYC', city='NYC', days=3)]") == "unexpected_param"  # given twice


@pytest.mark.parametrize(
    "text",
    [
        "```python\n[trip.plan(city='NYC', days=3)]\n```",
        "Here it is: [trip.plan(city='NYC', days=3)]",
        '[{"function": "trip.plan", "parameters": {"city": "NYC", "days": 3}}]',
        '<functions><function name="trip.plan"><param name="city" type="string">NYC</param>'
        '<param name="days" type="integer">3</param></function></functions>',
        '<TOOLCALL>[trip.plan(city="NYC", days=3)]</TOOLCALL>',
    ],
)
def test_difference_format_is_detected_and_strict_reads_like_bfcl(text):
    assert verdict(text) is None
    assert verdict(text, s=strict) == "decode_error"  # BFCL's prompting decoder fails on these too


@pytest.mark.parametrize(
    "text",
    [
        "[trip.plan(city='NYC', days=3)]",
        "trip.plan(city='NYC', days=3)",
        "```\n[trip.plan(city='NYC', days=3)]\n```",
        "`trip.plan(city='NYC', days=3)`",
    ],
)
def test_strict_reads_what_bfcl_reads(text):
    assert verdict(text, s=strict) is None


# --- robustness ---------------------------------------------------------------------------------------


def test_plans_are_rebuilt_for_a_changed_task():
    s = BfclScorer()
    first = task("simple_python", {"time": {"zone": ["UTC"]}})
    changed = Task(
        id=first.id,
        messages=first.messages,
        tools=first.tools,
        category=first.category,
        expected_calls=(ExpectedCall("time", {"zone": ("CET",)}),),
    )
    assert s.score(first, Completion(text="[time(zone='UTC')]")).passed
    assert s.score(changed, Completion(text="[time(zone='CET')]")).passed
    assert not s.score(changed, Completion(text="[time(zone='UTC')]")).passed


def test_tasks_from_other_sources():
    """JSON-schema types and tasks whose expected function has no doc are scored too."""
    tool = Tool.from_json(
        {
            "name": "pay",
            "parameters": {
                "type": "object",
                "properties": {"amount": {"type": "number"}, "meta": {"type": "object"}, "tags": {"type": "array"}},
                "required": ["amount"],
            },
        }
    )
    t = task("single_call", {"pay": {"amount": [20], "meta": [{"k": ["v"]}, ""], "tags": [["a"], ""]}}, tools=(tool,))
    assert verdict("[pay(amount=20)]", t) is None and verdict("[pay(amount=20.0, tags=['A'])]", t) is None
    assert verdict("[pay(amount=21)]", t) == "value_error"
    bare = task("single_call", {"ghost": {"x": [1], "y": ["", 2]}}, tools=())
    assert verdict("[ghost(x=1)]", bare) is None and verdict("[ghost(y=2)]", bare) == "missing_required"


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200), st.sampled_from([TASK, PARALLEL, task("irrelevance"), task("live_relevance")]))
def test_never_raises(text, t):
    for s in (scorer, strict):
        result = s.score(t, Completion(text=text))
        assert result.value in (0.0, 1.0) and (result.error_type in ERROR_TYPES or result.passed)


# --- the whole BFCL data set --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bfcl_tasks():
    return [t for t in load_tasks(get_registry(), "bfcl", 0, None) if t.expected_calls]


def test_every_ground_truth_passes_except_the_data_errors(bfcl_tasks):
    s = BfclScorer()
    failing = {
        t.id: score(render_expected(t), t, s).error_type
        for t in bfcl_tasks
        if not score(render_expected(t), t, s).passed
    }
    assert set(failing) == DATA_ERRORS, failing
    as_json = {t.id for t in bfcl_tasks if not score(render_expected(t, style="json"), t, s).passed}
    assert as_json == DATA_ERRORS
    assert len(bfcl_tasks) == 400 + 200 + 200 + 200 + 258 + 1053 + 16 + 24


def test_perturbed_answers_fail_with_the_right_type(bfcl_tasks):
    s = BfclScorer()
    counts: Counter = Counter()
    for t in bfcl_tasks:
        if t.id in DATA_ERRORS:
            continue
        for kind, error in PERTURBATIONS.items():
            answer = perturb(t, kind)
            if answer is None:
                continue
            result = score(answer, t, s)
            assert (result.passed, result.error_type) == (False, error), (t.id, kind, answer, result.detail)
            counts[kind] += 1
    assert all(n > 400 for n in counts.values()), counts
