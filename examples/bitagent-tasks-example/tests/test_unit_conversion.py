"""The example plugin's own tests: bitagent's conformance kit, plus what is specific to this source."""

from bitagent_tasks_example import UnitConversionTasks

import bitagent_testing as testing


def test_the_task_source_conforms():
    # the factory with no argument and with each advertised category (single_call), two seeds
    testing.check_task_source(UnitConversionTasks).assert_ok()


def test_each_task_expects_one_conversion():
    for task in UnitConversionTasks().tasks(seed=3, limit=10):
        assert [call.name for call in task.expected_calls] == ["convert_units"]
