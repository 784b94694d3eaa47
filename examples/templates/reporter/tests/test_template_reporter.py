import bitagent_template_reporter

from bitagent_core import testing


def test_conforms():
    testing.check_reporter(bitagent_template_reporter).assert_ok()
