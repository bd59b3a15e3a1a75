"""`epsilon_of` composes each (events, delta, accountant) once per process, and never answers for other events."""

import attr
import dp_accounting as dpa
import pytest

from privacy.accounting import PrivacyBudget, accountants, epsilon_of

STEP = dpa.PoissonSampledDpEvent(0.01, dpa.GaussianDpEvent(1.1))


def _pld(event, delta=1e-5):
    return dpa.pld.PLDAccountant(value_discretization_interval=1e-4).compose(event).get_epsilon(delta)


@pytest.fixture
def pld_composes(monkeypatch):
    """The events ppml has a fresh dp-accounting PLD accountant compose, in order (the memo emptied first)."""
    asked = []
    original = dpa.pld.PLDAccountant.compose

    def spy(self, event, count=1):
        asked.append(event)
        return original(self, event, count)

    monkeypatch.setattr(accountants, "_composed_epsilon", _spied(accountants._composed_epsilon, spy))
    accountants._memoised_epsilon.cache_clear()
    return asked


def _spied(composed_epsilon, spy):
    def wrapped(event, delta, kind, relation, group_size):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(dpa.pld.PLDAccountant, "compose", spy)
            return composed_epsilon(event, delta, kind, relation, group_size)

    return wrapped


def test_a_budget_loaded_again_and_split_into_parts_composes_its_pld_once(pld_composes):
    budget = PrivacyBudget(target_delta=1e-5).compose(STEP, 300)
    expected = _pld(dpa.SelfComposedDpEvent(STEP, 300))
    pld_composes.clear()
    for _ in range(3):  # a ledger read back, its training part and the report each ask again
        again = PrivacyBudget.from_dict(budget.to_dict())
        assert again.epsilon("pld") == pytest.approx(expected, rel=1e-12)
    assert pld_composes == [dpa.SelfComposedDpEvent(STEP, 300)]  # once


def test_changed_events_are_composed_again_never_answered_from_the_memo(pld_composes):
    first = PrivacyBudget(target_delta=1e-5).compose(STEP, 300).epsilon("pld")
    louder = dpa.PoissonSampledDpEvent(0.01, dpa.GaussianDpEvent(1.1000001))
    changed = PrivacyBudget(target_delta=1e-5).compose(louder, 300).epsilon("pld")
    assert changed == pytest.approx(_pld(dpa.SelfComposedDpEvent(louder, 300)), rel=1e-12)
    assert changed != first
    longer = PrivacyBudget(target_delta=1e-5).compose(STEP, 301).epsilon("pld")
    assert longer == pytest.approx(_pld(dpa.SelfComposedDpEvent(STEP, 301)), rel=1e-12) and longer > first
    assert PrivacyBudget(target_delta=1e-6).compose(STEP, 300).epsilon("pld") == pytest.approx(
        _pld(dpa.SelfComposedDpEvent(STEP, 300), 1e-6), rel=1e-12
    )


def test_an_event_mutated_after_its_epsilon_was_memoised_gets_its_own_epsilon(pld_composes):
    events = [dpa.GaussianDpEvent(2.0)]
    composed = dpa.ComposedDpEvent(events)
    assert epsilon_of(composed, target_delta=1e-5, accountant="pld") == pytest.approx(_pld(composed), rel=1e-12)
    events.append(STEP)  # ComposedDpEvent keeps the caller's list
    assert epsilon_of(composed, target_delta=1e-5, accountant="pld") == pytest.approx(
        _pld(dpa.ComposedDpEvent([dpa.GaussianDpEvent(2.0), STEP])), rel=1e-12
    )
    assert pld_composes == [
        dpa.ComposedDpEvent([dpa.GaussianDpEvent(2.0)]),
        dpa.ComposedDpEvent([dpa.GaussianDpEvent(2.0), STEP]),
    ]


def test_group_size_and_relation_are_part_of_the_key():
    event = dpa.SelfComposedDpEvent(dpa.GaussianDpEvent(3.0), 10)
    one = epsilon_of(event, target_delta=1e-5, accountant="pld")
    replace = epsilon_of(event, target_delta=1e-5, accountant="pld", relation=dpa.NeighboringRelation.REPLACE_ONE)
    direct = dpa.pld.PLDAccountant(dpa.NeighboringRelation.REPLACE_ONE, value_discretization_interval=1e-4)
    assert replace == pytest.approx(direct.compose(event).get_epsilon(1e-5), rel=1e-12) and replace > one
    assert epsilon_of(event, target_delta=1e-5, accountant="pld", group_size=2) > 2 * one


@attr.define(frozen=True)
class _OwnGaussian(dpa.GaussianDpEvent):
    """A Gaussian event class of another module: dp-accounting composes it as a Gaussian."""


@attr.define(frozen=True)
class LaplaceDpEvent(dpa.GaussianDpEvent):  # noqa: N801 - a Gaussian named like dp_event's Laplace class
    """A Gaussian whose class name is dp_event's Laplace event's: keyed by name, it would be read back a Laplace."""


@pytest.mark.parametrize("cls", [_OwnGaussian, LaplaceDpEvent])
def test_events_of_classes_outside_dp_event_get_their_own_epsilon(cls):
    event = cls(10.0)
    expected = _pld(event)  # dp-accounting composes it as the Gaussian it is
    assert expected == pytest.approx(_pld(dpa.GaussianDpEvent(10.0)), rel=1e-12)
    assert epsilon_of(event, target_delta=1e-5, accountant="pld") == pytest.approx(expected, rel=1e-12)
    assert epsilon_of(event, target_delta=1e-5, accountant="pld") == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("group_size", [1.9, 0, "2"])
def test_a_group_size_that_is_not_a_positive_integer_is_refused_not_truncated(group_size):
    with pytest.raises(ValueError, match="group_size"):
        epsilon_of(dpa.GaussianDpEvent(3.0), target_delta=1e-5, accountant="pld", group_size=group_size)
