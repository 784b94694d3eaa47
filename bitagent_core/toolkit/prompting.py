"""How a task becomes the messages a model sees.

The prompt is the BFCL-style system prompt the upstream subnet used. It is always built on a copy: the task
is frozen, so the k-th model in a round sees exactly what the first one saw (upstream mutated a shared
task and the k-th model got k copies of the prompt).
"""

from __future__ import annotations

import json

from bitagent_core.model import TOOL_FORMATS, ChatRequest, Message, Task

SYSTEM_PROMPT = (
    "You are an expert in composing functions. You are given a question and a set of possible functions. "
    "Based on the question, you will need to make one or more function/tool calls to achieve the purpose. "
    "If none of the functions can be used, point it out. If the given question lacks the parameters required "
    "by the function, also point it out. You should only return the function calls in your response.\n\n"
    "If you decide to invoke any of the function(s), you MUST put it in the format of "
    "[func_name1(params_name1=params_value1, params_name2=params_value2...), func_name2(params)]\n\n"
    "You SHOULD NOT include any other text in the response.\n\n"
    "Here is a list of functions in JSON format that you can invoke.\n{functions}\n"
)


def system_prompt(task: Task) -> str:
    functions = json.dumps([tool.to_json() for tool in task.tools], indent=2, ensure_ascii=False)
    return SYSTEM_PROMPT.replace("{functions}", functions)


def build_request(
    task: Task, tool_format: str = "prompt", *, temperature: float = 0.0, max_tokens: int = 160
) -> ChatRequest:
    """The request for one task. ``prompt`` puts the tools in the system prompt (what the validator
    does); ``native`` passes them as OpenAI ``tools=`` and leaves the messages as they are."""
    if tool_format not in TOOL_FORMATS:
        raise ValueError(f"tool format must be one of {', '.join(TOOL_FORMATS)}, not {tool_format!r}")
    if tool_format == "native":
        return ChatRequest(
            messages=task.messages, tools=task.tools, native_tools=True, temperature=temperature, max_tokens=max_tokens
        )
    prompt = task.system_prompt if task.system_prompt is not None else system_prompt(task)
    messages = list(task.messages)
    if messages and messages[0].role == "system":
        messages[0] = Message(role="system", content=prompt + "\n" + messages[0].content)
    else:
        messages.insert(0, Message(role="system", content=prompt))
    return ChatRequest(
        messages=tuple(messages), tools=task.tools, native_tools=False, temperature=temperature, max_tokens=max_tokens
    )


def fold_system_prompt(messages: tuple[Message, ...]) -> tuple[Message, ...]:
    """Upstream's layout: the system prompt inside the first user message (``system`` + blank line + ``user``),
    for chat templates that reject a system role (Mistral-7B-Instruct v0.1/v0.2 raise "Conversation roles must
    alternate"; Gemma has none). Messages without a leading system message are returned as they are."""
    if not messages or messages[0].role != "system":
        return messages
    system, rest = messages[0], list(messages[1:])
    for i, message in enumerate(rest):
        if message.role == "user":
            rest[i] = Message(role="user", content=system.content + "\n\n" + message.content)
            return tuple(rest)
    return (Message(role="user", content=system.content), *rest)
