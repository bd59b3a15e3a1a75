"""Loss-threshold membership inference: exact values against scikit-learn and brute force, and
statistical checks of the AUC and its DeLong confidence interval."""

import math

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics

from privacy.auditing import MembershipAudit, loss_threshold_audit, per_example_cross_entropy


def _labels_scores(members, nonmembers):
    labels = np.r_[np.ones(len(members)), np.zeros(len(nonmembers))]
    return labels, -np.r_[members, nonmembers]  # lower loss = more likely a member


@pytest.mark.parametrize("decimals", [None, 1])  # 1 decimal: many ties
def test_auc_advantage_and_tpr_match_sklearn(decimals):
    rng = np.random.default_rng(0)
    members, nonmembers = rng.gamma(2.0, 0.3, 300), rng.gamma(2.0, 0.4, 200)
    if decimals is not None:
        members, nonmembers = members.round(decimals), nonmembers.round(decimals)
    audit = loss_threshold_audit(members, nonmembers)
    labels, scores = _labels_scores(members, nonmembers)
    assert audit.auc == pytest.approx(metrics.roc_auc_score(labels, scores), abs=1e-12)
    fpr, tpr, _ = metrics.roc_curve(labels, scores, drop_intermediate=False)
    assert audit.advantage == pytest.approx(np.max(tpr - fpr), abs=1e-12)
    for level in (0.01, 0.1):
        assert audit.tpr_at_fpr[level] == pytest.approx(np.max(tpr[fpr <= level]), abs=1e-12)
    assert (audit.num_members, audit.num_nonmembers) == (300, 200)
    assert audit.mean_member_loss == pytest.approx(members.mean())
    assert audit.mean_nonmember_loss == pytest.approx(nonmembers.mean())


def test_delong_standard_error_matches_pairwise_definition():
    rng = np.random.default_rng(1)
    members, nonmembers = rng.normal(0, 1, 57).round(1), rng.normal(0.5, 1, 43).round(1)
    # psi(i, j) = 1 if member i has lower loss than non-member j, 1/2 on ties.
    psi = (members[:, None] < nonmembers[None, :]) + 0.5 * (members[:, None] == nonmembers[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    expected = math.sqrt(v10.var(ddof=1) / len(members) + v01.var(ddof=1) / len(nonmembers))
    audit = loss_threshold_audit(members, nonmembers)
    assert audit.auc == pytest.approx(psi.mean(), abs=1e-12)
    assert audit.auc_standard_error == pytest.approx(expected, rel=1e-10)


def test_auc_of_shifted_gaussians_matches_theory():
    # Losses N(0, 1) for members and N(d, 1) for non-members: AUC = Phi(d / sqrt(2)).
    # With 4000 + 4000 draws the standard error is about 0.006; a 4-SE band fails w.p. < 1e-4.
    rng = np.random.default_rng(2)
    d, m = 0.5, 4000
    audit = loss_threshold_audit(rng.normal(0, 1, m), rng.normal(d, 1, m))
    theory = stats.norm.cdf(d / math.sqrt(2))
    assert abs(audit.auc - theory) < 4 * audit.auc_standard_error
    # Hanley & McNeil's (1982) closed-form standard error, an independent approximation.
    q1, q2 = theory / (2 - theory), 2 * theory**2 / (1 + theory)
    hanley_mcneil = math.sqrt((theory * (1 - theory) + (m - 1) * (q1 - theory**2) + (m - 1) * (q2 - theory**2)) / m**2)
    assert audit.auc_standard_error == pytest.approx(hanley_mcneil, rel=0.1)


def test_confidence_interval_covers_chance_at_the_nominal_rate():
    # Same distribution for both sets: the 95% CI should cover 0.5 in ~95% of 300 trials
    # (binomial sd 3.8 trials); requiring >= 270 fails with probability < 1e-4 if coverage is 95%,
    # and catches an interval that is too narrow by a third (coverage ~83%) with probability > 0.99.
    rng = np.random.default_rng(3)
    covered = 0
    for _ in range(300):
        low, high = loss_threshold_audit(rng.exponential(1, 100), rng.exponential(1, 100)).auc_ci95
        covered += low <= 0.5 <= high
    assert 270 <= covered <= 298


def test_perfect_separation_and_reversal():
    perfect = loss_threshold_audit([0.1, 0.2, 0.3], [1.0, 2.0])
    assert (perfect.auc, perfect.advantage, perfect.tpr_at_fpr[0.01]) == (1.0, 1.0, 1.0)
    reversed_ = loss_threshold_audit([1.0, 2.0], [0.1, 0.2, 0.3])
    assert (reversed_.auc, reversed_.advantage) == (0.0, 0.0)


def test_round_trip_through_dict():
    audit = loss_threshold_audit([0.1, 0.5, 0.2, 0.9], [0.4, 1.1, 0.3])
    again = MembershipAudit.from_dict(audit.to_dict())
    assert again == audit
    assert "attack AUC" in audit.format_text()
    with pytest.raises(ValueError, match="malformed membership audit"):
        MembershipAudit.from_dict({"auc": 0.5})


@pytest.mark.parametrize(
    "members, nonmembers, message",
    [
        ([], [1.0], "member_losses is empty"),
        ([1.0], [], "nonmember_losses is empty"),
        ([1.0, float("nan")], [1.0], "member_losses holds 1 non-finite losses .*index 1"),
        ([1.0], [float("inf")], "nonmember_losses holds 1 non-finite"),
    ],
)
def test_bad_losses_are_named(members, nonmembers, message):
    with pytest.raises(ValueError, match=message):
        loss_threshold_audit(members, nonmembers)


def test_cross_entropy_binary_and_multiclass():
    p = np.array([0.9, 0.2, 1.0, 0.0])
    y = np.array([1, 0, 0, 1])
    expected = [-math.log(0.9), -math.log(0.8), -math.log(1e-7), -math.log(1e-7)]
    np.testing.assert_allclose(per_example_cross_entropy(y, p), expected, rtol=1e-6)
    np.testing.assert_allclose(per_example_cross_entropy(y[:, None], p[:, None]), expected, rtol=1e-6)
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    np.testing.assert_allclose(per_example_cross_entropy([0, 2], probs), [-math.log(0.7), -math.log(0.8)])


@pytest.mark.parametrize(
    "labels, probs, message",
    [
        ([0, 2], [0.1, 0.2], "binary labels must be 0 or 1"),
        ([0, 1], [0.1, 1.5], r"in \[0, 1\]"),
        ([0, 1, 1], [0.1, 0.2], "3 labels but 2 predictions"),
        ([0, 3], [[0.5, 0.5], [0.5, 0.5]], r"labels must be in \[0, 2\)"),
        ([0.5, 1], [0.1, 0.2], "integer class indices"),
    ],
)
def test_cross_entropy_rejects_bad_input(labels, probs, message):
    with pytest.raises(ValueError, match=message):
        per_example_cross_entropy(labels, probs)
