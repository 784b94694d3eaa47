"""The ``jsonl`` task source: reading tasks files, and errors that point at the bad line."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from bitagent_core.model import Task
from bitagent_plugins.tasks import jsonl_tasks
from bitagent_plugins.tasks.bitagent_tasks import BitagentTaskSource
from bitagent_plugins.tasks.jsonl_tasks import JsonlTaskSource

SCHEMA_TASK = {
    "id": "a",
    "category": "simple",
    "messages": [{"role": "user", "content": "What's 20% off $200?"}],
    "tools": [
        {
            "name": "calculate_discount",
            "description": "Price after a discount.",
            "parameters": {
                "type": "object",
                "properties": {"original_price": {"type": "number"}, "discount_percentage": {"type": "number"}},
                "required": ["original_price", "discount_percentage"],
            },
        }
    ],
    "expected_calls": [{"calculate_discount": {"original_price": [200], "discount_percentage": [20]}}],
}
UPSTREAM_TASK = {
    "id": "b",
    "category": "simple",
    "messages": [{"role": "user", "content": "Weather in Paris?"}],
    "tools": [
        {
            "name": "get_weather",
            "description": "Weather.",
            "arguments": {
                "city": {"required": True, "type": "str", "description": "City."},
                "days": {"required": False, "type": "int", "description": "Days."},
            },
        }
    ],
    "expected_calls": [{"get_weather": {"city": ["Paris"], "days": [""]}}],
}
NO_CALL_TASK = {
    "id": "c",
    "category": "irrelevance",
    "source": "mine",
    "messages": [{"role": "user", "content": "Tell me a joke."}],
    "tools": [UPSTREAM_TASK["tools"][0]],
}


def write(path: Path, *lines: Any) -> Path:
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def tasks_file(tmp_path: Path) -> Path:
    return write(tmp_path / "tasks.jsonl", SCHEMA_TASK, "", "   ", UPSTREAM_TASK, NO_CALL_TASK)


def test_reads_tasks_in_file_order(tasks_file: Path) -> None:
    source = JsonlTaskSource(str(tasks_file))
    tasks = list(source.tasks(seed=0, limit=None))
    assert [t.id for t in tasks] == ["a", "b", "c"]
    assert tasks[0].expected_calls[0].arguments == {"original_price": (200,), "discount_percentage": (20,)}
    assert tasks[2].expects_no_call and tasks[2].source == "mine"
    assert tasks[0].source == "jsonl"  # filled in where the line names none
    assert source.categories() == ["irrelevance", "simple"]


def test_upstream_form_tools_become_json_schema(tasks_file: Path) -> None:
    task = list(JsonlTaskSource(str(tasks_file)).tasks(seed=0, limit=None))[1]
    tool = task.tool("get_weather")
    assert tool is not None
    assert tool.parameters == {
        "type": "object",
        "required": ["city"],
        "properties": {
            "city": {"type": "string", "description": "City."},
            "days": {"type": "integer", "description": "Days."},
        },
    }
    assert task.expected_calls[0].arguments["days"] == ("",)


def test_limit_takes_the_first_n_and_seed_is_ignored(tasks_file: Path) -> None:
    source = JsonlTaskSource(str(tasks_file))
    assert [t.id for t in source.tasks(seed=0, limit=2)] == ["a", "b"]
    assert [t.id for t in source.tasks(seed=12345, limit=2)] == ["a", "b"]
    assert list(source.tasks(seed=0, limit=0)) == []
    with pytest.raises(ValueError, match="limit"):
        source.tasks(seed=0, limit=-3)


def test_version_is_a_digest_of_the_file(tmp_path: Path) -> None:
    one = JsonlTaskSource(str(write(tmp_path / "one.jsonl", SCHEMA_TASK)))
    same = JsonlTaskSource(str(write(tmp_path / "same.jsonl", SCHEMA_TASK)))
    other = JsonlTaskSource(str(write(tmp_path / "other.jsonl", UPSTREAM_TASK)))
    assert one.version.startswith("sha256:")
    assert one.version == same.version != other.version


def test_missing_category_gets_the_default(tmp_path: Path) -> None:
    task = {k: v for k, v in SCHEMA_TASK.items() if k != "category"}
    source = JsonlTaskSource(str(write(tmp_path / "t.jsonl", task)))
    assert source.categories() == [jsonl_tasks.DEFAULT_CATEGORY]


@pytest.mark.parametrize(
    ("bad_line", "problem"),
    [
        ("{not json", "invalid JSON"),
        (json.dumps([1, 2]), "a task must be a JSON object"),
        (json.dumps({"id": "x", "tools": []}), "a task needs messages"),
        (json.dumps({**SCHEMA_TASK, "id": "x", "messages": []}), "'messages' must be a non-empty list"),
        (json.dumps({**SCHEMA_TASK, "id": "x", "tools": [{"description": "no name"}]}), "a tool needs a string 'name'"),
        (json.dumps({**SCHEMA_TASK, "id": "x", "expected_calls": [{"a": {}, "b": {}}]}), "an expected call is"),
        (
            json.dumps({**SCHEMA_TASK, "id": "x", "expected_calls": [{"nope": {}}]}),
            "expected call 'nope' is not among its tools",
        ),
        (
            json.dumps({**SCHEMA_TASK, "id": "x", "messages": [{"role": "assistant", "tool_calls": [{}]}]}),
            "malformed task",
        ),
        (json.dumps({**SCHEMA_TASK, "id": ""}), "'id' must not be empty"),
    ],
)
def test_a_bad_line_is_reported_with_file_and_line(tmp_path: Path, bad_line: str, problem: str) -> None:
    path = write(tmp_path / "tasks.jsonl", SCHEMA_TASK, "", UPSTREAM_TASK, bad_line)
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}:4: .*{re.escape(problem)}"):
        list(JsonlTaskSource(str(path)).tasks(seed=0, limit=None))


def test_duplicate_ids_are_reported(tmp_path: Path) -> None:
    path = write(tmp_path / "tasks.jsonl", SCHEMA_TASK, UPSTREAM_TASK, {**NO_CALL_TASK, "id": "a"})
    with pytest.raises(ValueError, match=re.escape(f"{path}:3: duplicate task id 'a' (first on line 1)")):
        JsonlTaskSource(str(path)).categories()


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs a file"):
        JsonlTaskSource(None)
    with pytest.raises(ValueError, match="needs a file"):
        JsonlTaskSource("")
    missing = JsonlTaskSource(str(tmp_path / "nope.jsonl"))  # nothing is read until first use
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "nope.jsonl")) + ": cannot read"):
        missing.tasks(seed=0, limit=None)
    with pytest.raises(ValueError, match="no tasks"):
        JsonlTaskSource(str(write(tmp_path / "empty.jsonl", "", ""))).tasks(seed=0, limit=None)
    (tmp_path / "latin1.jsonl").write_bytes(b"\xff\xfe{}\n")
    with pytest.raises(ValueError, match="not UTF-8"):
        JsonlTaskSource(str(tmp_path / "latin1.jsonl")).tasks(seed=0, limit=None)


def test_generated_tasks_round_trip_through_a_file(tmp_path: Path) -> None:
    generated = list(BitagentTaskSource().tasks(seed=8, limit=50))
    path = write(tmp_path / "gen.jsonl", *(t.to_json() for t in generated))
    read = list(JsonlTaskSource(str(path)).tasks(seed=0, limit=None))
    assert read == generated
    assert all(isinstance(t, Task) for t in read)


def test_registration_names_the_source(tmp_path: Path) -> None:
    registered: dict[str, Any] = {}
    jsonl_tasks.register_task_sources(
        register=lambda name, factory, description="": registered.update({name: (factory, description)})
    )
    factory, description = registered["jsonl"]
    assert "jsonl:" in description
    path = write(tmp_path / "t.jsonl", SCHEMA_TASK)
    assert [t.id for t in factory(str(path)).tasks(seed=0, limit=None)] == ["a"]
