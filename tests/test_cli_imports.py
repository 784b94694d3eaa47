"""``bitagent --help`` loads every plugin (for its commands) but imports only what it needs: the event loop,
the decoder, re-scoring, the runner, managed servers and the model libraries are imported where they are used."""

from __future__ import annotations

import json
import subprocess
import sys

NOT_FOR_HELP = [
    "asyncio",
    "ssl",
    "bitagent_core.toolkit.decoding",
    "bitagent_plugins.runs.score",
    "bitagent_core._runner",
    "bitagent_plugins.backends.local_server",
    "bitagent_plugins.backends.openai_client",
    "psutil",
    "tenacity",
    "jsonschema",
    "llama_cpp",
    "bittensor",
    "huggingface_hub",
]

PROBE = """
import json, sys
from bitagent_core._cli import main
sys.argv = ["bitagent", "--help"]
try:
    main()
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def test_help_imports_nothing_it_does_not_need():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    assert probe["code"] in (0, None)
    assert "bitagent_plugins.bfcl.tasks" in probe["modules"]  # the plugins were loaded
    assert [name for name in NOT_FOR_HELP if name in probe["modules"]] == []
