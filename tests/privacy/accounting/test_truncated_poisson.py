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


@pytest.mark.parametrize("adjacency, relation", [("add-remove", dpa.NeighboringRelation.ADD_OR_REMOVE_ONE),
                                                 ("replace-one", dpa.NeighboringRelation.REPLACE_ONE)])
def test_epsilon_is_dp_accountings_for_the_truncated_event(adjacency, relation):
    m = _truncated(adjacency=adjacency)
    accountant = dpa.pld.PLDAccountant(relation)
    accountant.compose(dpa.TruncatedSubsampledGaussianDpEvent(2000, 40 / 2000, 44, 1.0), 200)
    expected = accountant.get_epsilon(1e-5)
    assert compute_epsilon(m, 1e-5, "pld") == pytest.approx(expected, rel=1e-12)
    untruncated = compute_epsilon(m.replace(truncated_batch_size=None), 1e-5, "pld")
    assert expected > untruncated * 1.01  # K = B + 0.6 sd: cut in a quarter of the steps, at a cost
    assert m.truncation_probability == pytest.approx(stats.binom.sf(44, 2000, 0.02))


def test_a_cap_no_batch_reaches_costs_nothing():
    m = _truncated(truncated_batch_size=2000)
    assert m.truncation_probability == 0.0
    assert compute_epsilon(m, 1e-5, "pld") == pytest.approx(
        compute_epsilon(m.replace(truncated_batch_size=None), 1e-5, "pld"), rel=1e-9)


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
    text = report.format_text()
    p = stats.binom.sf(44, 2000, 0.02)
    assert f"batches of more than 44 cut to a random 44 of them (probability {p:.3g} per step)" in text
    assert math.isfinite(report.epsilon["pld"]) and report.epsilon.get("rdp") is None
