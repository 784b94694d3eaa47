"""Submission parsing, GGUF headers and vetting against a Hugging Face cache the tests build themselves.

The Hub is unreachable here, so the repos live in a real huggingface_hub cache layout
(``models--org--name/{refs,blobs,snapshots,trees}``) read by the real huggingface_hub code through
``OfflineHubClient``; ``HfHubClient`` is exercised against offline mode and a local fake Hub endpoint.
"""

from __future__ import annotations

import hashlib
import http.server
import inspect
import json
import math
import os
import shutil
import struct
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitagent_plugins.subnet import gguf, vetting
from bitagent_plugins.subnet.gguf import GGUFError, GGUFLimits, build_gguf_header, read_gguf_header
from bitagent_plugins.subnet.vetting import (
    InvalidSubmission,
    LockedModel,
    OfflineHubClient,
    Submission,
    VettingFailed,
    VettingLimits,
    check_snapshot,
    delete,
    download,
    parse_submission,
    resolve,
    vet,
)

TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}"
README = "---\nlicense: {license}\n---\n# A model\n"


@pytest.fixture(autouse=True)
def hub_offline(monkeypatch):
    """No test here may reach the network: huggingface_hub's offline switch is read at call time."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


# -- building a cache ------------------------------------------------------------------------------------------


def make_repo(
    cache: Path,
    repo_id: str,
    files: dict[str, bytes | Path],
    *,
    sha: str | None = None,
    ref: str | None = "main",
    tree: bool = True,
    listed_only: dict[str, int] | None = None,
) -> LockedModel:
    """A repo at one commit in the HF cache layout. ``Path`` contents are hard-linked into the blob store (copied
    across file systems: a symbolic link out of the cache is refused); ``listed_only`` files appear in the
    cached tree listing but were not downloaded."""
    storage = cache / ("models--" + repo_id.replace("/", "--"))
    sha = sha or hashlib.sha1(f"{repo_id}{sorted(files)}".encode()).hexdigest()
    blobs = storage / "blobs"
    snapshot = storage / "snapshots" / sha
    blobs.mkdir(parents=True, exist_ok=True)
    entries: dict[str, dict] = {}
    for path, content in files.items():
        if isinstance(content, Path):
            blob_id = hashlib.sha256(str(content).encode()).hexdigest()
            size = content.stat().st_size
            blob = blobs / blob_id
            if not blob.exists():
                try:
                    os.link(content, blob)
                except OSError:
                    shutil.copyfile(content, blob)
        else:
            blob_id = hashlib.sha256(content).hexdigest()
            size = len(content)
            blob = blobs / blob_id
            blob.write_bytes(content)
        target = snapshot / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(os.path.relpath(blob, target.parent))
        entries[path] = {"size": size, "blob_id": blob_id}
    for path, size in (listed_only or {}).items():
        entries[path] = {"size": size, "blob_id": hashlib.sha1(path.encode()).hexdigest()}
    if ref:
        (storage / "refs").mkdir(exist_ok=True)
        (storage / "refs" / ref).write_text(sha)
    if tree:
        (storage / "trees").mkdir(exist_ok=True)
        (storage / "trees" / f"{sha}.json").write_text(json.dumps({"format_version": 1, "files": entries}))
    return LockedModel(repo_id, sha)


def safetensors_bytes(tensors: dict[str, list[int]], *, with_data: bool = True) -> bytes:
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in tensors.items():
        n = math.prod(shape) * 2
        header[name] = {"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + (bytes(offset) if with_data else b"")


def small_gguf(*, n_elements: tuple[int, int] = (64, 32), template: str | None = TEMPLATE) -> bytes:
    meta = {"general.architecture": "llama", "general.name": "tiny"}
    if template is not None:
        meta["tokenizer.chat_template"] = template
    return build_gguf_header(meta, [("token_embd.weight", list(n_elements), 0), ("output_norm.weight", [32], 0)])


def readme(license_: str) -> bytes:
    return README.format(license=license_).encode()


TOKENIZER_OK = json.dumps({"chat_template": TEMPLATE, "eos_token": "</s>"}).encode()
CONFIG_OK = json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}).encode()


@pytest.fixture
def sandbox(tmp_path):
    """A cache dir and a canary dir beside it: nothing may be written outside the cache."""
    cache, canary = tmp_path / "hf-cache", tmp_path / "canary"
    cache.mkdir()
    canary.mkdir()
    (canary / "keep.txt").write_text("untouched")
    before = sorted(p.name for p in tmp_path.iterdir())
    yield cache, canary
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert [p.name for p in canary.iterdir()] == ["keep.txt"]
    assert (canary / "keep.txt").read_text() == "untouched"


# -- parsing ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Qwen/Qwen2.5-Coder-0.5B-Instruct", Submission("Qwen/Qwen2.5-Coder-0.5B-Instruct", None)),
        ("a.b_c-d/x9", Submission("a.b_c-d/x9", None)),
        ("org/name@main", Submission("org/name", "main")),
        ("org/name@v1.0", Submission("org/name", "v1.0")),
        ("org/name@refs/pr/1", Submission("org/name", "refs/pr/1")),
        ("org/name@" + "AB" * 20, Submission("org/name", "ab" * 20)),
    ],
)
def test_parse_accepts(text, expected):
    assert parse_submission(text) == expected


HOSTILE = [
    ("a/b;rm -rf ~", "whitespace"),
    ("a/b;rm", "outside [A-Za-z0-9._-]"),
    ("$(touch {canary}/pwned)/y", "whitespace"),
    ("$(id)/y", "outside [A-Za-z0-9._-]"),
    ("`id`/y", "outside [A-Za-z0-9._-]"),
    ("org/name|sh", "outside [A-Za-z0-9._-]"),
    ("../../etc/passwd", "more than one '/'"),
    ("org/..", "'..'"),
    ("../x", "'..'"),
    ("org/a..b", "'..'"),
    ("x" * 10240, "too long"),
    ("o" * 10_000 + "/m", "too long"),
    ("a" * 97 + "/b", "org too long"),
    ("b/" + "a" * 97, "name too long"),
    ("\u043erg/model", "non-ASCII character U+043E CYRILLIC SMALL LETTER O"),
    ("org\uff0fmodel", "look-alike"),
    ("\uff4frg/model", "look-alike"),
    ("org/mode\u0301l", "non-ASCII"),
    ("orgmodel", "missing '/'"),
    ("", "empty"),
    ("/model", "empty org"),
    ("org/", "empty name"),
    ("a/b/c", "more than one '/'"),
    (".org/x", "starts or ends"),
    ("-org/x", "starts or ends"),
    ("org/x-", "starts or ends"),
    ("org--a/x", "'--'"),
    ("org/x.git", ".git"),
    ("org/x\n", "whitespace"),
    ("org/x\x00", "control characters"),
    ("org/x\x1b[2J", "control characters"),
    ("org\\x", "missing '/'"),
    ("org/x@../../etc", "'..'"),
    ("org/x@main;ls", "branch/tag name"),
    ("org/x@-rf", "branch/tag name"),
    ("org/x@a@b", "more than one '@'"),
    ("org/x@", "empty revision"),
    ("org/x@refs//pr", "empty path component"),
    ("org/x@/etc/passwd", "empty path component"),
    ("org/x@main.lock", ".lock"),
    ("org/x@" + "a" * 129, "revision too long"),
]


@pytest.mark.parametrize("text, reason", HOSTILE)
def test_parse_rejects_hostile_strings(text, reason, sandbox):
    _, canary = sandbox
    with pytest.raises(InvalidSubmission) as err:
        parse_submission(text.format(canary=canary))
    assert reason in err.value.reason
    assert not (canary / "pwned").exists()


def test_parse_rejects_non_strings():
    with pytest.raises(InvalidSubmission, match="string"):
        parse_submission(b"org/model")  # type: ignore[arg-type]


@settings(max_examples=400, deadline=None)
@given(
    st.text(alphabet=st.characters(codec="utf-8"), max_size=60)
    | st.from_regex(r"[A-Za-z0-9._/@-]{1,40}", fullmatch=True)
)
def test_parse_only_raises_invalid_submission_and_accepts_only_safe_names(text):
    try:
        sub = parse_submission(text)
    except InvalidSubmission as e:
        assert e.reason
        return
    org, name = sub.repo_id.split("/")
    for part in (org, name):
        assert part and part.isascii() and ".." not in part and part[0] not in ".-"
    assert sub.revision is None or ".." not in sub.revision
    assert str(sub).lower() == text.lower()


# -- GGUF headers ----------------------------------------------------------------------------------------------


def test_gguf_round_trip():
    data = build_gguf_header(
        {
            "general.architecture": "llama",
            "general.alignment": 64,
            "x.flag": True,
            "x.big": 1 << 40,
            "x.f": 0.5,
            "x.list": ["a", "b"],
            "x.ints": list(range(2000)),
            "tokenizer.chat_template": TEMPLATE,
        },
        [("a", [3, 4], 0), ("b", [10], 1)],
    )
    import io

    header = read_gguf_header(io.BytesIO(data))
    assert header.version == 3
    assert header.n_params == 22
    assert header.chat_template == TEMPLATE
    assert header.alignment == 64
    assert header.metadata["x.list"] == ["a", "b"]
    assert header.metadata["x.big"] == 1 << 40
    assert header.metadata["x.ints"] == gguf.GGUFArray(gguf.UINT32, 2000)  # long arrays are skipped
    assert [t.shape for t in header.tensors] == [(3, 4), (10,)]


def test_gguf_reads_the_embedded_model(embedded_model):
    header = gguf.read_gguf_file(embedded_model)
    assert header.metadata["general.architecture"] == "qwen2"
    assert header.n_params == 630_167_424
    assert "tools" in header.chat_template
    assert len(header.tensors) == 291


def _hostile(body: bytes, version: int = 3, n_tensors: int = 0, n_kv: int = 1) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv) + body


def _kv(key: str, vtype: int, payload: bytes) -> bytes:
    k = key.encode()
    return struct.pack("<Q", len(k)) + k + struct.pack("<I", vtype) + payload


@pytest.mark.parametrize(
    "data, message",
    [
        (b"GGML" + bytes(20), "not a GGUF file"),
        (b"GG", "truncated"),
        (_hostile(b"", version=1), "unsupported GGUF version 1"),
        (b"GGUF" + struct.pack(">IQQ", 3, 0, 0), "big-endian"),
        (_hostile(b"", n_tensors=1 << 60), "tensors exceeds"),
        (_hostile(b"", n_kv=1 << 62), "metadata entries exceeds"),
        (_hostile(struct.pack("<Q", 1 << 50)), "string exceeds"),
        (_hostile(_kv("k", gguf.ARRAY, struct.pack("<IQ", gguf.UINT8, 1 << 40))), "array exceeds"),
        (_hostile(_kv("k", gguf.ARRAY, struct.pack("<IQ", gguf.UINT64, 1 << 23))), "truncated"),
        (
            _hostile(
                _kv(
                    "k",
                    gguf.ARRAY,
                    struct.pack("<IQ", gguf.ARRAY, 1)
                    + struct.pack("<IQ", gguf.ARRAY, 1)
                    + struct.pack("<IQ", gguf.ARRAY, 1)
                    + struct.pack("<IQ", gguf.UINT8, 0),
                )
            ),
            "nested deeper",
        ),
        (_hostile(_kv("k", 99, b"")), "unknown metadata value type"),
        (_hostile(_kv("k", gguf.UINT8, b"\1") + _kv("k", gguf.UINT8, b"\1"), n_kv=2), "duplicate metadata key"),
        (_hostile(_kv("k", gguf.UINT32, b"\1")), "truncated"),
        (_hostile(struct.pack("<Q", 1) + b"t" + struct.pack("<I", 5), n_tensors=1, n_kv=0), "dimensions"),
        (
            _hostile(struct.pack("<Q", 1) + b"t" + struct.pack("<IQQ", 2, 1 << 40, 1 << 40), n_tensors=1, n_kv=0),
            "impossible shape",
        ),
        (_hostile(struct.pack("<Q", 1) + b"t" + struct.pack("<IQIQ", 1, 8, 0, 3), n_tensors=1, n_kv=0), "not aligned"),
        (_hostile(_kv("general.alignment", gguf.UINT32, struct.pack("<I", 3))), "power of two"),
    ],
)
def test_gguf_rejects_hostile_headers(data, message):
    import io

    with pytest.raises(GGUFError, match=message):
        read_gguf_header(io.BytesIO(data))


def test_gguf_header_byte_budget():
    import io

    data = build_gguf_header({"a": "x" * 5000})
    with pytest.raises(GGUFError, match="limit"):
        read_gguf_header(io.BytesIO(data), limits=GGUFLimits(max_header_bytes=4096))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_gguf_fuzz_mutated_headers_only_raise_gguf_error(data):
    import io

    base = bytearray(
        build_gguf_header(
            {"general.architecture": "llama", "tokenizer.chat_template": TEMPLATE, "t.list": ["a", "bb"], "t.n": 7},
            [("w", [4, 4], 0)],
        )
    )
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(base) - 1))
        base[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(base)))
    try:
        header = read_gguf_header(io.BytesIO(bytes(base[:cut])), limits=GGUFLimits(max_header_bytes=1 << 20))
    except GGUFError:
        return
    assert header.n_params >= 0


# -- vetting against a local cache -----------------------------------------------------------------------------


def test_good_gguf_repo_resolve_vet_download_delete(sandbox, embedded_model):
    cache, _ = sandbox
    client = OfflineHubClient(cache)
    make_repo(
        cache,
        "good-org/qwen-gguf",
        {
            "README.md": readme("apache-2.0"),
            "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf": embedded_model,
            ".gitattributes": b"*.gguf filter=lfs\n",
        },
    )
    locked = resolve(parse_submission("good-org/qwen-gguf"), api=client)
    assert locked == resolve(parse_submission(f"good-org/qwen-gguf@{locked.sha}"), api=client)
    assert locked.key == f"good-org/qwen-gguf@{locked.sha}"

    report = vet(locked, cache_dir=cache, api=client)
    assert report.ok, report.reason
    assert (report.license, report.n_params, report.weights_format) == ("apache-2.0", 630_167_424, "gguf")
    assert report.files == ("README.md", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
    assert report.total_bytes == embedded_model.stat().st_size + len(readme("apache-2.0"))

    path = download(locked, cache_dir=cache, allow_patterns=report.allow_patterns, api=client)
    assert path == (cache / "models--good-org--qwen-gguf" / "snapshots" / locked.sha).resolve()
    assert (path / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf").stat().st_size == embedded_model.stat().st_size

    assert delete(locked, cache) == embedded_model.stat().st_size + len(readme("apache-2.0")) + 18
    assert not path.exists()
    assert embedded_model.is_file() and embedded_model.stat().st_size == 491_400_064  # only the link went
    assert delete(locked, cache) == 0
    with pytest.raises(VettingFailed) as err:
        resolve(parse_submission("good-org/qwen-gguf"), api=client)
    assert err.value.transient


def test_good_safetensors_repo_sharded(sandbox):
    cache, _ = sandbox
    client = OfflineHubClient(cache)
    locked = make_repo(
        cache,
        "org/st",
        {
            "README.md": readme("mit"),
            "config.json": CONFIG_OK,
            "tokenizer_config.json": TOKENIZER_OK,
            "model-00001-of-00002.safetensors": safetensors_bytes({"a": [10, 20], "b": [5]}),
            "model-00002-of-00002.safetensors": safetensors_bytes({"c": [7, 3]}),
            "model.safetensors.index.json": b"{}",
            "notes/extra.txt": b"not downloaded",
        },
    )
    report = vet(locked, cache_dir=cache, api=client)
    assert report.ok, report.reason
    assert (report.n_params, report.weights_format, report.license) == (200 + 5 + 21, "safetensors", "mit")
    assert "notes/extra.txt" not in report.files and "config.json" in report.files


def test_vetting_reads_the_locked_commit_not_the_latest(sandbox):
    cache, _ = sandbox
    client = OfflineHubClient(cache)
    old = make_repo(cache, "org/moving", {"README.md": readme("mit"), "m.gguf": small_gguf()}, sha="1" * 40)
    new = make_repo(cache, "org/moving", {"README.md": readme("llama3.1"), "m.gguf": small_gguf()}, sha="2" * 40)
    assert resolve(parse_submission("org/moving"), api=client) == new  # refs/main -> the newest commit
    assert resolve(parse_submission("org/moving@" + "1" * 40), api=client) == old
    assert vet(old, cache_dir=cache, api=client).ok
    bad = vet(new, cache_dir=cache, api=client)
    assert not bad.ok and "license 'llama3.1'" in bad.reason


BAD_REPOS = {
    "wrong license": ({"README.md": readme("llama3.1"), "m.gguf": small_gguf()}, "license 'llama3.1' is not one of"),
    "no license": ({"README.md": b"# no front matter\n", "m.gguf": small_gguf()}, "no license"),
    "too large gguf": (
        {"README.md": readme("mit"), "m.gguf": small_gguf(n_elements=(110_000, 100_000))},
        "11,000,000,032 parameters exceeds the limit of 10,000,000,000",
    ),
    "too large safetensors": (
        {
            "README.md": readme("mit"),
            "tokenizer_config.json": TOKENIZER_OK,
            "model.safetensors": safetensors_bytes({"w": [110_000, 100_000]}, with_data=False),
        },
        "parameters exceeds",
    ),
    "custom code": (
        {
            "README.md": readme("mit"),
            "tokenizer_config.json": TOKENIZER_OK,
            "modeling_x.py": b"import os\n",
            "config.json": json.dumps({"auto_map": {"AutoModel": "modeling_x.X"}}).encode(),
            "model.safetensors": safetensors_bytes({"w": [4]}),
        },
        "config.json has 'auto_map' (custom code",
    ),
    "auto_map only": (
        {
            "README.md": readme("mit"),
            "tokenizer_config.json": TOKENIZER_OK,
            "config.json": json.dumps({"auto_map": {"AutoModel": "org/other--m.X"}}).encode(),
            "model.safetensors": safetensors_bytes({"w": [4]}),
        },
        "config.json has 'auto_map'",
    ),
    "tokenizer auto_map": (
        {
            "README.md": readme("mit"),
            "model.safetensors": safetensors_bytes({"w": [4]}),
            "tokenizer_config.json": json.dumps(
                {"chat_template": TEMPLATE, "auto_map": {"AutoTokenizer": ["x.T", None]}}
            ).encode(),
        },
        "tokenizer_config.json has 'auto_map'",
    ),
    "pickle weights only": (
        {"README.md": readme("mit"), "tokenizer_config.json": TOKENIZER_OK, "pytorch_model.bin": b"\x80\x04pickle"},
        "weights only in pickle format (pytorch_model.bin)",
    ),
    "no chat template": (
        {
            "README.md": readme("mit"),
            "tokenizer_config.json": b'{"eos_token": "</s>"}',
            "model.safetensors": safetensors_bytes({"w": [4]}),
        },
        "no chat template",
    ),
    "gguf without template": ({"README.md": readme("mit"), "m.gguf": small_gguf(template=None)}, "no chat template"),
    "two ggufs": ({"README.md": readme("mit"), "a.gguf": small_gguf(), "b.gguf": small_gguf()}, "exactly one"),
    "no weights": ({"README.md": readme("mit"), "tokenizer_config.json": TOKENIZER_OK}, "no weights"),
    "weights only in a subfolder": ({"README.md": readme("mit"), "sub/m.gguf": small_gguf()}, "no weights"),
    "broken config": (
        {"README.md": readme("mit"), "config.json": b"{nope", "m.gguf": small_gguf()},
        "config.json is not valid JSON",
    ),
    "hostile gguf": ({"README.md": readme("mit"), "m.gguf": _hostile(b"", n_kv=1 << 40)}, "m.gguf: "),
    "hostile safetensors": (
        {"README.md": readme("mit"), "model.safetensors": struct.pack("<Q", 1 << 40)},
        "model.safetensors: safetensors header",
    ),
    "nested safetensors": (
        {"README.md": readme("mit"), "model.safetensors": struct.pack("<Q", 200_000) + b"[" * 200_000},
        "model.safetensors:",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_REPOS))
def test_bad_repos_are_vetted_out_with_a_reason(name, sandbox):
    cache, _ = sandbox
    files, reason = BAD_REPOS[name]
    locked = make_repo(cache, "bad/" + name.replace(" ", "-"), files)
    report = vet(locked, cache_dir=cache, api=OfflineHubClient(cache))
    assert not report.ok and not report.transient
    assert reason in report.reason, report.reason


def test_chat_template_from_jinja_file_and_license_list(sandbox):
    cache, _ = sandbox
    locked = make_repo(
        cache,
        "org/jinja",
        {
            "README.md": b"---\nlicense:\n- Apache-2.0\n---\n",
            "chat_template.jinja": TEMPLATE.encode(),
            "model.safetensors": safetensors_bytes({"w": [4, 4]}),
        },
    )
    report = vet(locked, cache_dir=cache, api=OfflineHubClient(cache))
    assert report.ok and report.license == "apache-2.0" and "chat_template.jinja" in report.files


def test_files_a_server_does_not_load_are_neither_judged_nor_selected(sandbox):
    cache, _ = sandbox
    locked = make_repo(
        cache,
        "org/hidden",
        {"README.md": readme("mit"), "m.gguf": small_gguf()},
        listed_only={"tools/run.py": 100, "original/consolidated.pth": 100},
    )
    report = vet(locked, cache_dir=cache, api=OfflineHubClient(cache))
    assert report.ok, report.reason
    assert report.files == ("README.md", "m.gguf")


def test_listing_falls_back_to_the_snapshot_without_a_tree_cache(sandbox):
    cache, _ = sandbox
    locked = make_repo(cache, "org/notree", {"README.md": readme("cc-by-nc-4.0"), "m.gguf": small_gguf()}, tree=False)
    report = vet(locked, cache_dir=cache, api=OfflineHubClient(cache))
    assert report.ok and report.license == "cc-by-nc-4.0" and report.n_params == 64 * 32 + 32


def test_size_cap_is_configurable(sandbox):
    cache, _ = sandbox
    locked = make_repo(cache, "org/sized", {"README.md": readme("mit"), "m.gguf": small_gguf()})
    client = OfflineHubClient(cache)
    assert vet(locked, cache_dir=cache, api=client).ok
    report = vet(locked, cache_dir=cache, api=client, limits=VettingLimits(max_total_bytes=100))
    assert not report.ok and "exceeds the 100-byte limit" in report.reason
    report = vet(locked, cache_dir=cache, api=client, limits=VettingLimits(max_params=100))
    assert not report.ok and "parameters exceeds the limit of 100" in report.reason


def test_lookup_failures_raise_vetting_failed_once(sandbox):
    cache, _ = sandbox
    client = OfflineHubClient(cache)
    make_repo(cache, "org/exists", {"README.md": readme("mit"), "m.gguf": small_gguf()})
    for text in ("org/missing", "org/exists@" + "f" * 40, "org/exists@v9"):
        with pytest.raises(VettingFailed) as err:
            resolve(parse_submission(text), api=client)
        assert err.value.transient and "local cache" in err.value.reason
    report = vet(LockedModel("org/missing", "f" * 40), cache_dir=cache, api=client)
    assert not report.ok and report.transient


def test_file_listed_but_not_cached_is_transient(sandbox):
    cache, _ = sandbox
    locked = make_repo(cache, "org/partial", {"m.gguf": small_gguf()}, listed_only={"README.md": 40})
    report = vet(locked, cache_dir=cache, api=OfflineHubClient(cache))
    assert not report.ok and report.transient and "README.md is not in the local cache" in report.reason


def test_check_snapshot_refuses_escapes(tmp_path):
    cache = tmp_path / "cache"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("x")
    locked = make_repo(cache, "org/esc", {"README.md": readme("mit")})
    snapshot = cache / "models--org--esc" / "snapshots" / locked.sha
    assert check_snapshot(locked, snapshot, cache) == snapshot.resolve()
    with pytest.raises(VettingFailed, match="not .* inside the cache"):
        check_snapshot(locked, outside, cache)
    with pytest.raises(VettingFailed, match="not .* inside the cache"):
        check_snapshot(LockedModel("org/esc", "e" * 40), snapshot, cache)
    (snapshot / "evil").symlink_to(outside / "secret")
    with pytest.raises(VettingFailed, match="links outside the cache"):
        check_snapshot(locked, snapshot, cache)


def test_hostile_submissions_never_touch_the_cache_or_canary(sandbox):
    cache, canary = sandbox
    client = OfflineHubClient(cache)
    for text, _ in HOSTILE:
        with pytest.raises(InvalidSubmission):
            sub = parse_submission(text.format(canary=canary))
            resolve(sub, api=client)  # never reached
    assert list(cache.iterdir()) == []
    assert not (canary / "pwned").exists()


def test_trust_remote_code_is_never_passed():
    source = inspect.getsource(vetting)
    assert "trust_remote_code=True" not in source and "trust_remote_code =" not in source


# -- the Hub client (no network: offline mode and a fake local endpoint) ---------------------------------------


def test_hub_client_in_offline_mode_fails_at_once():
    with pytest.raises(VettingFailed) as err:
        resolve(parse_submission("Qwen/Qwen2.5-0.5B-Instruct"), api=vetting.HfHubClient())
    assert err.value.transient and "offline" in err.value.reason


class _FakeHub(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, dict, bytes]] = {}
    seen: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        type(self).seen.append(self.path)
        status, headers, body = self.routes.get(self.path.split("?")[0], (404, {"X-Error-Code": "RepoNotFound"}, b"{}"))
        self.send_response(status)
        for k, v in {"Content-Type": "application/json", **headers}.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_hub(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    _FakeHub.routes, _FakeHub.seen = {}, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield _FakeHub, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_hub_client_against_a_fake_hub(fake_hub, tmp_path):
    hub, endpoint = fake_hub
    sha = "a" * 40
    info = {
        "id": "org/model",
        "modelId": "org/model",
        "sha": sha,
        "private": False,
        "cardData": {"license": "mit"},
        "siblings": [{"rfilename": "README.md", "size": 10}, {"rfilename": "model.gguf", "size": 1234}],
    }
    hub.routes["/api/models/org/model"] = (200, {}, json.dumps(info).encode())
    hub.routes[f"/api/models/org/model/revision/{sha}"] = (200, {}, json.dumps(info).encode())
    hub.routes["/api/models/org/model/revision/nope"] = (404, {"X-Error-Code": "RevisionNotFound"}, b"{}")
    hub.routes["/api/models/org/down"] = (503, {}, b"{}")
    client = vetting.HfHubClient(tmp_path / "cache", endpoint=endpoint, timeout=5)

    locked = resolve(parse_submission("org/model"), api=client)
    assert locked == LockedModel("org/model", sha)
    files, license_ = client.list_files(locked)
    assert files == [vetting.RepoFile("README.md", 10), vetting.RepoFile("model.gguf", 1234)]
    assert license_ == "mit"

    for text, reason, transient in [
        ("org/missing", "repository not found", False),
        ("org/model@nope", "revision not found", False),
        ("org/down", "Hub HTTP error 503", True),
    ]:
        hub.seen.clear()
        with pytest.raises(VettingFailed) as err:
            resolve(parse_submission(text), api=client)
        assert reason in err.value.reason and err.value.transient is transient
        assert len(hub.seen) <= 5  # no retry loop
    hub.routes[f"/api/models/org/model/revision/{'b' * 40}"] = (200, {}, json.dumps(info).encode())
    with pytest.raises(VettingFailed, match="asked for commit b{40}, the Hub answered a{40}"):
        resolve(Submission("org/model", "b" * 40), api=client)
    with pytest.raises(VettingFailed, match="the Hub answered commit a{40}"):
        client.list_files(LockedModel("org/model", "b" * 40))
