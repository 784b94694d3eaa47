"""Helpers shared by the subnet tests: real bittensor 11 wallets in a temporary directory, the driver
script that runs miners and validators as real processes against the file-backed chain double."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DRIVER = Path(__file__).resolve().parent / "subnet_driver.py"
#: third-party plugins as installed distributions: put on PYTHONPATH (or sys.path) to install them
TEST_PLUGINS = Path(__file__).resolve().parent / "plugins"


def make_wallet(wallet_dir: Path, name: str, hotkey: str = "default") -> Any:
    """A real wallet (sr25519 coldkey and hotkey, no password) under ``wallet_dir``."""
    import bittensor as bt

    wallet = bt.Wallet(name, hotkey, str(wallet_dir))
    wallet.create_new_coldkey(use_password=False, overwrite=True, suppress=True)
    wallet.create_new_hotkey(use_password=False, overwrite=True, suppress=True)
    return wallet


def subprocess_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a driver process: HOME inside the test directory (bittensor writes ~/.bittensor),
    Hugging Face offline, the embedded model's cache kept where the session already assembled it."""
    env = dict(os.environ)
    env.update(
        {
            "HOME": str(tmp_path / "home"),
            "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
            "BITAGENT_CACHE_DIR": os.environ.get("BITAGENT_CACHE_DIR", str(Path.home() / ".cache" / "bitagent")),
        }
    )
    env.pop("BITAGENT_WANDB", None)
    env.update(extra)
    (tmp_path / "home").mkdir(exist_ok=True)
    return env


def start_miner(
    tmp_path: Path,
    *,
    chain: Path,
    wallet_dir: Path,
    name: str,
    model: str,
    netuid: int,
    log_name: str | None = None,
    extra: list[str] | None = None,
) -> tuple[subprocess.Popen, Path]:
    """A miner process (``bitagent mine`` through the driver); returns it and its ready file."""
    ready = tmp_path / f"{name}.ready"
    log = open(tmp_path / f"{log_name or name}.log", "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            str(DRIVER),
            "mine",
            "--chain-file",
            str(chain),
            "--",
            "--ready-file",
            str(ready),
            "--subtensor.network",
            "local",
            "--netuid",
            str(netuid),
            "--wallet.name",
            name,
            "--wallet.hotkey",
            "default",
            "--wallet.path",
            str(wallet_dir),
            "--hf-model-name",
            model,
            "--axon.port",
            "0",
            "--metagraph-refresh",
            "1",
            *(extra or []),
        ],
        cwd=ROOT,
        env=subprocess_env(tmp_path),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return proc, ready


def wait_for_file(path: Path, proc: subprocess.Popen, timeout_s: float = 60.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before writing {path}")
        time.sleep(0.05)
    raise TimeoutError(f"{path} did not appear in {timeout_s} s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# --- Hugging Face repos as a local cache, read by the real huggingface_hub code ---------------------------


def safetensors_bytes(shapes: dict[str, list[int]], *, with_data: bool = True) -> bytes:
    """A safetensors file: an 8-byte header length, the JSON header, then zeroed data (``with_data=False``:
    the header alone, as the Hub serves the first bytes of a file too large to build here)."""
    import json
    import struct

    header: dict = {}
    offset = 0
    for name, shape in shapes.items():
        n = 1
        for d in shape:
            n *= d
        size = n * 2
        header[name] = {"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + (b"\0" * offset if with_data else b"")


def readme(license_: str) -> bytes:
    return f"---\nlicense: {license_}\n---\n# A test model\n".encode()


CHAT_TEMPLATE = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}<|assistant|>"


def safetensors_repo(
    *,
    license_: str = "apache-2.0",
    chat_template: bool = True,
    shapes: dict[str, list[int]] | None = None,
    extra: dict[str, bytes] | None = None,
    with_data: bool = True,
) -> dict:
    tokenizer_config = {"model_max_length": 2048}
    if chat_template:
        tokenizer_config["chat_template"] = CHAT_TEMPLATE
    import json

    files: dict[str, bytes | Path] = {
        "README.md": readme(license_),
        "config.json": json.dumps({"model_type": "llama", "hidden_size": 8}).encode(),
        "tokenizer_config.json": json.dumps(tokenizer_config).encode(),
        "model.safetensors": safetensors_bytes(shapes or {"w": [4, 8]}, with_data=with_data),
    }
    files.update(extra or {})
    return files


def hf_repo(
    cache_dir: Path, repo_id: str, files: dict[str, bytes | Path], *, sha: str | None = None, branch: str = "main"
) -> str:
    """Write ``repo_id`` at commit ``sha`` into a Hugging Face cache folder, the way huggingface_hub lays
    it out (``blobs/``, ``snapshots/<sha>/`` links, ``refs/<branch>``). Files given as a Path are hard-linked
    (copied across filesystems). Returns the sha."""
    import hashlib
    import shutil

    sha = (
        sha or hashlib.sha1(repr(sorted((k, str(v)) for k, v in files.items())).encode() + repo_id.encode()).hexdigest()
    )
    org, name = repo_id.split("/")
    storage = cache_dir / f"models--{org}--{name}"
    (storage / "blobs").mkdir(parents=True, exist_ok=True)
    (storage / "refs").mkdir(exist_ok=True)
    snapshot = storage / "snapshots" / sha
    for path, content in files.items():
        if isinstance(content, Path):
            digest = hashlib.sha256(f"{content}:{content.stat().st_size}".encode()).hexdigest()
            blob = storage / "blobs" / digest
            if not blob.exists():
                try:
                    os.link(content, blob)
                except OSError:
                    shutil.copyfile(content, blob)
        else:
            digest = hashlib.sha256(content).hexdigest()
            blob = storage / "blobs" / digest
            blob.write_bytes(content)
        link = snapshot / path
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
    (storage / "refs" / branch).write_text(sha)
    return sha


def gguf_repo(model: Path, *, license_: str = "apache-2.0") -> dict:
    return {"README.md": readme(license_), "model-q4_k_m.gguf": model}
