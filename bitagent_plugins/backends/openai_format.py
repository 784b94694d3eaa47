"""Conversions between the data model and the OpenAI chat-completions wire format, shared by every
backend that speaks it (in-process llama.cpp, llama.cpp/sglang/vLLM servers, any OpenAI-compatible URL)."""

from __future__ import annotations

import json
from typing import Any

from bitagent_core import Completion, Message, ToolCall


def to_openai_messages(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    out = []
    native_calls, answered = 0, 0  # tool results answer the last assistant message's native calls, in order
    for m in messages:
        data: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.role == "assistant":
            native_calls, answered = len(m.tool_calls), 0
        elif m.role == "tool" and answered < native_calls:
            data["tool_call_id"] = f"call_{answered}"
            answered += 1
        if m.tool_calls:
            data["tool_calls"] = [
                {
                    "id": f"call_{i}",
                    "type": "function",
                    "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
                }
                for i, c in enumerate(m.tool_calls)
            ]
        out.append(data)
    return out


def completion_from_openai(response: dict[str, Any], latency_s: float) -> Completion:
    """A :class:`Completion` from an OpenAI-style chat completion response."""
    choice = (response.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    calls = []
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        arguments = function.get("arguments") or "{}"
        try:
            parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
        except ValueError:
            parsed = {"#raw": arguments}
        calls.append(
            ToolCall(
                name=str(function.get("name", "")), arguments=parsed if isinstance(parsed, dict) else {"#raw": parsed}
            )
        )
    usage = response.get("usage") or {}
    return Completion(
        text=message.get("content") or "",
        tool_calls=tuple(calls),
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        latency_s=latency_s,
        finish_reason=str(choice.get("finish_reason") or ""),
    )
