"""A plugin author cannot ship wrongly typed ground truth: ``"3"`` for an integer parameter (which passes as
itself and fails the right answer ``weeks=3``) is an error in ``bitagent tasks validate``, a failed check of the
conformance kit and of ``bitagent plugins check`` (by the registered name or the entry point's)."""

from __future__ import annotations

import json

import pytest

import bitagent_testing as testing
from bitagent_core.model import ExpectedCall, Message, Task, Tool
from bitagent_core.toolkit.checks import check_task, type_mismatch
from tests.test_plugins import make_dist, run_cli

TOOL = {
    "name": "plan_leave",
    "description": "Plan a leave.",
    "parameters": {
        "type": "object",
        "properties": {
            "weeks": {"type": "integer", "description": "how many weeks"},
            "kind": {"type": "string", "enum": ["paid", "unpaid"]},
            "ratio": {"type": "number"},
            "notify": {"type": "boolean"},
        },
        "required": ["weeks"],
    },
}

SOURCE = """
import bitagent_core as ba

TOOL = ba.Tool.from_json({tool})


class LeaveTasks:
    name, version, description = "leave", "1", "leave plans"

    def categories(self):
        return ["leave"]

    def tasks(self, seed, limit):
        n = 3 if limit is None else min(limit, 3)
        for i in range(n):
            yield ba.Task(id=f"leave-{{i}}", messages=(ba.Message("user", f"Plan {{i + 1}} weeks off"),),
                          tools=(TOOL,), expected_calls=(ba.ExpectedCall("plan_leave", {{"weeks": ({value},)}}),),
                          source="leave", category="leave", version="1")


@ba.hookimpl
def register_task_sources(register):
    register("leave", lambda arg: LeaveTasks(), description="leave plans")
"""


def task(weeks: object, **more: tuple) -> Task:
    return Task(
        id="t",
        messages=(Message("user", "Plan 3 weeks off"),),
        tools=(Tool.from_json(TOOL),),
        expected_calls=(ExpectedCall("plan_leave", {"weeks": (weeks,), **more}),),
    )


def test_expected_values_are_checked_against_the_declared_type_and_enum():
    problems = check_task(task("3"))
    assert [s for s, _ in problems] == ["error"] and "'3' is a str" in problems[0][1] and "integer" in problems[0][1]
    assert check_task(task(3)) == []
    assert check_task(task(True))[0][0] == "error"  # JSON's true is not a number
    assert check_task(task(3, ratio=(2,), notify=(False, ""))) == []  # an int is a number; "" = may be omitted
    assert check_task(task(3, ratio=("2.5",)))[0][0] == "error"
    assert any("enum" in m for _, m in check_task(task(3, kind=("sick",))))
    assert any("does not have" in m for _, m in check_task(task(3, days=(4,))))  # not a parameter of the tool
    assert type_mismatch("x", {"type": "any"}) is None  # types it does not know are not checked
    assert (
        type_mismatch(1, {"type": ["integer", "null"]}) is None
        and type_mismatch(None, {"type": ["integer", "null"]}) is None
    )


@pytest.fixture
def plugin(tmp_path):
    make_dist(
        tmp_path,
        "leave_plugin",
        {"library-tasks": "leave_mod"},
        {"leave_mod": SOURCE.format(tool=json.dumps(TOOL), value='"3"')},
    )
    return tmp_path


def test_the_kit_fails_wrongly_typed_ground_truth(tmp_path):
    namespace: dict = {}
    exec(SOURCE.format(tool=json.dumps(TOOL), value='"3"'), namespace)
    report = testing.check_task_source(lambda arg: namespace["LeaveTasks"]())
    failed = [c for c in report.failures if "ground truth fits" in c.name]
    assert failed and "'3' is a str" in failed[0].message
    namespace = {}
    exec(SOURCE.format(tool=json.dumps(TOOL), value="3"), namespace)
    testing.check_task_source(lambda arg: namespace["LeaveTasks"]()).assert_ok()


@pytest.mark.slow
def test_tasks_validate_and_plugins_check_by_either_name(plugin):
    validated = run_cli(["tasks", "validate", "leave"], plugin)
    assert validated.returncode == 1 and "'3' is a str" in validated.stdout, validated.stdout + validated.stderr
    for name in ("leave", "library-tasks"):  # the registered name, and the entry point's that `plugins` lists
        checked = run_cli(["plugins", "check", name], plugin)
        assert checked.returncode == 1, checked.stdout + checked.stderr
        assert "FAIL task source 'leave': ground truth fits the tools" in checked.stdout
    assert run_cli(["plugins", "check", "no-such-thing"], plugin).returncode == 1
