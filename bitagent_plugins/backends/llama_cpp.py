"""Backend ``llama-cpp``: the model runs in this process through llama-cpp-python.

The cheap way for a miner to see a validator's score on a laptop. The chat template comes from the GGUF;
temperature 0 and 160 new tokens by default, like the validator. llama.cpp is imported only in ``start``.

Models: a local ``.gguf`` path, ``hf://org/repo/file.gguf[@revision]`` (through huggingface_hub), or
nothing / ``embedded`` for the embedded Qwen2.5-Coder-0.5B.
Options (``-B key=value``): n_ctx, n_threads, n_gpu_layers, n_batch, seed, verbose, worker_thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Any

from bitagent_core.hookspecs import hookimpl
from bitagent_core.model import ChatRequest, Completion
from bitagent_plugins.backends.openai_format import completion_from_openai, to_openai_messages

OPTION_TYPES: dict[str, type] = {"n_ctx": int, "n_threads": int, "n_gpu_layers": int, "n_batch": int,
                                 "seed": int, "verbose": bool, "worker_thread": bool}


def parse_options(options: dict[str, str], types: dict[str, type]) -> dict[str, Any]:
    """Typed backend options; an unknown key or a bad value is a clear error."""
    parsed: dict[str, Any] = {}
    for key, value in options.items():
        if key not in types:
            raise ValueError(f"unknown backend option {key!r} (known: {', '.join(sorted(types))})")
        kind = types[key]
        try:
            if kind is bool:
                if str(value).lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError(value)
                parsed[key] = str(value).lower() in ("1", "true", "yes")
            else:
                parsed[key] = kind(value)
        except ValueError:
            raise ValueError(f"backend option {key}={value!r} is not a valid {kind.__name__}") from None
    return parsed


def resolve_model(model: str | None) -> tuple[Path, dict[str, Any]]:
    """The GGUF file for ``model`` and what identifies it."""
    if model in (None, "", "embedded"):
        from bitagent_plugins.backends import embedded_model

        return embedded_model.embedded_model_path(), {"model": embedded_model.NAME,
                                                      "sha256": embedded_model.SHA256, "embedded": True}
    if model.startswith("hf://"):
        spec, _, revision = model[len("hf://"):].partition("@")
        parts = spec.split("/")
        if len(parts) < 3 or not parts[-1].endswith(".gguf"):
            raise ValueError(f"expected hf://org/repo/file.gguf[@revision], got {model!r}")
        from huggingface_hub import hf_hub_download

        repo_id, filename = "/".join(parts[:2]), "/".join(parts[2:])
        path = hf_hub_download(repo_id=repo_id, filename=filename, revision=revision or None)
        return Path(path), {"model": model, "repo_id": repo_id, "filename": filename,
                            "revision": revision or None}
    path = Path(model).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no such model file: {model}")
    if path.suffix.lower() != ".gguf":
        raise ValueError(f"the llama-cpp backend needs a .gguf file, got {model}")
    return path, {"model": str(path)}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class _Deadline:
    """Stops a request at ``deadline`` (``time.perf_counter()``), in its two phases:

    It stops the same way when the asyncio task that asked for the request is cancelled.

    - prompt evaluation (one long llama_decode): llama.cpp's abort callback, asked between graph nodes, makes
      the decode fail once the deadline passed;
    - generation: a logits processor that, from the deadline on, leaves only the end-of-generation token
      possible, so the model stops within one token. (llama-cpp-python calls processors from a C callback that
      swallows exceptions, so it cannot raise.) On its first call, prompt evaluation is over and the abort
      callback is removed: asked per graph node, it would cost a few percent per token.
    """

    def __init__(self, deadline: float, eos: int, ctx: Any, task: asyncio.Task[Any] | None = None) -> None:
        import llama_cpp

        self.deadline, self.eos, self.passed, self._ctx = deadline, eos, False, ctx
        self.task, self.cancelled = task, False
        self._set = llama_cpp.llama_set_abort_callback
        self._none = llama_cpp.ggml_abort_callback()  # a NULL function pointer
        self._abort = llama_cpp.ggml_abort_callback(self._should_abort)  # kept alive while C holds it
        self._set(ctx, self._abort, None)

    def _over(self) -> bool:
        if self.task is not None and self.task.cancelling():  # the request was cancelled (a second Ctrl-C)
            self.cancelled = True
        elif time.perf_counter() >= self.deadline:
            self.passed = True
        return self.passed or self.cancelled

    def _should_abort(self, data: Any) -> bool:
        return self._over()

    def remove(self) -> None:
        if self._ctx is not None:
            self._set(self._ctx, self._none, None)
            self._ctx = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        self.remove()
        if self._over():
            scores.fill(float("-inf"))
            scores[self.eos] = 0.0
        return scores


class LlamaCppBackend:
    default_concurrency = 1  # one in-process model answers one request at a time

    def __init__(self, model: str | None, options: dict[str, str]) -> None:
        self.model = model
        self.options = parse_options(options, OPTION_TYPES)
        self._llm: Any = None
        self._lock = threading.Lock()
        self._identity: dict[str, Any] = {"model": model or "embedded"}

    async def start(self, run_dir: Path | None = None) -> None:
        await asyncio.to_thread(self._load)

    def _load(self) -> None:
        from llama_cpp import Llama  # heavy: imported only when a model is actually loaded

        path, identity = resolve_model(self.model)
        if "sha256" not in identity:
            identity["sha256"] = sha256_file(path)
        settings = {"n_ctx": 4096, "n_threads": max(1, os.cpu_count() or 1), "n_gpu_layers": 0, "verbose": False}
        settings.update({k: v for k, v in self.options.items() if k != "worker_thread"})
        self._llm = Llama(model_path=str(path), **settings)
        self._identity = {**identity, "path": str(path), "backend": "llama-cpp",
                          "options": {k: v for k, v in settings.items() if k != "verbose"}}

    async def complete(self, request: ChatRequest) -> Completion:
        if self._llm is None:
            raise RuntimeError("the llama-cpp backend was not started")
        # Generation runs on the event loop's own thread, not in a worker thread: one in-process model
        # answers one request at a time anyway, and llama.cpp measured 6-9 % slower when called from a
        # non-main thread here (benchmarks/overhead.py). The loop cannot interrupt it, so the request's timeout
        # and the cancellation of this task are checked from inside llama.cpp (_Deadline).
        # `-B worker_thread=true` restores the thread for embedders whose event loop must stay responsive.
        task = asyncio.current_task()
        if self.options.get("worker_thread"):
            return await asyncio.to_thread(self._complete, request, task)
        return self._complete(request, task)

    def _complete(self, request: ChatRequest, task: asyncio.Task[Any] | None = None) -> Completion:
        kwargs: dict[str, Any] = {"messages": to_openai_messages(request.messages),
                                  "temperature": request.temperature, "max_tokens": request.max_tokens}
        if request.native_tools:
            kwargs["tools"] = [t.to_openai() for t in request.tools]
            kwargs["tool_choice"] = "auto"
        with self._lock:  # llama.cpp contexts are not thread-safe
            started = time.perf_counter()
            # Generation runs on the caller's thread, where no asyncio timeout or cancellation can interrupt
            # it: stop it at the deadline, or when the asking task is cancelled, from inside. llama-cpp-python's
            # chat handlers replace a caller's stopping_criteria with the template's, but call every logits
            # processor before each token.
            limit = started + request.timeout_s if request.timeout_s is not None else float("inf")
            deadline = _Deadline(limit, self._llm.token_eos(), self._llm.ctx, task)
            kwargs["logits_processor"] = [deadline]
            try:
                response = self._llm.create_chat_completion(**kwargs)
            except RuntimeError:  # llama_decode aborted by the callback
                if not (deadline.passed or deadline.cancelled):
                    raise
            finally:
                deadline.remove()
            if deadline.cancelled:
                raise asyncio.CancelledError
            if deadline.passed:
                raise TimeoutError(f"timeout after {request.timeout_s:g} s (generation stopped)")
            return completion_from_openai(response, time.perf_counter() - started)

    async def close(self) -> None:
        llm, self._llm = self._llm, None
        if llm is not None:
            await asyncio.to_thread(self._close, llm)

    def _close(self, llm: Any) -> None:
        with self._lock:  # waits for a generation still running after a timeout
            llm.close()

    def describe(self) -> dict[str, Any]:
        return dict(self._identity)


@hookimpl
def register_backends(register):
    register("llama-cpp", LlamaCppBackend, description="in-process llama-cpp-python (GGUF; default: embedded model)")
