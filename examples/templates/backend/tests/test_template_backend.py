import pytest
from bitagent_template_backend import TemplateBackend, TemplateOptions

import bitagent_core as ba
import bitagent_testing as testing


def test_conforms():
    testing.check_backend(TemplateBackend, options=TemplateOptions(style="native")).assert_ok()


def test_options_are_typed():
    assert TemplateOptions.coerce({"delay_s": "0.5"}).delay_s == 0.5
    with pytest.raises(ba.OptionError, match="no option 'dealy_s'"):
        TemplateOptions.coerce({"dealy_s": "1"})
