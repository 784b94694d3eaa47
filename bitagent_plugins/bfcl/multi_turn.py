"""BFCL's multi-turn categories (``bfcl:multi_turn_base``, ``_miss_func``, ``_miss_param``, ``_long_context``;
``bfcl:multi_turn`` for all four) and the ``bfcl`` environment they play in.

The environments are BFCL's own simulated APIs (``GorillaFileSystem``, ``MathAPI``, ``MessageAPI``,
``TwitterAPI``, ``TicketAPI``, ``TradingBot``, ``TravelAPI``, ``VehicleControlAPI``), imported from the pinned
``bfcl-eval`` wheel's ``eval_checker/multi_turn_eval/func_source_code/`` modules only (they need ``mpmath``;
the rest of ``bfcl_eval`` is never imported). Each trajectory gets fresh instances loaded with the entry's
``initial_config`` (and ``long_context=True`` in the long-context category), as BFCL's executor makes them.

Each entry becomes one :class:`~bitagent_core.model.Task` as BFCL's prompting handlers see it: the function
docs of every involved class (less the ones a ``miss_func`` entry holds back, with BFCL's Python hint), BFCL's
default system prompt for prompting models (``ret_fmt=python&tool_call_tag=False&func_doc_fmt=json&
prompt_fmt=plaintext&style=classic``), the first turn's messages, then one :class:`~bitagent_core.model.Turn`
per later turn; a held-out function comes back at its turn as BFCL's user message listing its doc (and as
``add_tools`` for native tool calling). The ground truth per turn is in ``Task.metadata["ground_truth"]``.
"""

from __future__ import annotations

import copy
import importlib
import json
import pickle
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from bitagent_core import Completion, EnvironmentSpec, Message, Task, Tool, ToolCall, Turn
from bitagent_core.toolkit import read_jsonl

if TYPE_CHECKING:
    from bitagent_core.toolkit import Decoded

CATEGORIES = ("multi_turn_base", "multi_turn_miss_func", "multi_turn_miss_param", "multi_turn_long_context")
ENVIRONMENT = "bfcl"
MAX_STEPS_PER_TURN = 20  # BFCL's MAXIMUM_STEP_LIMIT

_PACKAGE = "bfcl_eval.eval_checker.multi_turn_eval.func_source_code"
#: BFCL's CLASS_FILE_PATH_MAPPING and MULTI_TURN_FUNC_DOC_FILE_MAPPING for the multi-turn classes
CLASS_MODULES = {
    "GorillaFileSystem": "gorilla_file_system",
    "MathAPI": "math_api",
    "MessageAPI": "message_api",
    "TwitterAPI": "posting_api",
    "TicketAPI": "ticket_api",
    "TradingBot": "trading_bot",
    "TravelAPI": "travel_booking",
    "VehicleControlAPI": "vehicle_control",
}
FUNC_DOC_FILES = {
    "GorillaFileSystem": "gorilla_file_system.json",
    "MathAPI": "math_api.json",
    "MessageAPI": "message_api.json",
    "TwitterAPI": "posting_api.json",
    "TicketAPI": "ticket_api.json",
    "TradingBot": "trading_bot.json",
    "TravelAPI": "travel_booking.json",
    "VehicleControlAPI": "vehicle_control.json",
}
STATELESS_CLASSES = frozenset({"MathAPI"})
_LANGUAGE_HINT = " Note that the provided function is in Python 3 syntax."
#: BFCL's DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_PROMPTING
MISSED_FUNCTION_PROMPT = "{functions}\nI have updated some more functions you can choose from. What about now?"

#: BFCL's default system prompt for prompting models, as ``formulate_system_prompt`` builds it
SYSTEM_PROMPT = (
    "You are an expert in composing functions."
    "You are given a question and a set of possible functions. Based on the question, you will need to make one "
    "or more function/tool calls to achieve the purpose. If none of the functions can be used, point it out. If "
    "the given question lacks the parameters required by the function, also point it out."
    "\n\n"
    "You should only return the function calls in your response.\n\nIf you decide to invoke any of the "
    "function(s), you MUST put it in the format of [func_name1(params_name1=params_value1, "
    "params_name2=params_value2...), func_name2(params)].  You SHOULD NOT include any other text in the response."
    "\n\n"
    "At each turn, you should try your best to complete the tasks requested by the user within the current "
    "turn. Continue to output functions to call until you have fulfilled the user's request to the best of your "
    "ability. Once you have no more functions to call, the system will consider the current turn complete and "
    "proceed to the next turn or task."
    "\n\n"
    "Here is a list of functions in json format that you can invoke.\n{functions}\n"
)


def system_prompt(docs: list[dict[str, Any]]) -> str:
    return SYSTEM_PROMPT.replace("{functions}", json.dumps(docs, indent=4))


# --- environments ---------------------------------------------------------------------------------------

_import_lock = threading.Lock()


def api_class(name: str) -> type:
    """One of BFCL's simulated API classes, imported from its own module in the wheel."""
    if name not in CLASS_MODULES:
        raise ValueError(f"unknown BFCL environment class {name!r} (known: {', '.join(CLASS_MODULES)})")
    with _import_lock:
        module = importlib.import_module(f"{_PACKAGE}.{CLASS_MODULES[name]}")
    return getattr(module, name)


def new_instances(involved_classes: list[str], initial_config: dict[str, Any], long_context: bool) -> dict[str, object]:
    """Fresh instances, loaded as BFCL's ``execute_multi_turn_func_call`` loads them."""
    instances: dict[str, object] = {}
    for name in involved_classes:
        instance = api_class(name)()
        if name not in STATELESS_CLASSES:
            instance._load_scenario(_copy_json(initial_config.get(name, {})), long_context=long_context)
        instances[name] = instance
    return instances


def _copy_json(data: Any) -> Any:
    """A deep copy of JSON data (BFCL deep-copies each initial config): pickle's C round trip is several times
    faster than ``copy.deepcopy`` and keeps shared parts shared the same way."""
    return pickle.loads(pickle.dumps(data, pickle.HIGHEST_PROTOCOL))  # noqa: S301 - bytes made just above


def format_result(value: Any) -> str:
    """BFCL's rendering of a return value: strings as they are, dicts as JSON (``str`` if that fails), the
    rest by ``str``."""
    if type(value) is str:
        return value
    if type(value) is dict:
        try:
            return json.dumps(value)
        except Exception:  # noqa: BLE001 - exactly BFCL's fallback
            return str(value)
    return str(value)


#: the most result bits an integer ``power`` may produce, and the highest ``precision`` MathAPI is asked for:
#: past these, BFCL's MathAPI would hold the GIL for seconds to hours (``10 ** 10 ** 9``), which no deadline
#: can interrupt. BFCL's ground truth stays far below (precision <= 10, small powers).
MAX_POWER_BITS = 1_000_000
MAX_PRECISION = 10_000


def guard(call: ToolCall) -> str | None:
    """Refuse the few MathAPI calls whose cost is unbounded (see :data:`MAX_POWER_BITS`)."""
    if call.name not in ("power", "logarithm", "square_root"):
        return None
    order = {
        "power": ("base", "exponent"),
        "logarithm": ("value", "base", "precision"),
        "square_root": ("number", "precision"),
    }[call.name]
    arguments = {**dict(zip(order, call.positional)), **call.arguments}
    if call.name == "power":
        base, exponent = arguments.get("base"), arguments.get("exponent")
        if (
            type(base) is int
            and type(exponent) is int
            and exponent > 0
            and abs(base) > 1
            and exponent * abs(base).bit_length() > MAX_POWER_BITS
        ):
            return f"result too large (more than {MAX_POWER_BITS} bits)"
        return None
    precision = arguments.get("precision")
    if type(precision) is int and precision > MAX_PRECISION:
        return f"precision above {MAX_PRECISION}"
    return None


def _renders_as_call(value: Any) -> bool:
    """BFCL's executor renders a dict argument whose values are all dicts as a nested call ``name(k=v)``."""
    return type(value) is dict and all(type(v) is dict for v in value.values())


def execution_calls(calls: tuple[ToolCall, ...]) -> list[ToolCall] | None:
    """The calls as BFCL's executor would run them, with nothing evaluated: a nested call (what BFCL's
    ``parse_nested_value`` renders as one) becomes an :class:`Expression`, which execution refuses. None where
    BFCL's rendering fails (an empty dict argument): the step does not decode."""
    from bitagent_plugins.bfcl.reading import Expression  # at use: loading the plugin stays light

    out = []
    for call in calls:
        arguments = {}
        for key, value in call.arguments.items():
            if _renders_as_call(value):
                if not value:
                    return None
                ((name, args),) = list(value.items())[:1] or [("", {})]
                rendered = ", ".join(f"{k}={v!r}" for k, v in args.items())
                value = Expression(f"{name}({rendered})")
            arguments[key] = value
        out.append(attrs.evolve(call, arguments=arguments))
    return out


def bfcl_prompt_decode(completion: Completion) -> Decoded:
    """Decode as BFCL's prompting handler does: strip backticks, line breaks and spaces at both ends, wrap in
    ``[...]`` unless already, read the whole as pythonic calls (nothing evaluated). Native calls as they are."""
    from bitagent_core.toolkit import decode, decode_pythonic  # at use: loading the plugin stays light
    from bitagent_plugins.bfcl.reading import BFCL

    if completion.tool_calls:
        return decode(None, completion.tool_calls)
    body = (completion.text or "").strip("`\n ")
    if not body.startswith("["):
        body = "[" + body
    if not body.endswith("]"):
        body = body + "]"
    return decode_pythonic(body.strip().strip("'"), dialect=BFCL)


def decode_step(text: str, native_calls: tuple[ToolCall, ...] = ()) -> list[ToolCall] | None:
    """One step decoded for execution as BFCL's ``default_decode_execute_prompting`` does (backticks and
    line breaks stripped, wrapped in ``[...]``, read as pythonic calls, nothing evaluated); None when it does
    not decode. An empty list is an empty answer."""
    if not isinstance(text, str):
        return None
    decoded = bfcl_prompt_decode(Completion(text=text, tool_calls=tuple(native_calls)))
    if not decoded.ok:
        return None
    return execution_calls(decoded.calls)


class BfclEnvironment:
    """The instances of one BFCL multi-turn entry. Config: ``involved_classes``, ``initial_config``,
    ``long_context``."""

    def __init__(self, config: dict[str, Any]) -> None:
        classes = config.get("involved_classes")
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise ValueError("a bfcl environment needs 'involved_classes': a list of class names")
        initial = config.get("initial_config") or {}
        if not isinstance(initial, dict):
            raise ValueError("'initial_config' must be an object")
        self.instances = new_instances(classes, initial, bool(config.get("long_context")))

    def objects(self) -> list[object]:
        return list(self.instances.values())

    def decode(self, text: str, native_calls: tuple[ToolCall, ...]) -> tuple[list[ToolCall], str | None]:
        calls = decode_step(text, native_calls)
        if calls is None:
            return [], "not a call list (BFCL's decoder)"
        return calls, None

    def format_result(self, value: Any) -> str:
        return format_result(value)

    def guard(self, call: ToolCall) -> str | None:
        return guard(call)


# --- tasks ----------------------------------------------------------------------------------------------


@attrs.frozen
class MultiTurnData:
    category: str
    version: str
    tasks: tuple[Task, ...]
    problems: tuple[Any, ...] = ()


_cache: dict[tuple[Path, str], MultiTurnData] = {}
_cache_lock = threading.Lock()


def _rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    for lineno, row in read_jsonl(path):
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{lineno}: a BFCL entry must be an object")
        rows.append(row)
    return rows


def _func_docs(data_dir: Path) -> dict[str, list[dict[str, Any]]]:
    docs = {}
    for name, file in FUNC_DOC_FILES.items():
        docs[name] = _rows(data_dir / "multi_turn_func_doc" / file)
    return docs


def load_category(category: str, data_dir: Path, version: str) -> MultiTurnData:
    """Read one multi-turn category from a BFCL data directory (cached per process)."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown BFCL multi-turn category {category!r} (known: {', '.join(CATEGORIES)})")
    key = (data_dir, category)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    questions = data_dir / f"BFCL_v4_{category}.json"
    answers = data_dir / "possible_answer" / f"BFCL_v4_{category}.json"
    if not questions.is_file() or not answers.is_file():
        raise ValueError(
            f"no BFCL data for {category!r} in {data_dir} (expected {questions.name} and "
            f"possible_answer/{answers.name})"
        )
    truth = {row.get("id"): row.get("ground_truth") for row in _rows(answers)}
    docs = _func_docs(data_dir)
    tasks = []
    problems = []
    for entry in _rows(questions):
        try:
            tasks.append(entry_task(entry, truth.get(entry.get("id")), docs, category, version))
        except (ValueError, KeyError, TypeError) as exc:
            problems.append((str(entry.get("id")), f"left out: {exc}"))
    data = MultiTurnData(category, version, tuple(tasks), tuple(problems))
    with _cache_lock:
        _cache[key] = data
    return data


def entry_task(
    entry: dict[str, Any], ground_truth: Any, docs: dict[str, list[dict[str, Any]]], category: str, version: str
) -> Task:
    """One BFCL multi-turn entry as a task (see the module docstring)."""
    task_id = str(entry["id"])
    question = entry["question"]
    classes = entry["involved_classes"]
    if not isinstance(question, list) or not question or not all(isinstance(t, list) for t in question):
        raise ValueError("'question' must be a list of turns of messages")
    if not isinstance(ground_truth, list) or len(ground_truth) != len(question):
        raise ValueError("the ground truth must hold one list of calls per turn")
    functions = [copy.deepcopy(doc) for name in classes for doc in docs[name]]
    held_out: dict[int, list[dict[str, Any]]] = {}
    for turn, names in (entry.get("missed_function") or {}).items():
        held_out[int(turn)] = []
        for name in names:  # as BFCL: the first doc of that name moves to its turn
            for i, doc in enumerate(functions):
                if doc["name"] == name:
                    held_out[int(turn)].append(functions.pop(i))
                    break
    for doc in functions:  # BFCL adds its language hint after taking the held-out docs out
        doc["description"] = doc["description"] + _LANGUAGE_HINT
    first = [Message.from_json(m) for m in question[0]]
    turns = []
    for index, messages in enumerate(question[1:], start=1):
        turn_messages = tuple(Message.from_json(m) for m in messages)
        added: tuple[Tool, ...] = ()
        if index in held_out:
            if turn_messages:
                raise ValueError(f"turn {index} holds back functions but has its own message")
            turn_messages = (Message("user", MISSED_FUNCTION_PROMPT.format(functions=held_out[index])),)
            added = tuple(Tool.from_json(doc) for doc in held_out[index])
        turns.append(Turn(messages=turn_messages, add_tools=added))
    return Task(
        id=task_id,
        messages=tuple(first),
        tools=tuple(Tool.from_json(doc) for doc in functions),
        source="bfcl",
        category=category,
        version=version,
        environment=EnvironmentSpec(
            ENVIRONMENT,
            {
                "involved_classes": list(classes),
                "initial_config": entry.get("initial_config") or {},
                "long_context": "long_context" in category,
            },
        ),
        turns=tuple(turns),
        max_steps_per_turn=MAX_STEPS_PER_TURN,
        metadata={"ground_truth": [[str(call) for call in turn] for turn in ground_truth]},
        system_prompt=system_prompt(functions),
    )


def replay_ground_truths(tasks: tuple[Task, ...]) -> list[tuple[str, str]]:
    """(task id, problem) for every task whose ground truth, replayed as model output, fails the ``bfcl``
    scorer (``bitagent tasks validate``); none in bfcl-eval 2026.3.23."""
    from bitagent_core import Step, Trajectory
    from bitagent_plugins.bfcl.multi_turn_scorer import score_trajectory

    problems = []
    for task in tasks:
        turns = task.metadata.get("ground_truth") or []
        trajectory = Trajectory(tuple((Step(text="[" + ", ".join(t) + "]"),) if t else () for t in turns))
        try:
            score = score_trajectory(task, trajectory, strict=False)
        except ValueError as exc:
            problems.append((task.id, f"ground truth unreadable: {exc}"))
            continue
        if not score.passed:
            problems.append(
                (task.id, f"its own ground truth fails the bfcl scorer: {score.error_type}: {score.detail}")
            )
    return problems
