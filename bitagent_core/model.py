"""The data model: what a task, a tool, a completion and a score are.

Everything here is a frozen attrs class made of plain JSON-able values, so a task can be written to
``samples.jsonl`` and read back unchanged, and no plugin can mutate a task another model will see.
"""

from __future__ import annotations

import copy
from typing import Any

import attrs

#: The upstream subnet's wire types, mapped to JSON-schema types and back.
_UPSTREAM_TO_SCHEMA = {
    "str": "string", "string": "string", "int": "integer", "integer": "integer",
    "float": "number", "number": "number", "bool": "boolean", "boolean": "boolean",
    "list": "array", "array": "array", "tuple": "array", "dict": "object", "object": "object",
    "any": "string",
}
_SCHEMA_TO_UPSTREAM = {
    "string": "str", "integer": "int", "number": "number", "boolean": "bool",
    "array": "list", "object": "dict",
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
        return cls(name=data["name"], arguments=dict(data.get("arguments") or {}),
                   positional=tuple(data.get("positional") or ()))


@attrs.frozen
class Message:
    role: str  # system | user | assistant | tool
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
        return cls(role=data["role"], content=str(data.get("content") or ""),
                   tool_calls=tuple(ToolCall.from_json(c) for c in data.get("tool_calls") or ()))


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
        (name, args), = data.items()
        if not isinstance(args, dict):
            raise ValueError(f"expected call {name!r}: arguments must be an object")
        return cls(name=name, arguments={k: tuple(v) if isinstance(v, list) else (v,) for k, v in args.items()})


@attrs.frozen
class Task:
    """One question for the model. ``expected_calls`` empty means the right answer is no call."""

    id: str
    messages: tuple[Message, ...]
    tools: tuple[Tool, ...]
    expected_calls: tuple[ExpectedCall, ...] = ()
    source: str = ""
    category: str = ""
    version: str = ""

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
        )


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
    #: seconds the request may take; a backend that cannot be cancelled mid-request (in-process llama.cpp)
    #: stops generating at this deadline itself. None: no limit.
    timeout_s: float | None = None
