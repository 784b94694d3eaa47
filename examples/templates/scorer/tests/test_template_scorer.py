from bitagent_template_scorer import TemplateScorer

import bitagent_core as ba
import bitagent_testing as testing


def test_conforms():
    testing.check_scorer(TemplateScorer()).assert_ok()


def test_wrong_value_fails():
    task = testing.sample_tasks()[0]
    assert not TemplateScorer().score(task, ba.Completion(text='[get_weather(city="Rome")]')).passed
