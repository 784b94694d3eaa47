"""The shared decoder: every format BFCL's prompting handlers produce, its safety bounds, and properties
(never raises, never evaluates, the fast reader agrees with ``ast``, bounded time on hostile input)."""

import json
import os
import sys
import time

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bitagent_core import decoding
from bitagent_core.decoding import (
    MAX_INPUT_CHARS,
    MAX_NESTING,
    Decoded,
    Expression,
    ast_python_calls,
    decode,
    decode_pythonic,
    fast_python_calls,
)
from bitagent_core.model import ToolCall

CALL = ToolCall("get_weather", {"city": "Paris", "days": 3})
#: BITAGENT_HYPOTHESIS_SCALE=20 runs 20 times the generated examples (a long fuzzing session)
SCALE = int(os.environ.get("BITAGENT_HYPOTHESIS_SCALE", "1"))


def calls(text, **kw):
    result = decode(text, **kw)
    assert result.ok, result.error
    return list(result.calls)


# --- formats ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
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
    # BFCL's verbose and concise XML, bare, tagged, fenced or after prose
    '<functions><function name="get_weather"><params><param name="city" value="Paris" type="string"/>'
    '<param name="days" value="3" type="integer"/></params></function></functions>',
    '<functions><function name="get_weather"><param name="city" type="string">Paris</param>'
    '<param name="days" type="integer"> 3 </param></function></functions>',
    '<TOOLCALL><functions><function name="get_weather"><param name="city" type="string">Paris</param>'
    '<param name="days" type="integer">3</param></function></functions></TOOLCALL>',
    'Here you go:\n```xml\n<functions><function name="get_weather"><param name="city" type="string">Paris'
    '</param><param name="days" type="integer">3</param></function></functions>\n```',
])
def test_every_format_decodes_to_the_same_call(text):
    for values in ("plain", "bfcl"):
        assert calls(text, values=values) == [CALL], (text, values)


def test_native_calls_pass_through():
    result = decode("ignored", (CALL,))
    assert result.calls == (CALL,) and result.format == "native"


def test_several_calls_in_each_format():
    two = [ToolCall("f", {"a": 1}), ToolCall("g.h", {"b": "x"})]
    assert calls("[f(a=1), g.h(b='x')]") == two
    assert calls('{"name": "f", "parameters": {"a": 1}}; {"name": "g.h", "parameters": {"b": "x"}}') == two
    assert calls('<tool_call>{"name": "f", "arguments": {"a": 1}}</tool_call>\n'
                 '<tool_call>{"name": "g.h", "arguments": {"b": "x"}}</tool_call>') == two
    assert calls('<functions><function name="f"><param name="a" type="integer">1</param></function>'
                 '<function name="g.h"><param name="b" type="string">x</param></function></functions>') == two
    assert calls("<function_call> {\"name\": \"f\", \"arguments\": {\"a\": 1}} "
                 "<function_call> {\"name\": \"g.h\", \"arguments\": {\"b\": \"x\"}}") == two


def test_xml_values_follow_the_type_attribute():
    text = ('<functions><function name="f"><params>'
            '<param name="i" value="-4" type="integer"/><param name="x" value="2.5" type="float"/>'
            '<param name="b" value="TRUE" type="boolean"/><param name="n" value="" type="null"/>'
            '<param name="l" value="[1, (2, 3)]" type="array"/><param name="d" value="{\'k\': [1]}" type="dict"/>'
            '<param name="s" value=" keep spaces " type="string"/><param name="o" value="7" type="other"/>'
            '</params></function></functions>')
    (call,) = calls(text, values="bfcl")
    assert call.arguments == {"i": -4, "x": 2.5, "b": True, "n": None, "l": [1, (2, 3)], "d": {"k": [1]},
                              "s": " keep spaces ", "o": "7"}
    assert calls(text)[0].arguments["l"] == [1, [2, 3]]  # plain mode: tuples read as lists
    bad = decode('<functions><function name="f"><param name="i" type="integer">x</param></function></functions>')
    assert not bad.ok and "integer" in bad.error


def test_xml_entities_are_refused_and_names_are_needed():
    bomb = ('<functions><!DOCTYPE lol [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
            '<function name="f"><param name="x" type="string">&b;</param></function></functions>')
    assert not decode(bomb).ok
    assert not decode('<functions><function><param name="x">1</param></function></functions>').ok
    assert not decode('<functions><function name="f"><param type="string">1</param></function></functions>').ok
    assert not decode("<functions><function name='f'>").ok  # unterminated


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


# --- value readings -------------------------------------------------------------------------------------

def test_plain_and_bfcl_value_readings():
    text = "[f(t=(1, 2), n=true, d=a.b, e=..., s=g(1), k=g(x=1), o=1 + 2, u=+5, m=-2.5, z=None)]"
    bfcl = decode(text, values="bfcl")
    assert not bfcl.ok  # a dotted name as a value: BFCL's decoder fails on it too
    (call,) = calls(text.replace("d=a.b, ", ""), values="bfcl")
    assert call.arguments == {"t": (1, 2), "n": "true", "e": "...", "s": "g(1)", "k": {"g": {"x": 1}},
                              "o": "1 + 2", "u": 5, "m": -2.5, "z": None}
    assert type(call.arguments["o"]) is Expression and type(call.arguments["t"]) is tuple
    (plain,) = calls("[f(t=(1, 2), n=true, d=a.b, u=+5, z=None)]")
    assert plain.arguments == {"t": [1, 2], "n": True, "d": "a.b", "u": 5, "z": None}
    assert not decode("[f(o=1 + 2)]").ok  # plain mode refuses expressions


@pytest.mark.parametrize("text", ["[f(x={1, 2})]", "[f(x=lambda: 1)]", "[f(x=[i for i in y])]", "[f(x=a if b else c)]",
                                  "[f(x=not y)]", "[f(x=f'{y}')]", "[f(x=b'raw')]", "[f(x=1j)]", "[f(*a)]",
                                  "[f(**k)]", "[f(x={**k})]", "[f(x=await y)]", "[f(x=(y := 1))]"])
def test_what_bfcl_mode_refuses(text):
    assert not decode(text, values="bfcl").ok


# --- safety ---------------------------------------------------------------------------------------------

HOSTILE = [
    "__import__('os').system('touch /tmp/bitagent-pwned')",
    "[f(x=__import__('os').system('touch /tmp/bitagent-pwned'))]",
    "[f(x=1 + __import__('os').system('touch /tmp/bitagent-pwned'))]",
    "[f(x=(lambda: __import__('os').system('touch /tmp/bitagent-pwned'))())]",
    "[f(x=lambda: __import__('os').system('touch /tmp/bitagent-pwned'))]",
    "[f(x=open('/etc/passwd').read())]",
    "[f(x=[c for c in ().__class__.__base__.__subclasses__()])]",
    "[f(x=2**10**10**10)]",
    "[f(x=9**9**9)]",
    "[f(x='a' * 10**9)]",
    "[f(x=" + "1+" * 5000 + "1)]",
    "[f(x=" + "-" * 30000 + "1)]",
    "[f(x=" + "(" * 100 + "1" + ")" * 100 + ")]",
    "<functions><function name=\"f\"><param name=\"x\" type=\"array\">__import__('os').system('x')</param>"
    "</function></functions>",
    "<functions><function name=\"f\"><param name=\"x\" type=\"dict\">{'a': 1 + 1}</param></function></functions>",
]


@pytest.fixture
def no_exec():
    """Fails the test if anything runs eval/exec while it is active (an audit hook sees every code object
    executed by eval/exec; hooks cannot be removed, so this one is switched by a flag)."""
    seen = []
    state = {"on": False}

    def hook(event, args):
        # module imports also run code objects, from .py files; eval/exec of text runs "<string>" code
        if state["on"] and event == "exec" and not getattr(args[0], "co_filename", "").endswith(".py"):
            seen.append(args)

    sys.addaudithook(hook)
    state["on"] = True
    yield seen
    state["on"] = False


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_answers_are_never_evaluated(text, no_exec):
    for values in ("plain", "bfcl"):
        started = time.perf_counter()
        result = decode(text, values=values)
        assert time.perf_counter() - started < 0.5
        assert isinstance(result, Decoded)
        for call in result.calls:
            json.dumps(call.to_json())  # whatever was read is plain data
    assert no_exec == []


def test_expression_values_stay_text(no_exec):
    (call,) = calls("[f(x=1 + __import__('os').getpid())]", values="bfcl")
    assert call.arguments["x"] == "1 + __import__('os').getpid()" and isinstance(call.arguments["x"], Expression)
    assert no_exec == []


def test_size_and_nesting_bounds():
    assert decode("[f(x='" + "a" * MAX_INPUT_CHARS + "')]").error.startswith("answer longer")
    assert decode("[" * 10_000 + "]" * 10_000).error.startswith("nesting deeper")
    deep = "[f(x=" + "[" * (MAX_NESTING + 1) + "]" * (MAX_NESTING + 1) + ")]"
    assert not decode(deep).ok
    shallow = "[f(x=" + "[" * 20 + "]" * 20 + ")]"
    assert decode(shallow).ok and decode(shallow, values="bfcl").ok


@pytest.mark.parametrize("make", [
    lambda n: "[" * n,
    lambda n: "(" * (n // 2) + ")" * (n // 2),
    lambda n: "[f(x=" + "{'a': " * (n // 8) + "1" + "}" * (n // 8) + ")]",
    lambda n: "<functions>" + "<a>" * (n // 4) + "</functions>",
    lambda n: "<functions><function name=\"f\">" + "<param name=\"x\" type=\"array\">" + "[" * 1000 + "</param>"
              "</function></functions>",
    lambda n: "1+" * (n // 2 - 1) + "1",
    lambda n: "f(" + "a=1," * (n // 5) + ")",
    lambda n: "[" + "f(), " * (n // 5) + "]",
    lambda n: '{"name": "f", "arguments": ' + "[" * (n // 2) + "}",
    lambda n: "[" + "f(x=" * (n // 5) + ")" * (n // 5) + "]",
    lambda n: '{"name": "f"};' * (n // 14),
    lambda n: "<tool_call>" * (n // 11),
    lambda n: "```" * (n // 3),
    lambda n: "'" + "\\x41" * (n // 4),
])
def test_64_kb_and_deeply_nested_inputs_in_bounded_time(make):
    text = make(MAX_INPUT_CHARS - 100)
    assert len(text) <= MAX_INPUT_CHARS
    for values in ("plain", "bfcl"):
        started = time.perf_counter()
        result = decode(text, values=values)
        assert time.perf_counter() - started < 1.0, make
        assert isinstance(result, Decoded)


# --- properties -----------------------------------------------------------------------------------------

scalars = st.one_of(
    st.text(max_size=12), st.integers(-10**12, 10**12), st.booleans(), st.none(),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.tuples(inner, inner),
    st.dictionaries(st.one_of(st.text(max_size=6), st.integers(-5, 5)), inner, max_size=3)), max_leaves=12)
identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True).filter(
    lambda s: s not in decoding._RESERVED)
names = st.lists(identifiers, min_size=1, max_size=3).map(".".join)


def render(value, quote="'"):
    if isinstance(value, str):
        return repr(value) if quote == "'" else json.dumps(value)
    if isinstance(value, tuple):
        return "(" + ", ".join(render(v, quote) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, list):
        return "[" + ", ".join(render(v, quote) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{render(k, quote)}: {render(v, quote)}" for k, v in value.items()) + "}"
    return repr(value)


@st.composite
def pythonic_answers(draw):
    n = draw(st.integers(0, 3))
    parts = []
    for _ in range(n):
        name = draw(names)
        positional = draw(st.lists(values, max_size=2))
        keywords = draw(st.dictionaries(identifiers, values, max_size=3))
        args = [render(v) for v in positional] + [f"{k}={render(v)}" for k, v in keywords.items()]
        sep = draw(st.sampled_from([", ", ",", " , ", ",\n  "]))
        parts.append(f"{name}({sep.join(args)}{draw(st.sampled_from(['', ',']))})" if args else f"{name}()")
    body = ", ".join(parts)
    return draw(st.sampled_from([f"[{body}]", body, f"[ {body} ]"])) if body else "[]"


def reference(body, bfcl):
    try:
        return repr(ast_python_calls(body, bfcl))
    except decoding.DecodeError:
        return "error"


def same_reading(body):
    for bfcl in (False, True):
        fast = fast_python_calls(body, bfcl)
        if fast is not None:
            assert repr(fast) == reference(body, bfcl), (body, bfcl)


@settings(max_examples=400 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pythonic_answers())
@example("[f(a=00, b=1., c=.5, d=1e3, e=-0.0, f=+7)]")
@example("[f(a=(1), b=(), c=(1,), d={}, e={1: 2, 'x': None, True: 3})]")
@example("\t[]")  # leading blanks are an IndentationError for ast (found by this test)
@example("\n [f()]")
def test_fast_reader_agrees_with_ast(body):
    same_reading(body)
    assert decode(body).ok  # generated answers are valid Python calls


MUTATIONS = list("()[]{},=:.+-'\"\\\n\t #*@0123456789_aeTNFé\x00`") + [
    "True", "lambda", "if", " not ", "1_0", "0x", "j", "'''", '"""', "f'", "b'", "\r", "\u2028"]


@settings(max_examples=600 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pythonic_answers(), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 2),
                                              st.sampled_from(MUTATIONS)), min_size=1, max_size=4))
def test_fast_reader_agrees_with_ast_on_mutated_answers(body, edits):
    for position, kind, text in edits:
        i = position % (len(body) + 1)
        body = body[:i] + text + body[i:] if kind == 0 else (body[:i] + body[i + 1:] if kind == 1
                                                             else body[:i] + text + body[i + 1:])
    same_reading(body)
    for bfcl in (False, True):
        assert isinstance(decode(body, values="plain" if not bfcl else "bfcl"), Decoded)


@settings(max_examples=300 * SCALE, deadline=None)
@given(st.lists(st.tuples(names, st.dictionaries(identifiers, values, max_size=3)), min_size=1, max_size=3))
def test_round_trips_through_pythonic_json_and_xml(specs):
    expected = [ToolCall(name, args) for name, args in specs]
    pythonic = "[" + ", ".join(f"{n}({', '.join(f'{k}={render(v)}' for k, v in a.items())})" for n, a in specs) + "]"
    got = decode(pythonic, values="bfcl")
    assert got.ok and list(got.calls) == expected
    as_json = json.dumps([{"function": n, "parameters": a} for n, a in specs])
    jsonable = [ToolCall(n, json.loads(json.dumps(a))) for n, a in specs]
    assert list(decode(as_json).calls) == jsonable


xml_scalars = st.one_of(st.integers(-10**9, 10**9).map(lambda v: ("integer", v)),
                        st.booleans().map(lambda v: ("boolean", v)),
                        st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=10).filter(
                            lambda s: s == s.strip()).map(lambda v: ("string", v)),
                        st.lists(st.integers(-5, 5), max_size=3).map(lambda v: ("array", v)))


@settings(max_examples=200 * SCALE, deadline=None)
@given(identifiers, st.dictionaries(identifiers, xml_scalars, max_size=4), st.booleans())
def test_xml_round_trip(name, params, verbose):
    from xml.sax.saxutils import escape, quoteattr

    def text(kind, value):
        return str(value).lower() if kind == "boolean" else (str(value) if kind != "string" else value)

    if verbose:
        inner = "<params>" + "".join(f'<param name="{k}" value={quoteattr(text(t, v))} type="{t}"/>'
                                     for k, (t, v) in params.items()) + "</params>"
    else:
        inner = "".join(f'<param name="{k}" type="{t}">{escape(text(t, v))}</param>' for k, (t, v) in params.items())
    answer = f'<functions><function name="{name}">{inner}</function></functions>'
    got = decode(answer, values="bfcl")
    assert got.ok, (answer, got.error)
    assert list(got.calls) == [ToolCall(name, {k: v for k, (t, v) in params.items()})]


@settings(max_examples=500 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
                 pythonic_answers().map(lambda s: s[: len(s) // 2])))
def test_decode_never_raises(text):
    for values in ("plain", "bfcl"):
        result = decode(text, values=values)
        assert isinstance(result, Decoded) and (result.ok or result.error)
        assert isinstance(decode_pythonic(text, values=values), Decoded)
