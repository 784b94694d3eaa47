"""Typed backend errors, the engine command lines and what the validator reads from them (no engine needed; the
real engine tier is tests/test_engine.py)."""

from __future__ import annotations

import json

import pytest

import bitagent_core as ba
from bitagent_core import BackendError, EngineError, Message, ModelError, fault_of, should_retry
from bitagent_core.toolkit import fold_system_prompt
from bitagent_plugins.backends.local_server import ServerStartError
from bitagent_plugins.backends.openai_client import ClientError, RequestTimeout, ServerUnavailable
from bitagent_plugins.backends.servers import (
    DEFAULT_CONTEXT_LENGTH,
    SglangBackend,
    VllmBackend,
    model_chat_template,
    start_failure,
    tool_call_parser,
)
from bitagent_plugins.subnet.failures import Fault, classify_exception


def test_errors_say_whose_fault_and_whether_to_retry():
    assert "BackendError" in ba.__all__ and "should_retry" in ba.__all__
    assert (BackendError("x").fault, ModelError("x").fault, EngineError("x").fault) == ("unknown", "model", "validator")
    assert not should_retry(ModelError("x")) and should_retry(EngineError("x")) and should_retry(ValueError("x"))
    assert BackendError("x", fault="model", retryable=False).fault == "model"
    with pytest.raises(ValueError, match="fault must be one of"):
        BackendError("x", fault="nobody")  # type: ignore[arg-type]
    # read through the chain: the runner wraps a start failure in its own StartupError
    try:
        try:
            raise ModelError("weights")
        except ModelError as inner:
            raise RuntimeError("the vllm backend could not start") from inner
    except RuntimeError as outer:
        assert fault_of(outer) == "model"
    assert fault_of(ValueError("x")) == "unknown"
    # the client's errors: unreachable is the validator's, too slow is the model's, a 4xx is unknown
    assert ServerUnavailable("gone").fault == "validator"
    assert isinstance(ServerUnavailable("gone"), ba.ServerUnavailable)
    assert RequestTimeout("slow").fault == "model" and ClientError("HTTP 400", 400).fault == "unknown"
    assert ServerStartError("exited").fault == "unknown"


@pytest.mark.parametrize(
    ("log", "fault"),
    [
        ("ModuleNotFoundError: No module named 'vllm'", "validator"),
        ("api_server.py: error: unrecognized arguments: --no-such-flag", "validator"),
        (
            "ValueError: To serve at least one request with the model's max seq len (25000), "
            "(0.29 GiB KV cache is needed, "
            "which is larger than the available KV cache memory (0.1 GiB).",
            "validator",
        ),
        ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", "validator"),
        ("safetensors_rust.SafetensorError: Error while deserializing header: incomplete metadata", "model"),
        ("ValueError: User-specified max_model_len (25000) is greater than the derived max_model_len (4096)", "model"),
        ("RuntimeError: Engine core initialization failed. See root cause above.", "unknown"),
    ],
)
def test_a_start_failure_is_typed_from_the_engines_log(log, fault):
    assert start_failure(log)[0] == fault
    backend = VllmBackend("/models/x", {})
    error = backend.start_error(
        ServerStartError(
            "vllm server exited with code 1 before it was ready", command=["python", "-m", "x"], log_tail=log
        )
    )
    assert error.fault == fault and log in str(error)
    failure = classify_exception(RuntimeError("could not start").with_traceback(None), context="k")
    assert failure.fault is Fault.UNKNOWN
    try:
        raise RuntimeError("the vllm backend could not start") from error
    except RuntimeError as exc:
        failure = classify_exception(exc, context="acme/x")
    assert failure.fault.value == fault and failure.ours == (fault == "validator")
    assert bool(failure.action) == (fault == "validator")


def test_a_repo_name_never_steers_the_verdict():
    """The command line (with the model's path) is not read: only the failure's first line and the log."""
    backend = VllmBackend("/m/acme/CUDA error out of memory", {})
    error = backend.start_error(
        ServerStartError(
            "vllm server exited with code 1 before it was ready", command=backend.server_argv(8000, 0), log_tail="boom"
        )
    )
    assert error.fault == "unknown"


def test_vllm_and_sglang_command_lines(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ '<tool_call>' }}"}))
    vllm = VllmBackend(str(model), {"kv_cache_gib": "1.5"})
    vllm.prepare()
    assert vllm.server_argv(8000, 0) == [
        vllm.python,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        "8000",
        "--max-model-len",
        str(DEFAULT_CONTEXT_LENGTH),
        "--gpu-memory-utilization",
        "0.85",
        "--kv-cache-memory-bytes",
        str(int(1.5 * 2**30)),
        "--enable-auto-tool-choice",
        "--tool-call-parser",
        "hermes",
    ]
    assert "--max-model-len 4096" in " ".join(VllmBackend(str(model), {"max_model_len": "4096"}).server_argv(1, 0))
    sglang = SglangBackend(str(model), {"context_length": "8192", "tp": "2"})
    sglang.prepare()
    assert sglang.server_argv(9, 0) == [
        sglang.python,
        "-m",
        "sglang.launch_server",
        "--model-path",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        "9",
        "--mem-fraction-static",
        "0.85",
        "--context-length",
        "8192",
        "--tp-size",
        "2",
        "--tool-call-parser",
        "qwen25",
    ]
    off = VllmBackend(str(model), {"tool_call_parser": "none"})
    off.prepare()
    assert "--enable-auto-tool-choice" not in off.server_argv(1, 0)
    with pytest.raises(ValueError, match="not a GGUF file"):
        VllmBackend(str(tmp_path / "m.gguf"), {})


@pytest.mark.parametrize(
    ("template", "vllm", "sglang"),
    [
        ("{{ '[TOOL_CALLS]' }}", "mistral", "mistral"),
        ("<tool_call>\n<function=name>", "qwen3_coder", "qwen3_coder"),
        ("{{- '<tool_call>' }}", "hermes", "qwen25"),
        ("<|start_header_id|>ipython<|end_header_id|>", "llama3_json", "llama3"),
        ("{{ messages }}", "pythonic", "pythonic"),
        (None, "pythonic", "pythonic"),
    ],
)
def test_the_tool_call_parser_follows_the_chat_template(template, vllm, sglang):
    assert tool_call_parser(template, "vllm") == vllm and tool_call_parser(template, "sglang") == sglang


def test_the_chat_template_is_read_from_the_model_folder(tmp_path):
    (tmp_path / "chat_template.jinja").write_text("JINJA")
    assert model_chat_template(str(tmp_path)) == "JINJA"
    (tmp_path / "chat_template.jinja").unlink()
    (tmp_path / "chat_template.json").write_text(
        json.dumps({"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]})
    )
    assert model_chat_template(str(tmp_path)) == "D"
    assert model_chat_template(str(tmp_path / "missing")) is None


def test_the_system_prompt_folds_into_the_first_user_message():
    messages = (Message("system", "S"), Message("user", "U"), Message("assistant", "A"))
    assert fold_system_prompt(messages) == (Message("user", "S\n\nU"), Message("assistant", "A"))
    assert fold_system_prompt(messages[1:]) == messages[1:]
    assert fold_system_prompt((Message("system", "S"),)) == (Message("user", "S"),)


def test_a_gguf_only_repo_is_refused_for_the_engines():
    from bitagent_plugins.subnet.vetting import ALLOW_PATTERNS, VettingReport, engine_refusal

    gguf = VettingReport(True, "ok", weights_format="gguf")
    assert "GGUF-only repo" in (engine_refusal(gguf, "vllm") or "")
    assert engine_refusal(gguf, "sglang") and engine_refusal(gguf, "llama-cpp") is None
    assert engine_refusal(VettingReport(True, "ok", weights_format="safetensors"), "vllm") is None
    import fnmatch

    for name in ("tekken.json", "o200k.tiktoken", "tokenizer.model.v3", "tokenizer.json"):
        assert any(fnmatch.fnmatchcase(name, p) for p in ALLOW_PATTERNS), name


def test_the_context_length_comes_from_min_compute():
    from bitagent_plugins.subnet.pipeline import _context_length
    from bitagent_plugins.subnet.requirements import load_min_compute

    assert load_min_compute().role("validator").context_length == DEFAULT_CONTEXT_LENGTH == 25_000
    assert _context_length("vllm", {}) == {"max_model_len": "25000"}
    assert _context_length("sglang", {"tp": "2"}) == {"tp": "2", "context_length": "25000"}
    assert _context_length("vllm", {"max_model_len": "8192"}) == {"max_model_len": "8192"}  # the operator's
    assert _context_length("llama-cpp", {}) == {}


def test_a_request_that_fails_on_the_validators_side_is_recorded_as_an_engine_error(tmp_path):
    import asyncio

    from bitagent_core import Evaluation, RunConfig, hookimpl
    from bitagent_core._plugins import PluginRegistry
    from bitagent_plugins.subnet.failures import ENGINE_ERROR, classify_results

    class Flaky:
        """The server gone for one task, a 400 (whose fault: unknown) for the other."""

        default_concurrency = 1

        def __init__(self, model, options):
            pass

        async def start(self, run_dir):
            pass

        async def complete(self, request):
            if "Paris" in request.messages[-1].content:
                raise ServerUnavailable("gave up after 4 attempts: ConnectError")
            raise ClientError("HTTP 400 from the server", 400)

        async def close(self):
            pass

        def describe(self):
            return {"model": "flaky"}

    class Plugin:
        @hookimpl
        def register_backends(self, register):
            register("flaky", Flaky)

    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(
        "".join(
            json.dumps(
                {
                    "id": city,
                    "messages": [{"role": "user", "content": f"What's the weather in {city}?"}],
                    "tools": [
                        {
                            "name": "get_weather",
                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                        }
                    ],
                    "expected_calls": [{"get_weather": {"city": [city]}}],
                }
            )
            + "\n"
            for city in ("Paris", "Rome")
        )
    )
    registry = PluginRegistry()
    registry.load_entry_points({"bitagent-scorer", "jsonl-tasks"})
    registry.register_module(Plugin(), "test")
    evaluation = Evaluation(
        RunConfig(tasks=f"jsonl:{tasks}", backend="flaky", output_dir=str(tmp_path / "runs")), registry
    )
    asyncio.run(evaluation.run())
    types = {task_id: record.error_type for task_id, record in evaluation.records.items()}
    assert types == {"Paris": ENGINE_ERROR, "Rome": "backend_error"}
    assert classify_results(2, list(types.values())) is None  # one failure is not the validator's side
    assert classify_results(1, [types["Paris"]]).ours
