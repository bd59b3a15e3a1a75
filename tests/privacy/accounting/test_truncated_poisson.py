"""Truncated Poisson sampling as the accountant sees it: the event, its epsilon and its refusals."""

import math

import dp_accounting as dpa
import pytest
from scipy import stats

from privacy.accounting import DpSgdMechanism, UnsupportedAccounting, compute_epsilon, dp_sgd_report


def _truncated(**changes):
    kwargs = dict(dataset_size=2000, batch_size=40, noise_multiplier=1.0, steps=200, truncated_batch_size=44)
    kwargs.update(changes)
    return DpSgdMechanism(**kwargs)


def _pld_epsilon(relation, event_size):
    accountant = dpa.pld.PLDAccountant(relation)
    accountant.compose(dpa.TruncatedSubsampledGaussianDpEvent(event_size, 40 / 2000, 44, 1.0), 200)
    return accountant.get_epsilon(1e-5)


@pytest.mark.parametrize(
    "adjacency, relation, event_size",
    [
        ("add-remove", dpa.NeighboringRelation.ADD_OR_REMOVE_ONE, 2001),
        ("replace-one", dpa.NeighboringRelation.REPLACE_ONE, 2000),
    ],
)
def test_epsilon_is_dp_accountings_for_the_truncated_event(adjacency, relation, event_size):
    """dp-accounting's truncation probability is P(Binomial(dataset_size - 1, q) >= K): dataset_size counts x and
    the others, so it is the size of the dataset that holds x. Under add-remove the neighbour D + x of the n = 2000
    examples trained on has n + 1, and the epsilon at n + 1 bounds the one at n (D - x); replace-one keeps n."""
    m = _truncated(adjacency=adjacency)
    expected = _pld_epsilon(relation, event_size)
    assert m.unit_event().dataset_size == event_size
    assert compute_epsilon(m, 1e-5, "pld") == pytest.approx(expected, rel=1e-12)
    if adjacency == "add-remove":
        assert expected > _pld_epsilon(relation, 2000)
    untruncated = compute_epsilon(m.replace(truncated_batch_size=None), 1e-5, "pld")
    assert expected > untruncated * 1.01  # K = B + 0.6 sd: cut in a quarter of the steps, at a cost
    assert m.truncation_probability == pytest.approx(stats.binom.sf(44, 2000, 0.02))


def test_a_cap_no_batch_reaches_costs_nothing():
    m = _truncated(truncated_batch_size=2000)
    assert m.truncation_probability == 0.0
    assert compute_epsilon(m, 1e-5, "pld") == pytest.approx(
        compute_epsilon(m.replace(truncated_batch_size=None), 1e-5, "pld"), rel=1e-9
    )


def test_rdp_microbatches_and_other_samplings_are_refused():
    with pytest.raises(UnsupportedAccounting, match="no analysis of truncated Poisson"):
        compute_epsilon(_truncated(), 1e-5, "rdp")
    with pytest.raises(ValueError, match="per-example clipping only"):
        _truncated(num_microbatches=4)
    with pytest.raises(ValueError, match="only applies to Poisson sampling"):
        _truncated(sampling="fixed", adjacency="replace-one")
    with pytest.raises(ValueError, match="truncated_batch_size"):
        _truncated(truncated_batch_size=0)


def test_report_names_the_cut_and_its_probability():
    report = dp_sgd_report(_truncated(), delta=1e-5)
    assert report.to_dict()["truncated_batch_size"] == 44
    assert report.to_dict()["dp_event"]["event"]["class_name"] == "TruncatedSubsampledGaussianDpEvent"
    # an added example can push another out of a cut batch: the sum moves by 2C (dp-accounting's sigma / 2 part)
    assert report.to_dict()["sensitivity"] == 2.0
    text = report.format_text()
    assert "sensitivity 2 C (C, or 2 C when an added example pushes another out of a cut batch)" in text
    assert dp_sgd_report(_truncated(adjacency="replace-one"), delta=1e-5).to_dict()["sensitivity"] == 2.0
    p = stats.binom.sf(44, 2000, 0.02)
    assert f"batches of more than 44 cut to a random 44 of them (probability {p:.3g} per step)" in text
    assert math.isfinite(report.epsilon["pld"]) and report.epsilon.get("rdp") is None


@pytest.mark.slow
def test_the_default_cap_costs_about_one_percent_at_mnist_scale():
    """The default cap (B + 4 sd: 320 rows for B = 256 of n = 60 000) pads a Poisson batch to 320 rows instead of the
    1e-9 quantile's 357, at the epsilon dp-accounting gives the truncated event (n + 1 under add-remove; recomputed
    here): 60 epochs of 234 steps at sigma 1.1, delta 1e-5 cost about 1 % more than untruncated Poisson (2.407
    against 2.380), while B + 2 sd (288 rows) nearly doubles epsilon (what benchmarks/README.md reports)."""
    from privacy.accounting import truncation

    n, batch, sigma, steps = 60000, 256, 1.1, 60 * round(60000 / 256)
    cap = truncation.default_truncated_batch_size(n, batch)
    assert cap == 320

    def pld(event):
        accountant = dpa.pld.PLDAccountant()
        accountant.compose(event, steps)
        return accountant.get_epsilon(1e-5)

    m = DpSgdMechanism(dataset_size=n, batch_size=batch, noise_multiplier=sigma, steps=steps, truncated_batch_size=cap)
    expected = pld(dpa.TruncatedSubsampledGaussianDpEvent(n + 1, batch / n, cap, sigma))
    assert compute_epsilon(m, 1e-5, "pld") == pytest.approx(expected, rel=1e-9)
    untruncated = pld(dpa.PoissonSampledDpEvent(batch / n, dpa.GaussianDpEvent(sigma)))
    assert compute_epsilon(m.replace(truncated_batch_size=None), 1e-5, "pld") == pytest.approx(untruncated, rel=1e-9)
    assert 1.005 * untruncated < expected < 1.02 * untruncated, (expected, untruncated)
    tight = pld(dpa.TruncatedSubsampledGaussianDpEvent(n + 1, batch / n, 288, sigma))
    assert tight > 1.8 * untruncated, tight
