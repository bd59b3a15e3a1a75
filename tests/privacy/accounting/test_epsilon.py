"""Epsilon of DP-SGD configurations against independent dp-accounting computations.

The expected values are built here directly from dp_accounting events, written out by hand for each
sampling scheme and adjacency, so a mistake in `DpSgdMechanism`'s event construction shows up.
"""

import dataclasses
import json
import math
import re
from fractions import Fraction

import dp_accounting as dpa
import numpy as np
import pytest

from privacy.accounting import (
    Adjacency,
    DpSgdMechanism,
    UnsupportedAccounting,
    compute_epsilon,
    default_delta,
    delta_below_one_over_n,
    delta_warning,
    dp_sgd_report,
    resolve_adjacency,
    steps_for_epochs,
)

R = dpa.NeighboringRelation


def rdp(event, relation=R.ADD_OR_REMOVE_ONE, delta=1e-5):
    return dpa.rdp.RdpAccountant(neighboring_relation=relation).compose(event).get_epsilon(delta)


def pld(event, relation=R.ADD_OR_REMOVE_ONE, delta=1e-5):
    return dpa.pld.PLDAccountant(neighboring_relation=relation).compose(event).get_epsilon(delta)


def poisson(q, sigma, steps):
    return dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(sigma)), steps)


TUTORIAL = dict(dataset_size=60000, batch_size=256, noise_multiplier=1.1)


def test_tf_privacy_tutorial_values():
    """TF Privacy's MNIST tutorial: 60 epochs, 14063 steps; RDP 2.597 and PLD 2.382 with dp-accounting 0.6.0.

    The tutorial prints 3.01: that figure came from TF Privacy's older RDP-to-(eps, delta) conversion and
    order grid. dp-accounting's conversion (Balle et al. 2020 / Canonne et al. 2020) is tighter, and PLD
    accounting is tighter still, so ours are lower for the same run.
    """
    m = DpSgdMechanism.from_epochs(epochs=60, **TUTORIAL)
    assert m.steps == 14063
    eps_rdp = compute_epsilon(m, 1e-5, "rdp")
    eps_pld = compute_epsilon(m, 1e-5, "pld")
    assert eps_rdp == pytest.approx(rdp(poisson(256 / 60000, 1.1, 14063)), abs=1e-6)
    assert eps_pld == pytest.approx(pld(poisson(256 / 60000, 1.1, 14063)), abs=1e-6)
    assert round(eps_rdp, 3) == 2.597
    assert round(eps_pld, 3) == 2.382


@pytest.mark.parametrize(
    "n,b,sigma,epochs", [(60000, 256, 1.3, 15), (60000, 240, 0.7, 45), (569, 32, 1.0, 3), (10000, 100, 4.0, 1)]
)
def test_poisson_add_remove(n, b, sigma, epochs):
    m = DpSgdMechanism.from_epochs(dataset_size=n, batch_size=b, noise_multiplier=sigma, epochs=epochs)
    steps = math.ceil(epochs * n / b)
    assert m.steps == steps
    assert compute_epsilon(m, 1e-5, "rdp") == pytest.approx(rdp(poisson(b / n, sigma, steps)), abs=1e-6)
    assert compute_epsilon(m, 1e-5, "pld") == pytest.approx(pld(poisson(b / n, sigma, steps)), abs=1e-6)


def test_microbatching_doubles_sensitivity():
    m = DpSgdMechanism(dataset_size=60000, batch_size=256, noise_multiplier=1.1, steps=1000, num_microbatches=32)
    assert m.sensitivity == 2.0
    assert compute_epsilon(m, 1e-5, "rdp") == pytest.approx(rdp(poisson(256 / 60000, 0.55, 1000)), abs=1e-6)
    assert compute_epsilon(m, 1e-5, "pld") == pytest.approx(pld(poisson(256 / 60000, 0.55, 1000)), abs=1e-6)


def test_one_example_per_microbatch_adds_nothing_to_shuffled_batches():
    m = DpSgdMechanism(
        dataset_size=1000, batch_size=50, noise_multiplier=1.0, steps=100, sampling="shuffle", num_microbatches=50
    )
    assert not m.microbatches_hold_several_examples
    assert m.sensitivity == m.replace(num_microbatches=None).sensitivity == 2.0  # replace-one: 2C either way
    assert compute_epsilon(m, 1e-5, "rdp") == compute_epsilon(m.replace(num_microbatches=None), 1e-5, "rdp")
    # Poisson batches vary in size, so any microbatching can pair examples up: 2C under add/remove too.
    poisson = m.replace(sampling="poisson", adjacency="add-remove", steps_per_epoch=None)
    assert poisson.microbatches_hold_several_examples and poisson.sensitivity == 2.0


def test_replace_one_poisson_is_pld_only():
    m = DpSgdMechanism(dataset_size=60000, batch_size=256, noise_multiplier=1.1, steps=500, adjacency="replace-one")
    expected = pld(poisson(256 / 60000, 1.1, 500), relation=R.REPLACE_ONE)
    assert compute_epsilon(m, 1e-5, "pld") == pytest.approx(expected, abs=1e-6)
    assert compute_epsilon(m, 1e-5, "pld") > compute_epsilon(m.replace(adjacency="add-remove"), 1e-5, "pld")
    with pytest.raises(UnsupportedAccounting, match="RDP"):
        compute_epsilon(m, 1e-5, "rdp")


def test_microbatches_under_poisson_replace_one_move_2c_on_each_side():
    """A clipped microbatch mean can move by 2C when its example is sampled (v to -v), so under replace-one
    each side of dp-accounting's analysis (x sampled, x' sampled) is 2C from the sum without them: Gaussian
    of sigma / 2 under REPLACE_ONE, 4C between the two. The tutorial run: 19.26, not the 4.22 reported for
    per-example clipping."""
    m = DpSgdMechanism.from_epochs(epochs=60, adjacency="replace-one", num_microbatches=32, **TUTORIAL)
    expected = pld(poisson(256 / 60000, 0.55, 14063), relation=R.REPLACE_ONE)
    assert m.sensitivity == 4.0
    assert compute_epsilon(m, 1e-5, "pld") == pytest.approx(expected, abs=1e-6)
    assert 19.2 < expected < 19.3


def test_fixed_batches_use_sampling_without_replacement_with_sensitivity_2c():
    m = DpSgdMechanism(
        dataset_size=10000, batch_size=100, noise_multiplier=1.5, steps=300, sampling="fixed", adjacency="replace-one"
    )
    event = dpa.SelfComposedDpEvent(dpa.SampledWithoutReplacementDpEvent(10000, 100, dpa.GaussianDpEvent(0.75)), 300)
    assert compute_epsilon(m, 1e-5, "rdp") == pytest.approx(rdp(event, relation=R.REPLACE_ONE), abs=1e-6)
    with pytest.raises(UnsupportedAccounting, match="PLD"):
        compute_epsilon(m, 1e-5, "pld")


@pytest.mark.parametrize("sampling,batches", [("fixed", "fixed-size"), ("shuffle", "shuffled")])
def test_fixed_and_shuffled_batches_refuse_add_remove(sampling, batches):
    """Adding an example changes how many batches there are (and, shuffled, shifts every later one)."""
    with pytest.raises(
        ValueError,
        match=f"adjacency='add-remove' with sampling='{sampling}': {batches} batches "
        f"are analysed only under replace-one adjacency",
    ) as err:
        DpSgdMechanism(
            dataset_size=100, batch_size=10, noise_multiplier=1.0, steps=10, sampling=sampling, adjacency="add-remove"
        )
    assert "use adjacency='replace-one' or Poisson sampling" in str(err.value)
    with pytest.raises(ValueError, match="add-remove"):
        resolve_adjacency(sampling, Adjacency.ADD_REMOVE)


@pytest.mark.parametrize(
    "sampling,natural",
    [("poisson", Adjacency.ADD_REMOVE), ("fixed", Adjacency.REPLACE_ONE), ("shuffle", Adjacency.REPLACE_ONE)],
)
def test_default_adjacency_is_the_samplings_natural_one(sampling, natural):
    m = DpSgdMechanism(dataset_size=100, batch_size=10, noise_multiplier=1.0, steps=10, sampling=sampling)
    assert m.adjacency is natural and resolve_adjacency(sampling) is natural
    assert m == m.replace(adjacency=natural.value)  # the stored field is the concrete relation
    assert resolve_adjacency(sampling, "replace-one") is Adjacency.REPLACE_ONE
    with pytest.raises(ValueError, match="sideways"):
        resolve_adjacency(sampling, "sideways")


def test_shuffle_reports_once_per_epoch_bound_not_poisson():
    m = DpSgdMechanism.from_epochs(
        dataset_size=60000, batch_size=256, noise_multiplier=1.1, epochs=3, sampling="shuffle"
    )
    assert (m.steps, m.steps_per_epoch, m.passes) == (705, 235, 3)  # Keras: the last batch is partial
    assert (m.adjacency, m.sensitivity) == (Adjacency.REPLACE_ONE, 2.0)
    # Three epochs, each one Gaussian mechanism of sensitivity 2C: noise multiplier 1.1 / 2 relative to it
    # (RDP), or dp-accounting's own replace-one analysis of the Gaussian with sigma 1.1 (PLD).
    assert compute_epsilon(m, 1e-5, "rdp") == pytest.approx(
        rdp(dpa.SelfComposedDpEvent(dpa.GaussianDpEvent(0.55), 3)), abs=1e-6
    )
    assert compute_epsilon(m, 1e-5, "pld") == pytest.approx(
        pld(dpa.SelfComposedDpEvent(dpa.GaussianDpEvent(1.1), 3), relation=R.REPLACE_ONE), rel=1e-4
    )
    poisson = m.replace(sampling="poisson", adjacency="replace-one", steps_per_epoch=None)
    assert compute_epsilon(m, 1e-5, "pld") > 5 * compute_epsilon(poisson, 1e-5, "pld")


def test_shuffle_report_states_replace_one():
    report = dp_sgd_report(
        DpSgdMechanism.from_epochs(
            dataset_size=1000, batch_size=100, noise_multiplier=2.0, epochs=2, sampling="shuffle"
        )
    )
    assert report.to_dict()["adjacency"] == "replace-one" and report.to_dict()["sampling"] == "shuffle"
    assert "replace-one adjacency, shuffle sampling" in report.format_text()


def test_shuffle_replace_one_matches_dp_accountings_own_replace_analysis():
    """Folding sensitivity 2C into sigma agrees with PLD's REPLACE_ONE treatment of the Gaussian."""
    m = DpSgdMechanism(
        dataset_size=1000, batch_size=100, noise_multiplier=2.0, steps=20, sampling="shuffle", adjacency="replace-one"
    )
    direct = pld(dpa.SelfComposedDpEvent(dpa.GaussianDpEvent(2.0), 2), relation=R.REPLACE_ONE)
    assert compute_epsilon(m, 1e-5, "pld") == pytest.approx(direct, rel=1e-4)


def test_shuffle_epochs_never_undercounted_from_steps():
    """Without the loop's epoch length, an epoch is floor(n/B) steps: right when the remainder is dropped,
    an overcount otherwise (n=100, B=30, 10 steps: 4 epochs started with 3 full batches per epoch)."""
    m = DpSgdMechanism(dataset_size=100, batch_size=30, noise_multiplier=1.0, steps=10, sampling="shuffle")
    assert m.passes == 4
    assert m.replace(steps_per_epoch=4).passes == 3
    with pytest.raises(ValueError, match="steps_per_epoch"):
        m.replace(sampling="poisson", steps_per_epoch=4)


def test_sampling_rate_instead_of_batch_size():
    m = DpSgdMechanism.from_epochs(dataset_size=50000, batch_size=0.01 * 50000, noise_multiplier=1.0, epochs=2)
    assert m.steps == 200
    assert m.sampling_probability == pytest.approx(0.01)


def test_steps_for_epochs_convention():
    assert steps_for_epochs(60, 60000, 256) == 14063
    assert steps_for_epochs(1, 1000, 100) == 10
    assert steps_for_epochs(0.5, 1000, 100) == 5


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("noise_multiplier", 0.0, "noise_multiplier"),
        ("noise_multiplier", -1.0, "noise_multiplier"),
        ("noise_multiplier", float("nan"), "noise_multiplier"),
        ("batch_size", 2000, "batch_size"),
        ("steps", 0, "steps"),
        ("dataset_size", 0, "dataset_size"),
        ("num_microbatches", 0, "num_microbatches"),
        ("max_examples_per_user", 0, "max_examples_per_user"),
        ("sampling", "sometimes", "sometimes"),
    ],
)
def test_bad_values_are_named(field, value, match):
    args = dict(dataset_size=1000, batch_size=10, noise_multiplier=1.0, steps=5)
    args[field] = value
    with pytest.raises(ValueError, match=match):
        DpSgdMechanism(**args)


def test_numpy_numbers_are_kept_as_python_numbers():
    """A mechanism given numpy scalars (sizes counted with numpy) holds Python numbers: its fields go to JSON
    ledgers as they are, and it equals the mechanism of the same Python numbers."""
    mechanism = DpSgdMechanism(
        dataset_size=np.int64(1000),
        batch_size=10,
        noise_multiplier=np.float32(1.5),
        steps=np.int32(5),
        num_microbatches=np.int64(2),
    )
    fields = dataclasses.asdict(mechanism)
    assert [type(fields[name]) for name in ("dataset_size", "noise_multiplier", "steps", "num_microbatches")] == [
        int,
        float,
        int,
        int,
    ]
    json.dumps(fields)
    assert mechanism == DpSgdMechanism(
        dataset_size=1000, batch_size=10, noise_multiplier=1.5, steps=5, num_microbatches=2
    )


def test_report_states_context_and_versions():
    m = DpSgdMechanism.from_epochs(dataset_size=60000, batch_size=256, noise_multiplier=1.1, epochs=1)
    report = dp_sgd_report(m)
    data = report.to_dict()
    assert data["delta"] == 1e-6 and data["delta_is_default"] and data["warnings"] == []
    assert data["accountant_version"].startswith("dp-accounting 0.6")
    assert data["sampling"] == "poisson" and data["adjacency"] == "add-remove"
    assert data["epsilon_pld"] < data["epsilon_rdp"]
    assert data["dp_event"]["class_name"] == "SelfComposedDpEvent"
    text = report.format_text()
    for needle in (
        "poisson",
        "add-remove",
        "RdpAccountant",
        "PLDAccountant",
        "dp-accounting 0.6",
        "1e-06 (default: the largest power of ten at most 1/(2n) = 8.33e-06)",
        "60000 examples (treated as public: see the notes)",
    ):
        assert needle in text
    # n is published outside the guarantee, and the report says so (text and JSON)
    [note] = [note for note in data["notes"] if note.startswith("dataset size: n = 60000 is treated as public")]
    assert "epsilon does not cover it" in note and note in text


def test_report_per_epoch_rows_end_at_the_headline_value():
    m = DpSgdMechanism.from_epochs(dataset_size=1000, batch_size=64, noise_multiplier=1.0, epochs=2.5)
    report = dp_sgd_report(m, delta=1e-4, per_epoch=True)
    rows = report.per_epoch
    assert [r.epoch for r in rows] == [1, 2, 3]
    assert rows[-1].steps == m.steps
    assert rows[-1].epsilon == report.epsilon
    assert rows[0].epsilon["rdp"] == pytest.approx(compute_epsilon(m, 1e-4, "rdp", steps=16), abs=1e-9)
    eps = [r.epsilon["pld"] for r in rows]
    assert eps == sorted(eps)


def test_default_delta_is_the_largest_power_of_ten_at_most_one_over_2n():
    """Never close enough to 1/n for delta_warning (it could be 0.999/n), and no smaller than needed."""
    for n in [*range(1, 2001), 4999, 5000, 5001, 59999, 60000, 10**9, 5 * 10**9]:
        delta = default_delta(n)
        exponent = round(-math.log10(delta))
        assert delta == 10.0**-exponent and delta_warning(delta, n) is None, n
        assert Fraction(1, 10**exponent) <= Fraction(1, 2 * n) < Fraction(1, 10 ** (exponent - 1)), n


def _floats_around(x: float, steps: int = 3) -> list[float]:
    below, above = [x], [x]
    for _ in range(steps):
        below.append(math.nextafter(below[-1], 0))
        above.append(math.nextafter(above[-1], 1))
    return sorted({*below, *above})


def test_delta_below_one_over_n_is_exact_and_counts_the_float_nearest_one_over_n_as_one_over_n():
    """Expected from fractions: below 1/n exactly, and not the float nearest 1/n (found here by distance, not by
    1 / n). Before: delta_warning tested delta * n >= 1 in floats, so the float nearest 1/49 (below 1/49, 49 x it
    rounds to 0.9999999999999999) was 'close to 1/n' while the trainers refused it; the one nearest 1/3 (below
    1/3 too) was refused by both. A delta close to 1/n prints, with n x delta, below 1/n (before: 'delta=0.5 is
    1/n' for the float below 0.5, n = 2)."""
    for n in [*range(1, 3001), 10**6 + 1, 10**9 + 7, 3 * 10**15]:
        exact = Fraction(1, n)
        candidates = _floats_around(float(exact), 1)
        nearest = min(candidates, key=lambda f: abs(Fraction(f) - exact))
        for delta in _floats_around(nearest):
            below = Fraction(delta) < exact and delta != nearest
            assert delta_below_one_over_n(delta, n) is below, (n, delta)
            warning = delta_warning(delta, n) or ""
            assert ("is not below 1/n" in warning) is not below, (n, delta, warning)
            if below and n > 1:  # close to 1/n, and printed below it
                shown, share = re.search(r"^delta=(\S+) is (\S+)/n ", warning).groups()
                assert float(shown) < 1 / n and float(share) < 1, (n, delta, warning)
    assert not delta_below_one_over_n(1 / 49, 49) and delta_below_one_over_n(math.nextafter(1 / 49, 0), 49)
    assert delta_warning(math.nextafter(1 / 49, 0), 49).startswith("delta=0.020408 is 0.9999999999999998/n (n=49")
    assert delta_warning(1 / 49, 49).startswith("delta=0.020408163265306121 is not below 1/n=0.02040816326530612:")
    assert not delta_below_one_over_n(np.float64(1 / 49), np.int64(49))
    assert delta_below_one_over_n(np.float32(1 / 49), np.int64(49))  # float32's nearest is another, below 1/49
    assert [delta_below_one_over_n(x, 10) for x in (float("nan"), math.inf, -math.inf)] == [False, False, True]


def test_pld_cost_refusals_print_the_value_beyond_the_limit():
    """privacy.compared widens value and limit: before, '.3g' printed a noise multiplier of 0.19999 per step as
    '0.2 per step (below 0.2' and an RDP epsilon of 100.2 as 'about 100 by RDP (above 100'."""
    low = DpSgdMechanism(dataset_size=1000, batch_size=10, noise_multiplier=0.19999, steps=10)
    shown, bound = re.search(r"of (\S+) per step \(below (\S+):", low.cost_reason("pld", 1e-5)).groups()
    assert float(shown) == 0.19999 and float(bound) == 0.2

    def rdp_epsilon(sigma):  # full batches (q = 1), 10 steps, recomputed with dp-accounting
        return rdp(dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(1.0, dpa.GaussianDpEvent(sigma)), 10))

    lo, hi = 0.2, 2.0  # bisect sigma for an RDP epsilon of 100.2
    for _ in range(60):
        lo, hi = (lo, (lo + hi) / 2) if rdp_epsilon((lo + hi) / 2) < 100.2 else ((lo + hi) / 2, hi)
    high = DpSgdMechanism(dataset_size=1000, batch_size=1000, noise_multiplier=lo, steps=10)
    shown, bound = re.search(r"about (\S+) by RDP \(above (\S+),", high.cost_reason("pld", 1e-5)).groups()
    assert float(shown) > float(bound) == 100 and float(shown) == pytest.approx(rdp_epsilon(lo), abs=0.01)


def test_report_warns_when_delta_not_below_one_over_n():
    m = DpSgdMechanism(dataset_size=100, batch_size=10, noise_multiplier=1.0, steps=10)
    assert any("1/n" in w for w in dp_sgd_report(m, delta=0.02).warnings)
    assert not dp_sgd_report(m).warnings
