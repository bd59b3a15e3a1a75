"""DP-SGD step sizes known only when XLA compiles the step: refused beyond the clip bound's limit, trained within."""

import pytest

from .conftest import FLAVOURS, case_names


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("case", case_names("cases_xla_sizes"))
def test_xla_sizes(run_case, case, flavour):
    run_case("cases_xla_sizes", case, flavour)
