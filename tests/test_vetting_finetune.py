"""Vetting evaluates ordinary fine-tunes: a repo as ``Trainer.push_to_hub()`` leaves it (``training_args.bin``,
a ``last-checkpoint/`` with optimizer and scheduler states, TensorBoard runs) plus what people add (a script,
a notebook, an image) is accepted, and only the files a model server loads are selected for download. A repo
that needs remote code (``auto_map`` in its config) is still refused.

The repos live in a local Hugging Face cache read by huggingface_hub's cache API (``OfflineHubClient``); the
pickled training state holds a payload that would create a marker file if anything ever unpickled it.
"""

from __future__ import annotations

import fnmatch
import json
import os
import pickle
from pathlib import Path

from subnet_helpers import hf_repo, safetensors_bytes

from bitagent_plugins.subnet.keys import ModelKey
from bitagent_plugins.subnet.vetting import OfflineHubClient, vet

TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}"


class Payload:
    """Unpickling this would run a shell command (it must never happen: the file is not even fetched)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def trainer_repo(marker: Path, *, config: dict | None = None) -> dict[str, bytes]:
    """The files ``Trainer.push_to_hub(hub_strategy="checkpoint")`` uploads for a fine-tune, and a few a user adds."""
    state = pickle.dumps(Payload(marker))
    return {
        "README.md": b"---\nlicense: apache-2.0\nlibrary_name: transformers\ntags:\n- generated_from_trainer\n---\n"
        b"# my-finetune\nThis model is a fine-tuned version of a base model.\n",
        "config.json": json.dumps(
            config or {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 8}
        ).encode(),
        "generation_config.json": b'{"do_sample": false}',
        "model.safetensors": safetensors_bytes({"w": [4, 8]}),
        "tokenizer.json": b'{"version": "1.0", "model": {"type": "BPE"}}',
        "tokenizer_config.json": json.dumps({"chat_template": TEMPLATE, "eos_token": "</s>"}).encode(),
        "special_tokens_map.json": b'{"eos_token": "</s>"}',
        "training_args.bin": state,
        "last-checkpoint/optimizer.pt": state,
        "last-checkpoint/scheduler.pt": state,
        "last-checkpoint/rng_state.pth": state,
        "last-checkpoint/trainer_state.json": b'{"global_step": 500}',
        "last-checkpoint/model.safetensors": safetensors_bytes({"w": [4, 8]}),
        "runs/Dec07_10-00-00_host/events.out.tfevents.1.host": b"\x00\x01",
        "scripts/convert.py": f"open({str(marker)!r}, 'w')\n".encode(),
        "finetune.ipynb": b'{"cells": []}',
        "loss.png": b"\x89PNG\r\n\x1a\n",
        "all_results.json": b'{"train_loss": 0.1}',
    }


SERVED = (
    "README.md",
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
)


def test_a_trainer_push_to_hub_repo_is_vetted_and_only_served_files_are_selected(tmp_path):
    cache, marker = tmp_path / "hf-cache", tmp_path / "unpickled"
    files = trainer_repo(marker)
    sha = hf_repo(cache, "acme/finetune", files)
    report = vet(ModelKey("acme/finetune", sha), cache_dir=cache, api=OfflineHubClient(cache))
    assert report.ok, report.reason
    assert report.files == SERVED
    assert report.weights_format == "safetensors" and report.n_params == 32
    # the download patterns fetch exactly the served files, none of the training state, scripts or images
    fetched = {path for path in files if any(fnmatch.fnmatchcase(path, p) for p in report.allow_patterns)}
    assert fetched == set(SERVED)
    assert report.total_bytes == sum(len(files[p]) for p in SERVED)
    assert not marker.exists()


def test_a_fine_tune_that_needs_remote_code_is_still_refused(tmp_path):
    cache, marker = tmp_path / "hf-cache", tmp_path / "unpickled"
    files = trainer_repo(
        marker, config={"model_type": "custom", "auto_map": {"AutoModelForCausalLM": "modeling_custom.CustomModel"}}
    )
    files["modeling_custom.py"] = b"import os\n"
    sha = hf_repo(cache, "acme/remote-code", files)
    report = vet(ModelKey("acme/remote-code", sha), cache_dir=cache, api=OfflineHubClient(cache))
    assert not report.ok and not report.transient
    assert report.reason == "config.json has 'auto_map' (custom code; trust_remote_code is never used)"
    assert not marker.exists()


def test_pickle_weights_alone_are_refused_with_the_reason(tmp_path):
    cache, marker = tmp_path / "hf-cache", tmp_path / "unpickled"
    files = {k: v for k, v in trainer_repo(marker).items() if not k.endswith(".safetensors")}
    files["pytorch_model.bin"] = pickle.dumps(Payload(marker))
    sha = hf_repo(cache, "acme/pickled", files)
    report = vet(ModelKey("acme/pickled", sha), cache_dir=cache, api=OfflineHubClient(cache))
    assert not report.ok
    assert report.reason.startswith("weights only in pickle format (pytorch_model.bin")
    assert not marker.exists()
