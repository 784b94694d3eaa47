"""What the decoder tests share: hostile answers, a fixture that sees any eval/exec, and generators of
pythonic answers (loaded as a pytest plugin by conftest.py)."""

from __future__ import annotations

import json
import keyword
import os
import sys

import pytest
from hypothesis import strategies as st

#: BITAGENT_HYPOTHESIS_SCALE=20 runs 20 times the generated examples (a long fuzzing session); make test-fast
#: runs a tenth of them
SCALE = float(os.environ.get("BITAGENT_HYPOTHESIS_SCALE", "1"))


def examples(n: int) -> int:
    """``n`` generated examples, scaled by BITAGENT_HYPOTHESIS_SCALE (at least 10)."""
    return max(10, round(n * SCALE))


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
    '<functions><function name="f"><param name="x" type="array">__import__(\'os\').system(\'x\')</param>'
    "</function></functions>",
    '<functions><function name="f"><param name="x" type="dict">{\'a\': 1 + 1}</param></function></functions>',
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


scalars = st.one_of(
    st.text(max_size=12),
    st.integers(-(10**12), 10**12),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.one_of(st.text(max_size=6), st.integers(-5, 5)), inner, max_size=3),
    ),
    max_leaves=12,
)
identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True).filter(lambda s: not keyword.iskeyword(s))
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
