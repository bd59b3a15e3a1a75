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

FACTS = {"teachers": 10, "classes": 2, "answered": 17, "privacy_unit": "example", "dataset_size": 280}
QUERIES = 140
DELTA = 1e-5


def direct_epsilons(events, delta=DELTA):
    """(RDP, PLD) epsilon of ``events`` [(noise multiplier, count)] straight from dp-accounting."""
    relation = NeighboringRelation.ADD_OR_REMOVE_ONE
    out = []
    for accountant in (rdp.RdpAccountant(neighboring_relation=relation),
                       pld.PLDAccountant(neighboring_relation=relation)):
        for noise_multiplier, count in events:
            accountant.compose(dp_event.GaussianDpEvent(noise_multiplier), count)
        out.append(accountant.get_epsilon(delta))
    return out


def test_a_confident_gnmax_ledger_composes_decision_selection_and_capped_answers_as_dp_accounting_does():
    aggregator = ConfidentGNMax(threshold=7, sigma1=3.0, sigma2=3.0, max_answered=20)
    decision = NoisyAccuracy.calibrate(0.6, DELTA)
    ledger = privacy_ledger.PrivacyLedger.for_pate(aggregator, queries=QUERIES, delta=DELTA, parameters=FACTS,
                                                   decision=decision)
    read = privacy_ledger.PrivacyLedger.from_dict(json.loads(json.dumps(ledger.to_dict())))
    rdp_eps, pld_eps = direct_epsilons([(decision.std / math.sqrt(2), 1), (3.0, QUERIES), (3.0 / math.sqrt(2), 20)])
    assert read.epsilons["rdp"] == pytest.approx(rdp_eps, rel=1e-9)
    assert read.epsilons["pld"] == pytest.approx(pld_eps, rel=1e-6)
    assert read.epsilon == min(rdp_eps, pld_eps) or read.epsilon == pytest.approx(min(rdp_eps, pld_eps), rel=1e-6)
    assert read.mechanism == "pate" and read.privacy_unit == "example" and read.delta == DELTA
    assert "data-independent" in read.describe_epsilon()
    assert read.parameters["aggregator"] == aggregator.to_json() and read.parameters["queries"] == QUERIES
    # the labels alone: the data-independent guarantee of privacy.pate (RDP), the ledger's training part
    assert read.parts["training"]["rdp"] == pytest.approx(data_independent_epsilon(aggregator, QUERIES, DELTA),
                                                          rel=1e-9)
    props = privacy_ledger.ledger_properties(read)
    assert props["epsilon"] >= read.epsilon and props["privacy_mechanism"] == "pate"


def test_a_gnmax_ledger_charges_every_query():
    ledger = privacy_ledger.PrivacyLedger.for_pate(GNMax(5.0), queries=QUERIES, delta=DELTA,
                                                   parameters={**FACTS, "answered": QUERIES})
    rdp_eps, pld_eps = direct_epsilons([(5.0 / math.sqrt(2), QUERIES)])
    assert ledger.epsilons["rdp"] == pytest.approx(rdp_eps, rel=1e-9)
    assert ledger.epsilons["pld"] == pytest.approx(pld_eps, rel=1e-6)


@pytest.mark.parametrize("change", [
    {"queries": QUERIES - 1},
    {"aggregator": {"mechanism": "confident_gnmax", "threshold": 7, "sigma1": 3.0, "sigma2": 3.0,
                    "max_answered": 10}},
    {"aggregator": {"mechanism": "gnmax", "sigma": 3.0}},
    {"aggregator": {"mechanism": "confident_gnmax", "threshold": 7, "sigma1": 0, "sigma2": 3.0}},
    {"queries": "many"},
])
def test_a_ledger_whose_events_do_not_match_its_aggregation_is_refused(change):
    aggregator = ConfidentGNMax(threshold=7, sigma1=3.0, sigma2=3.0, max_answered=20)
    data = privacy_ledger.PrivacyLedger.for_pate(aggregator, queries=QUERIES, delta=DELTA,
                                                 parameters=FACTS).to_dict()
    data["parameters"].update(change)
    with pytest.raises(privacy_ledger.LedgerError):
        privacy_ledger.PrivacyLedger.from_dict(data)


BUNDLED = {"label_key": "diagnosis", "num_classes": 2, "feature_keys": ["a", "b"]}


@pytest.mark.parametrize("change, setting", [
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
])
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
