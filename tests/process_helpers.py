"""Finding the processes a test started, and isolating the managed-server registry per test."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from bitagent_plugins.backends import local_server
from bitagent_plugins.backends.local_server import is_running


@pytest.fixture
def registry(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "registry"
    monkeypatch.setenv(local_server.REGISTRY_ENV, str(path))
    return path


@pytest.fixture
def owner_token(monkeypatch) -> str:
    """Every process started from now on inherits this; :func:`ours` finds them."""
    token = uuid.uuid4().hex
    monkeypatch.setenv("BITAGENT_TEST_OWNER", token)
    return token


def ours(token: str) -> list[int]:
    """Live (non-zombie) processes that carry ``token``, children and grandchildren alike."""
    needle = f"BITAGENT_TEST_OWNER={token}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{name}/environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0") and is_running(int(name)):
            found.append(int(name))
    return found
