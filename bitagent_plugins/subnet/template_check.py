"""A submitted chat template rendered once, in a child process bounded in time and memory.

Jinja's sandbox blocks escapes but bounds neither time nor memory: two nested ``range(100000)`` loops run for
hours, ``('a' * 2000000000)|length`` allocates 2 GB. Vetting therefore renders the template once with a
representative conversation (system, user, an assistant tool call, a tool result, tools) in a child process
(an argument list, no shell) whose address space is capped (``RLIMIT_AS``) and which is killed at a wall-clock
deadline, and refuses the repo when the render fails, runs out of time or memory, or produces an absurd prompt.

A template may refuse a role it does not support (``raise_exception('System role not supported')``, as
Gemma's does): that is not a fault, so simpler conversations are tried before the template is refused.

    python -m bitagent_plugins.subnet.template_check < request.json   # the child; prints one JSON line
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any

import attrs

#: seconds for the whole child (start-up ~0.2 s, a real template renders in milliseconds)
TIMEOUT_S = 10.0
#: the child's address space: Python and Jinja take ~60 MB of it
MEMORY_BYTES = 512 << 20
#: characters of a rendered conversation; real templates render it in ~3,000
MAX_PROMPT_CHARS = 256_000

_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city."}},
            "required": ["city"],
        },
    },
}
_CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
#: from the richest to the plainest; the first a template renders is enough
CONVERSATIONS: tuple[tuple[list[dict[str, Any]], list[dict[str, Any]] | None], ...] = (
    (
        [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": [_CALL]},
            {"role": "tool", "content": '{"temperature": 21}', "tool_call_id": "call_1", "name": "get_weather"},
            {"role": "user", "content": "Thanks. And in Rome?"},
        ],
        [_TOOL],
    ),
    (
        [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the weather in Paris?"},
        ],
        [_TOOL],
    ),
    (
        [
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": "Sunny."},
            {"role": "user", "content": "And in Rome?"},
        ],
        None,
    ),
)


@attrs.frozen
class TemplateCheck:
    ok: bool
    #: why not (empty when ok)
    reason: str
    elapsed_s: float
    #: the child's peak resident memory (bytes), from the kernel's accounting of the reaped child
    peak_rss_bytes: int
    prompt_chars: int = 0


def check_template(
    template: str,
    *,
    bos_token: str = "",
    eos_token: str = "",
    timeout_s: float | None = None,
    memory_bytes: int | None = None,
    max_prompt_chars: int | None = None,
) -> TemplateCheck:
    """Render ``template`` in a bounded child process (see the module docstring); the bounds default to the
    module's ``TIMEOUT_S``, ``MEMORY_BYTES`` and ``MAX_PROMPT_CHARS``."""
    timeout_s = TIMEOUT_S if timeout_s is None else timeout_s
    memory_bytes = MEMORY_BYTES if memory_bytes is None else memory_bytes
    max_prompt_chars = MAX_PROMPT_CHARS if max_prompt_chars is None else max_prompt_chars
    request = {
        "template": template,
        "bos_token": bos_token,
        "eos_token": eos_token,
        "memory_bytes": memory_bytes,
        "max_prompt_chars": max_prompt_chars,
    }
    started = time.monotonic()
    with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as stdout:
        stdin.write(json.dumps(request).encode())
        stdin.seek(0)
        proc = subprocess.Popen(
            [sys.executable, "-I", "-m", "bitagent_plugins.subnet.template_check"],
            stdin=stdin,
            stdout=stdout,
            stderr=subprocess.DEVNULL,
            close_fds=True,
        )
        status, peak = _wait(proc, started + timeout_s)
        elapsed = time.monotonic() - started
        if status is None:
            return TemplateCheck(False, f"the chat template did not render within {timeout_s:g} s", elapsed, peak)
        stdout.seek(0)
        out = stdout.read(64 << 10)
    try:
        answer = json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        answer = None
    if not isinstance(answer, dict):
        return TemplateCheck(
            False,
            f"rendering the chat template failed (the renderer exited with {status}, {peak >> 20} MB at most)",
            elapsed,
            peak,
        )
    chars = int(answer.get("chars") or 0)
    if answer.get("ok"):
        return TemplateCheck(True, "", elapsed, peak, chars)
    return TemplateCheck(False, f"the chat template {answer.get('reason', 'failed')}", elapsed, peak, chars)


def _wait(proc: subprocess.Popen[bytes], deadline: float) -> tuple[int | None, int]:
    """The child's exit status (``None`` when it was killed at ``deadline``) and its peak resident memory, sampled
    while it runs. Not ``ru_maxrss``: on Linux a child's counts the parent's memory at the fork (the old mm's high
    water mark survives exec), so a big validator would see every template as big."""
    import psutil

    peak = 0
    try:
        child: psutil.Process | None = psutil.Process(proc.pid)
    except psutil.Error:
        child = None
    while True:
        if child is not None:
            try:
                peak = max(peak, child.memory_info().rss)
            except psutil.Error:
                child = None
        pid, status, _usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, peak
        if time.monotonic() >= deadline:
            proc.kill()
            _pid, status, _usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            return None, peak
        time.sleep(0.01)


# --- the child -----------------------------------------------------------------------------------------


def _render(request: dict[str, Any]) -> dict[str, Any]:
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Raised(Exception):
        pass

    def raise_exception(message: str) -> None:
        raise Raised(message)

    def strftime_now(fmt: str) -> str:
        return time.strftime(fmt)

    # the environment transformers and llama.cpp's Python binding render chat templates in
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = lambda value, indent=None: json.dumps(value, indent=indent, ensure_ascii=False)
    env.globals.update(raise_exception=raise_exception, strftime_now=strftime_now)
    try:
        template = env.from_string(request["template"])
    except TemplateError as exc:
        return {"ok": False, "reason": f"does not compile: {str(exc)[:200]}"}
    refusals = []
    for messages, tools in CONVERSATIONS:
        try:
            prompt = template.render(
                messages=messages,
                tools=tools,
                add_generation_prompt=True,
                bos_token=request["bos_token"],
                eos_token=request["eos_token"],
            )
        except Raised as exc:  # the template declines this conversation: try a plainer one
            refusals.append(str(exc)[:120])
            continue
        except MemoryError:
            return {"ok": False, "reason": "ran out of memory while rendering"}
        except RecursionError:
            return {"ok": False, "reason": "recursed too deeply while rendering"}
        except Exception as exc:  # noqa: BLE001 - any other failure of the template is its own
            return {"ok": False, "reason": f"failed to render: {type(exc).__name__}: {str(exc)[:200]}"}
        if not isinstance(prompt, str) or len(prompt) > request["max_prompt_chars"]:
            return {
                "ok": False,
                "chars": len(prompt),
                "reason": f"rendered a {len(prompt):,}-character prompt (at most {request['max_prompt_chars']:,})",
            }
        if not prompt.strip():
            return {"ok": False, "reason": "rendered an empty prompt"}
        return {"ok": True, "chars": len(prompt)}
    return {"ok": False, "reason": f"refused every conversation tried ({'; '.join(refusals)})"}


def main() -> None:
    request = json.loads(sys.stdin.buffer.read())
    limit = int(request["memory_bytes"])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        answer = _render(request)
    except MemoryError:
        answer = {"ok": False, "reason": "ran out of memory while rendering"}
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
