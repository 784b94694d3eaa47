"""Vetting against the hostile repos of issue 8's probe, through the offline Hugging Face cache (real files,
real links, a real FIFO): huge safetensors headers, GGUF headers within every size limit but costly to walk,
multi-hop links out of the cache, FIFOs and devices, ``auto_map`` nested or in other JSON files.

Each would pass (or hang, or be retried forever) before the fix; memory is measured with tracemalloc (bytes
allocated, deterministic), never with a clock."""

from __future__ import annotations

import json
import os
import struct
import tracemalloc
from pathlib import Path

import pytest
from test_vetting import CONFIG_OK, TOKENIZER_OK, make_repo, readme, safetensors_bytes

from bitagent_plugins.subnet import vetting
from bitagent_plugins.subnet.gguf import ARRAY, STRING, GGUFError, read_gguf_header
from bitagent_plugins.subnet.vetting import OfflineHubClient, VettingFailed, check_snapshot, vet


@pytest.fixture(autouse=True)
def hub_offline(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def _repo(cache: Path, name: str, **files: bytes | Path):
    base = {"README.md": readme("mit"), "config.json": CONFIG_OK, "tokenizer_config.json": TOKENIZER_OK,
            "model.safetensors": safetensors_bytes({"w": [4, 4]})}
    base.update({k.replace("__", "."): v for k, v in files.items()})
    return make_repo(cache, f"org/{name}", base)


def _vet(cache: Path, locked):
    return vet(locked, cache_dir=cache, api=OfflineHubClient(cache))


def test_a_header_of_many_tiny_tensors_is_refused_before_it_is_parsed(tmp_path):
    tensors = {f"t{i}": [1] for i in range(vetting.MAX_SAFETENSORS_TENSORS + 10)}
    shard = safetensors_bytes(tensors, with_data=False)
    assert len(shard) < vetting.MAX_SAFETENSORS_HEADER  # within the byte cap: the tensor cap refuses it
    locked = _repo(tmp_path, "many", model__safetensors=shard)
    assert _vet(tmp_path, _repo(tmp_path, "warm-up")).ok  # imports done before memory is traced
    tracemalloc.start()
    try:
        report = _vet(tmp_path, locked)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not report.ok and "more than 65,536 tensors" in report.reason
    assert peak < 4 * len(shard), f"peak {peak:,} bytes for a {len(shard):,}-byte header"  # parsing costs ~15x


def test_headers_over_the_byte_caps_are_refused(tmp_path, monkeypatch):
    header = b"{}" + b" " * (vetting.MAX_SAFETENSORS_HEADER + 6)
    big = struct.pack("<Q", len(header)) + header
    report = _vet(tmp_path, _repo(tmp_path, "big", model__safetensors=big))
    assert not report.ok and "exceeds" in report.reason
    monkeypatch.setattr(vetting, "MAX_SAFETENSORS_HEADERS_TOTAL", 3000)  # all shards together
    shards = {f"model-0000{i}-of-00003__safetensors": safetensors_bytes({f"w{i}_{j}": [2] for j in range(20)})
              for i in range(1, 4)}
    report = _vet(tmp_path, _repo(tmp_path, "sharded", **shards))
    assert not report.ok and "headers together exceed" in report.reason


def test_tensor_shapes_are_bounded(tmp_path):
    report = _vet(tmp_path, _repo(tmp_path, "dims", model__safetensors=safetensors_bytes({"w": [1] * 9})))
    assert not report.ok and "no valid shape" in report.reason


def _gguf_with_empty_strings(n: int) -> bytes:
    key = b"tokenizer.ggml.tokens"
    head = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", len(key)) + key
    return head + struct.pack("<IIQ", ARRAY, STRING, n) + b"\0" * (8 * n)


@pytest.mark.slow
def test_a_gguf_header_within_every_size_limit_is_bounded_in_work():
    import io

    data = _gguf_with_empty_strings(4_000_001)  # 32 MB, 4 M strings: every size limit allows it
    with pytest.raises(GGUFError, match="work limit"):
        read_gguf_header(io.BytesIO(data))
    assert read_gguf_header(io.BytesIO(_gguf_with_empty_strings(200_000))).metadata  # a real vocabulary's size


def _relink(cache: Path, locked, filename: str, target: Path) -> Path:
    link = cache / f"models--{locked.repo_id.replace('/', '--')}" / "snapshots" / locked.sha / filename
    blob = link.resolve()
    blob.unlink()
    blob.symlink_to(target)  # the snapshot's link still points at the blob: two hops to ``target``
    return link


def test_a_two_hop_link_out_of_the_cache_is_refused(tmp_path):
    cache = tmp_path / "cache"
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps({"model_type": "llama"}))
    locked = _repo(cache, "hops")
    snapshot = _relink(cache, locked, "config.json", outside).parent
    with pytest.raises(VettingFailed, match="links outside the cache"):
        check_snapshot(locked, snapshot, cache)
    report = _vet(cache, locked)
    assert not report.ok and not report.transient and "links outside the cache" in report.reason


def test_fifos_devices_and_loops_are_refused_not_retried(tmp_path):
    cache = tmp_path / "cache"
    locked = _repo(cache, "fifo")
    link = cache / "models--org--fifo" / "snapshots" / locked.sha / "config.json"
    blob = link.resolve()
    blob.unlink()
    os.mkfifo(blob)  # opening it would block forever
    report = _vet(cache, locked)
    assert not report.ok and not report.transient and "not a regular file" in report.reason
    with pytest.raises(VettingFailed, match="not a regular file"):
        check_snapshot(locked, link.parent, cache)

    locked = _repo(cache, "zero")
    _relink(cache, locked, "config.json", Path("/dev/zero"))
    report = _vet(cache, locked)
    assert not report.ok and not report.transient and "outside the cache" in report.reason

    locked = _repo(cache, "loop")
    link = cache / "models--org--loop" / "snapshots" / locked.sha / "config.json"
    blob = link.resolve()
    blob.unlink()
    blob.symlink_to(blob)
    report = _vet(cache, locked)
    assert not report.ok and not report.transient and "looping link" in report.reason


@pytest.mark.parametrize("files", [
    {"config__json": json.dumps({"model_type": "llama", "text_config": {"auto_map": {"AutoModel": "x.Y"}}})},
    {"config__json": json.dumps({"model_type": "llama", "sub": [{"deep": [{"auto_map": "x.Y"}]}]})},
    {"generation_config__json": json.dumps({"auto_map": {"AutoConfig": "x.Y"}})},
    {"tokenizer__json": json.dumps({"model": {"vocab": {"a": 1}}, "extra": {"auto_map": ["x.Y", None]}})},
    {"preprocessor_config__json": json.dumps({"auto_map": {"AutoProcessor": "x.Y"}})},
])
def test_auto_map_is_refused_at_any_depth_in_any_json_file(tmp_path, files):
    report = _vet(tmp_path, _repo(tmp_path, "automap", **{k: v.encode() for k, v in files.items()}))
    assert not report.ok and "auto_map" in report.reason


def test_a_clean_repo_still_passes(tmp_path):
    report = _vet(tmp_path, _repo(tmp_path, "clean", generation_config__json=b'{"max_new_tokens": 8}',
                                  tokenizer__json=json.dumps({"model": {"vocab": {"auto": 1}}}).encode()))
    assert report.ok, report.reason
