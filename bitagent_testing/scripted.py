"""A scripted backend for tests: answers each request from a function of the request, in-process.

It behaves as an in-process model does where that matters to the core: a slow answer *blocks* (the event loop
cannot cancel it) and stops at the request's ``timeout_s`` by itself, raising ``TimeoutError``. So a test that
passes with it shows the core put the deadline on the request, not only around the await.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bitagent_core import ChatRequest, Completion

Reply = Callable[[ChatRequest], "str | Completion"]


def call_then_answer(request: ChatRequest) -> str:
    """The default script: one call after each user message, then a plain answer."""
    return "[add(n=1)]" if request.messages and request.messages[-1].role == "user" else "Done."


class ScriptedBackend:
    """``reply(request)`` answers each request (text, or a whole :class:`Completion`; raising fails it).
    ``block_s(request)`` seconds the answer takes, blocking the caller, cut at ``request.timeout_s``.
    Every request is kept in ``requests``."""

    default_concurrency = 1

    def __init__(
        self,
        reply: Reply = call_then_answer,
        block_s: Callable[[ChatRequest], float] | None = None,
        name: str = "scripted",
    ) -> None:
        self.reply = reply
        self.block_s = block_s or (lambda request: 0.0)
        self.name = name
        self.requests: list[ChatRequest] = []
        self.closed = 0

    async def start(self, run_dir: Path | None) -> None:
        pass

    async def complete(self, request: ChatRequest) -> Completion:
        self.requests.append(request)
        wait = self.block_s(request)
        if wait > 0:
            deadline = request.timeout_s
            time.sleep(min(wait, deadline) if deadline is not None else wait)  # blocks, as llama.cpp in-process
            if deadline is not None and wait > deadline:
                raise TimeoutError(f"stopped at the request's deadline ({deadline:g} s)")
        answer = self.reply(request)
        return answer if isinstance(answer, Completion) else Completion(text=answer, completion_tokens=1)

    async def close(self) -> None:
        self.closed += 1

    def describe(self) -> dict[str, Any]:
        return {"model": self.name}
