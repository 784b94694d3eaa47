"""BFCL v4's agentic categories: the agentic checker against BFCL's own verdicts, the memory backends, the
prerequisite DAG with its snapshots (integrity, interruption, resume), web search from a recorded cache."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bitagent_core import rundir
from bitagent_core._plugins import PluginRegistry, get_registry
from bitagent_core._runner import Evaluation, RunConfig, load_tasks
from bitagent_core.hookspecs import hookimpl
from bitagent_core.model import Completion, Message, Step, Task, Trajectory
from bitagent_core.options import BackendOptions
from bitagent_plugins.bfcl import agentic, memory, web_search
from bitagent_plugins.bfcl.scorer import BfclScorer
from bitagent_plugins.bfcl.tasks import locate_data

REFERENCE = Path(__file__).parent / "data" / "bfcl_agentic_reference.jsonl"


def data_dir() -> Path:
    location = locate_data()
    assert location.path is not None, "these tests read the bfcl-eval wheel's data"
    return location.path


def question(answers: list[str]) -> Task:
    return Task(
        id="memory_kv_0-customer-0",
        messages=(Message("user", "?"),),
        tools=(),
        metadata={"agentic": "memory", "answers": answers},
    )


# --- the checker ---------------------------------------------------------------------------------------


def test_bfcl_strict_agrees_with_bfcls_agentic_checker_on_every_reference_result():
    """3,315 results (BFCL's memory and web-search questions answered right and wrong in 13 ways), each with
    the verdict BFCL's own glue and checker gave (benchmarks/agentic_reference.py)."""
    rows = [json.loads(line) for line in REFERENCE.read_text().splitlines()]
    assert len(rows) == 3315
    strict, lenient = BfclScorer(strict=True), BfclScorer()
    kinds = set()
    for row in rows:
        task, trajectory = question(row["answers"]), Trajectory.from_json(row["result"])
        verdict = strict.score_trajectory(task, trajectory)
        assert (verdict.passed, verdict.error_type) == (row["valid"], row["error_type"]), row
        kinds.add((row["valid"], row["error_type"]))
        mine = lenient.score_trajectory(task, trajectory)
        if row["variant"] == "answer_then_call":  # BFCL goes back to an earlier answer; bfcl does not
            assert row["valid"] and not mine.passed and mine.error_type == "agentic:no_last_message"
        else:
            assert (mine.passed, mine.error_type) == (row["valid"], row["error_type"]), row
    assert kinds == {
        (True, None),
        (False, "agentic:answer_not_found"),
        (False, "agentic:no_last_message"),
        (False, "agentic:inference_error"),
    }


@pytest.mark.parametrize(
    ("response", "answers", "found"),
    [
        ("{'answer': 'Michael'}", ["Michael"], True),
        ("michael.", ["Michael"], True),
        ("Michaels", ["Michael"], False),  # whole words only
        ("thirty-five", ["thirty five"], False),  # the hyphen is dropped: "thirtyfive"; whitespace is kept
        ("It's 35", ["35", "thirty five"], True),
        ("April 1, 2024", ["April 1 2024"], True),
        ("(Seattle)", ["Seattle"], True),
        (["Seattle, WA"], ["seattle"], True),  # a list response: its first element
    ],
)
def test_normalisation_and_whole_word_match(response, answers, found):
    assert agentic.answer_found(response, answers) is found


def test_the_final_answer_is_the_last_step_that_is_not_a_call():
    task = question(["Seattle"])
    strict = BfclScorer(strict=True)

    def verdict(*steps: str) -> tuple[bool, str | None]:
        score = strict.score_trajectory(task, Trajectory(((*(Step(text=s) for s in steps),),)))
        return score.passed, score.error_type

    assert verdict("[core_memory_retrieve(key='city')]", "Seattle") == (True, None)
    assert verdict("Seattle", "[core_memory_retrieve(key='city')]") == (True, None)  # BFCL goes back
    assert verdict("Seattle", "Portland") == (False, "agentic:answer_not_found")
    assert verdict("[core_memory_retrieve(key='city')]") == (False, "agentic:no_last_message")
    assert verdict(
        "[]",
    ) == (False, "agentic:answer_not_found")  # an empty call list is not a call
    prereq = Task(id="p", messages=(), tools=(), metadata={"agentic": "memory_prereq"})
    assert strict.score_trajectory(prereq, Trajectory()).passed


# --- the backends --------------------------------------------------------------------------------------


def test_the_key_value_backend_keeps_bfcls_limits_and_searches_keys_by_bm25():
    kv = memory.MemoryKV()
    assert kv.core_memory_add("first_name", "Michael") == {"status": "Key-value pair added."}
    assert kv.core_memory_add("first_name", "Mike") == {"error": "Key name must be unique."}
    assert kv.core_memory_add("First Name", "x")["error"].startswith("Key must be in snake_case")
    assert kv.core_memory_add("bio", "x" * 301)["error"].startswith("Entry is too long")
    for i in range(6):
        kv.core_memory_add(f"k_{i}", "v")
    assert kv.core_memory_add("one_more", "v") == {"error": "Core memory is full. Please clear some entries."}
    assert kv.archival_memory_add("home_city", "Seattle") == {"status": "Key added."}
    kv.archival_memory_add("favourite_latte", "strawberry matcha")
    ranked = kv.archival_memory_key_search("city")["ranked_results"]
    assert ranked[0][1] == "home_city" and ranked[0][0] > ranked[1][0]
    assert kv.core_memory_retrieve("first_name") == {"value": "Michael"}
    assert kv.core_memory_remove("nope") == {"error": "Key not found."}
    snapshot = kv._export()
    again = memory.MemoryKV()
    again._load(json.loads(json.dumps(snapshot)))
    assert again._export() == snapshot and '"first_name": "Michael"' in again._context()
    assert memory.MemoryKV()._context() == "There is no content in the core memory at this point."


def test_the_recursive_summary_backend():
    rec = memory.MemoryRecSum()
    assert rec.memory_retrieve() == {"error": "Memory is empty."}
    assert rec.memory_append("Name: Michael. ") == {"status": "Memory appended."}
    rec.memory_append("Lives in Seattle.")
    assert rec.memory_replace("Seattle", "Portland") == {"status": "Memory updated."}
    assert rec.memory_replace("Boston", "x") == {"error": "Text 'Boston' not found in memory."}
    assert rec.memory_append("x" * 10_000)["error"].startswith("Entry will be too long after appending")
    assert rec.memory_retrieve() == {"memory_content": "Name: Michael. Lives in Portland."}
    assert memory.MemoryRecSum()._context() == "There is no content in the memory at this point."


def test_the_model_reaches_only_the_memory_tools():
    from bitagent_core.toolkit.executor import public_methods

    names = set(public_methods([memory.MemoryKV()]))
    docs = [
        json.loads(line)
        for line in (data_dir() / "multi_turn_func_doc" / "memory_kv.json").read_text().splitlines()
        if line.strip()
    ]
    assert names == {doc["name"] for doc in docs}  # exactly BFCL's tools: no _export, _load, _context
    assert set(public_methods([memory.MemoryRecSum()])) == {
        json.loads(line)["name"]
        for line in (data_dir() / "multi_turn_func_doc" / "memory_rec_sum.json").read_text().splitlines()
        if line.strip()
    }


@pytest.mark.slow
def test_the_vector_backend_embeds_with_the_packaged_minilm_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    vec = memory.MemoryVector()
    assert vec.archival_memory_add("My home city is Seattle, in Washington state.") == {"id": 0}
    assert vec.archival_memory_add("I like strawberry matcha lattes.") == {"id": 1}
    assert vec.archival_memory_add("My dog is called Rex.") == {"id": 2}
    found = vec.archival_memory_retrieve("Which town do I live in?", top_k=2)["result"]
    assert [hit["id"] for hit in found][0] == 0 and len(found) == 2
    assert found[0]["similarity_score"] > found[1]["similarity_score"]
    assert vec.archival_memory_remove(7) == {"error": "ID 7 not present in store."}
    snapshot = json.loads(json.dumps(vec._export()))
    again = memory.MemoryVector()
    again._load(snapshot)
    assert again.archival_memory_retrieve("Which town do I live in?", top_k=1)["result"][0]["id"] == 0
    assert again.archival_memory_add("next") == {"id": 3}  # ids go on from the snapshot's next_id
    assert memory.MemoryVector()._context() == "{}"  # BFCL always dumps the store, even empty


# --- snapshots ------------------------------------------------------------------------------------------


def test_a_snapshot_is_read_only_whole(tmp_path):
    memory.write_snapshot(tmp_path, "memory_kv", "memory_kv_prereq_0-customer-0", {"core_memory": {"a": "b"}})
    assert memory.read_snapshot(tmp_path, "memory_kv", "memory_kv_prereq_0-customer-0") == {"core_memory": {"a": "b"}}
    data, digest = memory.snapshot_paths(tmp_path, "memory_kv", "memory_kv_prereq_0-customer-0")
    data.write_text(data.read_text().replace('"b"', '"c"'))  # changed after its digest was written
    with pytest.raises(memory.SnapshotMissing, match="does not match"):
        memory.read_snapshot(tmp_path, "memory_kv", "memory_kv_prereq_0-customer-0")
    digest.unlink()  # a write interrupted before its digest
    with pytest.raises(memory.SnapshotMissing, match="--resume plays it again"):
        memory.read_snapshot(tmp_path, "memory_kv", "memory_kv_prereq_0-customer-0")
    with pytest.raises(ValueError):
        memory.snapshot_paths(tmp_path, "memory_kv", "../escape")


# --- tasks -----------------------------------------------------------------------------------------------


def test_memory_tasks_put_each_scenarios_prerequisites_first():
    data = memory.load_category("memory_kv", data_dir(), "test")
    assert len(data.questions) == 155 and len(data.prerequisites) == 37
    first = data.prerequisites[0]
    assert first.id == "memory_kv_prereq_22-student-0" and first.metadata["depends_on"] == []
    assert first.environment is not None and first.environment.config["load"] is None
    customer = [t for t in data.prerequisites if "-customer-" in t.id]
    assert customer[3].metadata["depends_on"] == [t.id for t in customer[:3]]
    assert customer[3].environment.config["load"] == customer[2].id  # type: ignore[union-attr]
    q = data.questions[0]
    assert q.id == "memory_kv_0-customer-0" and q.metadata["answers"] == ["Michael"]
    assert q.metadata["depends_on"] == [t.id for t in customer]
    assert q.messages[0].role == "system" and q.messages[0].content.startswith("For your final answer")
    tasks = load_tasks(get_registry(), "bfcl:memory_rec_sum", 0, 12)
    ids = [t.id for t in tasks]
    assert len(ids) <= 12 and any("prereq" not in i for i in ids)
    for i, task in enumerate(tasks):  # every dependency is in the run, before its dependant
        assert set(task.metadata["depends_on"]) <= set(ids[:i])


# --- the DAG through the runner --------------------------------------------------------------------------


class ScriptedMemoryOptions(BackendOptions):
    stop_at: str = ""  # a task id: its second request never answers (the run is then cancelled)
    fail_at: str = ""  # a task id: its first request raises


class ScriptedMemoryAgent:
    """Plays rec_sum: in a prerequisite, appends each user message's first words to the memory, then says
    "Noted."; in a question, answers with the memory shown in its system prompt."""

    default_concurrency = 3
    requests: list[tuple[str, str]] = []
    stalled = asyncio.Event()

    def __init__(self, model, options):
        self.options = options

    async def start(self, run_dir):
        pass

    async def complete(self, request):
        session = request.session or ""
        ScriptedMemoryAgent.requests.append((session, request.messages[0].content))
        if session == self.options.fail_at:
            raise ConnectionError("server went away")
        if session == self.options.stop_at and len(request.messages) > 3:
            ScriptedMemoryAgent.stalled.set()
            await asyncio.sleep(3600)
        last = request.messages[-1]
        if "prereq" in session:
            if last.role == "user":
                words = " ".join(last.content.split()[:6]).replace("'", " ")
                return Completion(text=f"[memory_append(text='{words}. ')]")
            return Completion(text="Noted.")
        shown = request.messages[0].content.split("from previous interactions:\n", 1)[-1]
        return Completion(text="{'answer': " + repr(shown.strip()[:3000]) + "}")

    async def close(self):
        pass

    def describe(self):
        return {"model": "scripted-memory"}


class MemoryTestPlugin:
    @hookimpl
    def register_backends(self, register):
        register("scripted-memory", ScriptedMemoryAgent, options=ScriptedMemoryOptions)


def registry() -> PluginRegistry:
    """The installed plugins (bfcl among them) and the scripted backend."""
    fresh = PluginRegistry()
    fresh.load_entry_points()
    fresh.register_module(MemoryTestPlugin(), "memory-test")
    return fresh


def evaluate(tmp_path: Path, resume: Path | None = None, **options: str):
    config = RunConfig(
        tasks="bfcl:memory_rec_sum",
        backend="scripted-memory",
        scorer="bfcl-strict",
        limit=7,
        output_dir=str(tmp_path),
        backend_options=options,
        timeout_s=30.0,
        seed=3,
    )
    return Evaluation(config, registry(), resume_dir=resume)


def samples(run_dir: Path) -> dict:
    return {k: v.to_json() for k, v in rundir.read_samples(run_dir).items()}


def test_prerequisites_run_first_and_questions_read_their_last_snapshot(tmp_path):
    ScriptedMemoryAgent.requests.clear()
    evaluation = evaluate(tmp_path)
    results = asyncio.run(evaluation.run())
    assert results.status == "complete"
    run_dir = Path(results.run_dir)
    tasks = evaluation.tasks
    prereqs = [t for t in tasks if "prereq" in t.id]
    questions = [t for t in tasks if "prereq" not in t.id]
    assert prereqs and questions
    done = samples(run_dir)
    assert all(done[t.id]["status"] == "ok" for t in tasks)
    # each question's request came after every prerequisite of its scenario had finished, and its system
    # prompt shows what they wrote
    order = [session for session, _ in ScriptedMemoryAgent.requests]
    for q in questions:
        first = order.index(q.id)
        for dep in q.metadata["depends_on"]:
            assert max(i for i, s in enumerate(order) if s == dep) < first
        shown = next(prompt for session, prompt in ScriptedMemoryAgent.requests if session == q.id)
        last = memory.read_snapshot(run_dir, "memory_rec_sum", q.metadata["depends_on"][-1])["memory"]
        assert last and last in shown
        assert done[q.id]["trajectory"]["turns"][0][0]["text"].startswith("{'answer'")
    # every prerequisite's snapshot builds on the one before
    chain = [memory.read_snapshot(run_dir, "memory_rec_sum", p.id)["memory"] for p in prereqs]
    assert all(chain[i].startswith(chain[i - 1]) for i in range(1, len(chain)))


def test_a_failed_prerequisite_fails_its_dependants_and_resume_plays_them(tmp_path):
    tasks = load_tasks(get_registry(), "bfcl:memory_rec_sum", 3, 7)
    second = next(t.id for t in tasks if t.id.endswith("-1") and "prereq" in t.id)
    results = asyncio.run(evaluate(tmp_path, fail_at=second).run())
    run_dir = Path(results.run_dir)
    done = samples(run_dir)
    assert done[second]["status"] == "failed"
    later = [t.id for t in tasks if second in t.metadata["depends_on"]]
    assert later and all(done[t]["error_type"] == "environment_error" for t in later)
    assert "no complete memory snapshot" in done[later[0]]["detail"]
    resumed = asyncio.run(evaluate(tmp_path, resume=run_dir).run())
    assert resumed.status == "complete" and all(s["status"] == "ok" for s in samples(run_dir).values())


def test_a_run_killed_mid_prerequisite_leaves_no_snapshot_and_resume_rebuilds_it(tmp_path):
    tasks = [t.id for t in load_tasks(get_registry(), "bfcl:memory_rec_sum", 3, 7)]
    victim = next(t for t in tasks if t.endswith("-2") and "prereq" in t)
    ScriptedMemoryAgent.stalled = asyncio.Event()
    evaluation = evaluate(tmp_path, stop_at=victim)

    async def kill_when_stalled():
        run = asyncio.ensure_future(evaluation.run())
        await ScriptedMemoryAgent.stalled.wait()  # the victim has appended to its memory and is mid-conversation
        run.cancel()  # what SIGTERM / a second Ctrl-C does
        with pytest.raises(asyncio.CancelledError):
            await run

    asyncio.run(kill_when_stalled())
    run_dir = evaluation.run_dir
    assert run_dir is not None
    with pytest.raises(memory.SnapshotMissing):
        memory.read_snapshot(run_dir, "memory_rec_sum", victim)
    earlier = tasks[tasks.index(victim) - 1]
    kept = memory.read_snapshot(run_dir, "memory_rec_sum", earlier)
    assert victim not in {k for k, v in samples(run_dir).items() if v["status"] == "ok"}
    ScriptedMemoryAgent.requests.clear()
    resumed = asyncio.run(evaluate(tmp_path, resume=run_dir).run())
    assert resumed.status == "complete"
    replayed = {session for session, _ in ScriptedMemoryAgent.requests}
    assert victim in replayed and earlier not in replayed  # what was complete is kept, not played again
    rebuilt = memory.read_snapshot(run_dir, "memory_rec_sum", victim)["memory"]
    assert rebuilt.startswith(kept["memory"]) and len(rebuilt) > len(kept["memory"])
    assert all(s["status"] == "ok" for s in samples(run_dir).values())


# --- web search ------------------------------------------------------------------------------------------


def test_web_search_plays_from_a_recorded_cache_and_needs_one(tmp_path, monkeypatch):
    tasks = web_search.load_category("web_search_no_snippet", data_dir(), "test")
    assert len(tasks) == 100 and tasks[0].id == "web_search_no_snippet_0"
    monkeypatch.delenv(web_search.CACHE_ENV, raising=False)
    with pytest.raises(RuntimeError, match="recorded cache"):
        web_search.WebSearchEnvironment({"show_snippet": False})
    cache = tmp_path / "cache.jsonl"
    cache.write_text(
        json.dumps(
            {
                "kind": "search",
                "keywords": "most expensive tea",
                "results": [
                    {"title": "Da Hong Pao", "link": "https://example.org/tea", "snippet": "Da Hong Pao, from China"}
                ],
            }
        )
        + "\n"
        + json.dumps({"kind": "fetch", "url": "https://example.org/tea", "mode": "raw", "content": "<p>tea</p>"})
    )
    monkeypatch.setenv(web_search.CACHE_ENV, str(cache))
    env = web_search.WebSearchEnvironment({"show_snippet": False})
    api = env.objects()[0]
    assert api.search_engine_query("most expensive tea") == [  # type: ignore[attr-defined]
        {"title": "Da Hong Pao", "href": "https://example.org/tea"}
    ]
    assert "error" in api.search_engine_query("unknown")  # type: ignore[attr-defined]
    assert api.fetch_url_content("https://example.org/tea") == {"content": "<p>tea</p>"}  # type: ignore[attr-defined]
    with_snippet = web_search.WebSearchEnvironment({"show_snippet": True}).objects()[0]
    assert with_snippet.search_engine_query("most expensive tea")[0]["body"] == "Da Hong Pao, from China"  # type: ignore[attr-defined]


def test_score_reads_bfcls_agentic_result_files(tmp_path):
    """``bitagent score --bfcl-result``: BFCL's result lines ``{"id", "result": [[step, ...]]}``."""
    import subprocess
    import sys

    lines = [
        {
            "id": "memory_kv_0-customer-0",
            "result": [["[core_memory_retrieve(key='name')]", "{'answer': 'Michael', 'context': 'core memory'}"]],
        },
        {"id": "memory_kv_1-customer-1", "result": [["{'answer': 'I do not know'}"]]},
        {"id": "web_search_base_0", "result": [["[search_engine_query(keywords='tea')]", "Zhang Yiming"]]},
    ]
    result = tmp_path / "BFCL_v4_memory_kv_result.json"
    result.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "scored.jsonl"
    bitagent = Path(sys.executable).parent / "bitagent"
    done = subprocess.run(
        [
            str(bitagent),
            "score",
            "-t",
            "bfcl:memory_kv,web_search_base",
            "--scorer",
            "bfcl-strict",
            "--bfcl-result",
            str(result),
            "-o",
            str(out),
            "--partial",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    scored = {row["task_id"]: row for row in map(json.loads, out.read_text().splitlines())}
    assert scored["memory_kv_0-customer-0"]["passed"] is True
    assert scored["memory_kv_1-customer-1"]["error_type"] == "agentic:answer_not_found"
    assert scored["web_search_base_0"]["passed"] is True
