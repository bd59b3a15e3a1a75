"""Per-example clipping: ghost norms and the fallback against jacobians, and the sensitivity bound."""

import pytest

from .conftest import FLAVOURS, case_names


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("case", case_names("cases_clipping"))
def test_clipping(run_case, case, flavour):
    run_case("cases_clipping", case, flavour)
