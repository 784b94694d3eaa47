"""A real pm2 (installed by ``make install`` into .tools/) with its own PM2_HOME per test, killed afterwards."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PM2_BIN = ROOT / ".tools" / "node_modules" / ".bin"


@pytest.fixture
def pm2_env(tmp_path):
    """The environment for processes that call pm2: PATH finds it, PM2_HOME is this test's (short: sockets)."""
    if not (PM2_BIN / "pm2").exists():
        pytest.fail("pm2 is not installed: run `make install` (npm install --prefix .tools pm2@6)")
    home = tmp_path / "pm2"
    env = {**os.environ, "PATH": f"{PM2_BIN}:{os.environ['PATH']}", "PM2_HOME": str(home)}
    yield env
    subprocess.run([str(PM2_BIN / "pm2"), "kill"], env=env, capture_output=True, timeout=60)


def pm2_apps(env: dict) -> dict[str, dict]:
    done = subprocess.run([str(PM2_BIN / "pm2"), "jlist"], env=env, capture_output=True, text=True, timeout=60)
    return {app["name"]: app for app in json.loads(done.stdout or "[]")}
