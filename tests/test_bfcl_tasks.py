"""The bfcl and bfcl-shuffle task sources: BFCL's data read from the wheel (never imported), a directory or the
hub cache; categories, ids and counts as BFCL has them; data errors reported, not crashed on."""

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from bitagent_core._plugins import get_registry
from bitagent_core._runner import load_tasks, make_task_source
from bitagent_core.model import Completion
from bitagent_core.toolkit import render_expected
from bitagent_plugins.bfcl import tasks as bfcl_tasks
from bitagent_plugins.bfcl.scorer import BfclScorer
from bitagent_plugins.bfcl.tasks import CATEGORIES, HUB_REPO, SINGLE_TURN, locate_data, wheel_data_dir

BIN = Path(sys.executable).parent
COUNTS = {
    "simple_python": 400,
    "multiple": 200,
    "parallel": 200,
    "parallel_multiple": 200,
    "irrelevance": 240,
    "live_simple": 258,
    "live_multiple": 1053,
    "live_parallel": 16,
    "live_parallel_multiple": 24,
    "live_irrelevance": 884,
    "live_relevance": 16,
}
KNOWN_ERRORS = {
    "live_simple_106-63-0",
    "live_simple_112-68-0",
    "live_multiple_507-149-4",
    "live_multiple_862-181-3",
    "live_multiple_964-207-0",
}


def run(*args, env=None, cwd=None):
    return subprocess.run(
        [str(BIN / "bitagent"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def all_tasks():
    return load_tasks(get_registry(), "bfcl", 0, None)


def test_every_category_with_bfcls_ids_and_counts(all_tasks):
    assert Counter(t.category for t in all_tasks) == COUNTS
    for category in CATEGORIES:
        ids = [t.id for t in all_tasks if t.category == category]
        assert ids[0].startswith(category + "_") and len(set(ids)) == len(ids)
    assert {t.source for t in all_tasks} == {"bfcl"} and {t.version for t in all_tasks} == {"2026.3.23"}
    assert {t.category for t in all_tasks if not t.expected_calls} == {
        "irrelevance",
        "live_irrelevance",
        "live_relevance",
    }


def test_a_task_as_bfcl_has_it(all_tasks):
    task = next(t for t in all_tasks if t.id == "simple_python_0")
    assert task.messages[0].role == "user" and "triangle" in task.messages[0].content
    (tool,) = task.tools
    assert tool.name == "calculate_triangle_area"
    assert tool.description.endswith("Note that the provided function is in Python 3 syntax.")  # as BFCL adds
    assert tool.parameters["type"] == "dict" and tool.required == ["base", "height"]
    assert task.expected_calls[0].to_json() == {
        "calculate_triangle_area": {"base": [10], "height": [5], "unit": ["units", ""]}
    }
    dotted = next(t for t in all_tasks if t.id == "parallel_0")
    assert dotted.expected_calls[0].name == "spotify.play"
    system = next(t for t in all_tasks if t.category == "live_simple" and t.messages[0].role == "system")
    assert system.messages[-1].role == "user"


def test_categories_groups_and_errors():
    registry = get_registry()
    assert make_task_source(registry, "bfcl").categories() == list(SINGLE_TURN) + [
        "multi_turn_base",
        "multi_turn_miss_func",
        "multi_turn_miss_param",
        "multi_turn_long_context",
        "memory_kv",
        "memory_vector",
        "memory_rec_sum",
        "web_search_base",
        "web_search_no_snippet",
        "format_sensitivity",
    ]
    live = {t.category for t in load_tasks(registry, "bfcl:live", 0, None)}
    assert live == {c for c in CATEGORIES if c.startswith("live_")}
    both = load_tasks(registry, "bfcl:parallel,live_parallel", 0, None)
    assert Counter(t.category for t in both) == {"parallel": 200, "live_parallel": 16}
    with pytest.raises(ValueError, match="unknown BFCL category 'simple'.*simple_python"):
        make_task_source(registry, "bfcl:simple")


def test_limit_is_a_seeded_prefix():
    registry = get_registry()
    ten = [t.id for t in load_tasks(registry, "bfcl", 3, 10)]
    assert [t.id for t in load_tasks(registry, "bfcl", 3, 4)] == ten[:4]
    assert [t.id for t in load_tasks(registry, "bfcl", 3, 10)] == ten
    assert [t.id for t in load_tasks(registry, "bfcl", 4, 10)] != ten
    assert len({t.split("_")[0] for t in [t.id for t in load_tasks(registry, "bfcl", 0, 60)]}) > 2  # mixed
    assert [t.id for t in load_tasks(registry, "bfcl:multiple", 0, None)][:3] == [
        "multiple_0",
        "multiple_1",
        "multiple_2",
    ]


def test_data_is_read_from_the_wheel_without_importing_it():
    data = wheel_data_dir()
    assert data is not None and (data / "BFCL_v4_simple_python.json").is_file()
    assert locate_data().path == data
    code = (
        "import sys; from bitagent_core._plugins import get_registry; from bitagent_core._runner import load_tasks;"
        "n = len(load_tasks(get_registry(), 'bfcl', 0, None)); "
        "print(n, any(m == 'bfcl_eval' or m.startswith('bfcl_eval.') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == [str(sum(COUNTS.values())), "False"]


def test_without_the_wheel_the_hub_is_used(monkeypatch):
    monkeypatch.delenv(bfcl_tasks.DATA_ENV, raising=False)
    monkeypatch.setattr(bfcl_tasks, "wheel_data_dir", lambda: None)
    assert locate_data().kind == "hub"
    monkeypatch.setenv(bfcl_tasks.DATA_ENV, "hub@v1.3")
    assert (locate_data().kind, locate_data().revision) == ("hub", "v1.3")


def hub_cache(root: Path, files: dict[str, Path]) -> Path:
    """A Hugging Face cache holding the dataset at one commit, as the hub client lays it out."""
    repo = root / ("datasets--" + HUB_REPO.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123456789abcdef0123456789abcdef01234567")
    snapshot = repo / "snapshots" / "0123456789abcdef0123456789abcdef01234567"
    for name, source in files.items():
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, snapshot / name)
    return root


@pytest.mark.slow
def test_the_hub_path_reads_v4_and_v3_names_from_the_cache(tmp_path):
    data = wheel_data_dir()
    cache = hub_cache(
        tmp_path / "hf",
        {
            "BFCL_v4_live_parallel.json": data / "BFCL_v4_live_parallel.json",
            "possible_answer/BFCL_v4_live_parallel.json": data / "possible_answer" / "BFCL_v4_live_parallel.json",
            "BFCL_v3_simple.json": data / "BFCL_v4_simple_python.json",  # v3 called simple_python "simple"
            "possible_answer/BFCL_v3_simple.json": data / "possible_answer" / "BFCL_v4_simple_python.json",
        },
    )
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "BITAGENT_BFCL_DATA": "hub"}
    shown = run("tasks", "show", "bfcl:live_parallel", "--id", "live_parallel_0-0-0", env=env)
    assert shown.returncode == 0, shown.stderr
    task = json.loads(shown.stdout)
    assert task["version"] == "hub@main" and task["expected_calls"]
    assert json.loads(run("tasks", "show", "bfcl:simple_python", env=env).stdout)["category"] == "simple_python"
    missing = run("tasks", "show", "bfcl:multiple", env=env)
    assert missing.returncode != 0 and "in the local hub cache, and the hub dataset" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_a_data_directory_with_broken_entries_loads_and_reports_them(tmp_path, monkeypatch):
    data = wheel_data_dir()
    (tmp_path / "possible_answer").mkdir()
    questions = (data / "BFCL_v4_simple_python.json").read_text().splitlines()[:5]
    answers = (data / "possible_answer" / "BFCL_v4_simple_python.json").read_text().splitlines()[:5]
    broken = json.loads(questions[1])
    broken["question"] = "not a list of turns"
    questions[1] = json.dumps(broken)
    questions.append(questions[0])  # a duplicate id
    answers = answers[:2] + answers[3:]  # simple_python_2 loses its ground truth
    answer_3 = json.loads(answers[2])
    (call,) = answer_3["ground_truth"][0].values()
    call["no_such_param"] = ["x"]  # a parameter the function does not have, not omittable
    answers[2] = json.dumps(answer_3)
    (tmp_path / "BFCL_v4_simple_python.json").write_text("\n".join(questions))
    (tmp_path / "possible_answer" / "BFCL_v4_simple_python.json").write_text("\n".join(answers))
    monkeypatch.setenv(bfcl_tasks.DATA_ENV, str(tmp_path))
    source = make_task_source(get_registry(), "bfcl:simple_python")
    assert [t.id for t in source.tasks(0, None)] == ["simple_python_0", "simple_python_3", "simple_python_4"]
    problems = {(p.task_id, p.severity) for p in source.validate()}
    assert {
        ("simple_python_1", "error"),
        ("simple_python_2", "error"),
        ("simple_python_0", "error"),
        ("simple_python_3", "error"),
    } <= problems
    messages = " ".join(p.message for p in source.validate())
    assert "no ground truth" in messages and "duplicate id" in messages and "'no_such_param'" in messages
    monkeypatch.setenv(bfcl_tasks.DATA_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="not a directory"):
        list(make_task_source(get_registry(), "bfcl:simple_python").tasks(0, 1))


@pytest.mark.slow
def test_validate_lists_the_data_errors():
    out = run("tasks", "validate", "bfcl", "--json")
    assert out.returncode == 1
    report = json.loads(out.stdout)
    assert set(report["tasks_with_errors"]) == KNOWN_ERRORS
    assert {"parallel_multiple_12", "parallel_multiple_26"} <= set(report["tasks_with_warnings"])
    text = run("tasks", "validate", "bfcl:live_multiple", "--scorer", "bfcl")
    assert text.returncode == 1
    assert "live_multiple_964-207-0  error  transfer_to_human_agent: required parameter 'statement'" in text.stdout
    assert "3 with errors" in text.stdout
    clean = run("tasks", "validate", "bfcl:simple_python", "--scorer", "bfcl")
    assert clean.returncode == 0 and "0 with errors" in clean.stdout


def test_tasks_list_shows_the_categories():
    out = run("tasks", "list", "--json")
    rows = {row["name"]: row for row in json.loads(out.stdout)}
    multi = [
        "multi_turn_base",
        "multi_turn_miss_func",
        "multi_turn_miss_param",
        "multi_turn_long_context",
        "memory_kv",
        "memory_vector",
        "memory_rec_sum",
        "web_search_base",
        "web_search_no_snippet",
        "format_sensitivity",
    ]
    assert rows["bfcl"]["categories"] == list(SINGLE_TURN) + multi and rows["bfcl"]["version"] == "2026.3.23"
    assert rows["bfcl-shuffle"]["categories"] == ["call", "irrelevance"]
    assert "bfcl:live_parallel_multiple" in run("tasks", "list").stdout


# --- bfcl-shuffle -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shuffled():
    return load_tasks(get_registry(), "bfcl-shuffle", 7, None)


def test_shuffle_variants(shuffled):
    calls = [t for t in shuffled if t.category == "call"]
    irrelevant = [t for t in shuffled if t.category == "irrelevance"]
    assert len(calls) == len(irrelevant) == 400 + 200 + 258 + 1053 - 5  # single-call entries, data errors out
    positions = Counter()
    for task in calls:
        names = [tool.name for tool in task.tools]
        assert 2 <= len(names) <= 5 and len(set(names)) == len(names)
        needed = task.expected_calls[0].name
        positions[names.index(needed)] += 1
        assert task.id.endswith(":call:s7") and task.source == "bfcl-shuffle"
    assert len(positions) == 5 and min(positions.values()) > 100  # the needed tool lands anywhere
    for task in irrelevant:
        origin = task.id.split(":")[0]
        call = next(t for t in calls if t.id.startswith(origin + ":"))
        assert not task.expected_calls and 1 <= len(task.tools) <= 5
        assert call.expected_calls[0].name not in {tool.name for tool in task.tools}


@pytest.mark.slow
def test_shuffle_is_seeded_and_scorable(shuffled):
    again = load_tasks(get_registry(), "bfcl-shuffle", 7, None)
    assert [t.to_json() for t in again] == [t.to_json() for t in shuffled]
    other = load_tasks(get_registry(), "bfcl-shuffle:call", 8, None)
    assert [t.tools for t in other[:50]] != [t.tools for t in shuffled if t.category == "call"][:50]
    scorer = BfclScorer()
    for task in shuffled[::7]:
        answer = render_expected(task) if task.expected_calls else "None of these tools fit."
        assert scorer.score(task, Completion(text=answer)).passed, task.id
    with pytest.raises(ValueError, match="unknown bfcl-shuffle argument"):
        make_task_source(get_registry(), "bfcl-shuffle:parallel")
    assert {t.category for t in load_tasks(get_registry(), "bfcl-shuffle:irrelevance,live_simple", 0, None)} == {
        "irrelevance"
    }
