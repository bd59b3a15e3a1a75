"""LSTMRule: Keras' own outputs, clipping against naive per-example clipping, and what takes the fallback."""

import pytest

from .conftest import FLAVOURS, case_names


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("case", case_names("cases_recurrent"))
def test_recurrent(run_case, case, flavour):
    run_case("cases_recurrent", case, flavour)
