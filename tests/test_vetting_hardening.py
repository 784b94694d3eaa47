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
    base = {
        "README.md": readme("mit"),
        "config.json": CONFIG_OK,
        "tokenizer_config.json": TOKENIZER_OK,
        "model.safetensors": safetensors_bytes({"w": [4, 4]}),
    }
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
    shards = {
        f"model-0000{i}-of-00003__safetensors": safetensors_bytes({f"w{i}_{j}": [2] for j in range(20)})
        for i in range(1, 4)
    }
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


@pytest.mark.parametrize(
    "files",
    [
        {"config__json": json.dumps({"model_type": "llama", "text_config": {"auto_map": {"AutoModel": "x.Y"}}})},
        {"config__json": json.dumps({"model_type": "llama", "sub": [{"deep": [{"auto_map": "x.Y"}]}]})},
        {"generation_config__json": json.dumps({"auto_map": {"AutoConfig": "x.Y"}})},
        {"tokenizer__json": json.dumps({"model": {"vocab": {"a": 1}}, "extra": {"auto_map": ["x.Y", None]}})},
        {"preprocessor_config__json": json.dumps({"auto_map": {"AutoProcessor": "x.Y"}})},
    ],
)
def test_auto_map_is_refused_at_any_depth_in_any_json_file(tmp_path, files):
    report = _vet(tmp_path, _repo(tmp_path, "automap", **{k: v.encode() for k, v in files.items()}))
    assert not report.ok and "auto_map" in report.reason


def test_a_clean_repo_still_passes(tmp_path):
    report = _vet(
        tmp_path,
        _repo(
            tmp_path,
            "clean",
            generation_config__json=b'{"max_new_tokens": 8}',
            tokenizer__json=json.dumps({"model": {"vocab": {"auto": 1}}}).encode(),
        ),
    )
    assert report.ok, report.reason


# --- chat templates rendered in a bounded child (issue 23) ------------------------------------------------

# a pure time bomb: nothing rendered, so memory stays flat and only the deadline stops it (with output, a fast
# machine runs out of memory first, which is refused too)
LOOP = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
BOMB = "{{ ('a' * 2000000000)|length }}"
RECURSION = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"
HUGE = "{% for i in range(100000) %}{{ 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' }}{% endfor %}"
BROKEN = "{% for m in messages %}{{ m.content }"
ESCAPE = "{{ messages.__class__.__mro__[1].__subclasses__() }}"


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,template,reason",
    [
        ("nested range loops", LOOP, "did not render within"),
        ("memory bomb", BOMB, "ran out of memory"),
        ("recursion", RECURSION, "render"),
        ("absurd prompt", HUGE, "-character prompt"),
        ("syntax error", BROKEN, "does not compile"),
        ("sandbox escape", ESCAPE, "failed to render: SecurityError"),
    ],
)
def test_hostile_chat_templates_are_refused_in_a_bounded_child(tmp_path, monkeypatch, name, template, reason):
    from bitagent_plugins.subnet import template_check

    monkeypatch.setattr(template_check, "TIMEOUT_S", 4.0)  # the loop runs for hours: killed at the deadline
    tokenizer = json.dumps({"chat_template": template, "eos_token": "</s>"}).encode()
    report = _vet(tmp_path, _repo(tmp_path, "template", tokenizer_config__json=tokenizer))
    assert not report.ok and reason in report.reason, report.reason
    check = template_check.check_template(template)
    assert not check.ok and check.peak_rss_bytes < template_check.MEMORY_BYTES
    print(
        f"template={name!r} refused_in_s={check.elapsed_s:.2f} peak_rss_mb={check.peak_rss_bytes / 2**20:.0f} "
        f"reason={check.reason!r}"
    )


def test_real_templates_render_and_may_decline_a_role(tmp_path):
    from bitagent_plugins.subnet.template_check import check_template

    chatml = (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}{% if m.tool_calls %}"
        "{{ m.tool_calls|tojson }}{% endif %}<|im_end|>\n{% endfor %}{% if tools %}{{ tools|tojson(indent=2) }}"
        "{% endif %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    no_system = (
        "{{ bos_token }}{% if messages[0].role == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}"
        "{% for m in messages %}{{ m.content }}{% endfor %}"
    )
    for template in (chatml, no_system):
        result = check_template(template, bos_token="<s>")
        assert result.ok and 0 < result.prompt_chars < 10_000, result
    declines_all = "{{ raise_exception('no') }}"
    result = check_template(declines_all)
    assert not result.ok and "refused every conversation" in result.reason
    assert _vet(
        tmp_path,
        _repo(
            tmp_path,
            "chatml",
            tokenizer_config__json=json.dumps(
                {"chat_template": [{"name": "default", "template": chatml}], "bos_token": {"content": "<s>"}}
            ).encode(),
        ),
    ).ok


# --- JSON bounded before it is parsed (issue 23) ----------------------------------------------------------

_MEASURE = r"""
import json, resource, sys, time
from pathlib import Path
from bitagent_plugins.subnet.vetting import OfflineHubClient, vet, LockedModel
cache, repo, sha, warm = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
client = OfflineHubClient(cache)
vet(LockedModel(warm.split("@")[0], warm.split("@")[1]), cache_dir=cache, api=client)  # imports done
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
report = vet(LockedModel(repo, sha), cache_dir=cache, api=client)
elapsed = time.perf_counter() - started
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"ok": report.ok, "reason": report.reason, "s": elapsed, "before_kb": before, "after_kb": after}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["{}", "[[]]", "[1]"])
def test_a_60_mb_json_of_tiny_values_is_refused_with_low_memory(tmp_path, shape):
    import subprocess
    import sys

    unit = {"{}": b"{},", "[[]]": b"[[]],", "[1]": b"1,"}[shape]
    body = b"[" + unit * ((60 << 20) // len(unit)) + unit[:-1] + b"]"
    locked = _repo(tmp_path, "bigjson", tokenizer__json=body)
    del body
    warm = _repo(tmp_path, "warm")
    env = dict(os.environ) | {"HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(tmp_path), locked.repo_id, locked.sha, f"{warm.repo_id}@{warm.sha}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    grew_mb = (result["after_kb"] - result["before_kb"]) / 1024
    print(
        f"json_shape={shape} file_mb=60 refused_in_s={result['s']:.2f} peak_rss_growth_mb={grew_mb:.1f} "
        f"peak_rss_mb={result['after_kb'] / 1024:.0f}"
    )
    assert not result["ok"] and "tokenizer.json" in result["reason"] and "values" in result["reason"], result
    assert grew_mb < 100, result  # json.loads of the same file: 1.7-2.2 GB


def test_json_scan_counts_keys_depth_and_strings_across_chunks():
    import io

    from bitagent_plugins.subnet import jsonscan

    text = json.dumps({"a": ["x" * 3000 + '\\"' + "]" * 10, {"auto_map": 1}], "b\u005f": "}{,"}).encode()
    shape = jsonscan.scan(io.BytesIO(text), keys=("auto_map", "b_"))
    assert shape.keys_found == {"auto_map", "b_"} and shape.depth == 3
    escaped = b'{"auto\\u005fmap": 1}'
    assert jsonscan.scan(escaped, keys=("auto_map",)).keys_found == {"auto_map"}
    assert not jsonscan.scan(b'{"x": "auto_map"}', keys=("auto_map",)).keys_found  # a value, not a key
    for bad in (b"[", b"[}", b'"open', b"[" * 100 + b"]" * 100, b'["' + b"a" * (5 << 20) + b'"]'):
        with pytest.raises(jsonscan.JsonTooBig):
            jsonscan.scan(bad)
    monkey = jsonscan.CHUNK
    try:
        jsonscan.CHUNK = 7  # every token split across chunks somewhere
        assert jsonscan.scan(io.BytesIO(text), keys=("auto_map",)).keys_found == {"auto_map"}
    finally:
        jsonscan.CHUNK = monkey
