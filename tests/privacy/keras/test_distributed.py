"""tf.distribute.MirroredStrategy (what TFX's Trainer uses): clipping per replica, noise once, one count."""

import pytest

from .conftest import FLAVOURS, case_names


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("case", case_names("cases_distributed"))
def test_distributed(run_case, case, flavour):
    run_case("cases_distributed", case, flavour, isolated=True)
