"""Scorers ``bfcl`` and ``bfcl-strict``: BFCL's AST checker rules, a pass/fail verdict per task (score 1 or 0).

The rules, as BFCL's ``ast_checker`` applies them (bfcl-eval 2026.3.23):

* the answer must hold as many calls as the ground truth: one for simple and multiple, the same count for
  parallel (``wrong_count``); for irrelevance no call at all (``irrelevance_error``), for relevance any call
  (``relevance_error``); an answer that decodes to no call list fails (``decode_error``), an empty one reads
  as ``[]``;
* each call: the exact function name (``wrong_func_name``); every parameter the doc requires
  (``missing_required``); no parameter outside the doc or the ground truth (``unexpected_param``); every
  ground-truth parameter given unless ``""`` is among its values (``missing_optional``);
* types are strict (``type_error``): ``True`` is no integer, ``10.0`` no integer, an integer is accepted
  for a float, a list or a tuple for a tuple; a value of the ground truth's own type where it differs from the
  doc's is a "variable" and compared as is; list items are type-checked one level deep;
* values (``value_error``): strings compared after removing spaces and ``,./-_*^`` and lowercasing; lists in
  order, their string items normalised alike; dicts one level deep, key by key; other values by ``==``
  with no float tolerance.

Deliberate differences from BFCL, each tested in ``tests/test_bfcl_scorer.py`` and documented in
docs/bfcl.md:

* nothing is ever evaluated: BFCL ``eval``s operator expressions in answers (``x=2*3``); we decode them
  as :class:`~bitagent_plugins.bfcl.reading.Expression` text, which no expected value equals (``value_error``);
* parallel calls are matched by a maximum bipartite matching; BFCL matches greedily and fails answers
  whose calls fit the ground truth only in another pairing;
* positional arguments are bound to parameters in the doc's order; BFCL drops them silently;
* ``bfcl`` reads every format the shared decoder knows (pythonic, JSON, XML, tags, fenced or inline code,
  text around the call); BFCL's prompting decoder reads bare pythonic calls only. ``bfcl-strict`` reads
  exactly what that decoder reads, for verdicts comparable with BFCL's own.

Each verdict carries its error type in BFCL's vocabulary without BFCL's checker prefix; a parallel failure
names the call that fits nothing and the expected call it comes nearest to (BFCL says ``cannot_find_match``).
Per-task checks are compiled once (normalised options, types, shortcuts) and cached by task id.
"""

from __future__ import annotations

from typing import Any

from bitagent_core import Completion, ExpectedCall, Score, Task, ToolCall, Trajectory
from bitagent_core.toolkit import STANDARDIZE_DROP, bind_arguments, decode, max_weight_matching, standardize
from bitagent_plugins.bfcl.multi_turn import bfcl_prompt_decode
from bitagent_plugins.bfcl.reading import BFCL, Expression

#: BFCL's Python type names, plus the JSON-schema ones other task sources use
TYPES: dict[str, type] = {
    "string": str,
    "integer": int,
    "float": float,
    "boolean": bool,
    "array": list,
    "tuple": list,
    "dict": dict,
    "any": str,
    "number": float,
    "object": dict,
    "str": str,
    "int": int,
    "bool": bool,
    "list": list,
}
_STRIP = STANDARDIZE_DROP  # inlined as .translate(_STRIP).lower().replace("'", '"') on the hot paths
_CACHE_MAX = 50_000


def _std(value: Any) -> Any:
    return standardize(value) if type(value) is str else value


def _answer_type(options: Any) -> type | None:
    """BFCL's "possible answer type": the type of the first option that is not ``""``."""
    for option in options:
        if option != "":
            return type(option)
    return None


class _DictOption:
    """One acceptable dict (BFCL: ``{key: [values]}``), normalised once."""

    __slots__ = ("values", "omittable")

    def __init__(self, option: dict[str, Any]) -> None:
        self.values: dict[Any, list[Any]] = {}
        self.omittable: dict[Any, bool] = {}
        for key, values in option.items():
            if isinstance(values, list):
                self.values[key] = [_std(v) for v in values]
            elif isinstance(values, str):  # BFCL iterates a string's characters here
                self.values[key] = [_std(ch) for ch in values]
            else:
                self.values[key] = []
            try:
                self.omittable[key] = "" in values
            except TypeError:
                self.omittable[key] = False

    def accepts(self, given: dict[Any, Any]) -> bool:
        values = self.values
        for key, value in given.items():
            if key not in values or _std(value) not in values[key]:
                return False
        for key, omittable in self.omittable.items():
            if key not in given and not omittable:
                return False
        return True


_QUICK_STR, _QUICK_EXACT, _QUICK_FLOAT = 1, 2, 3
_QUICK = {str: _QUICK_STR, int: _QUICK_EXACT, bool: _QUICK_EXACT, float: _QUICK_FLOAT}
_EMPTY_DICT: dict[str, Any] = {}
_NO_STRINGS: frozenset[str] = frozenset()


class _Param:
    """One ground-truth parameter with everything BFCL's checks need, computed once per task."""

    __slots__ = (
        "name",
        "options",
        "omittable",
        "declared",
        "expected",
        "nested",
        "answer_type",
        "variable",
        "nested_answer_types",
        "strings",
        "lists",
        "dicts",
        "list_dicts",
        "quick",
        "ready",
    )

    def __init__(self, name: str, options: tuple[Any, ...], schema: dict[str, Any] | None) -> None:
        # built once per task and kept: few containers (shared when empty), since the garbage collector walks
        # every container a plan holds, and locals rather than attribute reads. The normalised options are built
        # on first need (_prepare): a task is usually scored once, and a value equal to an option needs none
        # (building them up front was 54 % of a cold check)
        self.name = name
        if type(options) is not tuple:
            options = tuple(options)
        self.options = options
        self.omittable = "" in options
        declared = schema.get("type") if type(schema) is dict else None
        if type(declared) is not str:
            declared = None
        self.declared = declared
        expected = TYPES.get(declared) if declared is not None else None
        self.expected = expected
        nested = None
        if declared == "array" or declared == "tuple":
            items = schema.get("items")  # type: ignore[union-attr]
            if type(items) is dict and type(items.get("type")) is str:
                nested = TYPES.get(items["type"])
        self.nested = nested
        answer_type = _answer_type(options)
        self.answer_type = answer_type
        variable = answer_type is not None and answer_type is not expected
        self.variable = variable
        self.ready = False
        self.nested_answer_types: tuple[tuple[type | None, bool], ...] = ()
        self.strings = _NO_STRINGS
        self.lists: tuple[list[Any], ...] = ()
        self.dicts: tuple[_DictOption, ...] = ()
        self.list_dicts: tuple[tuple[_DictOption | None, ...], ...] = ()
        # which shortcut _Call.check may take to accept a value (a value it does not accept goes to check())
        self.quick = _QUICK.get(expected, 0) if declared != "tuple" and not variable and expected is not None else 0

    def _prepare(self) -> _Param:
        """Normalise the options, only those this parameter's checks read (a "variable" reads none)."""
        options, nested, expected = self.options, self.nested, self.expected
        # per option: BFCL's "possible answer type" of its items (list options only)
        self.nested_answer_types = (
            tuple([(_answer_type(o) if type(o) is list else None, type(o) is list) for o in options])
            if nested is not None
            else ()
        )
        checked = None if self.variable else expected
        untyped = expected is None
        if checked is str or untyped:
            self.strings = frozenset([o.translate(_STRIP).lower().replace("'", '"') for o in options if type(o) is str])
        if checked is list or untyped:
            # BFCL iterates a string option's characters here
            self.lists = tuple([[_std(e) for e in o] for o in options if type(o) is list or type(o) is str])
            if nested is dict:
                self.list_dicts = tuple(
                    [
                        tuple([_DictOption(e) if type(e) is dict else None for e in o])
                        if type(o) is list
                        else (None,) * len(o)
                        for o in options
                        if type(o) is list or type(o) is str
                    ]
                )
        if checked is dict or untyped:
            self.dicts = tuple([_DictOption(o) for o in options if type(o) is dict])
        self.ready = True
        return self

    def check(self, value: Any) -> tuple[str, str] | None:
        """None if ``value`` passes BFCL's type and value checks, else (error type, detail)."""
        if not self.ready:
            self._prepare()
        if isinstance(value, Expression):
            return "value_error", f"{self.name!r}: the expression {str(value)[:80]!r} is never evaluated"
        expected = self.expected
        if expected is None:  # a type BFCL does not know: compare by the value's own type
            return self._check_untyped(value)
        if self.declared == "tuple" and type(value) is tuple:
            value = list(value)
        elif expected is float and type(value) is int:
            value = float(value)
        variable = self.variable
        kind = type(value)
        if kind is expected:
            if self.nested is not None and not self._nested_ok(value):
                return "type_error", (f"{self.name!r}: items of {_short(value)} are not all {self.nested.__name__}")
        elif self.answer_type is not None and kind is self.answer_type:
            variable = True
        else:
            return "type_error", f"{self.name!r}: expected {self.declared}, got {kind.__name__} {_short(value)}"
        if not variable:
            if expected is dict:
                if any(option.accepts(value) for option in self.dicts):
                    return None
                return "value_error", f"{self.name!r}: {_short(value)} matches no acceptable dict"
            if expected is list and self.nested is dict:
                if self._list_of_dicts_ok(value):
                    return None
                return "value_error", f"{self.name!r}: {_short(value)} matches no acceptable list of dicts"
            if expected is str:
                if standardize(value) in self.strings:
                    return None
                return "value_error", f"{self.name!r}: {_short(value)} is not one of {_short(self.options)}"
            if expected is list:
                if [_std(e) for e in value] in self.lists:
                    return None
                return "value_error", f"{self.name!r}: {_short(value)} is not one of {_short(self.options)}"
        if value in self.options:
            return None
        return "value_error", f"{self.name!r}: {_short(value)} is not one of {_short(self.options)}"

    def _nested_ok(self, value: list[Any]) -> bool:
        nested = self.nested
        for answer_type, is_list in self.nested_answer_types:
            if not is_list:
                return True  # BFCL: an option that is not a list (``""``) passes the item check
            for item in value:
                kind = type(item)
                if kind is not nested and (answer_type is None or kind is not answer_type):
                    break
            else:
                return True
        return False

    def _list_of_dicts_ok(self, value: list[Any]) -> bool:
        for option in self.list_dicts:
            if len(option) != len(value):
                continue
            for item, accepted in zip(value, option):
                if accepted is None or type(item) is not dict or not accepted.accepts(item):
                    break
            else:
                return True
        return False

    def _check_untyped(self, value: Any) -> tuple[str, str] | None:
        if type(value) is str and standardize(value) in self.strings:
            return None
        if type(value) is list and [_std(e) for e in value] in self.lists:
            return None
        if type(value) is dict and any(option.accepts(value) for option in self.dicts):
            return None
        if value in self.options:
            return None
        return "value_error", f"{self.name!r}: {_short(value)} is not one of {_short(self.options)}"


class _Call:
    """One expected call, compiled against its function doc."""

    __slots__ = ("name", "required", "known", "needed", "allowed")

    def __init__(self, expected: ExpectedCall, task: Task) -> None:
        self.name = expected.name
        tool = task.tool(expected.name)
        properties = tool.parameters.get("properties") if tool is not None else None
        arguments = expected.arguments
        if type(properties) is not dict:  # no doc: the ground truth is all we know
            self.known = arguments
            self.required = tuple([k for k, v in arguments.items() if "" not in v])
            schemas: dict[str, Any] = _EMPTY_DICT
        else:
            self.known = properties  # its key order binds positional arguments
            required = tool.parameters.get("required")  # type: ignore[union-attr]
            self.required = tuple([r for r in required if type(r) is str]) if type(required) is list else ()
            schemas = properties
        params = [_Param(name, options, schemas.get(name)) for name, options in arguments.items()]
        self.needed = tuple([p for p in params if not p.omittable])
        # the parameters an answer may give: in the doc and in the ground truth
        self.allowed = {p.name: p for p in params if p.name in self.known}

    def check(self, call: ToolCall) -> tuple[str, str] | None:
        """None if ``call`` passes, else (error type, detail), in BFCL's order of checks."""
        if call.name != self.name:
            return "wrong_func_name", f"called {call.name!r}, expected {self.name!r}"
        if call.positional:
            arguments, problems = bind_arguments(call, _Order(tuple(self.known)))
            if problems:
                return "unexpected_param", f"{self.name}: {problems[0]}"
        else:
            arguments = call.arguments
        for name in self.required:
            if name not in arguments:
                return "missing_required", f"{self.name}: missing required parameter {name!r}"
        allowed = self.allowed
        for name, value in arguments.items():
            param = allowed.get(name)
            if param is None:
                return "unexpected_param", f"{self.name}: unexpected parameter {name!r}"
            quick = param.quick  # shortcuts for plain values that pass; anything else takes the full check
            if quick == _QUICK_STR:
                if type(value) is str:
                    if value in param.options:
                        continue  # one of the accepted strings as written: its normalised form is too
                    strings = param.strings if param.ready else param._prepare().strings
                    if value.translate(_STRIP).lower().replace("'", '"') in strings:
                        continue
            elif quick == _QUICK_EXACT:
                if type(value) is param.expected and value in param.options:
                    continue
            elif quick == _QUICK_FLOAT:
                kind = type(value)
                if (kind is float or kind is int) and float(value) in param.options:
                    continue
            error = param.check(value)
            if error is not None:
                return error[0], f"{self.name}: {error[1]}"
        for param in self.needed:
            if param.name not in arguments:
                return "missing_optional", (
                    f"{self.name}: parameter {param.name!r} not given and the ground truth does not allow omitting it"
                )
        return None

    def closeness(self, call: ToolCall) -> tuple[int, int]:
        """How near ``call`` comes to this expected call: (same name, parameters with an acceptable value)."""
        if call.name != self.name:
            return 0, 0
        arguments = bind_arguments(call, _Order(tuple(self.known)))[0] if call.positional else call.arguments
        allowed = self.allowed
        return 1, sum(1 for name, value in arguments.items() if name in allowed and allowed[name].check(value) is None)


class _Order:
    """Stands in for a Tool in :func:`bind_arguments`: only the parameter order is read."""

    __slots__ = ("parameter_order",)

    def __init__(self, order: tuple[str, ...]) -> None:
        self.parameter_order = order


class _Plan:
    __slots__ = ("kind", "calls")

    def __init__(self, task: Task) -> None:
        if task.expected_calls:
            self.kind = "ast"
        elif "relevance" in task.category and "irrelevance" not in task.category:
            self.kind = "relevance"  # BFCL's live_relevance: any call passes
        else:
            self.kind = "irrelevance"
        self.calls = [_Call(expected, task) for expected in task.expected_calls]


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fail(error: str, detail: str, calls: tuple[ToolCall, ...] = (), **breakdown: float) -> Score:
    return Score(0.0, breakdown, error_type=error, passed=False, decoded_calls=calls, detail=detail)


class BfclScorer:
    """``strict=False`` (scorer ``bfcl``): any format the shared decoder reads. ``strict=True`` (scorer
    ``bfcl-strict``): only what BFCL's prompting decoder reads, for verdicts comparable with BFCL's own."""

    version = "1"

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self.name = "bfcl-strict" if strict else "bfcl"
        self._plans: dict[str, tuple[Task, _Plan]] = {}

    def plan(self, task: Task) -> _Plan:
        """The compiled checks of a task, built once per task."""
        cached = self._plans.get(task.id)
        if cached is not None and (cached[0] is task or cached[0] == task):
            return cached[1]
        plan = _Plan(task)
        if len(self._plans) >= _CACHE_MAX:
            self._plans.clear()
        self._plans[task.id] = (task, plan)
        return plan

    def score(self, task: Task, completion: Completion) -> Score:
        if task.metadata.get("language"):
            return score_java_js(task, completion, self.strict)
        cached = self._plans.get(task.id)
        plan = cached[1] if cached is not None and cached[0] is task else self.plan(task)
        if self.strict:
            config = task.metadata.get("format_config")
            if config and not completion.tool_calls:  # format sensitivity: read as BFCL does under that prompt
                from bitagent_plugins.bfcl.format_sensitivity import decode_answer

                decoded = decode_answer(completion.text, config)
            else:
                decoded = bfcl_prompt_decode(completion)
        else:
            decoded = decode(completion.text, completion.tool_calls, dialect=BFCL)
        calls = decoded.calls
        expected = plan.calls
        if not expected:
            if plan.kind == "irrelevance":
                if calls:
                    return _fail("irrelevance_error", f"called {calls[0].name} where no call is right", calls)
                if decoded.error is not None and attempts_call(task, completion.text):
                    # BFCL counts an answer that fails to decode as an abstention; the lenient scorer does not
                    if self.strict:
                        return Score(
                            1.0,
                            {UNPARSEABLE_CALL: 1.0},
                            passed=True,
                            detail=f"an unreadable call, credited as no call as BFCL does: {decoded.error}",
                        )
                    return _fail(
                        UNPARSEABLE_CALL,
                        f"tried to call but the call cannot be read: {decoded.error}",
                        (),
                        unparseable_call=1.0,
                    )
                return Score(1.0, {}, passed=True)
            if calls:  # relevance
                return Score(1.0, {}, passed=True, decoded_calls=calls)
            return _fail("relevance_error", f"no call decoded: {decoded.error or 'empty'}")
        if decoded.error is not None:
            if decoded.error == "empty answer":  # BFCL reads an empty answer as "[]": no call
                return _fail("wrong_count", f"no call where {len(expected)} expected")
            return _fail("decode_error", decoded.error or "", calls)
        n = len(expected)
        if len(calls) != n:
            return _fail("wrong_count", f"{len(calls)} call(s) where {n} expected", calls)
        if n == 1:
            error = expected[0].check(calls[0])
            if error is None:
                return Score(1.0, {}, passed=True, decoded_calls=calls)
            return _fail(error[0], error[1], calls)
        return self._parallel(expected, calls)

    def score_trajectory(self, task: Task, trajectory: Trajectory) -> Score:
        """Multi-turn tasks: BFCL's multi-turn checker (``bitagent_plugins/bfcl/multi_turn_scorer.py``); agentic
        ones (memory, web search): BFCL's agentic checker (``agentic.py``)."""
        if task.metadata.get("agentic"):
            from bitagent_plugins.bfcl.agentic import score_agentic

            return score_agentic(task, trajectory, strict=self.strict)
        from bitagent_plugins.bfcl.multi_turn_scorer import score_trajectory

        return score_trajectory(task, trajectory, strict=self.strict)

    def _parallel(self, expected: list[_Call], calls: tuple[ToolCall, ...]) -> Score:
        n = len(expected)
        checked: dict[tuple[int, int], tuple[str, str] | None] = {}
        # fast path: an order in which every expected call finds a call (greedy, like BFCL)
        greedy: list[tuple[int, int]] = []
        free = list(range(n))
        for i, want in enumerate(expected):
            for j in free:
                result = checked[i, j] = want.check(calls[j])
                if result is None:
                    free.remove(j)
                    greedy.append((i, j))
                    break
            else:
                break
        else:
            return Score(1.0, {}, passed=True, decoded_calls=calls)
        # greedy failed: is there any pairing in which every call passes? (BFCL would stop here)
        weights = [[0.0] * n for _ in range(n)]
        for i, want in enumerate(expected):
            row = weights[i]
            for j in range(n):
                result = checked[i, j] if (i, j) in checked else checked.setdefault((i, j), want.check(calls[j]))
                if result is None:
                    row[j] = 1.0
        dead = [j for j in range(n) if not any(row[j] for row in weights)]  # calls that fit no expected call
        if not dead and all(1.0 in row for row in weights):
            pairs = max_weight_matching(weights)
            if len(pairs) == n:
                return Score(1.0, {}, passed=True, decoded_calls=calls)
        else:
            pairs = greedy  # a call, or an expected call, that fits nothing: no complete pairing exists
        # name the defect: a call that fits nothing (else one left out of the pairing), against the expected
        # call it comes nearest to
        used = {j for _, j in pairs}
        blamed = dead or [j for j in range(n) if j not in used]
        _, j, i = max(
            (expected[i].closeness(calls[j]), -j, -i) for j in blamed for i in range(n) if checked[i, j] is not None
        )
        i, j = -i, -j
        error = checked[i, j]
        assert error is not None
        return _fail(
            error[0],
            f"call {j + 1} ({calls[j].name}) matches no expected call; nearest is expected call {i + 1}: {error[1]}",
            calls,
            calls_matched=float(len(pairs)),
            calls_expected=float(n),
        )


#: the error type (and breakdown key) of an irrelevance answer that tries to call but cannot be read
UNPARSEABLE_CALL = "unparseable_call"
_CALL_MARKERS = ("<tool_call>", "<TOOLCALL>", "<functions>", "<function", "<|python_tag|>", '"name":', "'name':")


def attempts_call(task: Task, text: str | None) -> bool:
    """Whether an answer that decoded to no call still tries to make one: it names one of the task's tools
    right before an opening parenthesis, or holds a tool-call tag or a JSON ``"name":`` key."""
    if not text:
        return False
    if any(marker in text for marker in _CALL_MARKERS):
        return True
    for tool in task.tools:
        start = text.find(tool.name)
        while start >= 0:
            end = start + len(tool.name)
            before = text[start - 1] if start else " "
            if not (before.isalnum() or before in "_.") and text[end : end + 8].lstrip().startswith("("):
                return True
            start = text.find(tool.name, end)
    return False


def score_java_js(task: Task, completion: Completion, strict: bool) -> Score:
    """BFCL's Java/JavaScript categories: read with tree-sitter, values converted by the declared Java/JS type
    (``bitagent_plugins/bfcl/java_js.py``)."""
    from bitagent_plugins.bfcl import java_js

    language = str(task.metadata["language"])
    docs = task.metadata["functions"]
    truth = task.metadata["ground_truth"]
    read: list[tuple[str, dict[Any, Any]]]
    if completion.tool_calls:
        read = [(c.name, {**dict(enumerate(c.positional)), **c.arguments}) for c in completion.tool_calls]
        read = [(name, {k if isinstance(k, str) else None: v for k, v in args.items()}) for name, args in read]
    else:
        try:
            read = java_js.read_calls(completion.text or "", language, strict)
        except java_js.Unreadable as exc:
            return _fail("decode_error", str(exc))
    calls = tuple(
        ToolCall(name, {k: v for k, v in args.items() if k is not None}, tuple(v for k, v in args.items() if k is None))
        for name, args in read
    )
    if len(read) != len(truth):
        return _fail("wrong_count", f"{len(read)} call(s) where {len(truth)} expected", calls)
    ((_, options),) = truth[0].items()
    try:
        java_js.check_call(docs[0], read[0][0], read[0][1], options, language, strict)
    except java_js.CheckError as exc:
        return _fail(exc.kind, exc.detail, calls)
    return Score(1.0, {}, passed=True, decoded_calls=calls)


def strict_scorer() -> BfclScorer:
    return BfclScorer(strict=True)
