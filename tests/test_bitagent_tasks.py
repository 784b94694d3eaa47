"""The ``bitagent`` task source: determinism, fair tool lists, and answers consistent with the schemas."""

from __future__ import annotations

import collections
import copy
import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitagent_core.model import Task, Tool
from bitagent_plugins.tasks import bitagent_tasks as bt
from bitagent_plugins.tasks.bitagent_tasks import BitagentTaskSource, CatalogError, parse_catalog

CATALOG_JSON: dict[str, Any] = json.loads(bt._shipped_catalog_text())
RAW_TOOLS = {t["name"]: t for t in CATALOG_JSON["tools"]}


@pytest.fixture(scope="module")
def source() -> BitagentTaskSource:
    return BitagentTaskSource()


@pytest.fixture(scope="module")
def sample(source: BitagentTaskSource) -> list[Task]:
    return list(source.tasks(seed=2024, limit=2000))


# -- an independent reading of the catalog, so the checks below do not reuse the code under test -----------


def _value_pattern(spec: dict[str, Any], schema: dict[str, Any]) -> str:
    """A regex for the text a generator can put in a question."""
    say = spec.get("say", {})
    if "choice" in spec or "enum" in spec or "bool" in spec or "const" in spec:
        if "choice" in spec:
            values = spec["choice"]
            values = values if isinstance(values, list) else CATALOG_JSON["lists"][values]
        elif "enum" in spec:
            values = schema["enum"]
        else:
            values = [True, False] if "bool" in spec else [spec["const"]]
        texts = [say.get(json.dumps(v) if isinstance(v, bool) else str(v), str(v)) for v in values]
        return "(?:" + "|".join(re.escape(t) for t in sorted(texts, key=len, reverse=True)) + ")"
    patterns = {"int": r"-?\d+", "number": r"-?\d+\.\d+", "date": r"\d{4}-\d{2}-\d{2}"}
    return patterns.get(next(iter(spec)), ".+?")


def _template_regex(raw: dict[str, Any], template: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", template)
    pattern = "".join(
        re.escape(p) if i % 2 == 0 else _value_pattern(raw["generators"][p], raw["parameters"]["properties"][p])
        for i, p in enumerate(parts)
    )
    return re.compile(f"^{pattern}$", re.DOTALL)


TEMPLATE_REGEXES = [(name, _template_regex(raw, t)) for name, raw in RAW_TOOLS.items() for t in raw["templates"]]


def tools_for_question(question: str) -> set[str]:
    """The catalog tools that have a template this question could come from."""
    return {name for name, rx in TEMPLATE_REGEXES if rx.match(question)}


def value_fits(value: Any, schema: dict[str, Any]) -> bool:
    kind = schema["type"]
    if kind == "array":
        return isinstance(value, list) and bool(value) and all(value_fits(v, schema["items"]) for v in value)
    ok = {
        "string": isinstance(value, str),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, (int, float)) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
    }[kind]
    return ok and ("enum" not in schema or value in schema["enum"])


def check_expected_call(task: Task) -> None:
    """The expected call names an offered tool and its arguments agree with that tool's schema."""
    (call,) = task.expected_calls
    tool = task.tool(call.name)
    assert tool is not None, f"{task.id}: expected tool {call.name} not offered"
    props = tool.parameters["properties"]
    assert set(call.arguments) == set(props), f"{task.id}: every parameter is listed (unlisted = forbidden)"
    for name, values in call.arguments.items():
        assert values, f"{task.id}: {name} has no acceptable value"
        if name in tool.parameters["required"]:
            assert "" not in values, f"{task.id}: required {name} marked omittable"
        for value in values:
            if value == "" and name not in tool.parameters["required"]:
                continue
            assert value_fits(value, props[name]), f"{task.id}: {name}={value!r} does not fit {props[name]}"


# -- the catalog --------------------------------------------------------------------------------------------


def test_catalog_is_large_and_varied(source: BitagentTaskSource) -> None:
    catalog = source.catalog
    assert len(catalog.tools) >= 48
    assert len(catalog.domains) >= 10
    assert len({t.tool.name for t in catalog.tools}) == len(catalog.tools)
    for raw in CATALOG_JSON["tools"]:
        assert 2 <= len(raw["templates"]) <= 4, raw["name"]
    assert source.version == CATALOG_JSON["version"]


def test_catalog_uses_every_parameter_type() -> None:
    types = {p["type"] for raw in RAW_TOOLS.values() for p in raw["parameters"]["properties"].values()}
    assert {"string", "integer", "number", "boolean", "array"} <= types


def test_shipped_catalog_fits_the_schema_and_loads_by_path() -> None:
    # loaded as package data, the shipped catalog skips the schema check (for speed): this is that check
    assert [e.message for e in bt.catalog_validator().iter_errors(CATALOG_JSON)] == []
    path = bt.Path(bt.__file__).with_name(bt.CATALOG_FILE)
    assert len(bt.load_catalog(path).tools) == len(CATALOG_JSON["tools"])


# -- determinism ---------------------------------------------------------------------------------------------


def test_same_seed_and_index_give_the_same_task(source: BitagentTaskSource) -> None:
    fresh = BitagentTaskSource()
    for index in (0, 1, 17, 999):
        assert source.task_at(5, index).to_json() == fresh.task_at(5, index).to_json()


def test_a_task_does_not_depend_on_limit(source: BitagentTaskSource) -> None:
    short = [t.to_json() for t in source.tasks(seed=9, limit=10)]
    long = [t.to_json() for t in source.tasks(seed=9, limit=60)]
    assert short == long[:10]
    assert [t["id"] for t in long] == [f"bitagent-9-{i}" for i in range(60)]


def test_different_seeds_give_different_tasks(source: BitagentTaskSource) -> None:
    a = [t.messages[0].content for t in source.tasks(seed=1, limit=100)]
    b = [t.messages[0].content for t in source.tasks(seed=2, limit=100)]
    assert sum(x != y for x, y in zip(a, b, strict=True)) >= 90
    assert len(set(a)) >= 90  # within one seed the questions vary too


def test_category_filter_keeps_the_same_tasks_under_the_same_ids(source: BitagentTaskSource) -> None:
    for category in bt.CATEGORIES:
        only = BitagentTaskSource(category)
        assert only.categories() == [category]
        tasks = list(only.tasks(seed=3, limit=30))
        assert len(tasks) == 30
        for task in tasks:
            assert task.category == category
            index = int(task.id.rsplit("-", 1)[1])
            assert task.to_json() == source.task_at(3, index).to_json()


def test_unknown_category_is_rejected_with_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="single_call, irrelevance"):
        BitagentTaskSource("parallel")


def test_limit_none_zero_and_negative(source: BitagentTaskSource) -> None:
    assert len(list(source.tasks(seed=0, limit=None))) == bt.DEFAULT_LIMIT
    assert list(source.tasks(seed=0, limit=0)) == []
    with pytest.raises(ValueError, match="limit"):
        source.tasks(seed=0, limit=-1)


# -- what the tasks look like -------------------------------------------------------------------------------


def test_tasks_have_one_user_message_and_distinct_tools(sample: list[Task]) -> None:
    for task in sample:
        assert [m.role for m in task.messages] == ["user"]
        assert "{" not in task.messages[0].content and "}" not in task.messages[0].content
        names = [t.name for t in task.tools]
        assert len(names) == len(set(names))
        assert 1 <= len(names) <= 5
        assert task.source == "bitagent" and task.version == CATALOG_JSON["version"]


def test_about_one_in_five_tasks_is_irrelevance(sample: list[Task]) -> None:
    counts = collections.Counter(t.category for t in sample)
    assert set(counts) == {"single_call", "irrelevance"}
    assert 0.15 < counts["irrelevance"] / len(sample) < 0.25


def test_single_call_tasks_offer_the_right_tool_and_a_consistent_answer(sample: list[Task]) -> None:
    for task in (t for t in sample if t.category == "single_call"):
        check_expected_call(task)
        (call,) = task.expected_calls
        assert call.name in tools_for_question(task.messages[0].content), task.id
        needed_domain = RAW_TOOLS[call.name]["domain"]
        for tool in task.tools:
            if tool.name != call.name:  # distractors come from other domains
                assert RAW_TOOLS[tool.name]["domain"] != needed_domain, task.id


def test_stated_values_appear_in_the_question(sample: list[Task]) -> None:
    checked = 0
    for task in (t for t in sample if t.category == "single_call"):
        (call,) = task.expected_calls
        generators = RAW_TOOLS[call.name]["generators"]
        for name, values in call.arguments.items():
            value = values[0]
            if value == "" or "say" in generators[name]:
                continue
            if isinstance(value, str):
                assert value in task.messages[0].content, (task.id, name, value)
                checked += 1
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                # numbers read back from the text by value (e.g. "12.50" for 12.5)
                numbers = [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?", task.messages[0].content)]
                assert float(value) in numbers, (task.id, name, value)
                checked += 1
    assert checked > 1000


def test_unstated_optional_parameters_may_be_omitted_or_defaulted(sample: list[Task]) -> None:
    seen_default = seen_bare = False
    for task in (t for t in sample if t.category == "single_call"):
        (call,) = task.expected_calls
        tool = task.tool(call.name)
        assert tool is not None
        for name, values in call.arguments.items():
            if "" in values and values[0] == "":
                schema = tool.parameters["properties"][name]
                assert values == (("", schema["default"]) if "default" in schema else ("",))
                seen_default |= "default" in schema
                seen_bare |= "default" not in schema
    assert seen_default and seen_bare


def test_right_tool_position_is_uniform(sample: list[Task]) -> None:
    observed = [0] * 5
    expected = [0.0] * 5
    for task in (t for t in sample if t.category == "single_call"):
        names = [t.name for t in task.tools]
        observed[names.index(task.expected_calls[0].name)] += 1
        for position in range(len(names)):
            expected[position] += 1 / len(names)
    assert sum(observed) > 1400
    chi2 = sum((o - e) ** 2 / e for o, e in zip(observed, expected, strict=True))
    assert chi2 < 18.5, (observed, expected)  # df=4: p < 0.001 would be a real bias
    assert observed[-1] > 0  # the last slot is used: the right tool is never cut off


def test_every_list_size_occurs(sample: list[Task]) -> None:
    single = collections.Counter(len(t.tools) for t in sample if t.category == "single_call")
    irrelevant = collections.Counter(len(t.tools) for t in sample if t.category == "irrelevance")
    assert set(single) == {1, 2, 3, 4, 5}
    assert set(irrelevant) == {1, 2, 3, 4, 5}


def test_irrelevance_tasks_never_offer_a_tool_that_answers(sample: list[Task]) -> None:
    irrelevant = [t for t in sample if t.category == "irrelevance"]
    assert len(irrelevant) > 300
    for task in irrelevant:
        assert task.expected_calls == () and task.expects_no_call
        needed = tools_for_question(task.messages[0].content)
        assert needed, f"{task.id}: question matches no catalog template"
        offered = {t.name for t in task.tools}
        assert not needed & offered, task.id
        needed_domains = {RAW_TOOLS[n]["domain"] for n in needed}
        assert not needed_domains & {RAW_TOOLS[n]["domain"] for n in offered}, task.id


def test_every_catalog_tool_and_template_gets_used(source: BitagentTaskSource) -> None:
    questions = [t.messages[0].content for t in source.tasks(seed=11, limit=6000)]
    used = collections.Counter(rx.pattern for q in questions for _, rx in TEMPLATE_REGEXES if rx.match(q))
    assert len(used) == len(TEMPLATE_REGEXES)


def test_tasks_survive_a_json_round_trip(sample: list[Task]) -> None:
    for task in sample[:200]:
        line = json.dumps(task.to_json())
        assert Task.from_json(json.loads(line)) == task


def test_tools_are_shared_not_copied(source: BitagentTaskSource) -> None:
    catalog_tools = {id(t.tool) for t in source.catalog.tools}
    for task in source.tasks(seed=4, limit=50):
        assert all(id(tool) in catalog_tools for tool in task.tools)


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(min_value=-(2**63), max_value=2**63), index=st.integers(min_value=0, max_value=10**9))
def test_any_seed_and_index_give_a_sound_task(seed: int, index: int) -> None:
    source = BitagentTaskSource()
    task = source.task_at(seed, index)
    assert task.id == f"bitagent-{seed}-{index}"
    assert task.to_json() == source.task_at(seed, index).to_json()
    if task.category == "single_call":
        check_expected_call(task)
    else:
        assert task.category == "irrelevance" and not task.expected_calls
        assert not tools_for_question(task.messages[0].content) & {t.name for t in task.tools}


def test_a_thousand_tasks_are_distinct_and_each_answerable(source: BitagentTaskSource) -> None:
    # their speed is benchmarks/taskgen.py's business (taskgen_1000_s); here, what they are
    tasks = list(BitagentTaskSource().tasks(seed=1, limit=1000))
    assert len(tasks) == 1000 and len({t.id for t in tasks}) == 1000
    assert all(t.expects_no_call or t.expected_calls for t in tasks)


# -- plugin registration ----------------------------------------------------------------------------------


def test_registration_is_cheap_and_names_the_source() -> None:
    bt.cached_catalog.cache_clear()
    registered: list[tuple[str, Any, str]] = []
    bt.register_task_sources(
        register=lambda name, factory, description="": registered.append((name, factory, description))
    )
    assert [r[0] for r in registered] == ["bitagent"]
    assert bt.cached_catalog.cache_info().currsize == 0  # nothing loaded yet
    source = registered[0][1]("irrelevance")
    assert source.categories() == ["irrelevance"] and registered[0][2]
    assert bt.cached_catalog.cache_info().currsize == 0  # building the source loads nothing either
    assert next(iter(source.tasks(seed=0, limit=1))).category == "irrelevance"


# -- broken catalogs --------------------------------------------------------------------------------------


def _catalog(**tool_changes: Any) -> dict[str, Any]:
    weather = {
        "name": "get_weather",
        "domain": "weather",
        "description": "Weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
                "days": {"type": "integer", "maximum": 14},
            },
            "required": ["city"],
        },
        "generators": {"city": {"choice": ["Paris", "Oslo"]}, "unit": {"enum": True}, "days": {"int": [1, 7]}},
        "templates": ["Weather in {city}?", "Weather in {city} in {unit} for {days} days?"],
    }
    weather.update(tool_changes)
    clock = {
        "name": "get_time",
        "domain": "time",
        "description": "Time in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "generators": {"city": {"choice": ["Rome"]}},
        "templates": ["Time in {city}?"],
    }
    return {"version": "t1", "tools": [weather, clock]}


def _params(**props: Any) -> dict[str, Any]:
    base = copy.deepcopy(_catalog()["tools"][0]["parameters"])
    base["properties"].update(props)
    return base


def test_the_minimal_catalog_is_valid() -> None:
    catalog = parse_catalog(_catalog())
    assert [t.tool.name for t in catalog.tools] == ["get_weather", "get_time"]
    assert isinstance(catalog.tools[0].tool, Tool)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"templates": ["Weather in {town}?"]}, r"template 1 mentions \{town\}, which is not a parameter"),
        (
            {"templates": ["Weather in {city}?", "Weather for {days} days?"]},
            r"template 2 does not mention required parameter\(s\) \['city'\]",
        ),
        ({"templates": ["Weather in {city!r}?"]}, "plain"),
        ({"templates": ["Weather in {}?"]}, "plain"),
        ({"templates": ["Weather in {city?"]}, "template 1"),
        ({"templates": []}, r"templates: \[\] should be non-empty"),
        (
            {"generators": {"city": {"pick": ["Paris"]}, "unit": {"enum": True}, "days": {"int": [1, 7]}}},
            r"generators.city: Additional properties are not allowed \('pick' was unexpected\)",
        ),
        (
            {"generators": {"city": {"enum": True}, "unit": {"enum": True}, "days": {"int": [1, 7]}}},
            "generator 'city': 'enum': true needs an 'enum'",
        ),
        (
            {"generators": {"city": {"choice": ["Paris"]}, "unit": {"choice": ["kelvin"]}, "days": {"int": [1, 7]}}},
            r"generator 'unit': values \['kelvin'\] do not fit",
        ),
        (
            {"generators": {"city": {"choice": [1, 2]}, "unit": {"enum": True}, "days": {"int": [1, 7]}}},
            "generator 'city': values",
        ),
        (
            {"generators": {"city": {"choice": "nowhere"}, "unit": {"enum": True}, "days": {"int": [1, 7]}}},
            "generator 'city': 'choice' needs",
        ),
        (
            {"generators": {"city": {"choice": ["Paris"]}, "unit": {"enum": True}, "days": {"int": [1, 30]}}},
            "generator 'days': range",
        ),
        (
            {"generators": {"city": {"choice": ["Paris"]}, "unit": {"enum": True}, "days": {"int": [7, 1]}}},
            "generator 'days': 'int' needs",
        ),
        (
            {
                "generators": {
                    "city": {"date": ["2025-13-01", "2026-01-01"]},
                    "unit": {"enum": True},
                    "days": {"int": [1, 7]},
                }
            },
            "generator 'city': 'date'",
        ),
        (
            {
                "generators": {
                    "city": {"choice": ["Paris"]},
                    "unit": {"enum": True, "say": {"kelvin": "K"}},
                    "days": {"int": [1, 7]},
                }
            },
            "'say' has phrases for values it never draws",
        ),
        ({"generators": {"city": {"choice": ["Paris"]}, "unit": {"enum": True}}}, r"\{days\}, which has no generator"),
        (
            {
                "generators": {
                    "city": {"choice": ["Paris"]},
                    "unit": {"enum": True},
                    "days": {"int": [1, 7]},
                    "wind": {"bool": True},
                }
            },
            "generator for 'wind', which is not a parameter",
        ),
        (
            {"parameters": _params(unit={"type": "string", "enum": ["celsius"], "default": "kelvin"})},
            "parameter 'unit': default 'kelvin' does not fit",
        ),
        ({"parameters": _params(days={"type": "object"})}, "parameters.properties.days.type: 'object' is not one of"),
        (
            {"parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["town"]}},
            "'required' must list parameters",
        ),
        ({"name": "get weather"}, "name: 'get weather' does not match"),
        ({"domain": ""}, "domain: '' should be non-empty"),
        ({"colour": "red"}, r"\('colour' was unexpected\)"),
        (
            {
                "generators": {
                    "city": {"choice": ["Paris"], "int": [1, 2]},
                    "unit": {"enum": True},
                    "days": {"int": [1, 7]},
                }
            },
            "generators.city: .* is valid under each of",
        ),
        (
            {"generators": {"city": {"choice": ["Paris"]}, "unit": {"enum": True}, "days": {"int": [1, "7"]}}},
            r"generators.days.int.1: '7' is not of type 'integer'",
        ),
    ],
)
def test_broken_catalog_names_the_tool_and_the_problem(changes: dict[str, Any], problem: str) -> None:
    with pytest.raises(CatalogError, match=problem) as info:
        parse_catalog(_catalog(**changes), "cat.json")
    label = changes.get("name", "get_weather")
    assert str(info.value).startswith(f"cat.json: tool {label!r}: ")


def test_catalog_wide_problems() -> None:
    data = _catalog()
    data["tools"][1]["name"] = "get_weather"
    with pytest.raises(CatalogError, match="tool 'get_weather': duplicate tool name"):
        parse_catalog(data)
    data = _catalog()
    data["tools"][1]["domain"] = "weather"
    with pytest.raises(CatalogError, match="at least 2 domains"):
        parse_catalog(data)
    with pytest.raises(CatalogError, match="'version'"):
        parse_catalog({"tools": _catalog()["tools"]})


def test_list_generator_needs_enough_distinct_values() -> None:
    data = _catalog(
        parameters=_params(tags={"type": "array", "items": {"type": "string"}}),
        generators={
            "city": {"choice": ["Paris"]},
            "unit": {"enum": True},
            "days": {"int": [1, 7]},
            "tags": {"list": {"choice": ["a", "b"]}, "size": [1, 3]},
        },
        templates=["Weather in {city} in {unit} for {days} days?", "Weather in {city} tagged {tags}?"],
    )
    with pytest.raises(CatalogError, match="generator 'tags': 'size' up to 3 needs at least 3 distinct"):
        parse_catalog(data)
    data["tools"][0]["generators"]["tags"]["size"] = [2, 2]
    catalog = parse_catalog(data)
    tasks = [bt.generate_task(catalog, 0, i) for i in range(200)]
    tags = [
        t.expected_calls[0].arguments["tags"][0]
        for t in tasks
        if t is not None and t.expected_calls and "tagged" in t.messages[0].content
    ]
    assert tags and all(sorted(v) == ["a", "b"] for v in tags)


def test_broken_catalog_file_fails_on_first_use_not_on_construction(tmp_path: Any) -> None:
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(_catalog(templates=["Weather in {town}?"])), encoding="utf-8")
    source = BitagentTaskSource(catalog_path=path)  # cheap: nothing read yet
    problem = f"{re.escape(str(path))}: tool 'get_weather': template 1 mentions"
    with pytest.raises(CatalogError, match=problem):
        source.tasks(seed=0, limit=1)
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(CatalogError, match="not valid JSON"):
        bt.load_catalog(path)
    with pytest.raises(CatalogError, match="cannot read"):
        bt.load_catalog(tmp_path / "missing.json")


def test_a_custom_catalog_drives_generation(tmp_path: Any) -> None:
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(_catalog()), encoding="utf-8")
    source = BitagentTaskSource("single_call", catalog_path=path)
    tasks = list(source.tasks(seed=0, limit=100))
    assert {t.version for t in tasks} == {"t1"}
    for task in tasks:
        check_expected_call(task)
        (call,) = task.expected_calls
        if call.name == "get_weather" and "days" not in task.messages[0].content:
            assert call.arguments["unit"] == ("", "celsius") and call.arguments["days"] == ("",)
        if call.name == "get_weather" and "days" in task.messages[0].content:
            unit = call.arguments["unit"]
            assert unit == ("celsius", "") or unit == ("fahrenheit",)  # stating the default: omitting is fine
