"""Calibration round trips: the returned parameter meets the target, and is tight."""

import dp_accounting as dpa
import pytest

from privacy.accounting import (
    DpSgdMechanism,
    UnsupportedAccounting,
    calibrate_noise_multiplier,
    compute_epsilon,
    max_epochs,
    max_units,
)

BASE = DpSgdMechanism(dataset_size=2000, batch_size=40, noise_multiplier=1.0, steps=500)


@pytest.mark.parametrize("kind,target", [("rdp", 0.8), ("rdp", 4.0), ("pld", 1.0)])
def test_noise_for_target_epsilon_round_trip(kind, target):
    sigma = calibrate_noise_multiplier(BASE, target_epsilon=target, target_delta=1e-5, accountant=kind)
    assert compute_epsilon(BASE.replace(noise_multiplier=sigma), 1e-5, kind) <= target
    assert compute_epsilon(BASE.replace(noise_multiplier=sigma - 1e-3), 1e-5, kind) > target


def test_tutorial_calibration_matches_field_notes():
    """sigma for epsilon 3 over the tutorial's 60 epochs: 1.014 (RDP), as measured with dp-accounting 0.6.0."""
    m = DpSgdMechanism.from_epochs(dataset_size=60000, batch_size=256, noise_multiplier=1.0, epochs=60)
    assert calibrate_noise_multiplier(m, target_epsilon=3.0, target_delta=1e-5) == pytest.approx(1.014, abs=1e-3)


def test_calibration_accounts_microbatching():
    plain = calibrate_noise_multiplier(BASE, target_epsilon=2.0, target_delta=1e-5)
    micro = calibrate_noise_multiplier(BASE.replace(num_microbatches=8), target_epsilon=2.0, target_delta=1e-5)
    assert micro == pytest.approx(2 * plain, rel=1e-3)


def test_calibration_accounts_microbatching_under_replace_one():
    """Poisson + replace-one + microbatches: the sigma found for the target meets it under the event of
    Gaussian(sigma / 2) under REPLACE_ONE, recomputed here from dp-accounting directly."""
    micro = BASE.replace(adjacency="replace-one", num_microbatches=8)
    sigma = calibrate_noise_multiplier(micro, target_epsilon=2.0, target_delta=1e-5, accountant="pld")

    def epsilon(s):
        event = dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(40 / 2000, dpa.GaussianDpEvent(s / 2)), 500)
        return dpa.pld.PLDAccountant(dpa.NeighboringRelation.REPLACE_ONE).compose(event).get_epsilon(1e-5)

    assert epsilon(sigma) <= 2.0 < epsilon(sigma - 1e-3)


@pytest.mark.parametrize("kind", ["rdp", "pld"])
def test_max_units_round_trip(kind):
    units = max_units(BASE, target_epsilon=1.5, target_delta=1e-5, accountant=kind)
    assert units > 0
    assert compute_epsilon(BASE.replace(steps=units), 1e-5, kind) <= 1.5
    assert compute_epsilon(BASE.replace(steps=units + 1), 1e-5, kind) > 1.5


def test_max_epochs_whole_epochs_fit():
    epochs, steps = max_epochs(BASE, target_epsilon=1.5, target_delta=1e-5)
    assert steps == max_units(BASE, target_epsilon=1.5, target_delta=1e-5)
    assert epochs == steps * 40 // 2000


def test_shuffle_counts_epochs():
    shuffle = BASE.replace(sampling="shuffle", adjacency="replace-one", noise_multiplier=5.0)
    epochs, steps = max_epochs(shuffle, target_epsilon=2.0, target_delta=1e-5)
    assert compute_epsilon(shuffle.replace(steps=steps), 1e-5, "rdp") <= 2.0
    assert compute_epsilon(shuffle.replace(steps=steps + 1), 1e-5, "rdp") > 2.0
    assert steps == epochs * shuffle.epoch_length


def test_nothing_affordable_is_zero():
    assert max_units(BASE.replace(noise_multiplier=0.3), target_epsilon=0.01, target_delta=1e-5) == 0


def test_unsupported_and_bad_targets():
    fixed = BASE.replace(sampling="fixed", adjacency="replace-one")
    with pytest.raises(UnsupportedAccounting):
        calibrate_noise_multiplier(fixed, target_epsilon=1.0, target_delta=1e-5, accountant="pld")
    with pytest.raises(ValueError, match="target_epsilon"):
        calibrate_noise_multiplier(BASE, target_epsilon=-1.0, target_delta=1e-5)
    with pytest.raises(ValueError, match="target_delta"):
        calibrate_noise_multiplier(BASE, target_epsilon=1.0, target_delta=2.0)
