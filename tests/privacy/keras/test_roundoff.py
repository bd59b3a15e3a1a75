"""Clipping against floating-point cancellation: adversarial neighbours per layer kind, the bounds, the slack."""

import pytest

from .conftest import FLAVOURS, case_names


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("case", case_names("cases_roundoff"))
def test_roundoff(run_case, case, flavour):
    run_case("cases_roundoff", case, flavour)
