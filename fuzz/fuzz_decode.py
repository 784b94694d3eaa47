"""atheris harness for the decoder and the bfcl scorer.

Every input is decoded in both dialects (the shared one and BFCL's), read by BFCL's fast pythonic reader and
by ``ast`` (which must agree whenever the fast reader answers), and scored by ``bfcl`` and ``bfcl-strict``
against a simple, a parallel, an irrelevance and a relevance task. A finding is any of: an exception escaping,
anything evaluated (an audit hook watches eval/exec), one decode taking over a second, a result that is not
plain data.

    .venv/bin/python fuzz/fuzz_decode.py fuzz/corpus -runs=200000 -max_len=65536 -timeout=5

See fuzz/README.md.
"""

import json
import sys
import time

import atheris

with atheris.instrument_imports(include=["bitagent_core", "bitagent_plugins"]):
    from bitagent_core.model import Completion, ExpectedCall, Message, Task, Tool
    from bitagent_core.toolkit.decoding import (
        MAX_INPUT_CHARS,
        PLAIN,
        DecodeError,
        ast_python_calls,
        decode,
        decode_pythonic,
    )
    from bitagent_plugins.bfcl.reading import BFCL, fast_python_calls, literal_bfcl
    from bitagent_plugins.bfcl.scorer import BfclScorer

_active = {"on": False}


def _audit(event, args):
    # module imports run code from .py files; eval/exec of text runs "<string>" code: that is a finding
    if _active["on"] and event == "exec" and not getattr(args[0], "co_filename", "").endswith(".py"):
        raise RuntimeError(f"something was evaluated: {args[0]!r}")


sys.addaudithook(_audit)

TOOL = Tool.from_json(
    {
        "name": "trip.plan",
        "parameters": {
            "type": "dict",
            "required": ["city", "days"],
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "budget": {"type": "float"},
                "stops": {"type": "array", "items": {"type": "string"}},
                "prefs": {"type": "dict"},
                "legs": {"type": "array", "items": {"type": "dict"}},
                "coords": {"type": "tuple", "items": {"type": "float"}},
            },
        },
    }
)
EXPECTED = ExpectedCall.from_json(
    {
        "trip.plan": {
            "city": ["NYC"],
            "days": [3],
            "budget": ["", 10.5],
            "stops": [["a", "b"], ""],
            "prefs": [{"k": ["v"]}, ""],
            "legs": [[{"x": [1]}], ""],
            "coords": [[1.0, 2.0], ""],
        }
    }
)
MESSAGES = (Message("user", "q"),)
TASKS = [
    Task("s", MESSAGES, (TOOL,), (EXPECTED,), category="simple_python"),
    Task(
        "p",
        MESSAGES,
        (TOOL,),
        (EXPECTED, EXPECTED, ExpectedCall("trip.plan", {"city": ("LA",), "days": (1,)})),
        category="parallel",
    ),
    Task("i", MESSAGES, (TOOL,), (), category="irrelevance"),
    Task("r", MESSAGES, (TOOL,), (), category="live_relevance"),
]
SCORERS = [BfclScorer(), BfclScorer(strict=True)]
#: one decode of one input, coverage instrumentation included (uninstrumented, the worst 64 KB input takes
#: about 0.1 s); libFuzzer's -timeout bounds a whole input
DECODE_LIMIT_S = 1.0
runs = {"n": 0}


def timed_decode(text: str, dialect):
    started = time.perf_counter()
    result = decode(text, dialect=dialect)
    elapsed = time.perf_counter() - started
    if elapsed > DECODE_LIMIT_S:
        raise AssertionError(f"decoding {len(text)} characters took {elapsed:.2f} s")
    return result


def check_big(text: str) -> None:
    """A blown-up input: decoding and scoring must stay bounded (the fast reader leaves these to ast)."""
    for dialect in (PLAIN, BFCL):
        json.dumps([c.to_json() for c in timed_decode(text, dialect).calls])
    for scorer in SCORERS:
        scorer.score(TASKS[0], Completion(text=text))


def check_one(text: str) -> None:
    for dialect in (PLAIN, BFCL):
        result = timed_decode(text, dialect)
        json.dumps([c.to_json() for c in result.calls])
        decode_pythonic(text, dialect=dialect)
    fast = fast_python_calls(text)
    if fast is not None:
        try:
            slow = ast_python_calls(text, literal_bfcl)
        except DecodeError as exc:
            raise AssertionError(f"fast reader read what ast refuses: {text!r}: {exc}") from None
        if repr(fast) != repr(slow):
            raise AssertionError(f"fast {fast!r} != ast {slow!r} for {text!r}")
    for scorer in SCORERS:
        for task in TASKS:
            score = scorer.score(task, Completion(text=text))
            assert score.value in (0.0, 1.0) and score.passed == (score.error_type is None)


def make_text(data: bytes) -> str:
    """The first byte picks a shape: as is, latin-1, blown up to 64 KB by repetition, or nested deeply."""
    mode = data[0] % 16 if data else 0
    provider = atheris.FuzzedDataProvider(data[1:])
    text = provider.ConsumeUnicodeNoSurrogates(len(data)) if mode != 1 else data[1:].decode("latin-1")
    if mode == 2 and text:
        text = (text * (MAX_INPUT_CHARS // len(text) + 1))[:MAX_INPUT_CHARS]
    elif mode == 3:
        depth = 10_000 if len(text) < 10 else len(text) * 40
        text = "[f(x=" + "[" * depth + text + "]" * depth + ")]"
    elif mode == 4:
        text = "[trip.plan(city=" + text + ", days=3)]"
    elif mode == 5:
        text = (
            '<functions><function name="trip.plan"><param name="city" type="array">' + text + "</param></function>"
            "</functions>"
        )
    return text


def TestOneInput(data: bytes) -> None:
    text = make_text(data)
    runs["n"] += 1
    _active["on"] = True
    try:
        (check_big if len(text) > 8192 else check_one)(text)
    finally:
        _active["on"] = False


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
