"""The data model: what a task, a tool, a completion and a score are.

Everything here is a frozen attrs class made of plain JSON-able values, so a task can be written to
``samples.jsonl`` and read back unchanged, and no plugin can mutate a task another model will see.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Literal, get_args

import attrs

#: The upstream subnet's wire types, mapped to JSON-schema types and back.
_UPSTREAM_TO_SCHEMA = {
    "str": "string",
    "string": "string",
    "int": "integer",
    "integer": "integer",
    "float": "number",
    "number": "number",
    "bool": "boolean",
    "boolean": "boolean",
    "list": "array",
    "array": "array",
    "tuple": "array",
    "dict": "object",
    "object": "object",
    "any": "string",
}
_SCHEMA_TO_UPSTREAM = {
    "string": "str",
    "integer": "int",
    "number": "number",
    "boolean": "bool",
    "array": "list",
    "object": "dict",
}


@attrs.frozen
class Tool:
    """A function the model may call. ``parameters`` is a JSON-schema object."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = attrs.field(factory=lambda: {"type": "object", "properties": {}, "required": []})

    @property
    def properties(self) -> dict[str, Any]:
        return self.parameters.get("properties", {}) or {}

    @property
    def required(self) -> list[str]:
        return list(self.parameters.get("required", []) or [])

    @property
    def parameter_order(self) -> list[str]:
        """Declaration order, used to bind positional arguments."""
        return list(self.properties)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "parameters": copy.deepcopy(self.parameters)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tool:
        """Read either the JSON-schema form or the upstream subnet's ``{"arguments": {...}}`` form."""
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise ValueError(f"a tool needs a string 'name': {str(data)[:200]}")
        if "parameters" not in data and isinstance(data.get("arguments"), dict):
            return cls.from_upstream(data)
        params = data.get("parameters") or {"type": "object", "properties": {}, "required": []}
        if not isinstance(params, dict):
            raise ValueError(f"tool {data['name']!r}: 'parameters' must be an object")
        return cls(name=data["name"], description=str(data.get("description", "")), parameters=copy.deepcopy(params))

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI ``tools=`` form used by native tool calling."""
        return {"type": "function", "function": self.to_json()}

    def to_upstream(self) -> dict[str, Any]:
        """The upstream subnet's wire form: ``{"arguments": {name: {"required", "type", "description"}}}``."""
        required = set(self.required)
        arguments = {}
        for name, schema in self.properties.items():
            arguments[name] = {
                "required": name in required,
                "type": _SCHEMA_TO_UPSTREAM.get(schema.get("type", "string"), str(schema.get("type", "str"))),
                "description": schema.get("description", ""),
            }
        return {"name": self.name, "description": self.description, "arguments": arguments}

    @classmethod
    def from_upstream(cls, data: dict[str, Any]) -> Tool:
        properties: dict[str, Any] = {}
        required: list[str] = []
        for name, spec in (data.get("arguments") or {}).items():
            spec = spec if isinstance(spec, dict) else {}
            prop = {"type": _UPSTREAM_TO_SCHEMA.get(str(spec.get("type", "str")).lower(), "string")}
            if spec.get("description"):
                prop["description"] = str(spec["description"])
            properties[name] = prop
            if spec.get("required"):
                required.append(name)
        return cls(
            name=data["name"],
            description=str(data.get("description", "")),
            parameters={"type": "object", "properties": properties, "required": required},
        )


@attrs.frozen
class ToolCall:
    """One call, as the model made it (``positional`` holds arguments given without a name)."""

    name: str
    arguments: dict[str, Any] = attrs.field(factory=dict)
    positional: tuple[Any, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "arguments": self.arguments}
        if self.positional:
            data["positional"] = list(self.positional)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ToolCall:
        return cls(
            name=data["name"],
            arguments=dict(data.get("arguments") or {}),
            positional=tuple(data.get("positional") or ()),
        )


#: who says a message
Role = Literal["system", "user", "assistant", "tool"]
ROLES: tuple[Role, ...] = get_args(Role)
#: how tools reach the model: in the BFCL-style system prompt, or as native ``tools=``
ToolFormat = Literal["prompt", "native"]
TOOL_FORMATS: tuple[ToolFormat, ...] = get_args(ToolFormat)


@attrs.frozen
class Message:
    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            data["tool_calls"] = [c.to_json() for c in self.tool_calls]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Message:
        if not isinstance(data, dict) or not isinstance(data.get("role"), str):
            raise ValueError(f"a message needs a string 'role': {str(data)[:200]}")
        # the role kept as written: a record from elsewhere may use one this version does not know
        return cls(
            role=data["role"],
            content=str(data.get("content") or ""),
            tool_calls=tuple(ToolCall.from_json(c) for c in data.get("tool_calls") or ()),
        )


@attrs.frozen
class ExpectedCall:
    """One expected call: for each argument, the acceptable values.

    As in BFCL's ground truth, ``""`` among an argument's values means it may be omitted; an argument not
    listed at all must not be given.
    """

    name: str
    arguments: dict[str, tuple[Any, ...]] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {self.name: {k: list(v) for k, v in self.arguments.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExpectedCall:
        """Read BFCL's ``{func: {param: [values]}}`` form (a bare value counts as the only option)."""
        if not isinstance(data, dict) or len(data) != 1:
            raise ValueError(f"an expected call is {{name: {{param: [values]}}}}: {str(data)[:200]}")
        ((name, args),) = data.items()
        if not isinstance(args, dict):
            raise ValueError(f"expected call {name!r}: arguments must be an object")
        return cls(name=name, arguments={k: tuple(v) if isinstance(v, list) else (v,) for k, v in args.items()})


@attrs.frozen
class EnvironmentSpec:
    """Which environment a multi-turn task plays in: a name registered through ``register_environments`` and
    the JSON-able configuration its factory builds a fresh environment from."""

    name: str
    config: dict[str, Any] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "config": copy.deepcopy(self.config)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EnvironmentSpec:
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise ValueError(f"an environment needs a string 'name': {str(data)[:200]}")
        config = data.get("config") or {}
        if not isinstance(config, dict):
            raise ValueError("an environment's 'config' must be an object")
        return cls(name=data["name"], config=copy.deepcopy(config))


@attrs.frozen
class Turn:
    """A later user turn of a multi-turn task: the messages it appends, and the tools it makes known from
    then on (``add_tools``; native tool calling sees them, prompt mode reads them from the messages)."""

    messages: tuple[Message, ...] = ()
    add_tools: tuple[Tool, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"messages": [m.to_json() for m in self.messages]}
        if self.add_tools:
            data["add_tools"] = [t.to_json() for t in self.add_tools]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Turn:
        if not isinstance(data, dict) or not isinstance(data.get("messages", []), list):
            raise ValueError(f"a turn is {{'messages': [...], 'add_tools': [...]}}: {str(data)[:200]}")
        return cls(
            messages=tuple(Message.from_json(m) for m in data.get("messages") or ()),
            add_tools=tuple(Tool.from_json(t) for t in data.get("add_tools") or ()),
        )


#: BFCL's limit: a turn is cut off (and the trajectory force-terminated) after this many steps that made calls
DEFAULT_MAX_STEPS_PER_TURN = 20


@attrs.frozen
class Task:
    """One question for the model. ``expected_calls`` empty means the right answer is no call.

    A task with an ``environment`` is multi-turn: ``messages`` is its first turn, ``turns`` the later ones;
    the runner plays it through :mod:`bitagent_core._agent`. ``metadata`` holds JSON-able data for its scorer
    (BFCL: the ground truth per turn).
    """

    id: str
    messages: tuple[Message, ...]
    tools: tuple[Tool, ...]
    expected_calls: tuple[ExpectedCall, ...] = ()
    source: str = ""
    category: str = ""
    version: str = ""
    environment: EnvironmentSpec | None = None
    turns: tuple[Turn, ...] = ()
    max_steps_per_turn: int = DEFAULT_MAX_STEPS_PER_TURN
    metadata: dict[str, Any] = attrs.field(factory=dict)
    #: the system prompt for prompt mode (``--tool-format prompt``) where the task source writes its own
    #: (BFCL's multi-turn prompt lists the function docs as BFCL does); None: the default one
    system_prompt: str | None = None

    @property
    def is_multi_turn(self) -> bool:
        return self.environment is not None

    @property
    def expects_no_call(self) -> bool:
        return not self.expected_calls

    def tool(self, name: str) -> Tool | None:
        for tool in self.tools:
            if tool.name == name:
                return tool
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source,
            "category": self.category,
            "version": self.version,
            "messages": [m.to_json() for m in self.messages],
            "tools": [t.to_json() for t in self.tools],
            "expected_calls": [c.to_json() for c in self.expected_calls],
            **self._multi_turn_json(),
        }

    def _multi_turn_json(self) -> dict[str, Any]:
        """The multi-turn fields, only where set (single-turn tasks serialise exactly as before)."""
        if self.environment is None:
            return {} if self.system_prompt is None else {"system_prompt": self.system_prompt}
        return {
            "system_prompt": self.system_prompt,
            "environment": self.environment.to_json(),
            "turns": [t.to_json() for t in self.turns],
            "max_steps_per_turn": self.max_steps_per_turn,
            "metadata": copy.deepcopy(self.metadata),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Task:
        if not isinstance(data, dict):
            raise ValueError("a task must be a JSON object")
        missing = [k for k in ("id", "messages", "tools") if k not in data]
        if missing:
            raise ValueError(f"a task needs {', '.join(missing)}")
        if not isinstance(data["messages"], list) or not data["messages"]:
            raise ValueError("'messages' must be a non-empty list")
        if not isinstance(data["tools"], list):
            raise ValueError("'tools' must be a list")
        expected = data.get("expected_calls") or []
        if not isinstance(expected, list):
            raise ValueError("'expected_calls' must be a list")
        return cls(
            id=str(data["id"]),
            messages=tuple(Message.from_json(m) for m in data["messages"]),
            tools=tuple(Tool.from_json(t) for t in data["tools"]),
            expected_calls=tuple(ExpectedCall.from_json(c) for c in expected),
            source=str(data.get("source", "")),
            category=str(data.get("category", "")),
            version=str(data.get("version", "")),
            system_prompt=data["system_prompt"] if isinstance(data.get("system_prompt"), str) else None,
            **(cls._multi_turn_fields(data) if data.get("environment") else {}),
        )

    @staticmethod
    def _multi_turn_fields(data: dict[str, Any]) -> dict[str, Any]:
        return {
            "environment": EnvironmentSpec.from_json(data["environment"]),
            "turns": tuple(Turn.from_json(t) for t in data.get("turns") or ()),
            "max_steps_per_turn": int(data.get("max_steps_per_turn", DEFAULT_MAX_STEPS_PER_TURN)),
            "metadata": copy.deepcopy(data.get("metadata") or {}),
        }


@attrs.frozen
class Completion:
    """What a backend returned for one task. ``error`` set means the request failed."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    finish_reason: str = ""
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "tool_calls": [c.to_json() for c in self.tool_calls],
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "latency_s": round(self.latency_s, 4),
            "finish_reason": self.finish_reason,
            "error": self.error,
        }


@attrs.frozen
class Score:
    """A verdict in [0, 1] with its per-criterion breakdown; ``error_type`` says why it is not perfect."""

    value: float
    breakdown: dict[str, float] = attrs.field(factory=dict)
    error_type: str | None = None
    passed: bool = False
    decoded_calls: tuple[ToolCall, ...] = ()
    detail: str = ""

    def __attrs_post_init__(self) -> None:
        if not 0.0 <= self.value <= 1.0:
            raise ValueError(f"score must be in [0, 1], got {self.value}")

    def to_json(self) -> dict[str, Any]:
        return {
            "value": round(self.value, 6),
            "passed": self.passed,
            "error_type": self.error_type,
            "breakdown": self.breakdown,
            "decoded_calls": [c.to_json() for c in self.decoded_calls],
            "detail": self.detail,
        }


@attrs.frozen
class ChatRequest:
    """What the core asks a backend: messages already prompted, tools for native tool calling."""

    messages: tuple[Message, ...]
    tools: tuple[Tool, ...] = ()
    native_tools: bool = False
    temperature: float = 0.0
    max_tokens: int = 160
    #: the trajectory a multi-turn request belongs to: a backend with several model instances or server slots
    #: keeps one session on one of them, so the cached prompt prefix is reused
    session: str | None = None
    #: seconds the request may take; a backend that cannot be cancelled mid-request (in-process llama.cpp)
    #: stops generating at this deadline itself. None: no limit.
    timeout_s: float | None = None


@attrs.frozen
class Step:
    """One request of a multi-turn trajectory: what the model said, the calls read from it, and what each
    call returned (``results[i]`` answers ``calls[i]``). ``decode_error`` set: nothing was executed and the
    turn ended."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()  # native calls the backend parsed
    calls: tuple[ToolCall, ...] = ()
    results: tuple[str, ...] = ()
    decode_error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "text": self.text,
            "calls": [c.to_json() for c in self.calls],
            "results": list(self.results),
            "decode_error": self.decode_error,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "latency_s": round(self.latency_s, 4),
        }
        if self.tool_calls:
            data["tool_calls"] = [c.to_json() for c in self.tool_calls]
        return data

    @classmethod
    def from_json(cls, data: Any) -> Step:
        """A step as saved, a bare string (the raw model text of the step, as in BFCL's result files for
        prompting models), or BFCL's function-calling shape ``[{name: "<json arguments>"}, ...]`` (native calls)."""
        if isinstance(data, str):
            return cls(text=data)
        if isinstance(data, list):
            return cls(tool_calls=tuple(_fc_call(item) for item in data))
        if not isinstance(data, dict):
            raise ValueError(f"a step is its raw text or an object with 'text': {str(data)[:200]}")
        return cls(
            text=str(data.get("text") or ""),
            tool_calls=tuple(ToolCall.from_json(c) for c in data.get("tool_calls") or ()),
            calls=tuple(ToolCall.from_json(c) for c in data.get("calls") or ()),
            results=tuple(str(r) for r in data.get("results") or ()),
            decode_error=data.get("decode_error"),
            prompt_tokens=int(data.get("prompt_tokens") or 0),
            completion_tokens=int(data.get("completion_tokens") or 0),
            latency_s=float(data.get("latency_s") or 0.0),
        )


def _fc_call(item: Any) -> ToolCall:
    """One call of BFCL's function-calling result shape: ``{name: "<json arguments>"}`` or ``{name: {...}}``."""
    if not isinstance(item, dict) or len(item) != 1:
        raise ValueError(f"a function-calling step holds {{name: arguments}} objects: {str(item)[:200]}")
    ((name, arguments),) = item.items()
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            raise ValueError(f"arguments of {str(name)[:80]!r} are not JSON") from None
    if not isinstance(arguments, dict):
        raise ValueError(f"arguments of {str(name)[:80]!r} must be an object")
    return ToolCall(name=str(name), arguments=arguments)


@attrs.frozen
class Trajectory:
    """Every step of every turn of a multi-turn task, as played (``turns[i]`` = the steps of user turn i).

    ``terminated`` says why the conversation stopped before its last turn ended normally (a turn ran past
    ``max_steps_per_turn``, the trajectory grew past its bound); None when it ran to the end.
    """

    turns: tuple[tuple[Step, ...], ...] = ()
    terminated: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"turns": [[s.to_json() for s in steps] for steps in self.turns], "terminated": self.terminated}

    @classmethod
    def from_json(cls, data: Any) -> Trajectory:
        """A saved trajectory (``{"turns": [[step, ...], ...]}``), or BFCL's result shape: a list of turns,
        each a list of steps, each the raw model text."""
        if isinstance(data, dict):
            terminated = data.get("terminated")
            data = data.get("turns")
        else:
            terminated = None
        if not isinstance(data, list) or not all(isinstance(turn, list) for turn in data):
            raise ValueError("a trajectory is a list of turns, each a list of steps")
        return cls(
            turns=tuple(tuple(Step.from_json(s) for s in turn) for turn in data),
            terminated=str(terminated) if terminated else None,
        )
