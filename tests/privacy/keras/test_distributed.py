"""tf.distribute.MirroredStrategy (what TFX's Trainer uses): clipping per replica, noise once, one count."""

import pytest

FLAVOURS = ("keras3", "tf_keras")
CASES = ("case_two_replicas_clip_per_example_like_one_device", "case_noise_is_added_once_for_the_global_batch")


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("case", CASES)
def test_distributed(run_case, case, flavour):
    run_case("cases_distributed", case, flavour, isolated=True)
