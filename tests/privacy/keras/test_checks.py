"""Validator errors, sampling statistics, the secure noise source, and utility on sklearn's digits."""

import pytest

from .conftest import FLAVOURS, case_names


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("case", case_names("cases_checks"))
def test_checks(run_case, case, flavour):
    run_case("cases_checks", case, flavour)
