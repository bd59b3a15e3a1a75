"""Mixed ghost clipping: both branches of the per-layer cost model against naive per-example clipping."""

import pytest

from .conftest import FLAVOURS, case_names

pytestmark = pytest.mark.slow  # about 300 s CPU per flavour (s37, 2 loaded cores)


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("case", case_names("cases_mixed_clipping"))
def test_mixed_clipping(run_case, case, flavour):
    run_case("cases_mixed_clipping", case, flavour)
