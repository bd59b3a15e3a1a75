"""The private training step through compile/fit: exactness, noise, accounting, budget, resumption."""

import pytest

FLAVOURS = ("keras3", "tf_keras")
CASES = (
    "case_sigma0_and_huge_clip_equal_the_non_private_update",
    "case_noise_std_is_sigma_c_over_the_expected_batch_size",
    "case_epsilon_in_history_equals_ppml_epsilon",
    "case_target_epsilon_stops_before_it_is_exceeded",
    "case_resumed_run_neither_loses_nor_double_counts",
    "case_epsilon_reaches_callbacks_after_it",
    "case_epsilon_reaches_tensorboard_event_files",
    "case_empty_poisson_batches_still_step_and_count",
    "case_dp_optimizer_drop_in",
)


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("case", CASES)
def test_training(run_case, case, flavour):
    run_case("cases_training", case, flavour)
