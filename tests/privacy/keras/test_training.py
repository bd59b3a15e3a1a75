"""The private training step through compile/fit: exactness, noise, accounting, budget, resumption."""

import pytest

from .conftest import FLAVOURS, case_names


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("case", case_names("cases_training"))
def test_training(run_case, case, flavour):
    run_case("cases_training", case, flavour)
