"""TF Privacy's optimizer, DPSequential and tutorial patterns on privacy.keras."""

import pytest

from .conftest import FLAVOURS, case_names


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("case", case_names("cases_tf_privacy"))
def test_tf_privacy(run_case, case, flavour):
    run_case("cases_tf_privacy", case, flavour)
