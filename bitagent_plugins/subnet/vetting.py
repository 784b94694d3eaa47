"""Hugging Face submissions: parse ``org/name[@revision]``, lock it to a commit, vet it, download it.

The flow a validator runs for each miner::

    sub = parse_submission(text)                    # InvalidSubmission(reason): never reaches the Hub
    locked = resolve(sub, api=client)               # VettingFailed(reason, transient): one lookup, no retry loop
    report = vet(locked, cache_dir=d, api=client)   # VettingReport(ok, reason, ...), all read AT locked.sha
    if report.ok:
        path = download(locked, cache_dir=d, allow_patterns=report.allow_patterns, api=client)
    ...
    delete(locked, d)

Vetting rules (all at the locked commit, unlike upstream which checked the latest revision): license in
``ALLOWED_LICENSES`` (the card's, else the README front matter's); at most ``max_params`` parameters (summed
from the safetensors headers or the GGUF tensor infos, read without loading any tensor data); a chat template
(``tokenizer_config.json``, ``chat_template.jinja``/``.json``, or the GGUF's ``tokenizer.chat_template``); no
remote code (no ``auto_map`` in any JSON file a server would read: ``trust_remote_code`` is never needed nor
used); weights as ``*.safetensors`` (top level) or exactly one top-level ``*.gguf`` (pickle weights alone --
``*.bin``, ``*.pt``, ... -- refuse the repo); and the files we would download under ``max_total_bytes``. Only
the files a server loads are judged and downloaded (``ALLOW_PATTERNS`` at the top level): training state
(``training_args.bin``, ``optimizer.pt``), scripts, notebooks and images of an ordinary fine-tune are ignored.

Where the metadata comes from is a ``HubClient``: ``HfHubClient`` asks the Hub (``model_info``,
``HfFileSystem`` ranged reads of the weight headers, ``snapshot_download``); ``OfflineHubClient`` reads the
same facts from a pre-populated Hugging Face cache directory (``--hf-offline``) through huggingface_hub's
cache API, without any network.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import glob
import json
import os
import re
import stat
import struct
import unicodedata
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Protocol

import attrs

from . import jsonscan
from .gguf import GGUFError, GGUFLimits, read_gguf_header
from .keys import ModelKey

ALLOWED_LICENSES = frozenset({"apache-2.0", "cc-by-nc-4.0", "mit"})
MAX_PARAMS = 10_000_000_000
MAX_TOTAL_BYTES = 25_000_000_000
#: Upstream's score for a vetted-out model (a "don't retry" marker); ours is recorded in the state instead.
VETTING_FAILED_SCORE = 0.02

MAX_PART = 96  # Hugging Face's limit for an org or repo name
MAX_REPO_ID = 200
MAX_REVISION = 128
MAX_TEXT = 300  # anything longer is rejected before any other processing
_NAME_RE = re.compile(r"[A-Za-z0-9._-]+")
_SHA_RE = re.compile(r"[0-9a-fA-F]{40}")
_REF_PART_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")

#: Files download() may fetch: configs, tokenizer files, the card, and safetensors / GGUF weights.
ALLOW_PATTERNS: tuple[str, ...] = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "tokenizer.model",
    "chat_template.json",
    "chat_template.jinja",
    "preprocessor_config.json",
    "model.safetensors.index.json",
    "*.safetensors",
    "*.gguf",
    "README.md",
    # tokenizers the engines load besides tokenizer.json: Mistral's tekken, tiktoken-based ones, Mistral's v3/v7
    "tekken.json",
    "*.tiktoken",
    "tokenizer.model.v*",
)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib")
MAX_SMALL_FILE = 16 << 20  # configs, tokenizer config, README, chat templates
MAX_JSON_FILE = 64 << 20  # any JSON file we download (tokenizer.json can be ~35 MB), scanned for auto_map
#: the JSON files vetting parses (the others are only scanned, streaming, for ``auto_map``)
PARSED_JSON = ("config.json", "tokenizer_config.json", "chat_template.json")
#: a scan's bounds: memory stays one 1 MB chunk plus the longest string (4 MB); a real tokenizer.json with a
#: 256k vocabulary and its merges holds ~1.5M values
JSON_LIMITS = jsonscan.JsonLimits(max_values=2_000_000, max_depth=64, max_string_bytes=4 << 20)
#: what a config may hold to be parsed (json.loads costs ~100 bytes a value): ~25 MB at most
PARSED_JSON_LIMITS = jsonscan.JsonLimits(max_values=250_000, max_depth=64, max_string_bytes=4 << 20)
#: A safetensors header is parsed whole, so it is capped well below the format's own 100 MB: real shards hold
#: ~0.1-2 MB and at most a few thousand tensors (1.65 M tiny tensors in 100 MB took 7.5 s and 1.1 GB).
MAX_SAFETENSORS_HEADER = 8 << 20
MAX_SAFETENSORS_TENSORS = 65_536  # per file
MAX_SAFETENSORS_HEADERS_TOTAL = 64 << 20  # all shards together
MAX_TENSOR_DIMS = 8
MAX_FILES = 20_000


class InvalidSubmission(ValueError):
    """A submission string that is not ``org/name[@revision]``; ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class VettingFailed(RuntimeError):
    """The Hub (or the offline cache) could not answer for this repo/revision.

    ``transient`` is True when asking again later may succeed (network, offline, Hub 5xx, not cached yet);
    False when the answer is final (repository or revision not found, unusable metadata).
    """

    def __init__(self, reason: str, *, transient: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.transient = transient


@attrs.frozen
class Submission:
    repo_id: str
    revision: str | None = None

    def __str__(self) -> str:
        return self.repo_id if self.revision is None else f"{self.repo_id}@{self.revision}"


#: ``org/name@sha``: the one model-key type of the subnet plugin (``keys.ModelKey``)
LockedModel = ModelKey


@attrs.frozen
class VettingLimits:
    max_params: int = MAX_PARAMS
    max_total_bytes: int = MAX_TOTAL_BYTES
    licenses: frozenset[str] = ALLOWED_LICENSES


@attrs.frozen
class RepoFile:
    path: str
    size: int | None
    #: the content's sha256 (the Hub's LFS sha256; the blob name in a local cache), when known
    sha256: str | None = None


@attrs.frozen
class VettingReport:
    ok: bool
    reason: str
    license: str | None = None
    n_params: int | None = None
    files: tuple[str, ...] = ()  # what download() should fetch, exact repo paths
    weights_format: str | None = None  # "safetensors" | "gguf"
    total_bytes: int | None = None  # size of ``files``
    transient: bool = False  # the failure was the Hub/cache not answering: ask again later
    weight_hashes: tuple[tuple[str, str], ...] = ()  # (weight file, content sha256) at the locked sha

    @property
    def allow_patterns(self) -> list[str]:
        """``files`` as glob-escaped patterns, for ``download(..., allow_patterns=...)``."""
        return [glob.escape(f) for f in self.files]


class HubClient(Protocol):
    """Where repository facts come from. Every method reads at an exact commit sha (except ``resolve``)."""

    def resolve(self, repo_id: str, revision: str | None) -> str:
        """The commit sha of ``revision`` (default branch if None). Raises VettingFailed."""

    def list_files(self, locked: LockedModel) -> tuple[list[RepoFile], str | None]:
        """Every file of the repo at ``locked.sha`` with its size, and the model card's license (or None)."""

    def read_file(self, locked: LockedModel, filename: str, *, max_bytes: int) -> bytes:
        """The content of a (small) file at ``locked.sha``. Raises VettingFailed."""

    def open_file(self, locked: LockedModel, filename: str) -> contextlib.AbstractContextManager[BinaryIO]:
        """A readable binary file (for headers: only the first bytes are read). Raises VettingFailed."""

    def download(self, locked: LockedModel, *, allow_patterns: Sequence[str]) -> Path:
        """The cache snapshot folder of ``locked.sha`` holding the allow-listed files. Raises VettingFailed."""


# -- parsing ---------------------------------------------------------------------------------------------------


def parse_submission(text: str) -> Submission:
    """``org/name`` or ``org/name@revision`` (a 40-hex sha, or a branch/tag name); anything else raises
    ``InvalidSubmission`` with the reason. Pure string checks: nothing is looked up, run or written."""
    if not isinstance(text, str):
        raise InvalidSubmission(f"a submission is a string, not {type(text).__name__}")
    if len(text) > MAX_TEXT:
        raise InvalidSubmission(f"too long ({len(text)} characters; at most {MAX_TEXT})")
    if not text:
        raise InvalidSubmission("empty")
    if not text.isascii():
        normalized = unicodedata.normalize("NFKC", text)
        bad = next(c for c in text if not c.isascii())
        what = f"U+{ord(bad):04X} {unicodedata.name(bad, 'unnamed character')}"
        if normalized.isascii():
            raise InvalidSubmission(f"non-ASCII look-alike character {what} (NFKC would read {normalized!r})")
        raise InvalidSubmission(f"non-ASCII character {what}; names are ASCII letters, digits, '.', '_', '-'")
    if any(c.isspace() for c in text):
        raise InvalidSubmission("contains whitespace")
    if any(not c.isprintable() for c in text):
        raise InvalidSubmission("contains control characters")
    repo_id, sep, revision = text.partition("@")
    if sep and "@" in revision:
        raise InvalidSubmission("more than one '@'")
    if "/" not in repo_id:
        raise InvalidSubmission("missing '/': expected 'org/name'")
    if repo_id.count("/") > 1:
        raise InvalidSubmission("more than one '/': expected 'org/name'")
    if len(repo_id) > MAX_REPO_ID:
        raise InvalidSubmission(f"repo id too long ({len(repo_id)} characters; at most {MAX_REPO_ID})")
    for label, part in zip(("org", "name"), repo_id.split("/"), strict=True):
        _check_name_part(label, part)
    if not sep:
        return Submission(repo_id, None)
    return Submission(repo_id, _check_revision(revision))


def _check_name_part(label: str, part: str) -> None:
    if not part:
        raise InvalidSubmission(f"empty {label}")
    if len(part) > MAX_PART:
        raise InvalidSubmission(f"{label} too long ({len(part)} characters; at most {MAX_PART})")
    if not _NAME_RE.fullmatch(part):
        bad = sorted({c for c in part if not _NAME_RE.fullmatch(c)})
        raise InvalidSubmission(f"{label} has characters outside [A-Za-z0-9._-]: {''.join(bad)!r}")
    if ".." in part:
        raise InvalidSubmission(f"{label} contains '..'")
    if "--" in part:
        raise InvalidSubmission(f"{label} contains '--' (not allowed by the Hub)")
    if part[0] in ".-" or part[-1] in ".-":
        raise InvalidSubmission(f"{label} starts or ends with '.' or '-'")
    if part.lower().endswith(".git"):
        raise InvalidSubmission(f"{label} ends with '.git'")


def _check_revision(revision: str) -> str:
    if not revision:
        raise InvalidSubmission("empty revision after '@'")
    if len(revision) > MAX_REVISION:
        raise InvalidSubmission(f"revision too long ({len(revision)} characters; at most {MAX_REVISION})")
    if _SHA_RE.fullmatch(revision):
        return revision.lower()
    parts = revision.split("/")
    for part in parts:
        if not part:
            raise InvalidSubmission("revision has an empty path component")
        if part in (".", "..") or ".." in part:
            raise InvalidSubmission("revision contains '..' (path traversal)")
        if not _REF_PART_RE.fullmatch(part):
            raise InvalidSubmission(
                "revision must be a 40-hex commit sha or a branch/tag name "
                "of [A-Za-z0-9._-] (components may not start with '.' or '-')"
            )
        if part.endswith(".lock") or part.endswith("."):
            raise InvalidSubmission("revision component ends with '.lock' or '.'")
    return revision


# -- resolving -------------------------------------------------------------------------------------------------


def resolve(sub: Submission, *, api: HubClient | None = None) -> LockedModel:
    """Lock ``sub`` to a commit: one lookup (no retry loop); failures raise ``VettingFailed``."""
    client = api if api is not None else HfHubClient()
    sha = client.resolve(sub.repo_id, sub.revision)
    if not isinstance(sha, str) or not _SHA_RE.fullmatch(sha):
        raise VettingFailed(f"{sub}: the Hub answered an invalid commit sha {sha!r}")
    sha = sha.lower()
    if sub.revision is not None and _SHA_RE.fullmatch(sub.revision) and sub.revision != sha:
        raise VettingFailed(f"{sub}: asked for commit {sub.revision}, the Hub answered {sha}")
    return LockedModel(sub.repo_id, sha)


# -- vetting ---------------------------------------------------------------------------------------------------


def vet(
    locked: LockedModel, *, cache_dir: str | Path, limits: VettingLimits = VettingLimits(), api: HubClient | None = None
) -> VettingReport:
    """Check ``locked`` against the rules (module docstring). A bad repo gives ``ok=False`` with the first
    failed rule as ``reason``; a Hub/cache that cannot answer gives ``ok=False, transient=True``."""
    client = api if api is not None else HfHubClient(cache_dir)
    try:
        return _vet(locked, limits, client)
    except VettingFailed as failure:
        return VettingReport(False, failure.reason, transient=failure.transient)


#: the backends that serve a Hugging Face repo themselves (sglang, vLLM)
ENGINE_BACKENDS = ("sglang", "vllm")


def engine_refusal(report: VettingReport, backend: str) -> str | None:
    """Why ``backend`` will not serve a repo that passed vetting, or None. A GGUF-only repo is refused for sglang
    and vLLM: they need a separate HF tokenizer beside a ``.gguf`` (vLLM calls its GGUF support "highly
    experimental"), the repo has none, and the weights a fine-tune produces are safetensors anyway."""
    if report.weights_format == "gguf" and backend in ENGINE_BACKENDS:
        return (
            f"a GGUF-only repo: this validator serves models with {backend}, which needs the safetensors "
            "weights (and their tokenizer files); submit the model as safetensors"
        )
    return None


def _fail(reason: str, **fields: Any) -> VettingReport:
    return VettingReport(False, reason, **fields)


def _vet(locked: LockedModel, limits: VettingLimits, client: HubClient) -> VettingReport:
    files, card_license = client.list_files(locked)
    if len(files) > MAX_FILES:
        return _fail(f"{len(files)} files in the repo (at most {MAX_FILES})")
    by_path: dict[str, RepoFile] = {}
    for f in files:
        if not _safe_repo_path(f.path):
            return _fail(f"unsafe file path in the repo: {f.path!r}")
        by_path[f.path] = f
    lower = {p: p.lower() for p in by_path}
    # Only the files a model server would load are judged (and downloaded): the weights and the top-level
    # configs/tokenizer files of ALLOW_PATTERNS. What an ordinary fine-tune also holds (training_args.bin,
    # optimizer/scheduler states, scripts, notebooks, images) is never fetched, never loaded, and refuses
    # nothing. Remote code is what a config names in ``auto_map`` (checked below on every selected JSON).
    top = [p for p in by_path if "/" not in p]
    safetensors = sorted(p for p in top if lower[p].endswith(".safetensors"))
    ggufs = sorted(p for p in top if lower[p].endswith(".gguf"))
    if safetensors:
        weights_format, weights = "safetensors", safetensors
    elif len(ggufs) == 1:
        weights_format, weights = "gguf", ggufs
    elif ggufs:
        return _fail(f"{len(ggufs)} .gguf files at the top level; submit a repo holding exactly one")
    else:
        pickles = sorted(p for p in top if lower[p].endswith(PICKLE_SUFFIXES))
        if pickles:
            return _fail(
                f"weights only in pickle format ({', '.join(pickles[:5])}); weights must be .safetensors or .gguf"
            )
        return _fail("no weights: expected *.safetensors or one *.gguf at the top level")
    others = [
        p
        for p in top
        if p not in weights
        and not lower[p].endswith((".safetensors", ".gguf"))
        and any(fnmatch.fnmatchcase(p, pat) for pat in ALLOW_PATTERNS)
    ]
    selected = tuple(sorted(others + weights))
    sizes = [by_path[p].size for p in selected]
    if any(s is None for s in sizes):
        return _fail("file sizes unknown; cannot check the download size")
    total = sum(s for s in sizes if s is not None)
    if total > limits.max_total_bytes:
        return _fail(
            f"download size {total:,} bytes exceeds the {limits.max_total_bytes:,}-byte limit",
            weights_format=weights_format,
            total_bytes=total,
        )

    configs: dict[str, dict[str, Any]] = {}
    for name in sorted(p for p in selected if lower[p].endswith(".json")):
        try:
            value = _read_json(client, locked, by_path[name], parse=name in PARSED_JSON)
        except jsonscan.JsonTooBig as e:
            return _fail(f"{name} is not valid JSON or too big to parse: {e}")
        except (ValueError, RecursionError):
            return _fail(f"{name} is not valid JSON")
        if value is _AUTO_MAP:  # at any depth, in any JSON file we would hand to a model server
            return _fail(f"{name} has 'auto_map' (custom code; trust_remote_code is never used)")
        if name in PARSED_JSON:
            if not isinstance(value, dict):
                return _fail(f"{name} is not a JSON object")
            configs[name] = value

    license_ = _normalise_license(card_license)
    if license_ is None and "README.md" in by_path:
        license_ = _normalise_license(_front_matter_license(_read_small(client, locked, by_path["README.md"])))
    if license_ is None:
        return _fail("no license in the model card", weights_format=weights_format, total_bytes=total)
    if license_ not in limits.licenses:
        return _fail(
            f"license {license_!r} is not one of {', '.join(sorted(limits.licenses))}",
            license=license_,
            weights_format=weights_format,
            total_bytes=total,
        )

    gguf_template: str | None = None
    if weights_format == "gguf":
        try:
            with client.open_file(locked, weights[0]) as fh:
                header = read_gguf_header(fh, limits=GGUFLimits())
        except GGUFError as e:
            return _fail(f"{weights[0]}: {e}", license=license_)
        n_params, gguf_template = header.n_params, header.chat_template
    else:
        n_params = 0
        budget = [MAX_SAFETENSORS_HEADERS_TOTAL]
        for name in weights:
            try:
                n_params += _safetensors_params(client, locked, name, budget)
            except RecursionError:
                return _fail(f"{name}: safetensors header nested too deeply", license=license_)
            except ValueError as e:
                return _fail(f"{name}: {e}", license=license_)
    fields: dict[str, Any] = {
        "license": license_,
        "n_params": n_params,
        "weights_format": weights_format,
        "total_bytes": total,
    }
    if n_params <= 0:
        return _fail("the weights hold no parameters", **fields)
    if n_params > limits.max_params:
        return _fail(f"{n_params:,} parameters exceeds the limit of {limits.max_params:,}", **fields)

    templates = [gguf_template] if gguf_template else _chat_templates(client, locked, by_path, configs)
    if not templates:
        return _fail(
            "no chat template (tokenizer_config.json 'chat_template', chat_template.jinja, or the GGUF's "
            "tokenizer.chat_template)",
            **fields,
        )
    refused = _refused_template(templates, configs.get("tokenizer_config.json", {}))
    if refused:
        return _fail(refused, **fields)
    hashes = tuple((p, by_path[p].sha256) for p in weights if by_path[p].sha256)
    return VettingReport(True, "ok", files=selected, weight_hashes=hashes, **fields)  # type: ignore[arg-type]


def _safe_repo_path(path: str) -> bool:
    if not path or "\\" in path or "\0" in path or path.startswith("/"):
        return False
    return all(part not in ("", ".", "..") for part in PurePosixPath(path).parts) and "//" not in path


def _read_small(client: HubClient, locked: LockedModel, f: RepoFile, *, max_bytes: int = MAX_SMALL_FILE) -> bytes:
    if f.size is not None and f.size > max_bytes:
        raise VettingFailed(f"{f.path} is {f.size:,} bytes (at most {max_bytes:,} for a config file)")
    return client.read_file(locked, f.path, max_bytes=max_bytes)


_AUTO_MAP = object()


def _read_json(client: HubClient, locked: LockedModel, f: RepoFile, *, parse: bool) -> Any:
    """``_AUTO_MAP`` when the file has an ``auto_map`` key anywhere, else the parsed value (``None`` unless
    ``parse``). Bounded before any parse (:mod:`.jsonscan`): a file is scanned in chunks, and only the small
    configs we read are parsed, within ``PARSED_JSON_LIMITS``."""
    if f.size is not None and f.size > (MAX_SMALL_FILE if parse else MAX_JSON_FILE):
        raise VettingFailed(f"{f.path} is {f.size:,} bytes (at most {MAX_JSON_FILE:,} for a JSON file)")
    if parse:
        data = _read_small(client, locked, f)
        shape = jsonscan.scan(data, PARSED_JSON_LIMITS, keys=("auto_map",))
    else:
        with client.open_file(locked, f.path) as fh:
            shape = jsonscan.scan(_Capped(fh, MAX_JSON_FILE), JSON_LIMITS, keys=("auto_map",))
    if "auto_map" in shape.keys_found:
        return _AUTO_MAP
    return json.loads(data) if parse else None


class _Capped:
    """A binary file read at most ``cap`` bytes (a file larger than listed is refused, not read on)."""

    def __init__(self, fh: BinaryIO, cap: int) -> None:
        self.fh, self.left = fh, cap

    def read(self, n: int) -> bytes:
        chunk = self.fh.read(min(n, self.left + 1))
        self.left -= len(chunk)
        if self.left < 0:
            raise jsonscan.JsonTooBig(f"over {MAX_JSON_FILE:,} bytes")
        return chunk


def _normalise_license(value: Any) -> str | None:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, str) and value.strip():
        return value.strip().lower()
    if isinstance(value, list) and value:
        return ",".join(str(v).strip().lower() for v in value)  # several licenses: never in the allowed set
    return None


def _front_matter_license(readme: bytes) -> Any:
    """The ``license`` of the README's YAML front matter (parsed by huggingface_hub, safe_load), or None."""
    from huggingface_hub import ModelCard

    if not readme.lstrip().startswith(b"---"):
        return None
    try:
        card = ModelCard(readme.decode("utf-8", errors="replace"), ignore_metadata_errors=True)
    except Exception:  # malformed front matter: no license we can trust
        return None
    return getattr(card.data, "license", None)


def _safetensors_params(client: HubClient, locked: LockedModel, name: str, budget: list[int] | None = None) -> int:
    """Element count of every tensor in a safetensors file, from its header only (8-byte length + JSON).

    The header is read only when at most ``MAX_SAFETENSORS_HEADER`` bytes (and within ``budget[0]``, the bytes
    left for all shards) and parsed only when it cannot hold more than ``MAX_SAFETENSORS_TENSORS`` objects."""
    with client.open_file(locked, name) as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError("truncated safetensors header")
        (length,) = struct.unpack("<Q", raw)
        if length > MAX_SAFETENSORS_HEADER:
            raise ValueError(f"safetensors header of {length:,} bytes exceeds {MAX_SAFETENSORS_HEADER:,}")
        if budget is not None:
            if length > budget[0]:
                raise ValueError(f"the safetensors headers together exceed {MAX_SAFETENSORS_HEADERS_TOTAL:,} bytes")
            budget[0] -= length
        data = f.read(length)
    if len(data) != length:
        raise ValueError("truncated safetensors header")
    if data.count(b"{") > MAX_SAFETENSORS_TENSORS + 2:  # every tensor is an object: an upper bound, no parsing
        raise ValueError(f"safetensors header holds more than {MAX_SAFETENSORS_TENSORS:,} tensors")
    header = json.loads(data)
    if not isinstance(header, dict):
        raise ValueError("safetensors header is not a JSON object")
    total = 0
    for tensor, info in header.items():
        if tensor == "__metadata__":
            continue
        shape = info.get("shape") if isinstance(info, dict) else None
        if (
            not isinstance(shape, list)
            or len(shape) > MAX_TENSOR_DIMS
            or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 1 << 63 for d in shape)
        ):
            raise ValueError(f"tensor {tensor[:80]!r} has no valid shape")
        n = 1
        for d in shape:
            n *= d
        total += n
    return total


#: named templates of one repo rendered at most (each in its own bounded child)
MAX_TEMPLATES = 4


def _chat_templates(
    client: HubClient, locked: LockedModel, by_path: dict[str, RepoFile], configs: dict[str, dict[str, Any]]
) -> list[str]:
    """The repo's chat templates, from the first source that has one."""
    for source in (configs.get("tokenizer_config.json", {}), configs.get("chat_template.json", {})):
        template = source.get("chat_template")
        if isinstance(template, str) and template.strip():
            return [template]
        if isinstance(template, list):
            named = [
                t["template"]
                for t in template
                if isinstance(t, dict) and isinstance(t.get("template"), str) and t["template"].strip()
            ]
            if named:
                return named
    if "chat_template.jinja" in by_path:
        text = _read_small(client, locked, by_path["chat_template.jinja"]).decode("utf-8", "replace")
        return [text] if text.strip() else []
    return []


def _refused_template(templates: list[str], tokenizer_config: dict[str, Any]) -> str | None:
    """Why the chat templates are refused (rendered each in a bounded child: :mod:`.template_check`), or None."""
    from .template_check import check_template

    if len(templates) > MAX_TEMPLATES:
        return f"{len(templates)} chat templates (at most {MAX_TEMPLATES})"
    for template in templates:
        result = check_template(
            template,
            bos_token=_token_text(tokenizer_config.get("bos_token")),
            eos_token=_token_text(tokenizer_config.get("eos_token")),
        )
        if not result.ok:
            return result.reason
    return None


def _token_text(value: Any) -> str:
    """A special token as tokenizer_config.json gives it (a string or ``{"content": ...}``)."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else ""


# -- downloading and deleting ----------------------------------------------------------------------------------


def download(
    locked: LockedModel,
    *,
    cache_dir: str | Path,
    allow_patterns: Sequence[str] = ALLOW_PATTERNS,
    api: HubClient | None = None,
) -> Path:
    """Fetch the allow-listed files of ``locked.sha`` into ``cache_dir``; returns the snapshot folder.

    Pass ``report.allow_patterns`` to fetch exactly what vetting selected. Afterwards the snapshot folder
    must be ``cache_dir/models--org--name/snapshots/<sha>`` (symlinks resolved) and every entry in it a
    file or a link into that repo's own blob store; otherwise ``VettingFailed``.
    """
    client = api if api is not None else HfHubClient(cache_dir)
    path = Path(client.download(locked, allow_patterns=list(allow_patterns)))
    return check_snapshot(locked, path, cache_dir)


def check_snapshot(locked: LockedModel, path: str | Path, cache_dir: str | Path) -> Path:
    """Verify ``path`` is ``locked``'s snapshot folder inside ``cache_dir`` and nothing in it points outside."""
    from huggingface_hub.file_download import repo_folder_name

    cache = Path(cache_dir).resolve()
    storage = cache / repo_folder_name(repo_id=locked.repo_id, repo_type="model")
    expected = storage / "snapshots" / locked.sha
    resolved = Path(path).resolve()
    if resolved != expected.resolve() or not resolved.is_relative_to(cache):
        raise VettingFailed(f"snapshot {path} is not {expected} inside the cache {cache}")
    for root, dirs, names in os.walk(resolved, followlinks=False):
        for name in dirs + names:
            entry = Path(root) / name
            if entry.is_symlink():  # followed through every hop: it must end at a regular file of this repo
                regular_file_in(entry, storage, str(entry))
            elif not (entry.is_file() or entry.is_dir()):
                raise VettingFailed(f"{entry} is neither a file nor a folder")
    return resolved


def regular_file_in(path: Path, root: Path, what: str) -> Path:
    """``path`` resolved through every link hop, which must stay inside ``root`` and end at a regular file
    (not a FIFO, a device, a socket or a folder); otherwise ``VettingFailed`` (final: retrying cannot help)."""
    try:
        real = Path(os.path.realpath(path, strict=True))
    except (OSError, RuntimeError) as e:
        raise VettingFailed(f"{what}: a broken or looping link ({type(e).__name__}: {e})") from None
    if not real.is_relative_to(Path(root).resolve()):
        raise VettingFailed(f"{what} links outside the cache ({real})")
    if not stat.S_ISREG(os.stat(real).st_mode):
        raise VettingFailed(f"{what} is not a regular file")
    return real


def delete(locked: LockedModel, cache_dir: str | Path) -> int:
    """Remove ``locked``'s snapshot (and blobs only it uses) from ``cache_dir``; returns the bytes freed.

    Only this repo's revision is deleted, even if another cached repo holds the same commit sha.
    """
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(cache_dir)
    except CacheNotFound:
        return 0
    repos = frozenset(
        r
        for r in info.repos
        if r.repo_type == "model"
        and r.repo_id == locked.repo_id
        and any(rev.commit_hash == locked.sha for rev in r.revisions)
    )
    if not repos:
        return 0
    strategy = dataclasses.replace(info, repos=repos).delete_revisions(locked.sha)
    strategy.execute()
    return strategy.expected_freed_size


# -- clients ---------------------------------------------------------------------------------------------------


def hub_client(
    cache_dir: str | Path | None = None, *, offline: bool = False, token: str | None = None, endpoint: str | None = None
) -> HubClient:
    """``OfflineHubClient(cache_dir)`` when ``offline`` (or ``HF_HUB_OFFLINE=1``), else ``HfHubClient``."""
    from huggingface_hub import constants

    if offline or constants.is_offline_mode():
        if cache_dir is None:
            cache_dir = constants.HF_HUB_CACHE
        return OfflineHubClient(cache_dir)
    return HfHubClient(cache_dir, token=token, endpoint=endpoint)


@contextlib.contextmanager
def _hub_errors(what: str) -> Iterator[None]:
    """Translate huggingface_hub / network errors into one VettingFailed (never retried here)."""
    import httpx
    from huggingface_hub import errors

    try:
        yield
    except VettingFailed:
        raise
    except (errors.LocalEntryNotFoundError, errors.CacheNotFound) as e:
        raise VettingFailed(f"{what}: not in the local cache ({type(e).__name__})", transient=True) from None
    except (errors.EntryNotFoundError, errors.RemoteEntryNotFoundError):
        raise VettingFailed(f"{what}: file not found at this commit") from None
    except errors.GatedRepoError:
        raise VettingFailed(f"{what}: the repository is gated") from None
    except errors.RepositoryNotFoundError:
        raise VettingFailed(f"{what}: repository not found (or private)") from None
    except errors.RevisionNotFoundError:
        raise VettingFailed(f"{what}: revision not found") from None
    except errors.OfflineModeIsEnabled:
        raise VettingFailed(f"{what}: offline mode (HF_HUB_OFFLINE) is on", transient=True) from None
    except errors.HfHubHTTPError as e:
        status = getattr(getattr(e, "response", None), "status_code", None)
        transient = status is None or status == 429 or status >= 500
        raise VettingFailed(f"{what}: Hub HTTP error {status}", transient=transient) from None
    except httpx.HTTPError as e:
        raise VettingFailed(f"{what}: could not reach the Hub ({type(e).__name__})", transient=True) from None
    except OSError as e:
        raise VettingFailed(f"{what}: I/O error ({type(e).__name__}: {e})", transient=True) from None


class HfHubClient:
    """Facts from the Hugging Face Hub. Files read for vetting (configs, README) are cached in ``cache_dir``;
    weight headers are read with ranged requests (``HfFileSystem``), never the whole file."""

    def __init__(
        self,
        cache_dir: str | Path | None = None,
        *,
        token: str | None = None,
        endpoint: str | None = None,
        timeout: float = 30.0,
    ):
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.token = token
        self.endpoint = endpoint
        self.timeout = timeout

    def _api(self) -> Any:
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.endpoint, token=self.token)

    def resolve(self, repo_id: str, revision: str | None) -> str:
        with _hub_errors(f"{repo_id}@{revision or 'main'}"):
            return self._api().model_info(repo_id, revision=revision, timeout=self.timeout).sha

    def list_files(self, locked: LockedModel) -> tuple[list[RepoFile], str | None]:
        with _hub_errors(locked.key):
            info = self._api().model_info(
                locked.repo_id, revision=locked.sha, files_metadata=True, timeout=self.timeout
            )
        if info.sha and info.sha != locked.sha:
            raise VettingFailed(f"{locked.key}: the Hub answered commit {info.sha}")
        if info.siblings is None:
            raise VettingFailed(f"{locked.key}: the Hub did not list the files")
        files = [RepoFile(s.rfilename, s.size, s.lfs.sha256 if s.lfs is not None else None) for s in info.siblings]
        card = info.card_data
        license_ = card.get("license") if card is not None else None
        return files, license_

    def read_file(self, locked: LockedModel, filename: str, *, max_bytes: int) -> bytes:
        from huggingface_hub import hf_hub_download

        with _hub_errors(f"{locked.key}: {filename}"):
            path = hf_hub_download(
                locked.repo_id,
                filename,
                revision=locked.sha,
                cache_dir=self.cache_dir,
                token=self.token,
                endpoint=self.endpoint,
                etag_timeout=self.timeout,
            )
            return _read_capped(Path(path), filename, max_bytes)

    @contextlib.contextmanager
    def open_file(self, locked: LockedModel, filename: str) -> Iterator[BinaryIO]:
        from huggingface_hub import HfFileSystem

        with _hub_errors(f"{locked.key}: {filename}"):
            fs = HfFileSystem(endpoint=self.endpoint, token=self.token, skip_instance_cache=True)
            f = fs.open(f"{locked.repo_id}/{filename}", "rb", revision=locked.sha, block_size=4 << 20)
        try:
            with _hub_errors(f"{locked.key}: {filename}"):
                yield f
        finally:
            f.close()

    def download(self, locked: LockedModel, *, allow_patterns: Sequence[str]) -> Path:
        from huggingface_hub import snapshot_download

        with _hub_errors(f"{locked.key}: download"):
            return Path(
                snapshot_download(
                    locked.repo_id,
                    revision=locked.sha,
                    cache_dir=self.cache_dir,
                    allow_patterns=list(allow_patterns),
                    token=self.token,
                    endpoint=self.endpoint,
                    etag_timeout=self.timeout,
                )
            )


class OfflineHubClient:
    """The same facts from a pre-populated Hugging Face cache (``--hf-offline``), without any network.

    The file list is the tree listing huggingface_hub cached with the snapshot (``trees/<sha>.json``: every
    file of the repo, downloaded or not), else the files present in the snapshot. The card license is read
    from the README front matter (as the Hub derives it).
    """

    def __init__(self, cache_dir: str | Path):
        self.cache_dir = Path(cache_dir)

    def resolve(self, repo_id: str, revision: str | None) -> str:
        from huggingface_hub import snapshot_download

        with _hub_errors(f"{repo_id}@{revision or 'main'}"):
            folder = snapshot_download(
                repo_id, revision=revision, cache_dir=self.cache_dir, allow_patterns=[], local_files_only=True
            )
        return Path(folder).name

    def list_files(self, locked: LockedModel) -> tuple[list[RepoFile], str | None]:
        from huggingface_hub import get_cached_repo_tree, scan_cache_dir
        from huggingface_hub.errors import CachedRepoTreeNotFoundError

        try:
            tree = get_cached_repo_tree(locked.repo_id, revision=locked.sha, cache_dir=self.cache_dir)
            files = [RepoFile(f.path, f.size, lfs.sha256 if (lfs := getattr(f, "lfs", None)) else None) for f in tree]
            return files, None
        except CachedRepoTreeNotFoundError:
            pass
        with _hub_errors(locked.key):
            info = scan_cache_dir(self.cache_dir)
        for repo in info.repos:
            if repo.repo_type != "model" or repo.repo_id != locked.repo_id:
                continue
            for rev in repo.revisions:
                if rev.commit_hash == locked.sha:
                    return [
                        RepoFile(
                            f.file_path.relative_to(rev.snapshot_path).as_posix(),
                            f.size_on_disk,
                            _blob_sha256(f.blob_path),
                        )
                        for f in rev.files
                    ], None
        raise VettingFailed(f"{locked.key}: not in the local cache {self.cache_dir}", transient=True)

    def _path(self, locked: LockedModel, filename: str) -> Path:
        from huggingface_hub.file_download import repo_folder_name

        storage = self.cache_dir / repo_folder_name(repo_id=locked.repo_id, repo_type="model")
        entry = storage / "snapshots" / locked.sha / filename
        if not os.path.lexists(entry):  # missing: maybe later (transient); anything else present is final
            raise VettingFailed(f"{locked.key}: {filename} is not in the local cache", transient=True)
        return regular_file_in(entry, storage, f"{locked.key}: {filename}")

    def read_file(self, locked: LockedModel, filename: str, *, max_bytes: int) -> bytes:
        path = self._path(locked, filename)
        with _hub_errors(f"{locked.key}: {filename}"):
            return _read_capped(path, filename, max_bytes)

    @contextlib.contextmanager
    def open_file(self, locked: LockedModel, filename: str) -> Iterator[BinaryIO]:
        path = self._path(locked, filename)
        with _hub_errors(f"{locked.key}: {filename}"):
            f = open(path, "rb", buffering=1 << 20)
        with f:
            yield f

    def download(self, locked: LockedModel, *, allow_patterns: Sequence[str]) -> Path:
        from huggingface_hub import snapshot_download

        with _hub_errors(f"{locked.key}: download"):
            return Path(
                snapshot_download(
                    locked.repo_id,
                    revision=locked.sha,
                    cache_dir=self.cache_dir,
                    allow_patterns=list(allow_patterns),
                    local_files_only=True,
                )
            )


def _blob_sha256(blob: Path) -> str | None:
    """A cached file's content sha256: huggingface_hub names an LFS file's blob by it (its etag)."""
    name = blob.name.lower()
    return name if re.fullmatch(r"[0-9a-f]{64}", name) else None


def _read_capped(path: Path, filename: str, max_bytes: int) -> bytes:
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):  # a FIFO would block open() forever, a device never end
        raise VettingFailed(f"{filename} is not a regular file")
    if info.st_size > max_bytes:
        raise VettingFailed(f"{filename} is larger than {max_bytes:,} bytes")
    with open(path, "rb") as f:
        data = f.read(info.st_size + 1)  # read(max_bytes + 1) would allocate max_bytes up front
    if len(data) > max_bytes:
        raise VettingFailed(f"{filename} is larger than {max_bytes:,} bytes")
    return data
