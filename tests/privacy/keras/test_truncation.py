"""Truncated Poisson sampling: the sampler's cut, fit's accounting and counting, refusals."""

import pytest

from .conftest import FLAVOURS, case_names


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("case", case_names("cases_truncation"))
def test_truncation(run_case, case, flavour):
    run_case("cases_truncation", case, flavour)
