"""PATE's epsilons: the data-independent one against dp-accounting directly, the data-dependent analysis and its
smooth-sensitivity release against the figures printed by the paper's public analysis code.

Reference figures: tensorflow/privacy research/pate_2018 at commit 03035d5d4a271ac795dab80f5bc1cef82fc3d462
(core.py, smooth_sensitivity.py, ICLR2018/smooth_sensitivity_table.py), run unmodified in a side environment
outside this repository (ppml runtime Python 3.13, numpy 2.4.6, scipy 1.18.1, absl-py, sympy from PyPI):
  python make_votes.py        # writes votes.npy from `_histogram` below (the same formula)
  python smooth_sensitivity_table.py --counts_file=votes.npy --sigma2=40 --order=20 --delta=1e-5
    -> "RDP at 20.0 goes from 0.931 to 1.112 +/- 0.118 (ss = 0.008878, beta = 0.0200, sigma_ss = 13.285)"
       "Conditions C5-C6 hold for all orders."
  python driver_confident.py  # on votes.npy, threshold 150, sigma1 60, sigma2 40, order 20, 250 teachers,
      # query i answered iff i % 3 != 0: sums core.compute_rdp_threshold(core.compute_logpr_answered(150, 60, v),
      # 60, 20) over all queries plus core.rdp_gaussian(core.compute_logq_gaussian(v, 40), 40, 20) over the
      # answered ones, and likewise compute_local_sensitivity_bounds_threshold / _gnmax, then prints "%.10g" of
      # the sum, of compute_discounted_max(beta, sum) at beta 0.3/20 and 0.4/20,
      # compute_rdp_of_smooth_sensitivity_gaussian(0.02, 10, 20), compute_logq0_gnmax(40, 20) and
      # compute_logq_gaussian(votes[0], 40) ("%.12g" for the last two)
    -> rdp 0.3265362998; beta 0.015 ss 0.007120911741; beta 0.02 ss 0.005967536973
       gnss(beta=0.02, sigma_ss=10, order=20) 0.2715684157; logq0(40, 20) -3.15687304935
       logq votes[0] -0.105360515658
  smooth_sensitivity_test.py's worked values (local sensitivities, conditions C5-C6) are asserted below too.
The paper's published MNIST/SVHN vote files (storage.googleapis.com) cannot be downloaded here.
"""

import json
import math

import dp_accounting
import numpy as np
import pytest
from dp_accounting import dp_event
from dp_accounting.rdp import rdp_privacy_accountant

from privacy.pate import (
    ConfidentGNMax,
    GNMax,
    SmoothedRdp,
    SmoothSensitivityRelease,
    VoteHistory,
    analyze,
    data_independent_epsilon,
    pate_dp_event,
    release_or_refusal,
)
from privacy.pate import data_dependent as dd
from privacy.pate import smooth_sensitivity as ss
from privacy.pate.votes import PateConfigurationError

ORDER, DELTA = 20.0, 1e-5


def _histogram(queries=40, teachers=250, classes=10):
    rows = []
    for i in range(queries):
        top = 60 + (i * 37) % 191
        rest = teachers - top
        row = [rest // (classes - 1) + (1 if j < rest % (classes - 1) else 0) for j in range(classes - 1)]
        row.insert(i % classes, top)
        rows.append(row)
    return np.array(rows)


def _history(aggregator, answered=None):
    votes = _histogram()
    answered = np.ones(len(votes), dtype=bool) if answered is None else answered
    return VoteHistory(aggregator, votes, answered, np.zeros(len(votes), dtype=np.int64), "test")


def _direct_epsilon(events, delta):
    accountant = dp_accounting.rdp.RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
    for event, count in events:
        accountant.compose(event, count)
    return accountant.get_epsilon(delta)


@pytest.mark.parametrize("sigma,queries", [(40.0, 100), (5.0, 1), (100.0, 2000)])
def test_gnmax_data_independent_epsilon_is_dp_accounting_gaussian_with_sensitivity_sqrt2(sigma, queries):
    expected = _direct_epsilon([(dp_event.GaussianDpEvent(sigma / math.sqrt(2)), queries)], DELTA)
    assert data_independent_epsilon(GNMax(sigma), queries, DELTA) == pytest.approx(expected, rel=1e-12)
    # ... whose RDP is alpha / sigma^2 per query (the paper's Proposition 8).
    accountant = dp_accounting.rdp.RdpAccountant([2.0, 8.0, 32.0])
    accountant.compose(dp_event.GaussianDpEvent(sigma / math.sqrt(2)), queries)
    rdp = accountant._rdp
    assert np.allclose(rdp, queries * np.array([2.0, 8.0, 32.0]) / sigma**2)


@pytest.mark.parametrize("cap", [None, 40])
def test_confident_gnmax_data_independent_epsilon_charges_every_selection(cap):
    queries, aggregator = 300, ConfidentGNMax(150, 60.0, 40.0, max_answered=cap)
    answers = queries if cap is None else cap
    expected = _direct_epsilon(
        [(dp_event.GaussianDpEvent(60.0), queries), (dp_event.GaussianDpEvent(40.0 / math.sqrt(2)), answers)], DELTA
    )
    assert data_independent_epsilon(aggregator, queries, DELTA) == pytest.approx(expected, rel=1e-12)


def test_gnmax_data_dependent_analysis_matches_smooth_sensitivity_table():
    history = _history(GNMax(40.0))
    rdp = dd.history_rdp(history, ORDER)
    assert round(dd.rdp_to_epsilon(rdp, ORDER, DELTA), 3) == 0.931
    smooth = ss.smooth_sensitivity(ss.history_local_sensitivities(history, ORDER), 0.02)
    assert f"{smooth:.4}" == "0.008878"
    sigma_ss = (ORDER * math.exp(2 * 0.02) / smooth) ** (1 / 3)  # the script's choice of sigma_ss at beta 0.02
    assert f"{sigma_ss:.3f}" == "13.285"
    assert round(dd.rdp_to_epsilon(rdp + ss.gnss_rdp(0.02, sigma_ss, ORDER), ORDER, DELTA), 3) == 1.112
    assert round(smooth * sigma_ss, 3) == 0.118
    assert ss.check_conditions(40.0, 10, ORDER) == (True, True)


def test_confident_gnmax_data_dependent_analysis_matches_the_paper_code():
    answered = np.array([i % 3 != 0 for i in range(40)])
    history = _history(ConfidentGNMax(150, 60.0, 40.0), answered)
    assert dd.history_rdp(history, ORDER) == pytest.approx(0.3265362998, abs=5e-11)
    sensitivities = ss.history_local_sensitivities(history, ORDER)
    # The reference prints 0.007120911741 at b = 0.015 from its "exactly d" selection bounds; the running
    # maximum this code takes (see test_local_sensitivities_match_smooth_sensitivity_test_worked_values) can
    # only raise it, and here does, to 0.0071641858. At b = 0.02 both give the same value.
    assert ss.smooth_sensitivity(sensitivities, 0.015) == pytest.approx(0.007164185777, abs=5e-13)
    assert ss.smooth_sensitivity(sensitivities, 0.015) > 0.007120911741
    assert ss.smooth_sensitivity(sensitivities, 0.02) == pytest.approx(0.005967536973, abs=5e-13)
    assert ss.gnss_rdp(0.02, 10.0, ORDER) == pytest.approx(0.2715684157, abs=5e-11)
    assert ss.log_q0(40.0, ORDER) == pytest.approx(-3.15687304935, abs=5e-12)
    assert dd.log_q_gnmax(_histogram()[0], 40.0) == pytest.approx(-0.105360515658, abs=5e-13)


def test_local_sensitivities_match_smooth_sensitivity_test_worked_values():
    # smooth_sensitivity_test.py, test_compute_local_sensitivity_bounds_gnmax / _threshold. For the threshold
    # case the reference code itself now prints 9.01543266e-02, 1.16054000e-01 at d = 7, 8 (its test's
    # 9.01543247e-02, 1.16054002e-01 fail there too, at rtol 1e-8, with scipy 1.18.1): we assert what it prints.
    right = ss.local_sensitivities_gnmax(np.array([10, 0, 0]), 10, 0.5, 1.5)
    assert np.allclose(right, [3.13503646e-17, 1.60178280e-08, 5.90681786e-03] + [5.99981308e00] * 7, rtol=1e-8, atol=0)
    left = ss.local_sensitivities_gnmax(np.array([1000, 500, 300, 200, 0]), 2000, 250.0, 10.0)
    assert np.allclose(
        left, [0.0] * 298 + [2.77693450548e-7, 2.10853979548e-6] + [2.73113623988e-6] * 1700, rtol=1e-8, atol=0
    )
    # The selection step deliberately deviates from the reference code: it prints LS at |v - top| = d exactly
    # (and 0 once every v is reachable); we take the running maximum over |v - top| <= d, which a sum over
    # queries needs to be b-smooth (test_selection_smooth_sensitivity_is_beta_smooth_on_neighbours).
    high = ss.local_sensitivities_selection(np.array([20, 10, 0]), 30, 16, 2, 10)
    assert np.allclose(
        high,
        np.maximum.accumulate(
            [0] * 3
            + [
                1.48454129e-04,
                1.47826870e-02,
                3.94153241e-02,
                6.45775697e-02,
                9.01543266e-02,
                1.16054000e-01,
                1.42180452e-01,
                1.42180452e-01,
                1.48454129e-04,
                1.47826870e-02,
                3.94153241e-02,
                6.45775697e-02,
                9.01543266e-02,
                1.16054000e-01,
                1.42180452e-01,
                1.68302106e-01,
                1.93127860e-01,
            ]
            + [0] * 10
        ),
        rtol=1e-8,
        atol=0,
    )


@pytest.mark.parametrize("teachers, threshold, sigma1, order", [(30, 16.0, 2.0, 10.0), (250, 200.0, 20.0, 20.0)])
def test_selection_smooth_sensitivity_is_beta_smooth_on_neighbours(teachers, threshold, sigma1, order):
    # Two queries of the selection step alone; a neighbour (one teacher changes its vote) moves each query's
    # maximum by at most one. b-smoothness: S(x) <= e^b S(x') for every such pair (the reference code's
    # "exactly d" bounds give worst ratios 1.27 and 1.91 here).
    beta = 0.4 / order
    tops = range(teachers // 2 + 1, teachers + 1)
    ls = {
        v: ss.local_sensitivities_selection(np.array([v, teachers - v]), teachers, threshold, sigma1, order)
        for v in tops
    }
    smooth = {(a, b): ss.smooth_sensitivity(ls[a] + ls[b], beta) for a in tops for b in tops}
    worst = max(
        smooth[a, b] / smooth[a2, b2]
        for (a, b) in smooth
        for a2 in (a - 1, a, a + 1)
        for b2 in (b - 1, b, b + 1)
        if (a2, b2) in smooth
    )
    assert worst <= math.exp(beta) * (1 + 1e-9)


def test_conditions_c5_c6_match_smooth_sensitivity_test():
    assert ss.check_conditions(20.0, 10, 25.0) == (True, False)
    assert ss.check_conditions(30.0, 10, 25.0) == (True, True)


def test_local_sensitivity_bounds_the_change_under_one_teacher_changing_its_vote():
    rng = np.random.default_rng(3)
    history = _history(GNMax(40.0))
    bound = ss.history_local_sensitivities(history, ORDER)[0]
    base = dd.history_rdp(history, ORDER)
    for _ in range(200):  # a neighbour: one teacher moves its vote on every query
        votes = history.votes.copy()
        for row in votes:
            source = rng.choice(np.flatnonzero(row > 0))
            row[source] -= 1
            row[(source + 1 + rng.integers(len(row) - 1)) % len(row)] += 1
        neighbour = VoteHistory(history.aggregator, votes, history.answered, history.labels, "test")
        assert abs(dd.history_rdp(neighbour, ORDER) - base) <= bound + 1e-12


def test_report_names_each_analysis_and_never_the_raw_data_dependent_epsilon():
    history = _history(GNMax(40.0))
    smoothed = SmoothSensitivityRelease(order=ORDER).release(history, seed=1)
    report = analyze(history, DELTA, smoothed=smoothed).to_json()
    assert report["guarantee"]["labels_epsilon"] == pytest.approx(data_independent_epsilon(GNMax(40.0), 40, DELTA))
    assert "dp_accounting" in report["guarantee"]["analysis"] and "Thm 23" in report["guarantee"]["analysis"]
    smoothed = report["smoothed_data_dependent"]
    assert "smooth sensitivity" in smoothed["analysis"] and set(smoothed) == {
        "epsilon",
        "analysis",
        "order",
        "beta",
        "sigma_ss",
        "noise",
    }
    raw = dd.rdp_to_epsilon(dd.history_rdp(history, ORDER), ORDER, DELTA)
    assert smoothed["epsilon"] != pytest.approx(raw)  # noised and charged for the release
    assert "add/remove one record" in report["privacy_unit"] and "two teachers" in report["privacy_unit"]


@pytest.mark.parametrize("aggregator, queries", [(GNMax(40.0), 40), (ConfidentGNMax(150, 60.0, 40.0), 40)])
def test_guarantee_composes_the_labels_with_the_smoothed_release(aggregator, queries):
    # The report publishes the labels and the smoothed release: its guarantee covers both. Recomputed here from
    # dp-accounting's RDP of the labels plus Theorem 23's RDP of the release, at orders in (1, 1/(2 beta)).
    answered = np.ones(queries, bool) if isinstance(aggregator, GNMax) else np.array([i % 3 != 0 for i in range(40)])
    history = _history(aggregator, answered)
    settings = SmoothSensitivityRelease(order=ORDER, beta=0.02, sigma_ss=10.0)
    report = analyze(history, DELTA, smoothed=settings.release(history, seed=2))
    orders = list(np.linspace(1.01, 24.99, 400))
    accountant = dp_accounting.rdp.RdpAccountant(orders, dp_accounting.NeighboringRelation.REPLACE_ONE)
    accountant.compose(pate_dp_event(aggregator, queries))
    release = [o * math.exp(0.04) / 100 + (0.02 * o - 0.5 * math.log(1 - 0.04 * o)) / (o - 1) for o in orders]
    direct = rdp_privacy_accountant.compute_epsilon(orders, np.asarray(accountant._rdp) + release, DELTA)[0]
    labels = data_independent_epsilon(aggregator, queries, DELTA)
    assert report.labels_epsilon == pytest.approx(labels, rel=1e-12)
    assert report.epsilon > labels and report.epsilon == pytest.approx(direct, rel=2e-3)
    assert analyze(history, DELTA).epsilon == pytest.approx(labels, rel=1e-12)  # nothing else released


def test_release_is_refused_where_conditions_fail():
    history = VoteHistory(
        GNMax(20.0), np.tile([200, 50, 0, 0, 0, 0, 0, 0, 0, 0], (5, 1)), np.ones(5, bool), np.zeros(5, np.int64), "test"
    )
    smoothed, refused = release_or_refusal(SmoothSensitivityRelease(order=25.0, beta=0.01), history)
    assert smoothed is None and "C6" in refused
    report = analyze(history, DELTA, smoothed=smoothed, smoothed_refused=refused)
    assert report.epsilon == report.labels_epsilon and "C6" in report.to_json()["smoothed_data_dependent"]["refused"]


def test_smoothed_release_round_trips_through_json_and_is_never_redrawn():
    history = _history(GNMax(40.0))
    smoothed = SmoothSensitivityRelease(order=ORDER).release(history)
    again = SmoothedRdp.from_json(json.loads(json.dumps(smoothed.to_json())))
    assert again == smoothed
    assert analyze(history, DELTA, smoothed=again).to_json() == analyze(history, DELTA, smoothed=smoothed).to_json()


@pytest.mark.parametrize(
    "call, message",
    [  # ``:g`` printed the bound 1/6 as 0.166667 beside a beta above it shown as 0.1666666667 (inside, as read)
        (
            lambda: SmoothSensitivityRelease(order=3, beta=0.1666666667),
            "smooth-sensitivity beta must be in (0, 1/(2*order)) = (0, 0.166667), got 0.1667",
        ),
        (  # and 1/(2 beta) = 2.9999999994 as 3, beside an order of 3: "in (1, 3), got 3"
            lambda: ss.gnss_rdp(0.1666666667, 10.0, 3.0),
            "order must be in (1, 1/(2*beta)) = (1, 2.999999999), got 3",
        ),
    ],
)
def test_smooth_sensitivity_refusals_print_value_and_bound_in_their_order(call, message):
    with pytest.raises(PateConfigurationError) as info:
        call()
    assert str(info.value) == message
