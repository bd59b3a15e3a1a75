"""Per-example clipping: ghost norms and the fallback against jacobians, and the sensitivity bound."""

import pytest

FLAVOURS = ("keras3", "tf_keras")
CASES = ("case_every_layer_kind_gets_its_rule", "case_ghost_norms_equal_jacobian_norms",
         "case_unclipped_sum_equals_full_gradient", "case_neighbouring_batches_differ_by_at_most_the_clip")


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("case", CASES)
def test_clipping(run_case, case, flavour):
    run_case("cases_clipping", case, flavour)
