"""`SharedPldAccountant`: dp-accounting's PLDAccountant's floats, with each DP-SGD step's and each Gaussian
release's PLD built once."""

import math

import dp_accounting as dpa
import numpy as np
import pytest
from dp_accounting import dp_event
from dp_accounting.pld import privacy_loss_distribution

from privacy.accounting import accountants
from privacy.accounting.accountants import SharedPldAccountant

ADD_REMOVE, REPLACE_ONE = dpa.NeighboringRelation.ADD_OR_REMOVE_ONE, dpa.NeighboringRelation.REPLACE_ONE
STEP = dp_event.PoissonSampledDpEvent(0.02, dp_event.GaussianDpEvent(1.1))
TRUNCATED = dp_event.TruncatedSubsampledGaussianDpEvent(
    dataset_size=100, sampling_probability=0.05, truncated_batch_size=9, noise_multiplier=1.2
)
RELEASES = [dp_event.GaussianDpEvent(8.0)] * 6 + [dp_event.SelfComposedDpEvent(dp_event.GaussianDpEvent(20.0), 3)]
EVENTS = {
    "gaussian": dp_event.GaussianDpEvent(8.0),
    "gaussian x 5 (one of sigma / sqrt 5)": dp_event.SelfComposedDpEvent(dp_event.GaussianDpEvent(3.0), 5),
    "releases, then poisson x 40": dp_event.ComposedDpEvent([*RELEASES, dp_event.SelfComposedDpEvent(STEP, 40)]),
    "gaussian noise 0": dp_event.GaussianDpEvent(0.0),
    "poisson x 40": dp_event.SelfComposedDpEvent(STEP, 40),
    "poisson x 90": dp_event.SelfComposedDpEvent(STEP, 90),
    "prior, then poisson x 40": dp_event.ComposedDpEvent(
        [dp_event.GaussianDpEvent(8.0), dp_event.SelfComposedDpEvent(STEP, 40)]
    ),
    "truncated x 20": dp_event.SelfComposedDpEvent(TRUNCATED, 20),
    "poisson and truncated": dp_event.ComposedDpEvent([TRUNCATED, dp_event.SelfComposedDpEvent(STEP, 3)]),
    "sampling probability 0": dp_event.PoissonSampledDpEvent(0.0, dp_event.GaussianDpEvent(1.0)),
    "noise 0": dp_event.PoissonSampledDpEvent(0.1, dp_event.GaussianDpEvent(0.0)),
    "numpy array fields (no key)": dp_event.SelfComposedDpEvent(
        dp_event.PoissonSampledDpEvent(np.array(0.02), dp_event.GaussianDpEvent(np.array(1.1))), 3
    ),
    "poisson laplace": dp_event.SelfComposedDpEvent(
        dp_event.PoissonSampledDpEvent(0.1, dp_event.LaplaceDpEvent(2.0)), 5
    ),
}


def _pair(relation, interval, event):
    plain = dpa.pld.PLDAccountant(neighboring_relation=relation, value_discretization_interval=interval)
    shared = SharedPldAccountant(neighboring_relation=relation, value_discretization_interval=interval)
    if not plain.supports(event):
        assert not shared.supports(event)
        return None
    return plain.compose(event), shared.compose(event)


@pytest.mark.parametrize("interval", [1e-3, 2e-3])  # two grids and two relations: a step kept under either key
@pytest.mark.parametrize("relation", [ADD_REMOVE, REPLACE_ONE])  # must not serve the other
def test_epsilons_and_deltas_are_dp_accountings_own(relation, interval):
    for name, event in [*EVENTS.items(), *EVENTS.items()]:  # twice: the second time from the kept steps
        pair = _pair(relation, interval, event)
        if pair is None:
            continue
        plain, shared = pair
        assert shared.get_epsilon(1e-5) == plain.get_epsilon(1e-5) or (
            math.isinf(plain.get_epsilon(1e-5)) and math.isinf(shared.get_epsilon(1e-5))
        ), name
        assert shared.get_delta(1.5) == plain.get_delta(1.5), name


@pytest.mark.parametrize("reverse", [False, True])
def test_equal_steps_of_other_number_types_are_kept_apart(reverse):
    # equal events (hash and ==) whose PLDs dp-accounting builds differently: float32 vs float64 fields
    events = [
        dp_event.PoissonSampledDpEvent(np.float32(0.25), dp_event.GaussianDpEvent(np.float32(1.5))),
        dp_event.PoissonSampledDpEvent(0.25, dp_event.GaussianDpEvent(1.5)),
    ]
    accountants._one_event_pld.cache_clear()
    for event in reversed(events) if reverse else events:
        plain, shared = _pair(ADD_REMOVE, 1e-3, event)
        assert shared.get_epsilon(1e-5) == plain.get_epsilon(1e-5)


@pytest.fixture
def built(monkeypatch):
    """The calls of dp-accounting's `from_gaussian_mechanism` from here on (the kept PLDs cleared first)."""
    calls = []
    real = privacy_loss_distribution.from_gaussian_mechanism
    monkeypatch.setattr(
        privacy_loss_distribution, "from_gaussian_mechanism", lambda **kw: calls.append(kw) or real(**kw)
    )
    accountants._one_event_pld.cache_clear()
    return calls


def test_a_step_is_built_once_whatever_its_count(built):
    step = dp_event.PoissonSampledDpEvent(0.03, dp_event.GaussianDpEvent(1.3))
    epsilons = [
        SharedPldAccountant(value_discretization_interval=1e-3)
        .compose(dp_event.SelfComposedDpEvent(step, count))
        .get_epsilon(1e-5)
        for count in (10, 20, 30)
    ]
    assert len(built) == 1 and epsilons[0] < epsilons[1] < epsilons[2]


def test_the_product_s_pld_accountants_share_steps():
    assert isinstance(accountants.make_accountant("pld"), SharedPldAccountant)
    assert isinstance(accountants.make_accountant("pld", group_size=2)._inner, SharedPldAccountant)


def test_a_gaussian_release_is_built_once_and_one_over_the_grid_bound_every_time(built, monkeypatch):
    releases = dp_event.ComposedDpEvent([dp_event.GaussianDpEvent(7.5)] * 10)
    first, second = (
        SharedPldAccountant(value_discretization_interval=1e-3).compose(releases).get_epsilon(1e-5) for _ in range(2)
    )
    assert first == second and len(built) == 1
    monkeypatch.setattr(accountants, "SHARED_PLD_MAX_VALUES", 10)  # this Gaussian's grid holds more
    SharedPldAccountant(value_discretization_interval=1e-3).compose(dp_event.GaussianDpEvent(6.5))
    SharedPldAccountant(value_discretization_interval=1e-3).compose(dp_event.GaussianDpEvent(6.5))
    assert len(built) == 3 and accountants._one_event_pld.cache_info().currsize == 1
    step = dp_event.SelfComposedDpEvent(dp_event.PoissonSampledDpEvent(0.03, dp_event.GaussianDpEvent(1.3)), 4)
    SharedPldAccountant(value_discretization_interval=1e-3).compose(step)
    SharedPldAccountant(value_discretization_interval=1e-3).compose(step)
    assert len(built) == 5 and accountants._one_event_pld.cache_info().currsize == 1


def test_the_grid_bound_applies_to_the_composed_gaussian_and_to_a_truncated_step_as_sensitivity_2(monkeypatch):
    accountants._one_event_pld.cache_clear()
    # grids at 1e-3 (pld_grid.gaussian_grid_values): Gaussian 6.5 ~3,100 values, 6.5 / sqrt(100) ~33,000; the
    # truncated step's noise 1.2 ~17,000 as a sensitivity-1 Gaussian's, ~36,000 as a sensitivity-2 one's
    monkeypatch.setattr(accountants, "SHARED_PLD_MAX_VALUES", 20_000)
    for event in (dp_event.SelfComposedDpEvent(dp_event.GaussianDpEvent(6.5), 100), TRUNCATED):
        plain, shared = _pair(ADD_REMOVE, 1e-3, event)
        assert shared.get_epsilon(1e-5) == plain.get_epsilon(1e-5)
        assert accountants._one_event_pld.cache_info().currsize == 0
