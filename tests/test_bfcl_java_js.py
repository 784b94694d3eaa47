"""BFCL's simple_java and simple_javascript: our verdicts against BFCL's own reader and checker, run for real from
the installed bfcl-eval wheel in a side process (``benchmarks/java_js_side.py``), on every ground truth written
as source code and thousands of variants of it (``benchmarks/java_js_reference.py``).

``bfcl-strict`` must agree everywhere. ``bfcl`` differs only where an answer touches one of the fixes docs/bfcl.md
lists; each fix has its own example below.
"""

import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest

from bitagent_core._plugins import get_registry
from bitagent_core._runner import load_tasks
from bitagent_core.model import Completion, ToolCall
from bitagent_plugins.bfcl.scorer import BfclScorer
from bitagent_plugins.bfcl.tasks import wheel_data_dir

pytest.importorskip("tree_sitter", reason="the bfcl-java extra (make install has it)")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from java_js_reference import corpus  # noqa: E402


@pytest.fixture(scope="module")
def rows():
    data = wheel_data_dir()
    assert data is not None, "the bfcl-eval wheel (make install) holds BFCL's data"
    return corpus(data)


@pytest.fixture(scope="module")
def bfcl_verdicts(rows):
    """BFCL's verdict on every row, from its own code in a side process."""
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8") as f:
        f.writelines(json.dumps({k: r[k] for k in ("entry", "category", "response")}) + "\n" for r in rows)
    try:
        done = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "java_js_side.py"), f.name],
            input="",
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        Path(f.name).unlink()
    assert done.returncode == 0, done.stderr[-3000:]
    verdicts = json.loads(done.stdout.splitlines()[0])["verdicts"]
    assert len(verdicts) == len(rows)
    return verdicts


@pytest.fixture(scope="module")
def tasks():
    return {t.id: t for t in load_tasks(get_registry(), "bfcl:simple_java,simple_javascript", 0, None)}


def test_the_tasks_are_bfcls_150_entries_shown_as_bfcl_shows_them(tasks):
    assert Counter(t.category for t in tasks.values()) == {"simple_java": 100, "simple_javascript": 50}
    task = tasks["simple_java_1"]
    assert task.tools[0].description.endswith("Note that the provided function is in Java 8 SDK syntax.")
    prop = task.tools[0].parameters["properties"]["useShortName"]
    assert (
        prop["type"] == "string"
        and "This is Java boolean type parameter in string representation." in prop["description"]
    )
    assert task.metadata["functions"][0]["parameters"]["properties"]["useShortName"]["type"] == "boolean"
    js = tasks["simple_javascript_0"]
    assert js.tools[0].description.endswith("Note that the provided function is in JavaScript syntax.")


def test_strict_agrees_with_bfcl_on_every_answer(rows, bfcl_verdicts, tasks):
    assert len(rows) > 5000 and sum(r["label"] == "ground_truth" for r in rows) == 150
    assert Counter(v[0] for v in bfcl_verdicts)[True] > 1500 and Counter(v[0] for v in bfcl_verdicts)[False] > 3000
    assert not any(v[0] is None for v in bfcl_verdicts), "BFCL's checker crashed on an answer"
    scorer = BfclScorer(strict=True)
    disagreements = []
    for row, (valid, error_type) in zip(rows, bfcl_verdicts):
        ours = scorer.score(tasks[row["task_id"]], Completion(text=row["response"]))
        if ours.passed != valid:
            disagreements.append(
                (row["task_id"], row["label"], row["response"][:120], error_type, ours.error_type, ours.detail[:120])
            )
    assert disagreements == []


def _touches_a_fix(row):
    """Whether an answer exercises one of the lenient scorer's fixes (docs/bfcl.md)."""
    if row["label"] in ("fence_tagged", "list_arraylist_add:ArrayList"):  # `new ArrayList<>() {{ add(..); }}`
        return True
    ((func, params),) = row["entry"]["ground_truth"][0].items()
    props = row["entry"]["function"][0]["parameters"]["properties"]
    for name in params:
        spec = props.get(name, {})
        if spec.get("type") in ("HashMap", "long"):
            return True
        items = spec.get("items", {}).get("type")
        if spec.get("type") in ("Array", "ArrayList") and items in ("String", "char", "any"):
            return True
        if any(type(o) is dict and any(type(v) is not list for v in o.values()) for o in params[name]):
            return True  # a ground truth with a bare value where a list of values belongs (simple_java_64)
    return False


def test_lenient_differs_from_bfcl_only_where_it_fixes_a_bug(rows, bfcl_verdicts, tasks):
    scorer = BfclScorer()
    unexplained, fixed = [], Counter()
    for row, (valid, _) in zip(rows, bfcl_verdicts):
        ours = scorer.score(tasks[row["task_id"]], Completion(text=row["response"]))
        if ours.passed != valid:
            if _touches_a_fix(row):
                fixed[row["label"].split(":")[0]] += 1
            else:
                unexplained.append((row["task_id"], row["label"], row["response"][:120], valid, ours.detail[:120]))
    assert unexplained == []
    assert fixed["fence_tagged"] > 90 and fixed["ground_truth"] >= 5
    # every ground truth passes the lenient scorer
    failing = [
        r["task_id"]
        for r in rows
        if r["label"] == "ground_truth" and not scorer.score(tasks[r["task_id"]], Completion(text=r["response"])).passed
    ]
    assert failing == []


def verdicts(task, text):
    return (
        BfclScorer(strict=True).score(task, Completion(text=text)).passed,
        BfclScorer().score(task, Completion(text=text)).passed,
    )


def test_a_hashmap_body_is_read_by_bfcl_only_leniently(tasks):
    task = tasks["simple_java_1"]  # params: HashMap {"limit": 50, "schemaFilter": "public"}
    right = (
        'SQLCompletionAnalyzer.makeProposalsFromObject(object="Customers", useShortName=true, params=new '
        'HashMap<String, Object>() {{ put("limit", 50); put("schemaFilter", "public"); }})'
    )
    wrong = right.replace("50", "60")
    assert verdicts(task, right) == (False, True)  # BFCL drops the body: reads {} and misses the keys
    assert verdicts(task, wrong) == (False, False)


def test_quotes_inside_a_string_array_and_long_without_l(tasks):
    java = [t for t in tasks.values() if t.category == "simple_java"]

    def with_type(kind, items=None):
        for task in java:
            for name, spec in task.metadata["functions"][0]["parameters"]["properties"].items():
                if spec["type"] == kind and (items is None or spec.get("items", {}).get("type") == items):
                    ((_, truth),) = task.metadata["ground_truth"][0].items()
                    if name in truth and all(o != "" and (kind != "Array" or type(o) is list) for o in truth[name]):
                        return task, name
        raise AssertionError(f"no {kind} parameter")

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from java_js_reference import answer

    def entry(task):
        return {"ground_truth": task.metadata["ground_truth"], "function": task.metadata["functions"]}

    task, name = with_type("long")
    ((_, truth),) = task.metadata["ground_truth"][0].items()
    value = next(o for o in truth[name] if o != "")
    assert verdicts(task, answer(entry(task), "java")) == (True, True)
    assert verdicts(task, answer(entry(task), "java", pick={name: str(value)})) == (False, True)
    task, name = with_type("Array", "String")
    ((_, truth),) = task.metadata["ground_truth"][0].items()
    items = ", ".join(f'"{v}"' for v in truth[name][0])
    assert verdicts(task, answer(entry(task), "java", pick={name: f"new String[]{{{items}}}"})) == (False, True)


def test_a_tagged_fence_fails_bfcl_where_a_bare_one_passes(tasks):
    task = tasks["simple_java_0"]
    call = "GeometryPresentation.createPresentation(controller=mapController, parent=mapArea)"
    assert verdicts(task, call) == (True, True)
    assert verdicts(task, f"```\n{call}\n```") == (True, True)
    assert verdicts(task, f"```java\n{call}\n```") == (False, True)  # `java` then a call: a Java syntax error
    # JavaScript reads the tag as an expression statement of its own, then the call: BFCL passes it too
    js = tasks["simple_javascript_0"]
    assert verdicts(js, "```javascript\nvalidateUserInput(inputField=userInputField, isComplete=true)\n```") == (
        True,
        True,
    )


def test_native_tool_calls_give_source_text_and_wrong_answers_fail(tasks):
    task = tasks["simple_javascript_0"]
    native = Completion(
        tool_calls=(ToolCall("validateUserInput", {"inputField": "userInputField", "isComplete": "true"}),)
    )
    assert BfclScorer(strict=True).score(task, native).passed and BfclScorer().score(task, native).passed
    typed = Completion(
        tool_calls=(ToolCall("validateUserInput", {"inputField": "userInputField", "isComplete": True}),)
    )
    strict = BfclScorer(strict=True).score(task, typed)
    assert not strict.passed and strict.error_type == "type_error"  # BFCL: a non-string value is a type error
    assert BfclScorer().score(task, typed).passed
    wrong = BfclScorer().score(task, Completion(text="validateUserInput(inputField=other, isComplete=true)"))
    assert not wrong.passed and wrong.error_type == "value_error"
    garbage = BfclScorer().score(task, Completion(text="validateUserInput(inputField=(, isComplete=true)"))
    assert not garbage.passed and garbage.error_type == "decode_error"
