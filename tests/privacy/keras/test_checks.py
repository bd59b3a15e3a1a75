"""Validator errors, sampling statistics, the secure noise source, and utility on sklearn's digits."""

import pytest

FLAVOURS = ("keras3", "tf_keras")
CASES = (
    "case_validator_names_what_to_use_instead",
    "case_losses_without_per_example_values_are_refused",
    "case_custom_loop_with_a_dp_optimizer_is_refused",
    "case_sampling_that_ran_must_match_the_accounting",
    "case_poisson_batches_are_poisson",
    "case_array_examples_are_gathered_in_place",
    "case_secure_noise_state_comes_from_os_urandom",
    "case_digits_reach_a_sensible_accuracy",
)


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("case", CASES)
def test_checks(run_case, case, flavour):
    run_case("cases_checks", case, flavour)
