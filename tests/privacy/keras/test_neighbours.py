"""Neighbouring data sets: sensitivity of one step and the steps and epochs accounted, per combination."""

import pytest

from .conftest import FLAVOURS, case_names


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("case", case_names("cases_neighbours"))
def test_neighbours(run_case, case, flavour):
    run_case("cases_neighbours", case, flavour)
