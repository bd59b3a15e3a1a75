"""A private model saved before its first step trains as one never saved, and a caller's wrapper of a layer's call is
not taken for its class call, on both Keras flavours."""

import pytest

from .conftest import FLAVOURS, case_names


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("case", case_names("cases_saving"))
def test_saving(run_case, case, flavour):
    run_case("cases_saving", case, flavour)
