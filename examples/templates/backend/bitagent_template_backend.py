"""Template backend ``template-backend``: replace ``_generate`` with a call to your model or API.

It answers every request by calling the first offered tool, with ``-B style=...`` options typed below.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from pydantic import Field

import bitagent_core as ba

BITAGENT_PLUGIN_API = "1.0"


class TemplateOptions(ba.BackendOptions):
    """``-B key=value`` options: unknown keys and bad values are errors naming where they came from."""

    #: "text": answer in the prompt's [f(x=1)] format; "native": as native tool calls
    style: str = Field(default="text", pattern="^(text|native)$")
    #: simulated latency per request, seconds
    delay_s: float = Field(default=0.0, ge=0.0)


class TemplateBackend:
    default_concurrency = 4

    def __init__(self, model: str | None, options: TemplateOptions) -> None:
        self.model = model or "template-model"
        self.options = options
        self.log: Path | None = None
        self.started = False

    async def start(self, run_dir: Path | None) -> None:
        # Load the model or connect here. run_dir is None outside a run (tests, `bitagent plugins check`).
        if self.model.endswith(".gguf") and not Path(self.model).exists():
            raise FileNotFoundError(f"no such model file: {self.model}")
        self.log = run_dir / "template-backend.log" if run_dir is not None else None
        self.started = True

    async def complete(self, request: ba.ChatRequest) -> ba.Completion:
        if not self.started:
            raise RuntimeError("template-backend was not started")
        started = time.perf_counter()
        await asyncio.sleep(self.options.delay_s)
        return self._generate(request, time.perf_counter() - started)

    def _generate(self, request: ba.ChatRequest, latency_s: float) -> ba.Completion:
        if not request.tools:
            return ba.Completion(text="No tool fits.", finish_reason="stop", latency_s=latency_s)
        tool = request.tools[0]
        if self.options.style == "native":
            return ba.Completion(
                tool_calls=(ba.ToolCall(tool.name, {}),), finish_reason="tool_calls", latency_s=latency_s
            )
        return ba.Completion(text=f"[{tool.name}()]", finish_reason="stop", latency_s=latency_s)

    async def close(self) -> None:
        # Release what start() took. Safe twice and after a failed start.
        self.started = False

    def describe(self) -> dict[str, Any]:
        return {"model": self.model, "backend": "template-backend", "options": self.options.model_dump()}


@ba.hookimpl
def register_backends(register: ba.RegisterBackend) -> None:
    register("template-backend", TemplateBackend, options=TemplateOptions, description="template: calls the first tool")
