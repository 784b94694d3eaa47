from bitagent_template_competition import TemplateCompetition

import bitagent_testing as testing
from bitagent_core import get_registry


def test_conforms():
    testing.check_competition(TemplateCompetition(), get_registry()).assert_ok()
