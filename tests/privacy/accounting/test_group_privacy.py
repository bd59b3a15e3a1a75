"""User-level guarantees through group privacy."""

import math

import dp_accounting as dpa
import pytest

from privacy.accounting import DpSgdMechanism, compute_epsilon, group_delta, make_accountant


def test_group_delta_is_the_geometric_chain():
    eps, delta, k = 0.3, 1e-7, 4
    assert group_delta(eps, delta, k) == pytest.approx(delta * sum(math.exp(i * eps) for i in range(k)), rel=1e-12)
    assert group_delta(0.0, delta, k) == pytest.approx(k * delta)
    assert group_delta(2.0, 1e-6, 400) == math.inf


@pytest.mark.parametrize("kind", ["rdp", "pld"])
def test_user_level_epsilon_is_valid_and_near_optimal(kind):
    event = dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(0.01, dpa.GaussianDpEvent(2.0)), 500)
    k, target = 3, 1e-5
    user = make_accountant(kind, group_size=k).compose(event)
    eps_user = user.get_epsilon(target)
    inner = make_accountant(kind).compose(event)
    # Valid: some record-level delta' gives k*eps(delta') = eps_user and meets the group delta.
    record_delta = inner.get_delta(eps_user / k)
    assert group_delta(eps_user / k, record_delta, k) <= target * (1 + 1e-6)
    # Near optimal: no record-level delta' on a fine grid does better than 1%.
    best = math.inf
    for i in range(400):
        d = target / k * 10 ** (-i / 40)
        e = inner.get_epsilon(d)
        if group_delta(e, d, k) <= target:
            best = min(best, k * e)
    assert eps_user <= best * 1.01
    assert eps_user > k * inner.get_epsilon(target / k) - 1e-9  # never better than the trivial split


def test_one_example_per_user_is_example_level():
    m = DpSgdMechanism(dataset_size=1000, batch_size=20, noise_multiplier=1.0, steps=100)
    assert compute_epsilon(m.replace(max_examples_per_user=1), 1e-5, "pld") == compute_epsilon(m, 1e-5, "pld")
    assert compute_epsilon(m.replace(max_examples_per_user=4), 1e-5, "pld") > 4 * compute_epsilon(m, 1e-5, "pld")


def test_group_privacy_diverges_to_inf():
    m = DpSgdMechanism(dataset_size=1000, batch_size=500, noise_multiplier=0.5, steps=1000, max_examples_per_user=500)
    assert compute_epsilon(m, 1e-5, "rdp") == math.inf
