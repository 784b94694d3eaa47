"""The shared decoder: every format it reads, its safety bounds, its extension point (:class:`Dialect`), and
properties (never raises, never evaluates, bounded work on hostile input). BFCL's dialect: test_bfcl_reading.py."""

import ast
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitagent_core.model import ToolCall
from bitagent_core.toolkit.decoding import (
    MAX_INPUT_CHARS,
    MAX_NESTING,
    Decoded,
    DecodeError,
    Dialect,
    decode,
    decode_pythonic,
)
from tests.decoding_helpers import HOSTILE, examples, identifiers, names, pythonic_answers, render, values

CALL = ToolCall("get_weather", {"city": "Paris", "days": 3})


def calls(text, **kw):
    result = decode(text, **kw)
    assert result.ok, result.error
    return list(result.calls)


# --- formats ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "[get_weather(city='Paris', days=3)]",
        "get_weather(city='Paris', days=3)",
        'get_weather(city="Paris", days=3),',
        "```\n[get_weather(city='Paris', days=3)]\n```",
        "```python\n[get_weather(city='Paris', days=3)]\n```",
        "`get_weather(city='Paris', days=3)`",
        "Sure! [get_weather(city='Paris', days=3)] Anything else?",
        "<think>the user wants weather</think>[get_weather(city='Paris', days=3)]",
        '[{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}]',
        '{"name": "get_weather", "parameters": {"city": "Paris", "days": 3}}',
        '[{"function": "get_weather", "parameters": {"city": "Paris", "days": 3}}]',  # BFCL's JSON prompt
        '```json\n[{"function":"get_weather","parameters":{"city":"Paris","days":3}}]\n```',
        '{"type": "function", "function": {"name": "get_weather", '
        '"arguments": "{\\"city\\": \\"Paris\\", \\"days\\": 3}"}}',
        '{"get_weather": {"city": "Paris", "days": 3}}',
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}</tool_call>',
        "<TOOLCALL>[get_weather(city='Paris', days=3)]</TOOLCALL>",
        '<TOOLCALL>[{"function": "get_weather", "parameters": {"city": "Paris", "days": 3}}]</TOOLCALL>',
        '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris", "days": 3}}',
        '<function_call> {"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}',
    ],
)
def test_every_format_decodes_to_the_same_call(text):
    assert calls(text) == [CALL], text


def test_native_calls_pass_through():
    result = decode("ignored", (CALL,))
    assert result.calls == (CALL,) and result.format == "native"


def test_several_calls_in_each_format():
    two = [ToolCall("f", {"a": 1}), ToolCall("g.h", {"b": "x"})]
    assert calls("[f(a=1), g.h(b='x')]") == two
    assert calls('{"name": "f", "parameters": {"a": 1}}; {"name": "g.h", "parameters": {"b": "x"}}') == two
    assert (
        calls(
            '<tool_call>{"name": "f", "arguments": {"a": 1}}</tool_call>\n'
            '<tool_call>{"name": "g.h", "arguments": {"b": "x"}}</tool_call>'
        )
        == two
    )
    assert (
        calls(
            '<function_call> {"name": "f", "arguments": {"a": 1}} '
            '<function_call> {"name": "g.h", "arguments": {"b": "x"}}'
        )
        == two
    )


def test_empty_and_no_call():
    assert decode("").error == "empty answer" and decode("   \n").error == "empty answer"
    assert decode(None).error == "empty answer"
    assert decode("[]").ok and decode("[]").calls == ()
    assert decode("<TOOLCALL>[]</TOOLCALL>").calls == ()
    assert not decode("I cannot help with that.").ok
    assert not decode("<think>only thinking</think>").ok


def test_positional_arguments_are_kept_not_dropped():
    (call,) = calls("[f(1, 'x', c=True)]")
    assert call.positional == (1, "x") and call.arguments == {"c": True}


def test_plain_value_reading():
    (plain,) = calls("[f(t=(1, 2), n=true, d=a.b, u=+5, z=None, k={1: 'x'})]")
    assert plain.arguments == {"t": [1, 2], "n": True, "d": "a.b", "u": 5, "z": None, "k": {"1": "x"}}
    assert not decode("[f(o=1 + 2)]").ok  # expressions are refused, never evaluated
    # BFCL's XML is the BFCL dialect's format, not a shared one
    assert not decode(
        '<functions><function name="f"><param name="a" type="integer">1</param></function></functions>'
    ).ok


# --- the extension point --------------------------------------------------------------------------------


def test_a_dialect_reads_values_and_formats_of_its_own():
    def upper(node):  # a value reader: string constants upper-cased, everything else refused
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value.upper()
        raise DecodeError("strings only")

    def pipe_format(body):  # "name|key=value": this dialect's own format
        if "|" not in body:
            return None
        name, _, pair = body.partition("|")
        key, _, value = pair.partition("=")
        if not key:
            raise DecodeError("a pipe call needs key=value")
        return [ToolCall(name, {key: value})]

    fast_seen = []

    def fast(body):  # a fast reader that leaves everything to ast.parse, recording what it was offered
        fast_seen.append(body)
        return None

    dialect = Dialect(read_value=upper, fast_calls=fast, formats=(("pipe", pipe_format),))
    assert calls("[f(a='x')]", dialect=dialect) == [ToolCall("f", {"a": "X"})]
    assert fast_seen == ["[f(a='x')]"]
    assert not decode("[f(a=1)]", dialect=dialect).ok
    result = decode("f|city=Paris", dialect=dialect)
    assert result.format == "pipe" and list(result.calls) == [ToolCall("f", {"city": "Paris"})]
    assert decode("f|=x", dialect=dialect).error == "a pipe call needs key=value"
    assert not decode("f|city=Paris").ok  # the shared reading does not know the format
    # JSON stays JSON whatever the dialect; decode_pythonic reads with the dialect's values
    assert calls('{"name": "f", "arguments": {"a": 1}}', dialect=dialect) == [ToolCall("f", {"a": 1})]
    assert list(decode_pythonic("f(a='q')", dialect=dialect).calls) == [ToolCall("f", {"a": "Q"})]


# --- safety ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_answers_are_never_evaluated(text, no_exec):
    result = decode(text)
    assert isinstance(result, Decoded)
    for call in result.calls:
        json.dumps(call.to_json())  # whatever was read is plain data
    assert no_exec == []


def test_size_and_nesting_bounds():
    assert decode("[f(x='" + "a" * MAX_INPUT_CHARS + "')]").error.startswith("answer longer")
    assert decode("[" * 10_000 + "]" * 10_000).error.startswith("nesting deeper")
    deep = "[f(x=" + "[" * (MAX_NESTING + 1) + "]" * (MAX_NESTING + 1) + ")]"
    assert not decode(deep).ok
    shallow = "[f(x=" + "[" * 20 + "]" * 20 + ")]"
    assert decode(shallow).ok


BIG_INPUTS = [
    lambda n: "[" * n,
    lambda n: "(" * (n // 2) + ")" * (n // 2),
    lambda n: "[f(x=" + "{'a': " * (n // 8) + "1" + "}" * (n // 8) + ")]",
    lambda n: "<functions>" + "<a>" * (n // 4) + "</functions>",
    lambda n: "1+" * (n // 2 - 1) + "1",
    lambda n: "f(" + "a=1," * (n // 5) + ")",
    lambda n: "[" + "f(), " * (n // 5) + "]",
    lambda n: '{"name": "f", "arguments": ' + "[" * (n // 2) + "}",
    lambda n: "[" + "f(x=" * (n // 5) + ")" * (n // 5) + "]",
    lambda n: '{"name": "f"};' * (n // 14),
    lambda n: "<tool_call>" * (n // 11),
    lambda n: "```" * (n // 3),
    lambda n: "'" + "\\x41" * (n // 4),
]


@pytest.mark.parametrize("make", BIG_INPUTS)
def test_64_kb_and_deeply_nested_inputs_are_a_decode_error_not_an_exception(make):
    # speed on these inputs is a benchmark's business (fuzz/fuzz_decode.py bounds one decode); here: an answer
    text = make(MAX_INPUT_CHARS - 100)
    assert len(text) <= MAX_INPUT_CHARS
    result = decode(text)
    assert isinstance(result, Decoded) and (result.ok or result.error)
    assert len(result.calls) <= 64


# --- properties -----------------------------------------------------------------------------------------


@settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pythonic_answers())
def test_generated_pythonic_answers_decode(body):
    assert decode(body).ok


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(st.tuples(names, st.dictionaries(identifiers, values, max_size=3)), min_size=1, max_size=3))
def test_round_trips_through_pythonic_and_json(specs):
    jsonable = [ToolCall(n, json.loads(json.dumps(a))) for n, a in specs]
    as_json = json.dumps([{"function": n, "parameters": a} for n, a in specs])
    assert list(decode(as_json).calls) == jsonable
    pythonic = "[" + ", ".join(f"{n}({', '.join(f'{k}={render(v)}' for k, v in a.items())})" for n, a in specs) + "]"
    got = decode(pythonic)
    assert got.ok and [c.name for c in got.calls] == [n for n, _ in specs]


@settings(max_examples=examples(500), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.text(max_size=300),
        st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
        pythonic_answers().map(lambda s: s[: len(s) // 2]),
    )
)
def test_decode_never_raises(text):
    result = decode(text)
    assert isinstance(result, Decoded) and (result.ok or result.error)
    assert isinstance(decode_pythonic(text), Decoded)
