"""Shared fixtures. Tests use real parts: the embedded model through llama.cpp, real processes on
127.0.0.1, real files. Test-only plugins are real plugin modules registered in a fresh registry."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

# fixtures shared between test modules: managed servers (records_dir, owner_token), decoding (no_exec), pm2 for
# the operator tests (pm2_env), the real engine tier (engine_python, hf_model)
pytest_plugins = ["process_helpers", "decoding_helpers", "pm2_helpers", "engine_helpers"]

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
os.environ.setdefault("BITAGENT_CACHE_DIR", str(Path.home() / ".cache" / "bitagent"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """``slow``: every test that runs the embedded model, in-process or in a server (``model`` marker or the
    ``embedded_model`` fixture), set here; and, marked by hand, every other test that took over 0.8 s on 2 cores
    (it starts whole programs: the CLI, pm2, a fresh venv, a browser, a miner; or loads all of BFCL).
    ``make test-fast`` (``-m "not slow"``) leaves them out; ``make test`` runs all."""
    for item in items:
        if (
            item.get_closest_marker("model")
            or item.get_closest_marker("engine")
            or "embedded_model" in getattr(item, "fixturenames", ())
        ):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def embedded_model() -> Path:
    from bitagent_plugins.backends.embedded_model import embedded_model_path

    return embedded_model_path()


@pytest.fixture
def fresh_registry():
    """A registry loaded from the installed entry points, replacing the process-wide one."""
    from bitagent_core import _plugins as plugins

    plugins.reset_registry()
    registry = plugins.get_registry()
    yield registry
    plugins.reset_registry()


SIMPLE_TASKS = [
    {
        "id": "discount",
        "category": "single_call",
        "messages": [
            {
                "role": "user",
                "content": "I bought a jacket for $200 with a 20% discount. Use the tool to compute the final price.",
            }
        ],
        "tools": [
            {
                "name": "calculate_discount",
                "description": "Calculate the discounted price",
                "arguments": {
                    "original_price": {"required": True, "type": "number", "description": "price"},
                    "discount_percentage": {"required": True, "type": "number", "description": "discount in percent"},
                },
            }
        ],
        "expected_calls": [{"calculate_discount": {"original_price": [200], "discount_percentage": [20]}}],
    },
    {
        "id": "weather",
        "category": "single_call",
        "messages": [{"role": "user", "content": "What's the weather in Paris?"}],
        "tools": [
            {
                "name": "get_weather",
                "description": "Current weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            }
        ],
        "expected_calls": [{"get_weather": {"city": ["Paris"]}}],
    },
    {
        "id": "no-tool",
        "category": "irrelevance",
        "messages": [{"role": "user", "content": "Write a haiku about autumn leaves."}],
        "tools": [
            {
                "name": "get_weather",
                "description": "Current weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            }
        ],
        "expected_calls": [],
    },
]


@pytest.fixture
def tasks_file(tmp_path: Path) -> Path:
    path = tmp_path / "tasks.jsonl"
    path.write_text("".join(json.dumps(t) + "\n" for t in SIMPLE_TASKS), encoding="utf-8")
    return path
