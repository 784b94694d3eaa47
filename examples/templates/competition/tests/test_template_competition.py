from bitagent_template_competition import TemplateCompetition

from bitagent_core import get_registry, testing


def test_conforms():
    testing.check_competition(TemplateCompetition(), get_registry()).assert_ok()
