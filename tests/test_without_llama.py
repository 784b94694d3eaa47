"""Without the ``[llama]`` extra: llama_cpp made unimportable in the child process (a ``sitecustomize`` that
puts None in ``sys.modules``, as if the package were absent), the CLI, task sources, scorers and the server
backends work, and the llama.cpp backends say in one line how to install it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture
def no_llama(tmp_path: Path) -> dict[str, str]:
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['llama_cpp'] = None\n")
    path = os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "PYTHONPATH": path}


def bitagent(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bitagent_core", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


def test_the_blocker_blocks(no_llama):
    probe = subprocess.run([sys.executable, "-c", "import llama_cpp"], capture_output=True, text=True, env=no_llama)
    assert probe.returncode != 0 and "llama_cpp" in probe.stderr


@pytest.mark.slow
def test_help_plugins_tasks_and_scoring_work(no_llama, tmp_path):
    assert bitagent(no_llama, "--help").returncode == 0
    plugins = bitagent(no_llama, "plugins", "--json")
    assert plugins.returncode == 0, plugins.stderr
    rows = {row["name"]: row for row in json.loads(plugins.stdout)}
    assert all(row["error"] is None for row in rows.values()), rows
    assert {"sglang", "vllm", "openai", "llama-cpp", "llama-cpp-server"} <= set(
        rows["servers"]["provides"]["backends"] + rows["llama-cpp"]["provides"]["backends"]
    )
    shown = bitagent(no_llama, "tasks", "show", "bitagent", "--prompt")
    assert shown.returncode == 0 and "Here is a list of functions" in shown.stdout
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"task_id": "simple_python_0", "response": "[f(a=1)]"}) + "\n")
    scored = bitagent(
        no_llama, "score", "-t", "bfcl:simple_python", "-r", str(answers), "-o", str(tmp_path / "scored.jsonl")
    )
    assert scored.returncode == 0, scored.stderr


@pytest.mark.parametrize("backend", ["llama-cpp", "llama-cpp-server"])
def test_the_llama_backends_say_how_to_install_it(no_llama, tmp_path, backend):
    done = bitagent(
        no_llama, "evaluate", "--backend", backend, "--limit", "1", "-o", str(tmp_path / "out"), cwd=tmp_path
    )
    assert done.returncode != 0
    (error,) = [line for line in done.stderr.splitlines() if line.lower().startswith("error")]  # one line
    assert "pip install 'bitagent[" in error and "Traceback" not in done.stderr
