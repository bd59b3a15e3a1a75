"""DP-SGD step sizes unknown when traced (XLA, skip_padding): refused beyond the clip bound's limit, trained within."""

import pytest

from .conftest import FLAVOURS, case_names


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("case", case_names("cases_step_sizes"))
def test_step_sizes(run_case, case, flavour):
    run_case("cases_step_sizes", case, flavour)
