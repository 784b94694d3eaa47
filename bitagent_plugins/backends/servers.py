"""Server backends: the model runs in an inference server and we talk to it over the OpenAI API.

* ``sglang`` (the validator's default): ``python -m sglang.launch_server``, CUDA graphs on, 127.0.0.1.
* ``vllm``: ``vllm serve`` (run as ``python -m vllm.entrypoints.cli.main serve``, so the interpreter can be
  chosen).
* ``llama-cpp-server``: ``python -m llama_cpp.server`` on a GGUF (default: the embedded model). It answers
  one request at a time, so ``-B replicas=N`` runs N processes and the client spreads requests over them.
* ``openai``: attach to a server or cluster that is already running (``--base-url``, several separated by
  commas; key from the environment variable named by ``--api-key-env``). Nothing is started or stopped.

The three managed backends start their servers through :class:`bitagent_plugins.backends.local_server.ManagedServer`
(free port on 127.0.0.1, own process group, ``server.log`` in the run directory, readiness on
``/v1/models``, teardown on every path) and all four send requests through
:class:`bitagent_plugins.backends.openai_client.OpenAIClient`.

Options (``-B key=value``), common to the managed backends: ``ready_timeout`` (s, 900), ``stop_timeout``
(s, 15), ``server_python`` (the interpreter that has the server installed; default: this one),
``visible_devices`` (-> ``CUDA_VISIBLE_DEVICES``), ``extra_args`` (appended to the server's command, split
like a shell would, never run by one), ``request_timeout`` (s, 300), ``retries`` (3), ``die_with_parent``
(true). Per backend: see the ``Options`` model of each class and docs/servers.md.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bitagent_core import BackendOptions, ChatRequest, Completion, RegisterBackend, hookimpl

if TYPE_CHECKING:
    from bitagent_plugins.backends.local_server import ManagedServer

# the managed server and the client (asyncio, httpx, psutil) are imported where they are used, so that loading
# this plugin (every `bitagent` command, `--help` included) stays light; these three are local_server's
HOST = "127.0.0.1"
DEFAULT_READY_TIMEOUT_S = 900.0
DEFAULT_STOP_TIMEOUT_S = 15.0


class ManagedServerOptions(BackendOptions):
    """Options of every managed server backend (unset: ``DEFAULTS``)."""

    ready_timeout: float | None = None
    stop_timeout: float | None = None
    #: the interpreter that has the server installed (default: this one)
    server_python: str | None = None
    #: -> CUDA_VISIBLE_DEVICES
    visible_devices: str | None = None
    #: appended to the server's command, split like a shell would (never run by one)
    extra_args: str | None = None
    request_timeout: float | None = None
    retries: int | None = None
    die_with_parent: bool | None = None


class HubServerOptions(ManagedServerOptions):
    revision: str | None = None
    tp: int | None = None
    dp: int | None = None


class SglangOptions(HubServerOptions):
    mem_fraction_static: float | None = None
    context_length: int | None = None


class VllmOptions(HubServerOptions):
    gpu_memory_utilization: float | None = None
    max_model_len: int | None = None


class LlamaCppServerOptions(ManagedServerOptions):
    replicas: int | None = None
    n_ctx: int | None = None
    n_threads: int | None = None
    n_threads_batch: int | None = None
    n_gpu_layers: int | None = None
    n_batch: int | None = None
    seed: int | None = None
    chat_format: str | None = None


class OpenAIOptions(BackendOptions):
    base_url: str | None = None
    api_key_env: str | None = None
    ready_timeout: float | None = None
    request_timeout: float | None = None
    retries: int | None = None


COMMON_DEFAULTS: dict[str, Any] = {
    "ready_timeout": DEFAULT_READY_TIMEOUT_S, "stop_timeout": DEFAULT_STOP_TIMEOUT_S, "request_timeout": 300.0,
    "retries": 3, "die_with_parent": True,
}
_POSITIVE = ("ready_timeout", "request_timeout", "mem_fraction_static", "gpu_memory_utilization", "context_length",
             "max_model_len", "tp", "dp", "replicas", "n_ctx", "n_threads", "n_threads_batch", "n_batch")


def split_model(model: str | None, revision: str | None, backend: str) -> tuple[str, str | None]:
    """``org/name@rev`` (or a local path) and ``-B revision=`` -> (model, revision)."""
    if not model:
        raise ValueError(f"the {backend} backend needs --model: a Hugging Face repo (org/name[@revision]) "
                         "or a local model directory")
    name, at, rev = model.partition("@")
    if at and Path(model).expanduser().exists():  # a local path that happens to contain '@'
        name, rev = model, ""
    if at and not rev:
        raise ValueError(f"empty revision in {model!r}")
    if rev and revision and rev != revision:
        raise ValueError(f"two revisions: {model!r} and revision={revision!r}")
    return name, rev or revision or None


def _check_options(options: dict[str, Any]) -> None:
    for key in _POSITIVE:
        if key in options and options[key] is not None and options[key] <= 0:
            raise ValueError(f"backend option {key} must be > 0, got {options[key]}")
    for key in ("mem_fraction_static", "gpu_memory_utilization"):
        if options.get(key) is not None and options[key] > 1:
            raise ValueError(f"backend option {key} is a fraction of GPU memory (0-1], got {options[key]}")
    if options.get("retries", 0) < 0 or options.get("stop_timeout", 0) < 0:
        raise ValueError("backend options retries and stop_timeout must be >= 0")


class ManagedServerBackend:
    """Start N server processes, talk to them through one client, stop them on ``close``."""

    name = "server"
    Options: type[ManagedServerOptions] = ManagedServerOptions
    DEFAULTS: dict[str, Any] = COMMON_DEFAULTS
    default_concurrency = 64
    #: what to say when the server program is missing
    install_hint = ""
    #: fields added to every chat request
    extra_body: dict[str, Any] = {}

    def __init__(self, model: str | None, options: ManagedServerOptions | dict[str, str]) -> None:
        self.model = model
        given = self.Options.coerce(options).model_dump(exclude_none=True)
        self.options: dict[str, Any] = {**self.DEFAULTS, **given}
        _check_options(self.options)
        self.servers: list[ManagedServer] = []
        self.client: Any = None
        self.served_model: str | None = None
        self.run_dir: Path | None = None
        #: tests and stand-ins: ``(port, replica) -> argv`` replaces the server's command; everything
        #: else (environment, readiness, teardown, client) stays the same
        self.launch_argv: Callable[[int, int], list[str]] | None = None
        self._identity: dict[str, Any] = {}

    # ---- what to run

    @property
    def replicas(self) -> int:
        return 1

    @property
    def python(self) -> str:
        return str(self.options.get("server_python") or sys.executable)

    def server_argv(self, port: int, replica: int) -> list[str]:
        raise NotImplementedError

    def command(self, port: int, replica: int) -> list[str]:
        if self.launch_argv is not None:
            return list(self.launch_argv(port, replica))
        return self.server_argv(port, replica) + shlex.split(self.options.get("extra_args") or "")

    def server_env(self, replica: int) -> dict[str, str]:
        """Environment added to this process's for the server (``CUDA_VISIBLE_DEVICES`` is set by the
        managed server from ``visible_devices``)."""
        return {}

    def log_name(self, replica: int) -> str:
        return "server.log" if self.replicas == 1 else f"server-{replica}.log"

    def prepare(self) -> None:
        """Resolve the model before anything starts (runs in a thread)."""

    def make_server(self, replica: int, run_dir: Path | None) -> ManagedServer:
        """The (not yet started) :class:`~bitagent_plugins.backends.local_server.ManagedServer` of one replica."""
        from bitagent_plugins.backends.local_server import ManagedServer

        return ManagedServer(
            lambda port: self.command(port, replica),
            name=f"{self.name} server" + (f" {replica}" if self.replicas > 1 else ""),
            env=self.server_env(replica), visible_devices=self.options.get("visible_devices"),
            log_path=run_dir / self.log_name(replica) if run_dir is not None else None,
            ready_timeout=self.options["ready_timeout"], stop_timeout=self.options["stop_timeout"],
            die_with_parent=self.options["die_with_parent"], cleanup_stale_first=False)

    # ---- Backend protocol

    async def start(self, run_dir: Path | None = None) -> None:
        if self.servers or self.client is not None:
            raise RuntimeError(f"the {self.name} backend is already started")
        import asyncio

        from bitagent_plugins.backends.local_server import ServerStartError, cleanup_stale
        from bitagent_plugins.backends.openai_client import OpenAIClient

        self.run_dir = run_dir
        await asyncio.to_thread(self.prepare)
        await asyncio.to_thread(cleanup_stale)
        self.servers = [self.make_server(replica, run_dir) for replica in range(self.replicas)]
        results = await asyncio.gather(*(s.start() for s in self.servers), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                if isinstance(result, ServerStartError) and self.install_hint and "No module named" in result.log_tail:
                    raise ServerStartError(f"{self.name}: {self.install_hint}", command=result.command,
                                           log_path=result.log_path, log_tail=result.log_tail,
                                           returncode=result.returncode) from result
                raise result
        ids = self.servers[0].model_ids
        self.served_model = ids[0] if ids else self.model
        self.client = OpenAIClient([s.base_url for s in self.servers],
                                   timeout_s=self.options["request_timeout"], retries=self.options["retries"],
                                   endpoint_down=self._endpoint_down, trust_env=False,
                                   extra_body=self.extra_body)

    def _endpoint_down(self, index: int) -> str | None:
        servers = self.servers
        if index >= len(servers):
            return f"the {self.name} backend is closed"
        server = servers[index]
        code = server.returncode()
        if code is None:
            return None
        return (f"{server.name} exited with code {code} (log: {server.log_path}); finished samples are kept, "
                "finish the run with --resume")

    async def complete(self, request: ChatRequest) -> Completion:
        if self.client is None:
            raise RuntimeError(f"the {self.name} backend was not started")
        return await self.client.chat(request, self.served_model)

    async def close(self) -> None:
        client, self.client = self.client, None
        servers, self.servers = self.servers, []
        try:
            if client is not None:
                await client.aclose()
        finally:
            if servers:
                import asyncio

                self._identity["servers"] = [s.describe() for s in servers]
                await asyncio.gather(*(asyncio.to_thread(s.stop) for s in servers))

    def describe(self) -> dict[str, Any]:
        data: dict[str, Any] = {"backend": self.name, "model": self.model, **self._identity}
        if self.served_model:
            data["served_model"] = self.served_model
        if self.servers:
            data["servers"] = [s.describe() for s in self.servers]
        data["options"] = {k: v for k, v in self.options.items() if v is not None}
        return data


class HubModelServerBackend(ManagedServerBackend):
    """A server that loads ``org/name[@revision]`` (or a local path) itself: sglang and vLLM."""

    def __init__(self, model: str | None, options: ManagedServerOptions | dict[str, str]) -> None:
        super().__init__(model, options)
        self.model_path, self.revision = split_model(model, self.options.get("revision"), self.name)
        self._identity = {"model_path": self.model_path, "revision": self.revision}


class SglangBackend(HubModelServerBackend):
    name = "sglang"
    Options = SglangOptions
    DEFAULTS = {**COMMON_DEFAULTS, "mem_fraction_static": 0.85}
    install_hint = ("sglang is not installed for that interpreter; install it in its own venv and point "
                    "--server-python at that venv's python")

    def server_argv(self, port: int, replica: int) -> list[str]:
        o = self.options
        argv = [self.python, "-m", "sglang.launch_server", "--model-path", self.model_path]
        if self.revision:
            argv += ["--revision", self.revision]
        argv += ["--host", HOST, "--port", str(port), "--mem-fraction-static", f"{o['mem_fraction_static']:g}"]
        if o.get("context_length"):
            argv += ["--context-length", str(o["context_length"])]
        if o.get("tp"):
            argv += ["--tp-size", str(o["tp"])]
        if o.get("dp"):
            argv += ["--dp-size", str(o["dp"])]
        return argv


class VllmBackend(HubModelServerBackend):
    name = "vllm"
    Options = VllmOptions
    DEFAULTS = {**COMMON_DEFAULTS, "gpu_memory_utilization": 0.85}
    install_hint = ("vLLM is not installed for that interpreter; install it in its own venv and point "
                    "--server-python at that venv's python")

    def server_argv(self, port: int, replica: int) -> list[str]:
        o = self.options
        argv = [self.python, "-m", "vllm.entrypoints.cli.main", "serve", self.model_path]
        if self.revision:
            argv += ["--revision", self.revision]
        argv += ["--host", HOST, "--port", str(port),
                 "--gpu-memory-utilization", f"{o['gpu_memory_utilization']:g}"]
        if o.get("max_model_len"):
            argv += ["--max-model-len", str(o["max_model_len"])]
        if o.get("tp"):
            argv += ["--tensor-parallel-size", str(o["tp"])]
        if o.get("dp"):
            argv += ["--data-parallel-size", str(o["dp"])]
        return argv


class LlamaCppServerBackend(ManagedServerBackend):
    name = "llama-cpp-server"
    Options = LlamaCppServerOptions
    DEFAULTS = {**COMMON_DEFAULTS, "replicas": 1, "n_ctx": 4096, "n_gpu_layers": 0}
    install_hint = "llama-cpp-python's server is not installed for that interpreter: pip install 'bitagent[server]'"
    #: llama_cpp.server defaults repeat_penalty to 1.1; OpenAI, sglang, vLLM and the in-process
    #: llama-cpp backend apply none, and a penalty changes greedy answers
    extra_body = {"repeat_penalty": 1.0}

    def __init__(self, model: str | None, options: ManagedServerOptions | dict[str, str]) -> None:
        super().__init__(model, options)
        self.default_concurrency = self.options["replicas"]  # one request per process at a time
        # the replicas share the cores, for generation and for prompts alike: llama.cpp's batch (prompt) threads
        # default to every core, so two replicas with only n_threads split ran at 0.59x one replica
        share = max(1, (os.cpu_count() or 1) // self.options["replicas"])
        if self.options.get("n_threads") is None:
            self.options["n_threads"] = share
        if self.options.get("n_threads_batch") is None:
            self.options["n_threads_batch"] = self.options["n_threads"]
        self.model_file: Path | None = None

    @property
    def replicas(self) -> int:
        return int(self.options["replicas"])

    def prepare(self) -> None:
        from bitagent_plugins.backends.llama_cpp import llama_installed, resolve_model, sha256_file

        if not self.options.get("server_python") and not llama_installed():
            raise RuntimeError(f"the {self.name} backend: {self.install_hint}")  # before any process starts

        path, identity = resolve_model(self.model)
        if "sha256" not in identity:
            identity["sha256"] = sha256_file(path)
        self.model_file = path
        self._identity = {**identity, "path": str(path)}

    def server_argv(self, port: int, replica: int) -> list[str]:
        if self.model_file is None:
            raise RuntimeError("prepare() resolves the model first")
        o = self.options
        argv = [self.python, "-m", "llama_cpp.server", "--model", str(self.model_file), "--host", HOST,
                "--port", str(port), "--n_ctx", str(o["n_ctx"]), "--n_threads", str(o["n_threads"]),
                "--n_threads_batch", str(o["n_threads_batch"]),
                "--n_gpu_layers", str(o["n_gpu_layers"])]
        for key in ("n_batch", "seed", "chat_format"):
            if o.get(key) is not None:
                argv += [f"--{key}", str(o[key])]
        return argv


class OpenAIBackend:
    """Attach to a running OpenAI-compatible server or cluster (sglang router, vLLM, any provider)."""

    name = "openai"
    Options = OpenAIOptions
    DEFAULTS: dict[str, Any] = {"api_key_env": "OPENAI_API_KEY", "ready_timeout": 60.0, "request_timeout": 300.0,
                                "retries": 3}
    default_concurrency = 64

    def __init__(self, model: str | None, options: OpenAIOptions | dict[str, str]) -> None:
        given = OpenAIOptions.coerce(options).model_dump(exclude_none=True)
        self.options: dict[str, Any] = {**self.DEFAULTS, **given}
        _check_options(self.options)
        # as the OpenAI SDK does: OPENAI_BASE_URL when no URL is given (OPENAI_API_KEY is the default key variable)
        base = self.options.get("base_url") or os.environ.get("OPENAI_BASE_URL")
        if not base:
            raise ValueError("the openai backend needs --base-url (or -B base_url=URL[,URL...], or OPENAI_BASE_URL)")
        from bitagent_plugins.backends.openai_client import v1_url

        self.base_urls = [u.strip() for u in str(base).split(",") if u.strip()]
        for url in self.base_urls:
            v1_url(url)  # a clear error for a malformed URL, before anything runs
        self.api_key_env = self.options["api_key_env"]
        self.api_key = os.environ.get(self.api_key_env) or None
        if "api_key_env" in given and self.api_key is None:
            raise ValueError(f"the environment variable {self.api_key_env} (--api-key-env) is not set")
        self.model = model
        self.served_model: str | None = model
        self.client: Any = None

    async def start(self, run_dir: Path | None = None) -> None:
        from bitagent_plugins.backends.local_server import NotReady, poll_until_ready
        from bitagent_plugins.backends.openai_client import ClientError, OpenAIClient

        if self.client is not None:
            raise RuntimeError("the openai backend is already started")
        client = OpenAIClient(self.base_urls, api_key=self.api_key,
                              timeout_s=self.options["request_timeout"], retries=self.options["retries"])
        async def check() -> list[str]:  # the server may still be loading: wait for /v1/models like a managed start
            try:
                return await client.models()
            except ClientError as exc:
                if exc.status in (401, 403):
                    raise
                raise NotReady(str(exc)) from exc

        try:
            ids = await poll_until_ready(check, timeout=self.options["ready_timeout"])
        except (ClientError, NotReady) as exc:
            await client.aclose()
            raise RuntimeError(f"the server at {', '.join(self.base_urls)} is not usable: {exc}") from exc
        except BaseException:
            await client.aclose()
            raise
        if not self.model:
            if not ids:
                raise RuntimeError(f"{self.base_urls[0]}/v1/models lists no model; pass --model")
            self.served_model = ids[0]
        self.client = client

    async def complete(self, request: ChatRequest) -> Completion:
        if self.client is None:
            raise RuntimeError("the openai backend was not started")
        return await self.client.chat(request, self.served_model)

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            await client.aclose()

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.served_model, "base_urls": list(self.base_urls),
                "api_key_env": self.api_key_env if self.api_key else None,
                "options": {k: v for k, v in self.options.items() if k not in ("base_url",)}}


@hookimpl
def register_backends(register: RegisterBackend) -> None:
    register("sglang", SglangBackend, options=SglangOptions,
             description="managed sglang server (the validator's backend; CUDA)")
    register("vllm", VllmBackend, options=VllmOptions, description="managed vLLM server (vllm serve; CUDA)")
    register("llama-cpp-server", LlamaCppServerBackend, options=LlamaCppServerOptions,
             description="managed llama_cpp.server processes (GGUF; -B replicas=N)")
    register("openai", OpenAIBackend, options=OpenAIOptions,
             description="an already running OpenAI-compatible server (--base-url)")
