"""Finding the processes a test started, a validator-like owner of a managed server, and a server records
directory per test."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import pytest

from bitagent_plugins.backends import local_server


@pytest.fixture
def server_records(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "server-records"
    monkeypatch.setenv(local_server.RECORDS_ENV, str(path))
    return path


@pytest.fixture
def owner_token(monkeypatch) -> str:
    """Every process started from now on inherits this; :func:`ours` finds them."""
    token = uuid.uuid4().hex
    monkeypatch.setenv("BITAGENT_TEST_OWNER", token)
    return token


def alive(pid: int) -> bool:
    """The process runs (a zombie, exited but not yet reaped, does not)."""
    try:
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return False


def ours(token: str) -> list[int]:
    """Live (non-zombie) processes that carry ``token``, children and grandchildren alike."""
    found = []
    for proc in psutil.process_iter(["status"]):
        if proc.pid == psutil.Process().pid or proc.info["status"] in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            continue
        try:
            if proc.environ().get("BITAGENT_TEST_OWNER") == token:
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


#: a validator-like owner: starts a ManagedServer (keyword arguments as JSON in argv[1], the command after it),
#: prints the server's pid, port, base URL and id as one JSON line once it is ready, then lives until it is
#: signalled (its exit hooks stop the server on SIGTERM, ``finally`` on Ctrl-C) or until the server dies
OWNER = r"""
import asyncio, json, sys, time
from pathlib import Path
from bitagent_plugins.backends.local_server import ManagedServer
options = json.loads(sys.argv[1])
if options.get("log_path"):
    options["log_path"] = Path(options["log_path"])
server = ManagedServer(sys.argv[2:], **options)
asyncio.run(server.start())
print(json.dumps({"pid": server.pid, "port": server.port, "base_url": server.base_url,
                  "server_id": server.server_id}), flush=True)
try:
    while server.running:
        time.sleep(0.2)
    sys.exit(1)
finally:
    server.stop()
"""


def start_owner(argv: list[str], **options) -> tuple[subprocess.Popen, dict]:
    """Run :data:`OWNER` for ``argv``; returns the process and the JSON line it prints once its server is ready."""
    proc = subprocess.Popen(
        [sys.executable, "-c", OWNER, json.dumps(options), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    if not line:
        proc.wait()
        pytest.fail(f"the owner did not start its server: {proc.stderr.read()}")
    return proc, json.loads(line)
