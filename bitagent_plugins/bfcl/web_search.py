"""BFCL v4's web-search categories (``bfcl:web_search_base``, ``bfcl:web_search_no_snippet``): re-scored here,
played only from a recorded cache.

BFCL answers ``search_engine_query`` through SerpAPI and ``fetch_url_content`` by fetching live pages, so its
answers cannot be generated offline. What works here:

* **re-scoring** BFCL's own result files (``bitagent score -t bfcl:web_search_base --bfcl-result FILE``) with
  the agentic checker (:mod:`bitagent_plugins.bfcl.agentic`), as ``bfcl evaluate`` scores them;
* **playing** the questions in the ``bfcl-web-search`` environment, whose two tools answer from a recorded
  cache (:class:`RecordedWebSearch`): a JSON-lines file named by ``$BITAGENT_BFCL_WEB_CACHE`` whose lines are
  ``{"kind": "search", "keywords": ..., "region": ..., "results": [{"title", "link", "snippet"}, ...]}`` and
  ``{"kind": "fetch", "url": ..., "mode": ..., "content": ...}``. A query or page the cache lacks is an error
  result (``{"error": ...}``), as a failed request is in BFCL. Without a cache the environment cannot be built
  and each sample fails with ``environment_error``, saying so. docs/bfcl.md says what recording one takes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from bitagent_core import EnvironmentSpec, Message, Task, Tool
from bitagent_core.toolkit import read_jsonl
from bitagent_plugins.bfcl.agentic import BfclStepReading

CATEGORIES = ("web_search_base", "web_search_no_snippet")
ENVIRONMENT = "bfcl-web-search"
CACHE_ENV = "BITAGENT_BFCL_WEB_CACHE"
MAX_STEPS_PER_TURN = 20
_LANGUAGE_HINT = " Note that the provided function is in Python 3 syntax."
MAX_CACHE_BYTES = 512 * 1024 * 1024


def _key(*parts: Any) -> str:
    return json.dumps([str(p) for p in parts])


class RecordedWebSearch:
    """BFCL's ``WebSearchAPI`` answered from a recorded cache (the model's tools are the public methods)."""

    def __init__(self, cache: dict[str, Any], show_snippet: bool) -> None:
        self._cache = cache
        self._show_snippet = show_snippet

    def search_engine_query(self, keywords: str, max_results: int | None = 10, region: str | None = "wt-wt") -> Any:
        found = self._cache.get(_key("search", keywords, region))
        if found is None:
            return {"error": "Failed to retrieve the search results from server. Please try again later."}
        results = []
        for result in found[:max_results]:
            shown = {"title": result["title"], "href": result["link"]}
            if self._show_snippet:
                shown["body"] = result["snippet"]
            results.append(shown)
        return results

    def fetch_url_content(self, url: str, mode: str = "raw") -> Any:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"Invalid URL: {url}")
        if mode not in ("raw", "markdown", "truncate"):
            return {"error": f"An error occurred while fetching {url}: Unsupported mode: {mode}"}
        content = self._cache.get(_key("fetch", url, mode))
        if content is None:
            return {"error": f"An error occurred while fetching {url}: not in the recorded cache"}
        return {"content": content}


def read_cache(path: Path) -> dict[str, Any]:
    """A recorded cache file (see the module docstring) as lookups."""
    if path.stat().st_size > MAX_CACHE_BYTES:
        raise ValueError(f"{path}: larger than {MAX_CACHE_BYTES} bytes")
    cache: dict[str, Any] = {}
    for lineno, row in read_jsonl(path):
        if not isinstance(row, dict) or row.get("kind") not in ("search", "fetch"):
            raise ValueError(f"{path}:{lineno}: a cache line is a search or a fetch record")
        if row["kind"] == "search":
            cache[_key("search", row["keywords"], row.get("region", "wt-wt"))] = list(row["results"])
        else:
            cache[_key("fetch", row["url"], row.get("mode", "raw"))] = str(row["content"])
    return cache


class WebSearchEnvironment(BfclStepReading):
    """Config: ``show_snippet`` (False in ``web_search_no_snippet``). The cache: ``$BITAGENT_BFCL_WEB_CACHE``."""

    def __init__(self, config: dict[str, Any]) -> None:
        path = os.environ.get(CACHE_ENV)
        if not path:
            raise RuntimeError(
                f"BFCL's web search needs live SerpAPI and pages; offline it plays only from a "
                f"recorded cache (${CACHE_ENV}); its result files can be re-scored with "
                "`bitagent score --bfcl-result`"
            )
        self.api = RecordedWebSearch(read_cache(Path(path).expanduser()), bool(config.get("show_snippet", True)))

    def objects(self) -> list[object]:
        return [self.api]


def load_category(category: str, data_dir: Path, version: str) -> tuple[Task, ...]:
    """The web-search questions as BFCL's prompting handlers see them (ids ``web_search_base_0``, ...)."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown BFCL web-search category {category!r}")
    from bitagent_plugins.bfcl.memory import _prompts, _rows
    from bitagent_plugins.bfcl.multi_turn import system_prompt

    docs = _rows(data_dir / "multi_turn_func_doc" / "web_search.json")
    for doc in docs:
        doc["description"] = str(doc.get("description", "")) + _LANGUAGE_HINT
    tools = tuple(Tool.from_json(doc) for doc in docs)
    prompt = system_prompt(docs) + "\n"  # BFCL joins it to the system message with a blank line
    answers = {
        row.get("id"): row.get("ground_truth")
        for row in _rows(data_dir / "possible_answer" / "BFCL_v4_web_search.json")
    }
    agentic_format = str(_prompts().ADDITIONAL_SYSTEM_PROMPT_FOR_AGENTIC_RESPONSE_FORMAT)
    tasks = []
    for entry in _rows(data_dir / "BFCL_v4_web_search.json"):
        truth = answers.get(entry["id"])
        if not isinstance(truth, list):
            raise ValueError(f"{entry['id']}: no ground truth")
        first = (
            Message("system", agentic_format),
            *(
                Message.from_json({"role": str(m["role"]), "content": str(m.get("content") or "")})
                for m in entry["question"][0]
            ),
        )
        tasks.append(
            Task(
                id=str(entry["id"]).replace("web_search", category, 1),
                messages=first,
                tools=tools,
                source="bfcl",
                category=category,
                version=version,
                environment=EnvironmentSpec(ENVIRONMENT, {"show_snippet": category != "web_search_no_snippet"}),
                max_steps_per_turn=MAX_STEPS_PER_TURN,
                metadata={"agentic": "web_search", "answers": [str(a) for a in truth]},
                system_prompt=prompt,
            )
        )
    return tuple(tasks)
