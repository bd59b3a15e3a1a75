"""Per-example losses accept the label shapes Keras accepts."""

import pytest

FLAVOURS = ("keras3", "tf_keras")
CASES = ("case_flat_labels_against_a_single_output_column", "case_fit_with_flat_labels_trains_and_accounts")


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("case", CASES)
def test_losses(run_case, case, flavour):
    run_case("cases_losses", case, flavour)
