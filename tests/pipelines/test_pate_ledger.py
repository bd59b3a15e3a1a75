"""The PATE Trainer's settings and its privacy ledger (no TFX): the ledger's epsilon is dp-accounting's over the
aggregation's Gaussian events, recomputed here from the settings; a ledger whose events do not match is refused."""

import json
import math

import pytest
from dp_accounting import dp_event, pld, rdp

from pipelines import privacy_ledger
from pipelines.components.pate_trainer.spec import InvalidPateSetting, PateTrainingConfig
from privacy.accounting import NeighboringRelation
from privacy.decision import NoisyAccuracy
from privacy.pate import ConfidentGNMax, GNMax, data_independent_epsilon

FACTS = {"teachers": 10, "classes": 2, "answered": 17, "privacy_unit": "example"}
QUERIES = 140
DELTA = 1e-5


def direct_epsilons(events, delta=DELTA):
    """(RDP, PLD) epsilon of ``events`` [(noise multiplier, count)] straight from dp-accounting."""
    relation = NeighboringRelation.ADD_OR_REMOVE_ONE
    out = []
    for accountant in (
        rdp.RdpAccountant(neighboring_relation=relation),
        pld.PLDAccountant(neighboring_relation=relation),
    ):
        for noise_multiplier, count in events:
            accountant.compose(dp_event.GaussianDpEvent(noise_multiplier), count)
        out.append(accountant.get_epsilon(delta))
    return out


def test_a_confident_gnmax_ledger_composes_decision_selection_and_capped_answers_as_dp_accounting_does():
    aggregator = ConfidentGNMax(threshold=7, sigma1=3.0, sigma2=3.0, max_answered=20)
    decision = NoisyAccuracy.calibrate(0.6, DELTA)
    ledger = privacy_ledger.PrivacyLedger.for_pate(
        aggregator, queries=QUERIES, delta=DELTA, parameters=FACTS, decision=decision
    )
    read = privacy_ledger.PrivacyLedger.from_dict(json.loads(json.dumps(ledger.to_dict())))
    rdp_eps, pld_eps = direct_epsilons([(decision.std / math.sqrt(2), 1), (3.0, QUERIES), (3.0 / math.sqrt(2), 20)])
    assert read.epsilons["rdp"] == pytest.approx(rdp_eps, rel=1e-9)
    assert read.epsilons["pld"] == pytest.approx(pld_eps, rel=1e-6)
    assert read.epsilon == min(rdp_eps, pld_eps) or read.epsilon == pytest.approx(min(rdp_eps, pld_eps), rel=1e-6)
    assert read.mechanism == "pate" and read.privacy_unit == "example" and read.delta == DELTA
    assert "data-independent" in read.describe_epsilon()
    assert read.parameters["aggregator"] == aggregator.to_json() and read.parameters["queries"] == QUERIES
    # the labels alone: the data-independent guarantee of privacy.pate (RDP), the ledger's training part
    assert read.parts["training"]["rdp"] == pytest.approx(
        data_independent_epsilon(aggregator, QUERIES, DELTA), rel=1e-9
    )
    props = privacy_ledger.ledger_properties(read)
    assert props["epsilon"] >= read.epsilon and props["privacy_mechanism"] == "pate"


def test_a_gnmax_ledger_charges_every_query():
    ledger = privacy_ledger.PrivacyLedger.for_pate(
        GNMax(5.0), queries=QUERIES, delta=DELTA, parameters={**FACTS, "answered": QUERIES}
    )
    rdp_eps, pld_eps = direct_epsilons([(5.0 / math.sqrt(2), QUERIES)])
    assert ledger.epsilons["rdp"] == pytest.approx(rdp_eps, rel=1e-9)
    assert ledger.epsilons["pld"] == pytest.approx(pld_eps, rel=1e-6)


@pytest.mark.parametrize(
    "change",
    [
        {"queries": QUERIES - 1},
        {
            "aggregator": {
                "mechanism": "confident_gnmax",
                "threshold": 7,
                "sigma1": 3.0,
                "sigma2": 3.0,
                "max_answered": 10,
            }
        },
        {"aggregator": {"mechanism": "gnmax", "sigma": 3.0}},
        {"aggregator": {"mechanism": "confident_gnmax", "threshold": 7, "sigma1": 0, "sigma2": 3.0}},
        {"queries": "many"},
    ],
)
def test_a_ledger_whose_events_do_not_match_its_aggregation_is_refused(change):
    aggregator = ConfidentGNMax(threshold=7, sigma1=3.0, sigma2=3.0, max_answered=20)
    data = privacy_ledger.PrivacyLedger.for_pate(aggregator, queries=QUERIES, delta=DELTA, parameters=FACTS).to_dict()
    data["parameters"].update(change)
    with pytest.raises(privacy_ledger.LedgerError):
        privacy_ledger.PrivacyLedger.from_dict(data)


BUNDLED = {"label_key": "diagnosis", "num_classes": 2, "feature_keys": ["a", "b"]}


@pytest.mark.parametrize(
    "change, setting",
    [
        ({"teachers": 1}, "teachers"),
        ({"num_classes": 3, "teachers": 2}, "teachers"),
        ({"teachers": 100_001}, "teachers"),
        ({"sigma": 0}, "sigma"),
        ({"sigma": float("inf")}, "sigma"),
        ({"sigma1": 2e6}, "sigma1"),
        ({"threshold": -1}, "threshold"),
        ({"max_answered": 0}, "max_answered"),
        ({"aggregator": "gnmax", "threshold": 3}, "threshold"),
        ({"private": False}, "private"),
        ({"private_split": "public"}, "public_split"),
        ({"private_split": "eval"}, "private_split"),
        ({"feature_keys": []}, "feature_keys"),
        ({"feature_keys": ["a", "a"]}, "feature_keys"),
        ({"feature_keys": ["a", "diagnosis"]}, "feature_keys"),
        ({"delta": 1}, "delta"),
        ({"seed": -1}, "seed"),
        ({"decision_epsilon": 0}, "decision_epsilon"),
        ({"label_key": None}, "label_key"),
        ({"num_teachers": 5}, "num_teachers"),
        ({"holder_key": "site", "decision_epsilon": 0.5}, "decision_epsilon"),
        ({"semi_supervised": "yes"}, "semi_supervised"),
        ({"confidence": 0.8}, "confidence"),  # without semi_supervised: refused, not ignored
        ({"semi_supervised": False, "self_training_rounds": 3}, "self_training_rounds"),
        ({"semi_supervised": True, "confidence": 0}, "confidence"),
        ({"semi_supervised": True, "confidence": 1.5}, "confidence"),
        ({"semi_supervised": True, "confidence": float("nan")}, "confidence"),
        ({"semi_supervised": True, "self_training_rounds": 0}, "self_training_rounds"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(change, setting):
    with pytest.raises(InvalidPateSetting) as err:
        PateTrainingConfig.from_custom_config({**BUNDLED, **change})
    assert err.value.setting == setting, err.value


def test_defaults_are_confident_gnmax_with_a_declared_cap_and_the_unit_follows_the_holder_key():
    config = PateTrainingConfig.from_custom_config(BUNDLED)
    aggregator = config.make_aggregator()
    assert isinstance(aggregator, ConfidentGNMax) and aggregator.max_answered == 40
    assert config.privacy_unit == "example"
    assert PateTrainingConfig.from_custom_config({**BUNDLED, "holder_key": "site"}).privacy_unit == "user"


def test_a_smoothed_release_is_labelled_and_its_cost_composed_into_the_guarantee():
    """The ledger's guarantee with a smoothed release: the decision's and the labels' Gaussian RDP plus the GNSS
    release's cost (Theorem 23: a e^(2b) / s^2 + (b a - ln(1 - 2 a b) / 2) / (a - 1)) at orders in (1, 1/(2b)),
    converted by dp-accounting; PLD has no analysis of it. The labels alone stay the data-independent part."""
    import numpy as np
    from dp_accounting.rdp import rdp_privacy_accountant

    from privacy.pate import SmoothSensitivityRelease
    from privacy.pate.analysis import composition_orders

    top = np.random.default_rng(0).integers(6, 11, size=QUERIES)
    aggregator = ConfidentGNMax(threshold=7, sigma1=3.0, sigma2=5.0, max_answered=20)
    history = aggregator.aggregate(np.stack([top, 10 - top], axis=1), seed=1)  # seeds: a test, not a release
    release = SmoothSensitivityRelease(order=5.0).release(history, seed=2)
    decision = NoisyAccuracy.calibrate(0.6, DELTA)
    ledger = privacy_ledger.PrivacyLedger.for_pate(
        aggregator,
        queries=QUERIES,
        delta=DELTA,
        decision=decision,
        parameters={**FACTS, "smoothed_release": {**release.to_json(), "analysis": "smoothed"}},
    )
    read = privacy_ledger.PrivacyLedger.from_dict(json.loads(json.dumps(ledger.to_dict())))
    beta, sigma_ss = release.settings.beta, release.settings.sigma_ss
    orders = composition_orders(beta)
    gaussian = sum(
        count / (2 * noise**2)
        for noise, count in [(decision.std / math.sqrt(2), 1), (3.0, QUERIES), (5.0 / math.sqrt(2), 20)]
    )
    rdp_curve = [
        a * gaussian + a * math.exp(2 * beta) / sigma_ss**2 + (beta * a - 0.5 * math.log(1 - 2 * a * beta)) / (a - 1)
        for a in orders
    ]
    expected = rdp_privacy_accountant.compute_epsilon(orders, rdp_curve, DELTA)[0]
    assert read.epsilons == {"rdp": pytest.approx(expected, rel=1e-9), "pld": None}
    assert read.epsilon == pytest.approx(expected, rel=1e-9) and "PLD: no analysis" in read.describe_epsilon()
    labels = direct_epsilons([(3.0, QUERIES), (5.0 / math.sqrt(2), 20)])
    assert read.epsilon > min(labels) and read.smoothed_release().rdp == release.rdp
    data = ledger.to_dict()
    data["parameters"]["smoothed_release"]["rdp"] = float("nan")
    with pytest.raises(privacy_ledger.LedgerError, match="smoothed release"):
        privacy_ledger.PrivacyLedger.from_dict(data)


@pytest.mark.parametrize(
    "change, setting",
    [
        ({"smooth_order": 5}, "smooth_order"),
        ({"smoothed_release": True, "smooth_order": 1}, "smooth_order"),
        ({"smoothed_release": True, "smooth_order": 5, "smooth_beta": 0.2}, "smooth_beta"),
        ({"smoothed_release": True, "sigma_ss": 0}, "sigma_ss"),
        ({"smoothed_release": "yes"}, "smoothed_release"),
    ],
)
def test_bad_smoothing_settings_are_refused_naming_the_key(change, setting):
    with pytest.raises(InvalidPateSetting) as err:
        PateTrainingConfig.from_custom_config({**BUNDLED, **change})
    assert err.value.setting == setting, err.value


def test_the_gate_judges_a_pate_ledgers_delta_against_no_record_count_with_the_same_warning_for_every_data_set():
    """A PATE ledger publishes no private count, so the delta check cannot be flipped by one private record: it is
    one fixed warning (never a problem), whatever count a foreign ledger claims."""
    from pipelines.components.private_evaluator import coverage

    aggregator = ConfidentGNMax(threshold=7, sigma1=3.0, sigma2=3.0, max_answered=20)
    findings = []
    for facts in (FACTS, {**FACTS, "dataset_size": 99}, {**FACTS, "dataset_size": 100}):
        ledger = privacy_ledger.PrivacyLedger.for_pate(aggregator, queries=QUERIES, delta=0.01, parameters=facts)
        findings.append(coverage.delta_findings(ledger))
    assert findings == [([], [coverage.PATE_DELTA_UNCHECKED.format(delta=0.01)])] * 3
    assert "not checked against 1/n" in findings[0][1][0]


def test_every_pate_ledger_lists_its_floating_point_noise_outside_the_guarantee():
    """PATE's vote noise is numpy's float64 normal (`privacy.preprocessing.noise.NoiseSource`), which the accountant
    takes for real-valued Gaussian noise: every PATE ledger lists it, beside what the run listed, and one written
    before it was listed reads back with it."""
    from privacy.preprocessing.noise import NoiseSource

    assert NoiseSource(seed=1).normal(3.0, size=4).dtype == "float64"  # what the aggregators add to the votes
    ledger = privacy_ledger.PrivacyLedger.for_pate(
        GNMax(5.0), queries=QUERIES, delta=DELTA, parameters={**FACTS, "outside_guarantee": {"x": "why"}}
    )
    outside = ledger.parameters["outside_guarantee"]
    assert outside == {**privacy_ledger.PATE_FLOATING_POINT_NOISE, "x": "why"}
    assert (
        "numpy's float64 normal" in outside["floating-point noise"]
        and "Mironov 2012" in outside["floating-point noise"]
    )
    data = json.loads(json.dumps(ledger.to_dict()))
    del data["parameters"]["outside_guarantee"]  # as a file written before it was listed
    read = privacy_ledger.PrivacyLedger.from_dict(data)
    assert read.parameters["outside_guarantee"] == privacy_ledger.PATE_FLOATING_POINT_NOISE
    assert read.delta == DELTA and read.epsilons == ledger.epsilons
