import pytest

from bitagent_core.model import Completion, ExpectedCall, Message, Score, Task, Tool, ToolCall

UPSTREAM_TOOL = {
    "name": "calculate_discount",
    "description": "Calculate the discounted price",
    "arguments": {
        "original_price": {"required": True, "type": "number", "description": "the price"},
        "discount_percentage": {"required": True, "type": "number", "description": "percent"},
        "currency": {"required": False, "type": "str", "description": "ISO code"},
    },
}


def test_upstream_tool_form_round_trips_through_json_schema():
    tool = Tool.from_json(UPSTREAM_TOOL)
    assert tool.parameters["properties"]["currency"] == {"type": "string", "description": "ISO code"}
    assert tool.required == ["original_price", "discount_percentage"]
    assert tool.parameter_order == ["original_price", "discount_percentage", "currency"]
    back = tool.to_upstream()
    assert back["arguments"]["currency"] == {"required": False, "type": "str", "description": "ISO code"}
    assert back["arguments"]["original_price"]["required"] is True
    assert Tool.from_upstream(back) == tool


def test_tool_rejects_bad_data_with_clear_errors():
    with pytest.raises(ValueError, match="name"):
        Tool.from_json({"description": "x"})
    with pytest.raises(ValueError, match="parameters"):
        Tool.from_json({"name": "f", "parameters": "nope"})


def test_task_json_round_trip():
    task = Task(
        id="t1",
        messages=(Message("user", "hi"),),
        tools=(Tool.from_json(UPSTREAM_TOOL),),
        expected_calls=(ExpectedCall("calculate_discount", {"original_price": (200,), "currency": ("", "USD")}),),
        source="s",
        category="c",
        version="1",
    )
    again = Task.from_json(task.to_json())
    assert again == task
    assert not again.expects_no_call


def test_task_from_json_names_what_is_missing():
    with pytest.raises(ValueError, match="messages"):
        Task.from_json({"id": "x", "tools": []})
    with pytest.raises(ValueError, match="non-empty"):
        Task.from_json({"id": "x", "tools": [], "messages": []})
    with pytest.raises(ValueError, match="expected call"):
        Task.from_json(
            {
                "id": "x",
                "tools": [],
                "messages": [{"role": "user", "content": "q"}],
                "expected_calls": [{"a": {}, "b": {}}],
            }
        )


def test_score_bounds_and_completion_json():
    with pytest.raises(ValueError):
        Score(1.5)
    with pytest.raises(ValueError):
        Score(-0.1)
    c = Completion(text="x", tool_calls=(ToolCall("f", {"a": 1}),), latency_s=0.123456)
    assert c.to_json()["tool_calls"] == [{"name": "f", "arguments": {"a": 1}}]
    assert c.to_json()["latency_s"] == 0.1235
