"""PrivacyBudget: incremental composition, JSON state, restarts without double counting."""

import json

import dp_accounting as dpa
import pytest

from privacy.accounting import DpSgdMechanism, PrivacyBudget, UnsupportedAccounting, compute_epsilon

MECH = DpSgdMechanism(dataset_size=5000, batch_size=50, noise_multiplier=1.2, steps=300)


def test_step_by_step_equals_one_shot():
    budget = PrivacyBudget.for_mechanism(MECH, 1e-5)
    for _ in range(MECH.steps):
        budget.compose(MECH.unit_event())
    assert budget.units == 300 and len(budget.ledger) == 1
    for kind in ("rdp", "pld"):
        assert budget.epsilon(kind) == compute_epsilon(MECH, 1e-5, kind)


def test_empty_budget_spent_nothing():
    assert PrivacyBudget(target_delta=1e-5).epsilons() == {"rdp": 0.0, "pld": 0.0}


def test_mixed_events_compose_like_dp_accounting():
    a = dpa.PoissonSampledDpEvent(0.01, dpa.GaussianDpEvent(1.0))
    b = dpa.PoissonSampledDpEvent(0.02, dpa.GaussianDpEvent(2.0))
    budget = PrivacyBudget(target_delta=1e-6).compose(a, 10).compose(b, 5).compose(a, 7)
    assert [c for _, c in budget.ledger] == [10, 5, 7]
    direct = dpa.rdp.RdpAccountant().compose(a, 10).compose(b, 5).compose(a, 7).get_epsilon(1e-6)
    assert budget.epsilon("rdp") == pytest.approx(direct, rel=1e-12)


def test_restart_neither_loses_nor_double_counts(tmp_path):
    path = tmp_path / "budget.json"
    first = PrivacyBudget.for_mechanism(MECH, 1e-5)
    for step in range(1, 121):
        first.advance_to(step, MECH.unit_event())
    first.save(path)
    # The process dies; a new one resumes from the checkpoint at step 120 and replays its bookkeeping.
    resumed = PrivacyBudget.load(path)
    assert resumed.units == 120
    assert resumed.advance_to(120, MECH.unit_event()) == 0  # replaying the last position adds nothing
    for step in range(121, 301):
        resumed.advance_to(step, MECH.unit_event())
    assert resumed.units == 300
    assert resumed.epsilon("pld") == compute_epsilon(MECH, 1e-5, "pld")
    assert resumed.epsilon("rdp") == compute_epsilon(MECH, 1e-5, "rdp")


def test_state_is_plain_json_with_the_event(tmp_path):
    budget = PrivacyBudget.for_mechanism(MECH, 1e-5).compose(MECH.unit_event(), 3)
    assert budget.to_dict()["epsilon"] == {}  # saving computes no epsilon (PLD costs about a second)
    budget.epsilon("rdp")
    budget.save(tmp_path / "b.json")
    state = json.loads((tmp_path / "b.json").read_text())
    assert state["units"] == 3 and list(state["epsilon"]) == ["rdp"]
    assert state["ledger"][0]["event"]["class_name"] == "PoissonSampledDpEvent"
    assert state["ledger"][0]["event"]["event"]["class_name"] == "GaussianDpEvent"
    assert state["epsilon"]["rdp"] == pytest.approx(budget.epsilon("rdp"))
    assert PrivacyBudget.from_dict(state).ledger == budget.ledger
    assert [p.name for p in tmp_path.iterdir()] == ["b.json"]  # no temporary files left behind


def test_corrupt_state_is_refused_with_a_reason(tmp_path):
    state = PrivacyBudget.for_mechanism(MECH, 1e-5).compose(MECH.unit_event(), 3).to_dict()
    with pytest.raises(ValueError, match="inconsistent"):
        PrivacyBudget.from_dict({**state, "units": 4})
    with pytest.raises(ValueError, match="format"):
        PrivacyBudget.from_dict({"hello": 1})
    bad_event = json.loads(json.dumps(state))
    bad_event["ledger"][0]["event"]["class_name"] = "os.system"
    with pytest.raises(ValueError, match="unknown DpEvent"):
        PrivacyBudget.from_dict(bad_event)


def test_epsilon_after_is_a_dry_run():
    budget = PrivacyBudget.for_mechanism(MECH, 1e-5).compose(MECH.unit_event(), 100)
    before = budget.epsilon("rdp")
    ahead = budget.epsilon_after(MECH.unit_event(), 50, "rdp")
    assert budget.units == 100 and budget.epsilon("rdp") == before
    assert ahead == compute_epsilon(MECH, 1e-5, "rdp", steps=150)


def test_unsupported_accountant_reports_none():
    fixed = DpSgdMechanism(
        dataset_size=1000, batch_size=10, noise_multiplier=1.0, steps=10, sampling="fixed", adjacency="replace-one"
    )
    budget = PrivacyBudget.for_mechanism(fixed, 1e-5).compose(fixed.unit_event(), 10)
    assert budget.epsilons()["pld"] is None
    assert budget.epsilons()["rdp"] == compute_epsilon(fixed, 1e-5, "rdp")
    with pytest.raises(UnsupportedAccounting):
        budget.epsilon("pld")


def test_a_pld_grid_too_large_for_memory_leaves_pld_out_and_rdp_bounds_epsilon(monkeypatch):
    # sigma 1e-6: dp-accounting's PLD grid for one step would hold ~1e16 values (petabytes): numpy refuses it on any
    # machine before allocating; ppml's guard refuses it before dp-accounting is asked.
    event = dpa.PoissonSampledDpEvent(0.01, dpa.GaussianDpEvent(1e-6))
    budget = PrivacyBudget(target_delta=1e-5).compose(event, 100)
    with pytest.raises(MemoryError):  # what dp-accounting itself does with this event
        dpa.pld.PLDAccountant().compose(event, 100)
    rdp = dpa.rdp.RdpAccountant()
    rdp.compose(event, 100)
    asked = []
    monkeypatch.setattr(dpa.pld.PLDAccountant, "compose", lambda self, *args: asked.append(args))
    assert budget.epsilons() == {"rdp": pytest.approx(rdp.get_epsilon(1e-5), rel=1e-9), "pld": None}
    with pytest.raises(UnsupportedAccounting, match=r"GaussianDpEvent of noise multiplier 1e-06: .* about 1\.0e\+16 "):
        budget.epsilon("pld")
    assert asked == []  # refused before composing


@pytest.mark.parametrize(
    "event,relation,refused",
    [
        (dpa.GaussianDpEvent(0.02), "ADD_OR_REMOVE_ONE", False),  # 3.5e7 values: composed
        (dpa.GaussianDpEvent(0.02), "REPLACE_ONE", True),  # twice the shift: 1.2e8
        (dpa.SelfComposedDpEvent(dpa.GaussianDpEvent(1.0), 10**4), "ADD_OR_REMOVE_ONE", True),  # one of sigma 0.01
        (dpa.ComposedDpEvent([dpa.GaussianDpEvent(1.0), dpa.LaplaceDpEvent(1e-5)]), "ADD_OR_REMOVE_ONE", True),
        (dpa.SelfComposedDpEvent(dpa.LaplaceDpEvent(1.0), 1000), "ADD_OR_REMOVE_ONE", False),
        (dpa.PoissonSampledDpEvent(0.01, dpa.GaussianDpEvent(0.005)), "ADD_OR_REMOVE_ONE", True),
    ],
)
def test_the_pld_grid_guard_estimates_dp_accountings_grid(event, relation, refused):
    from privacy.accounting.pld_grid import grid_reason

    assert (grid_reason(event, dpa.NeighboringRelation[relation]) is not None) == refused


def test_the_grid_estimate_bounds_dp_accountings_own_grid():
    """The estimate is at least the grid dp-accounting builds (sigma 0.3: 7e5 values, a second)."""
    from privacy.accounting import pld_grid

    for relation in (dpa.NeighboringRelation.ADD_OR_REMOVE_ONE, dpa.NeighboringRelation.REPLACE_ONE):
        pld = dpa.pld.privacy_loss_distribution.from_gaussian_mechanism(
            0.3, value_discretization_interval=1e-4, neighboring_relation=relation
        )
        built = max(pld._pmf_remove.size, pld._pmf_add.size)
        shift = 2.0 if relation is dpa.NeighboringRelation.REPLACE_ONE else 1.0
        estimate = (2 * pld_grid._TAIL_STDS * shift / 0.3 + (shift / 0.3) ** 2) / 1e-4
        assert built <= estimate <= 3 * built, (relation, built, estimate)


def test_user_level_budget_uses_group_privacy():
    user = MECH.replace(max_examples_per_user=3)
    budget = PrivacyBudget.for_mechanism(user, 1e-5).compose(user.unit_event(), user.steps)
    assert budget.group_size == 3
    assert budget.epsilon("rdp") == compute_epsilon(user, 1e-5, "rdp")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"target_delta": 0}, "target_delta"),
        ({"target_delta": 1.5}, "target_delta"),
        ({"target_delta": 1e-5, "group_size": 0}, "group_size"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PrivacyBudget(**kwargs)
    with pytest.raises(ValueError, match="count"):
        PrivacyBudget(target_delta=1e-5).compose(MECH.unit_event(), -1)
