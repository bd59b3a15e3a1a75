"""Local-DP FedAvg: each client's released update carries the stated noise, neighbouring client data sets move
it by 2C at most (the accounted sensitivity), and each client's epsilon composes over the rounds it took part in."""

import math
import re

import dp_accounting
import numpy as np
import pytest
from scipy import stats

from federated.aggregation import SecureAggregation, TreeSum
from federated.client import ClientConfig, ClientUpdate
from federated.sampling import UniformSampler
from federated.simulation import FederatedSimulation
from federated.strategies import FedAvg, LocalDifferentialPrivacy, RoundContext
from federated.strategies.dp_local import PARTICIPATIONS
from privacy.local import OsRandom

from .conftest import linear_model


def _ctx(population=10, participants=()):
    return RoundContext(
        round=1,
        population=population,
        sampler=UniformSampler(0.5),
        total_rounds=5,
        rng=np.random.default_rng(0),
        participants=tuple(participants),
    )


def _update(delta):
    return ClientUpdate(delta=np.asarray(delta, np.float64), num_examples=5, loss=0.0, position=0)


def independent_epsilon(z, rounds, delta):
    """A client's epsilon after ``rounds`` releases of its update (L2 distance <= 2C between any two of its data
    sets) with noise std z C: a Gaussian mechanism of noise multiplier z / 2, composed."""
    accountant = dp_accounting.rdp.RdpAccountant()
    accountant.compose(dp_accounting.GaussianDpEvent(z / 2), rounds)
    return accountant.get_epsilon(delta)


def test_each_released_update_is_the_clipped_update_plus_gaussian_noise_of_std_z_c():
    # 20,000 coordinates: the sample std has relative SE 0.5%; bounds keep false alarms <= 1e-6 (CSPRNG noise).
    d, clip, z = 20_000, 1.5, 2.0
    strategy = LocalDifferentialPrivacy(
        FedAvg(weighted=False), clipping_norm=clip, noise_multiplier=z, target_delta=1e-5
    )
    state = strategy.initialize([np.zeros(d, np.float32)], _ctx())
    big = np.zeros(d)
    big[:2] = (30.0, 40.0)  # norm 50, clipped to (0.9, 1.2, 0, ...)
    released = strategy.summand(_update(big), state)
    assert released.counts.tolist() == [1]
    clipped = big * clip / 50
    noise = released.vector - clipped
    assert np.std(noise) == pytest.approx(z * clip, rel=0.03)
    assert abs(np.mean(noise)) < 5 * z * clip / math.sqrt(d)
    assert stats.kstest(noise / (z * clip), "norm").pvalue > 1e-6
    again = strategy.summand(_update(big), state)
    assert not np.array_equal(again.vector, released.vector)  # fresh CSPRNG noise every message


def test_neighbouring_client_data_move_the_released_mean_by_2c_the_accounted_sensitivity():
    # The worst neighbours: two data sets whose updates point opposite ways, both beyond C.
    d, clip, z, draws = 50, 1.0, 2.0, 4000
    strategy = LocalDifferentialPrivacy(
        FedAvg(weighted=False), clipping_norm=clip, noise_multiplier=z, target_delta=1e-5
    )
    state = strategy.initialize([np.zeros(d, np.float32)], _ctx())
    u = np.zeros(d)
    u[3] = 1e6  # huge
    means = [np.mean([strategy.summand(_update(s * u), state).vector for _ in range(draws)], axis=0) for s in (1, -1)]
    shift = np.linalg.norm(means[0] - means[1])
    noise_of_shift = z * clip * math.sqrt(2 * d / draws)  # std of each mean's noise, both means, all coordinates
    assert abs(shift - 2 * clip) < 6 * noise_of_shift / math.sqrt(d) + 0.05
    # a non-finite update releases noise around zero, like a client holding nothing
    nan = strategy.summand(_update(np.full(d, np.nan)), state).vector
    assert np.all(np.isfinite(nan)) and abs(np.mean(nan)) < 6 * z * clip / math.sqrt(d)


def test_each_clients_epsilon_composes_over_the_rounds_it_sent_in():
    d, z, delta = 4, 2.0, 1e-5
    strategy = LocalDifferentialPrivacy(
        FedAvg(weighted=False), clipping_norm=1.0, noise_multiplier=z, target_delta=delta
    )
    state = strategy.initialize([np.zeros(d, np.float32)], _ctx())
    rounds = [(0, 1, 2), (1, 2), (2,), ()]
    for index, who in enumerate(rounds):
        updates = [strategy.summand(_update(np.ones(d)), state) for _ in who]
        total = TreeSum.of(enumerate(updates)).result() if updates else None
        state, metrics = strategy.aggregate(state, total, _ctx(participants=who))
        most = max(sum(c in r for r in rounds[: index + 1]) for c in range(10))
        assert metrics["max_client_rounds"] == most
        assert metrics["epsilon_rdp"] == pytest.approx(independent_epsilon(z, most, delta) if most else 0.0)
    assert state.slots[PARTICIPATIONS].tolist() == [1, 2, 3] + [0] * 7
    assert strategy.client_epsilon(3) == pytest.approx(independent_epsilon(z, 3, delta))
    assert strategy.to_dict()["trust_model"] == "local"


def test_max_epsilon_stops_before_a_client_would_exceed_it():
    z, delta = 2.0, 1e-5
    cap = (independent_epsilon(z, 2, delta) + independent_epsilon(z, 3, delta)) / 2
    strategy = LocalDifferentialPrivacy(
        FedAvg(weighted=False), clipping_norm=1.0, noise_multiplier=z, target_delta=delta, max_epsilon=cap
    )
    state = strategy.initialize([np.zeros(2, np.float32)], _ctx())
    for _ in range(2):
        assert strategy.stop_reason(state, _ctx()) is None
        state, _ = strategy.aggregate(state, None, _ctx(participants=(4,)))
    assert "could raise a client's epsilon" in strategy.stop_reason(state, _ctx())


@pytest.mark.parametrize("shortfall", [1e-3, 1e-6, 1e-9, 1e-12])
def test_the_stop_reason_prints_the_epsilon_above_max_epsilon(shortfall):
    """privacy.compared widens both: before, '.4g' and ':g' printed a max_epsilon of 4.4712676509 (z = 2.1) below
    one release's 4.47126765136 as 'to 4.471 > max_epsilon=4.47127'."""
    first = independent_epsilon(2.1, 1, 1e-5)
    strategy = LocalDifferentialPrivacy(
        FedAvg(weighted=False),
        clipping_norm=1.0,
        noise_multiplier=2.1,
        target_delta=1e-5,
        max_epsilon=first * (1 - shortfall),
    )
    reason = strategy.stop_reason(strategy.initialize([np.zeros(2, np.float32)], _ctx()), _ctx())
    shown, bound = (float(x) for x in re.search(r"to (\S+) > max_epsilon=(\S+)$", reason).groups())
    assert shown > bound and shown == pytest.approx(first, rel=1e-3), reason


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(clipping_norm=0.0), "clipping_norm"),
        (dict(noise_multiplier=0.0), "noise_multiplier"),
        (dict(noise_multiplier=1.99), r"\[2, "),
        (dict(noise_multiplier=math.nan), "noise_multiplier"),
        (dict(target_delta=1.0), "target_delta"),
        (dict(max_epsilon=math.inf), "max_epsilon"),
    ],
)
def test_bad_settings_are_named(kwargs, message):
    settings = {**dict(clipping_norm=1.0, noise_multiplier=2.0, target_delta=1e-5), **kwargs}
    with pytest.raises(ValueError, match=message):
        LocalDifferentialPrivacy(FedAvg(weighted=False), **settings)
    with pytest.raises(ValueError, match="weighted=False"):
        LocalDifferentialPrivacy(FedAvg(weighted=True), clipping_norm=1.0, noise_multiplier=2.0, target_delta=1e-5)


def test_os_random_normal_is_standard_normal():
    draws = OsRandom().normal(2.0, 3.0, 20_001)
    assert draws.size == 20_001
    assert stats.kstest((draws - 2.0) / 3.0, "norm").pvalue > 1e-6


@pytest.mark.parametrize("secure", [False, True])
def test_a_simulation_accounts_the_clients_that_sent(digits_iid, secure):
    data, test = digits_iid
    z, delta = 2.0, 1e-3
    strategy = LocalDifferentialPrivacy(
        FedAvg(ClientConfig(local_epochs=1, batch_size=10, learning_rate=0.3), weighted=False),
        clipping_norm=1.0,
        noise_multiplier=z,
        target_delta=delta,
    )
    aggregation = (
        SecureAggregation(clipping_range=strategy.secure_aggregation_range(), bits=20, modulus_bits=48, threshold=0.6)
        if secure
        else None
    )
    sim = FederatedSimulation(
        linear_model,
        data,
        strategy,
        rounds=3,
        sampler=UniformSampler(0.5),
        seed=1,
        dropout_rate=0.2,
        evaluation=test,
        **({"aggregation": aggregation} if secure else {}),
    )
    history = sim.run()
    participations = sim.state.slots[PARTICIPATIONS]
    assert participations.sum() == sum(r.reported for r in history.rounds)
    most = int(participations.max())
    assert history.rounds[-1].metrics["epsilon_rdp"] == pytest.approx(independent_epsilon(z, most, delta))
    assert np.all(np.isfinite(sim.state.weights[0]))


def test_calibrated_noise_multiplier_meets_the_target_for_a_client_in_every_round():
    from federated.strategies.dp_local import calibrate_local_noise_multiplier

    z = calibrate_local_noise_multiplier(4.0, 20, 1e-5)
    assert independent_epsilon(z, 20, 1e-5) <= 4.0 < independent_epsilon(z * 0.999, 20, 1e-5)
    with pytest.raises(ValueError, match="no noise multiplier"):
        calibrate_local_noise_multiplier(1e-9, 10**6, 1e-12)
    assert calibrate_local_noise_multiplier(1000.0, 1, 1e-5) == 2.0  # never below the sampler's floor
