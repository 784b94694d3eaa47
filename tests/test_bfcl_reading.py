"""BFCL's dialect of the decoder (bitagent_plugins/bfcl/reading.py): its value reading, its XML, and its fast
pythonic reader, which must agree with ``ast.parse`` + :func:`literal_bfcl` wherever it answers."""

import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bitagent_core.model import ToolCall
from bitagent_core.toolkit.decoding import Decoded, DecodeError, ast_python_calls, decode, decode_pythonic
from bitagent_plugins.bfcl.reading import BFCL, Expression, fast_python_calls, literal_bfcl
from tests.decoding_helpers import HOSTILE, examples, identifiers, names, pythonic_answers, render, values

CALL = ToolCall("get_weather", {"city": "Paris", "days": 3})


def calls(text):
    result = decode(text, dialect=BFCL)
    assert result.ok, result.error
    return list(result.calls)


@pytest.mark.parametrize(
    "text",
    [
        "[get_weather(city='Paris', days=3)]",
        "<TOOLCALL>[get_weather(city='Paris', days=3)]</TOOLCALL>",
        '[{"function": "get_weather", "parameters": {"city": "Paris", "days": 3}}]',
        # BFCL's verbose and concise XML, bare, tagged, fenced or after prose
        '<functions><function name="get_weather"><params><param name="city" value="Paris" type="string"/>'
        '<param name="days" value="3" type="integer"/></params></function></functions>',
        '<functions><function name="get_weather"><param name="city" type="string">Paris</param>'
        '<param name="days" type="integer"> 3 </param></function></functions>',
        '<TOOLCALL><functions><function name="get_weather"><param name="city" type="string">Paris</param>'
        '<param name="days" type="integer">3</param></function></functions></TOOLCALL>',
        'Here you go:\n```xml\n<functions><function name="get_weather"><param name="city" type="string">Paris'
        '</param><param name="days" type="integer">3</param></function></functions>\n```',
    ],
)
def test_bfcl_formats_decode_to_the_same_call(text):
    assert calls(text) == [CALL], text


def test_several_xml_calls():
    two = [ToolCall("f", {"a": 1}), ToolCall("g.h", {"b": "x"})]
    assert (
        calls(
            '<functions><function name="f"><param name="a" type="integer">1</param></function>'
            '<function name="g.h"><param name="b" type="string">x</param></function></functions>'
        )
        == two
    )


def test_xml_values_follow_the_type_attribute():
    text = (
        '<functions><function name="f"><params>'
        '<param name="i" value="-4" type="integer"/><param name="x" value="2.5" type="float"/>'
        '<param name="b" value="TRUE" type="boolean"/><param name="n" value="" type="null"/>'
        '<param name="l" value="[1, (2, 3)]" type="array"/><param name="d" value="{\'k\': [1]}" type="dict"/>'
        '<param name="s" value=" keep spaces " type="string"/><param name="o" value="7" type="other"/>'
        "</params></function></functions>"
    )
    (call,) = calls(text)
    assert call.arguments == {
        "i": -4,
        "x": 2.5,
        "b": True,
        "n": None,
        "l": [1, (2, 3)],
        "d": {"k": [1]},
        "s": " keep spaces ",
        "o": "7",
    }
    bad = decode(
        '<functions><function name="f"><param name="i" type="integer">x</param></function></functions>', dialect=BFCL
    )
    assert not bad.ok and "integer" in bad.error


def test_xml_entities_are_refused_and_names_are_needed():
    bomb = (
        '<functions><!DOCTYPE lol [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        '<function name="f"><param name="x" type="string">&b;</param></function></functions>'
    )
    for text in (
        bomb,
        '<functions><function><param name="x">1</param></function></functions>',
        '<functions><function name="f"><param type="string">1</param></function></functions>',
        "<functions><function name='f'>",
    ):
        assert not decode(text, dialect=BFCL).ok, text


def test_bfcl_value_reading():
    text = "[f(t=(1, 2), n=true, d=a.b, e=..., s=g(1), k=g(x=1), o=1 + 2, u=+5, m=-2.5, z=None)]"
    assert not decode(text, dialect=BFCL).ok  # a dotted name as a value: BFCL's decoder fails on it too
    (call,) = calls(text.replace("d=a.b, ", ""))
    assert call.arguments == {
        "t": (1, 2),
        "n": "true",
        "e": "...",
        "s": "g(1)",
        "k": {"g": {"x": 1}},
        "o": "1 + 2",
        "u": 5,
        "m": -2.5,
        "z": None,
    }
    assert type(call.arguments["o"]) is Expression and type(call.arguments["t"]) is tuple


@pytest.mark.parametrize(
    "text",
    [
        "[f(x={1, 2})]",
        "[f(x=lambda: 1)]",
        "[f(x=[i for i in y])]",
        "[f(x=a if b else c)]",
        "[f(x=not y)]",
        "[f(x=f'{y}')]",
        "[f(x=b'raw')]",
        "[f(x=1j)]",
        "[f(*a)]",
        "[f(**k)]",
        "[f(x={**k})]",
        "[f(x=await y)]",
        "[f(x=(y := 1))]",
    ],
)
def test_what_bfcl_reading_refuses(text):
    assert not decode(text, dialect=BFCL).ok


@pytest.mark.parametrize(
    "text",
    HOSTILE
    + [
        '<functions><function name="f"><param name="x" type="array">__import__(\'os\').system(\'x\')</param>'
        "</function></functions>",
        '<functions><function name="f"><param name="x" type="dict">{\'a\': 1 + 1}</param></function></functions>',
    ],
)
def test_hostile_answers_are_never_evaluated(text, no_exec):
    result = decode(text, dialect=BFCL)
    assert isinstance(result, Decoded)
    for call in result.calls:
        json.dumps(call.to_json())
    assert no_exec == []


def test_expression_values_stay_text(no_exec):
    (call,) = calls("[f(x=1 + __import__('os').getpid())]")
    assert call.arguments["x"] == "1 + __import__('os').getpid()" and isinstance(call.arguments["x"], Expression)
    assert no_exec == []


# --- the fast reader agrees with ast --------------------------------------------------------------------


def reference(body):
    try:
        return repr(ast_python_calls(body, literal_bfcl))
    except DecodeError:
        return "error"


def same_reading(body):
    fast = fast_python_calls(body)
    if fast is not None:
        assert repr(fast) == reference(body), body
    return fast


@settings(max_examples=examples(400), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pythonic_answers())
@example("[f(a=00, b=1., c=.5, d=1e3, e=-0.0, f=+7)]")
@example("[f(a=(1), b=(), c=(1,), d={}, e={1: 2, 'x': None, True: 3})]")
@example("\t[]")  # leading blanks are an IndentationError for ast (found by this test)
@example("\n [f()]")
def test_fast_reader_agrees_with_ast(body):
    same_reading(body)


def test_fast_reader_answers_the_common_case():
    # the reader must actually read plain answers (else the agreement test above holds vacuously)
    assert same_reading("[f(a='x', b=[1, 2.5], c={'k': (1,)}), g.h(True, d=None)]") is not None
    assert same_reading("f(a=x.y)") is None  # an attribute value: left to ast, which refuses it


MUTATIONS = list("()[]{},=:.+-'\"\\\n\t #*@0123456789_aeTNFé\x00`") + [
    "True",
    "lambda",
    "if",
    " not ",
    "1_0",
    "0x",
    "j",
    "'''",
    '"""',
    "f'",
    "b'",
    "\r",
    "\u2028",
]


@settings(max_examples=examples(600), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pythonic_answers(),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 2), st.sampled_from(MUTATIONS)), min_size=1, max_size=4),
)
def test_fast_reader_agrees_with_ast_on_mutated_answers(body, edits):
    for position, kind, text in edits:
        i = position % (len(body) + 1)
        body = (
            body[:i] + text + body[i:]
            if kind == 0
            else (body[:i] + body[i + 1 :] if kind == 1 else body[:i] + text + body[i + 1 :])
        )
    same_reading(body)
    assert isinstance(decode(body, dialect=BFCL), Decoded)


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(st.tuples(names, st.dictionaries(identifiers, values, max_size=3)), min_size=1, max_size=3))
def test_pythonic_round_trip(specs):
    expected = [ToolCall(name, args) for name, args in specs]
    pythonic = "[" + ", ".join(f"{n}({', '.join(f'{k}={render(v)}' for k, v in a.items())})" for n, a in specs) + "]"
    got = decode(pythonic, dialect=BFCL)
    assert got.ok and list(got.calls) == expected


xml_scalars = st.one_of(
    st.integers(-(10**9), 10**9).map(lambda v: ("integer", v)),
    st.booleans().map(lambda v: ("boolean", v)),
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=10)
    .filter(lambda s: s == s.strip())
    .map(lambda v: ("string", v)),
    st.lists(st.integers(-5, 5), max_size=3).map(lambda v: ("array", v)),
)


@settings(max_examples=examples(200), deadline=None)
@given(identifiers, st.dictionaries(identifiers, xml_scalars, max_size=4), st.booleans())
def test_xml_round_trip(name, params, verbose):
    from xml.sax.saxutils import escape, quoteattr

    def text(kind, value):
        return str(value).lower() if kind == "boolean" else (str(value) if kind != "string" else value)

    if verbose:
        inner = (
            "<params>"
            + "".join(f'<param name="{k}" value={quoteattr(text(t, v))} type="{t}"/>' for k, (t, v) in params.items())
            + "</params>"
        )
    else:
        inner = "".join(f'<param name="{k}" type="{t}">{escape(text(t, v))}</param>' for k, (t, v) in params.items())
    answer = f'<functions><function name="{name}">{inner}</function></functions>'
    got = decode(answer, dialect=BFCL)
    assert got.ok, (answer, got.error)
    assert list(got.calls) == [ToolCall(name, {k: v for k, (t, v) in params.items()})]


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=300), pythonic_answers().map(lambda s: s[: len(s) // 2])))
def test_decode_never_raises(text):
    assert isinstance(decode(text, dialect=BFCL), Decoded)
    assert isinstance(decode_pythonic(text, dialect=BFCL), Decoded)
