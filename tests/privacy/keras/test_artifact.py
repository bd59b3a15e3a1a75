"""Adapted preprocessing layers and callbacks on training metrics are refused, on both Keras flavours."""

import pytest

from .conftest import FLAVOURS, case_names


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("case", case_names("cases_artifact"))
def test_artifact(run_case, case, flavour):
    run_case("cases_artifact", case, flavour)
