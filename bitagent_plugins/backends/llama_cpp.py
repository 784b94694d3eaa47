"""Backend ``llama-cpp``: the model runs in this process through llama-cpp-python.

The cheap way for a miner to see a validator's score on a laptop. The chat template comes from the GGUF;
temperature 0 and 160 new tokens by default, like the validator. llama.cpp is imported only in ``start``.

Models: a local ``.gguf`` path, ``hf://org/repo/file.gguf[@revision]`` (through huggingface_hub), or
nothing / ``embedded`` for the embedded Qwen2.5-Coder-0.5B.
Options (``-B key=value``): n_ctx, n_threads, n_gpu_layers, n_batch, seed, verbose, worker_thread.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import PositiveInt

from bitagent_core import BackendOptions, ChatRequest, Completion, RegisterBackend, hookimpl
from bitagent_plugins.backends.openai_format import completion_from_openai, to_openai_messages

if TYPE_CHECKING:
    import asyncio  # at run time imported where used: loading plugins (`bitagent --help`) stays light


class LlamaCppOptions(BackendOptions):
    """``-B key=value`` options of the ``llama-cpp`` backend (unset: llama.cpp's or this backend's default)."""

    n_ctx: PositiveInt | None = None
    n_threads: PositiveInt | None = None
    n_gpu_layers: int | None = None
    n_batch: PositiveInt | None = None
    seed: int | None = None
    verbose: bool | None = None
    #: generate in a worker thread (keeps an embedding application's event loop responsive)
    worker_thread: bool = False


def resolve_model(model: str | None) -> tuple[Path, dict[str, Any]]:
    """The GGUF file for ``model`` and what identifies it."""
    if model in (None, "", "embedded"):
        from bitagent_plugins.backends import embedded_model

        return embedded_model.embedded_model_path(), {
            "model": embedded_model.NAME,
            "sha256": embedded_model.SHA256,
            "embedded": True,
        }
    if model.startswith("hf://"):
        spec, _, revision = model[len("hf://") :].partition("@")
        parts = spec.split("/")
        if len(parts) < 3 or not parts[-1].endswith(".gguf"):
            raise ValueError(f"expected hf://org/repo/file.gguf[@revision], got {model!r}")
        from huggingface_hub import hf_hub_download

        repo_id, filename = "/".join(parts[:2]), "/".join(parts[2:])
        path = hf_hub_download(repo_id=repo_id, filename=filename, revision=revision or None)
        return Path(path), {"model": model, "repo_id": repo_id, "filename": filename, "revision": revision or None}
    local = Path(model).expanduser()
    if not local.is_file():
        raise FileNotFoundError(f"no such model file: {model}")
    if local.suffix.lower() != ".gguf":
        raise ValueError(f"the llama-cpp backend needs a .gguf file, got {model}")
    return local, {"model": str(local)}


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


LLAMA_INSTALL_HINT = "llama-cpp-python is not installed: pip install 'bitagent[llama]'"


class LlamaNotInstalled(RuntimeError):
    """The ``[llama]`` extra is missing; the message says how to install it."""


def llama_installed() -> bool:
    """Whether this interpreter can import llama_cpp (without importing it: that takes a second)."""
    import importlib.util

    try:
        return importlib.util.find_spec("llama_cpp") is not None
    except (ImportError, ValueError):  # ValueError: a None placeholder in sys.modules
        return False


def import_llama() -> Any:
    """``llama_cpp.Llama``, imported only when a model is actually loaded (heavy, and an extra)."""
    try:
        from llama_cpp import Llama
    except ImportError as exc:
        if exc.name != "llama_cpp":
            raise  # llama_cpp is there but one of its own imports failed: that message says more
        raise LlamaNotInstalled(LLAMA_INSTALL_HINT) from None
    return Llama


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


#: llama-cpp-python's words for a prompt longer than the context window
CONTEXT_FULL = re.compile(r"Requested tokens \((\d+)\) exceed context window of (\d+)")


def context_size_for(tokens: int) -> int:
    """The context a prompt of ``tokens`` (answer included) gets: the next power of two, at least 4096."""
    size = 4096
    while size < tokens:
        size *= 2
    return size


class LlamaCppBackend:
    default_concurrency = 1  # one in-process model answers one request at a time

    Options = LlamaCppOptions

    def __init__(self, model: str | None, options: LlamaCppOptions | dict[str, str]) -> None:
        self.model = model
        self.options: dict[str, Any] = LlamaCppOptions.coerce(options).model_dump(exclude_none=True)
        self._llm: Any = None
        self._lock = threading.Lock()
        self._identity: dict[str, Any] = {"model": model or "embedded"}

    async def start(self, run_dir: Path | None = None) -> None:
        import asyncio  # at use sites: plugin loading (bitagent --help) stays light

        await asyncio.to_thread(self._load)

    def _load(self) -> None:
        Llama = import_llama()

        path, identity = resolve_model(self.model)
        if "sha256" not in identity:
            identity["sha256"] = sha256_file(path)
        settings: dict[str, Any] = {
            "n_ctx": 4096,
            "n_threads": max(1, os.cpu_count() or 1),
            "n_gpu_layers": 0,
            "verbose": False,
        }
        settings.update({k: v for k, v in self.options.items() if k != "worker_thread"})
        self._llm = Llama(model_path=str(path), **settings)
        self._path, self._settings = path, settings
        self._identity = {
            **identity,
            "path": str(path),
            "backend": "llama-cpp",
            "options": {k: v for k, v in settings.items() if k != "verbose"},
        }

    async def complete(self, request: ChatRequest) -> Completion:
        if self._llm is None:
            raise RuntimeError("the llama-cpp backend was not started")
        # Generation runs on the event loop's own thread, not in a worker thread: one in-process model
        # answers one request at a time anyway, and llama.cpp measured 6-9 % slower when called from a
        # non-main thread here (benchmarks/overhead.py). The loop cannot interrupt it, so the request's timeout
        # and the cancellation of this task are checked from inside llama.cpp (_Deadline).
        # `-B worker_thread=true` restores the thread for embedders whose event loop must stay responsive.
        import asyncio

        task = asyncio.current_task()
        if self.options.get("worker_thread"):
            import asyncio

            return await asyncio.to_thread(self._complete, request, task)
        return self._complete(request, task)

    def _complete(self, request: ChatRequest, task: asyncio.Task[Any] | None = None) -> Completion:
        kwargs: dict[str, Any] = {
            "messages": to_openai_messages(request.messages),
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
        }
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
            try:
                response, deadline = self._generate(kwargs, limit, task)
            except ValueError as exc:
                self._fit_context(exc, request.max_tokens)  # raises unless the context grew
                response, deadline = self._generate(kwargs, limit, task)
            if deadline.cancelled:
                import asyncio

                raise asyncio.CancelledError
            if deadline.passed:
                raise TimeoutError(f"timeout after {request.timeout_s:g} s (generation stopped)")
            return completion_from_openai(response, time.perf_counter() - started)

    def _generate(self, kwargs: dict[str, Any], limit: float, task: asyncio.Task[Any] | None) -> tuple[Any, _Deadline]:
        deadline = _Deadline(limit, self._llm.token_eos(), self._llm.ctx, task)
        kwargs["logits_processor"] = [deadline]
        response = None
        try:
            response = self._llm.create_chat_completion(**kwargs)
        except RuntimeError:  # llama_decode aborted by the callback
            if not (deadline.passed or deadline.cancelled):
                raise
        finally:
            deadline.remove()
        return response, deadline

    def _fit_context(self, exc: ValueError, max_tokens: int) -> None:
        """A prompt longer than the context (a multi-turn trajectory grows with every step): reload the model
        with a context that fits it, unless ``-B n_ctx`` was given or the model was not trained that long; then
        the error says which ``-B n_ctx`` would fit."""
        found = CONTEXT_FULL.search(str(exc))
        if found is None:
            raise exc
        needed, current = int(found.group(1)), int(found.group(2))
        fits = context_size_for(needed + max_tokens)
        model = getattr(self._llm, "_model", None)  # llama-cpp-python keeps the trained length there
        trained = int(model.n_ctx_train()) if model is not None and hasattr(model, "n_ctx_train") else 0
        if "n_ctx" in self.options or (trained and fits > trained):
            why = (
                f"the model was trained on {trained}" if trained and fits > trained else f"-B n_ctx={current} was given"
            )
            raise ValueError(
                f"the prompt has {needed} tokens, more than the context window of {current} "
                f"({why}): give it -B n_ctx={fits}"
            ) from None
        self._llm.close()
        self._settings = {**self._settings, "n_ctx": fits}
        self._llm = import_llama()(model_path=str(self._path), **self._settings)
        self._identity["options"] = {k: v for k, v in self._settings.items() if k != "verbose"}

    async def close(self) -> None:
        llm, self._llm = self._llm, None
        if llm is not None:
            import asyncio

            await asyncio.to_thread(self._close, llm)

    def _close(self, llm: Any) -> None:
        with self._lock:  # waits for a generation still running after a timeout
            llm.close()

    def describe(self) -> dict[str, Any]:
        return dict(self._identity)


@hookimpl
def register_backends(register: RegisterBackend) -> None:
    register(
        "llama-cpp",
        LlamaCppBackend,
        options=LlamaCppOptions,
        description="in-process llama-cpp-python (GGUF; default: embedded model)",
    )
