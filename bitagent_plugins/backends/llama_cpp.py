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
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import PositiveInt

from bitagent_core import BackendOptions, ChatRequest, Completion, RegisterBackend, hookimpl
from bitagent_plugins.backends.openai_format import completion_from_openai, to_openai_messages


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
        settings: dict[str, Any] = {"n_ctx": 4096, "n_threads": max(1, os.cpu_count() or 1), "n_gpu_layers": 0,
                                    "verbose": False}
        settings.update({k: v for k, v in self.options.items() if k != "worker_thread"})
        self._llm = Llama(model_path=str(path), **settings)
        self._identity = {**identity, "path": str(path), "backend": "llama-cpp",
                          "options": {k: v for k, v in settings.items() if k != "verbose"}}

    async def complete(self, request: ChatRequest) -> Completion:
        if self._llm is None:
            raise RuntimeError("the llama-cpp backend was not started")
        # Generation runs on the event loop's own thread, not in a worker thread: one in-process model
        # answers one request at a time anyway, and llama.cpp measured 6-9 % slower when called from a
        # non-main thread here (benchmarks/overhead.py). The cost: a timeout or Ctrl-C takes effect when
        # the current generation ends (at most max_tokens tokens later). `-B worker_thread=true` restores
        # the thread for embedders whose event loop must stay responsive.
        if self.options.get("worker_thread"):
            import asyncio

            return await asyncio.to_thread(self._complete, request)
        return self._complete(request)

    def _complete(self, request: ChatRequest) -> Completion:
        kwargs: dict[str, Any] = {"messages": to_openai_messages(request.messages),
                                  "temperature": request.temperature, "max_tokens": request.max_tokens}
        if request.native_tools:
            kwargs["tools"] = [t.to_openai() for t in request.tools]
            kwargs["tool_choice"] = "auto"
        with self._lock:  # llama.cpp contexts are not thread-safe
            started = time.perf_counter()
            response = self._llm.create_chat_completion(**kwargs)
            return completion_from_openai(response, time.perf_counter() - started)

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
    register("llama-cpp", LlamaCppBackend, options=LlamaCppOptions,
             description="in-process llama-cpp-python (GGUF; default: embedded model)")
