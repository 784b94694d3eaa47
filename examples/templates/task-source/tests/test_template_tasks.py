from bitagent_template_tasks import TemplateTasks

import bitagent_testing as testing


def test_conforms():
    testing.check_task_source(TemplateTasks).assert_ok()


def test_a_category_selects_its_tasks():
    assert {t.category for t in TemplateTasks("irrelevance").tasks(seed=0, limit=5)} == {"irrelevance"}
