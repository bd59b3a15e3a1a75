"""Per-example losses accept the label shapes Keras accepts."""

import pytest

from .conftest import FLAVOURS, case_names


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("case", case_names("cases_losses"))
def test_losses(run_case, case, flavour):
    run_case("cases_losses", case, flavour)
