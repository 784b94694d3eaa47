import bitagent_template_reporter

import bitagent_testing as testing


def test_conforms():
    testing.check_reporter(bitagent_template_reporter).assert_ok()
