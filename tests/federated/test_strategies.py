"""Strategies: weighted averaging, server optimizers against independent formulas, DP noise and clipping."""

import dataclasses
import re
from fractions import Fraction

import dp_accounting
import keras
import numpy as np
import pytest
from scipy import stats

from federated.aggregation import Summand, TreeSum
from federated.client import ClientConfig, ClientUpdate
from federated.sampling import PoissonSampler, UniformSampler
from federated.strategies import (
    DifferentialPrivacyAdaptiveClipping,
    DifferentialPrivacyFixedClipping,
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedYogi,
    RoundContext,
)
from federated.strategies._dp_clipping_base import MAX_SUM_CLIENTS, MIN_CLIPPING_NORM, check_clipping_norm, on_sum_grid


def _ctx(round_index=1, population=100, sampler=None, seed=0):
    return RoundContext(
        round=round_index,
        population=population,
        sampler=sampler or UniformSampler(0.1),
        total_rounds=10,
        rng=np.random.default_rng(seed),
    )


def _update(delta, n, position=0):
    return ClientUpdate(delta=np.asarray(delta, np.float64), num_examples=n, loss=0.0, position=position)


def _round(strategy, state, updates, ctx=None):
    total = TreeSum.of((i, strategy.summand(u, state)) for i, u in enumerate(updates)).result()
    return strategy.aggregate(state, total, ctx or _ctx())


def test_weighted_and_unweighted_averages():
    updates = [_update([1.0, 2.0], 10), _update([4.0, -1.0], 30), _update([0.0, 0.5], 60)]
    for weighted, expected in (
        (True, (10 * np.array([1, 2]) + 30 * np.array([4, -1]) + 60 * np.array([0, 0.5])) / 100),
        (False, np.array([5.0, 1.5]) / 3),
    ):
        strategy = FedAvg(weighted=weighted, server_learning_rate=0.5)
        state = strategy.initialize([np.zeros(2, np.float32)], _ctx())
        new, _ = _round(strategy, state, updates)
        np.testing.assert_allclose(new.weights[0], 0.5 * expected, rtol=1e-6)
        assert new.round == 1


def test_tree_sum_is_bitwise_order_independent(rng):
    leaves = [(i, Summand(rng.normal(size=50) * 10.0 ** rng.integers(-8, 8), np.array([i]))) for i in range(13)]
    reference = TreeSum.of(leaves).result()
    for _ in range(5):
        order = rng.permutation(13)
        left, right = TreeSum.of(leaves[i] for i in order[:6]), TreeSum.of(leaves[i] for i in order[6:])
        merged = right.merge(left).result()
        assert merged.vector.tobytes() == reference.vector.tobytes()
        np.testing.assert_array_equal(merged.counts, reference.counts)
    np.testing.assert_allclose(reference.vector, sum(s.vector for _, s in leaves), rtol=1e-12)
    with pytest.raises(ValueError, match="added twice"):
        TreeSum.of(leaves + leaves[:1])


def _reddi(deltas, rule, eta, b1, b2, tau, v0):
    """Reddi et al. 2021, Algorithm 2, written out independently."""
    w, m, v = np.zeros(3), np.zeros(3), np.full(3, v0)
    for d in deltas:
        m = b1 * m + (1 - b1) * d
        if rule == "adagrad":
            v = v + d**2
        elif rule == "adam":
            v = b2 * v + (1 - b2) * d**2
        else:
            v = v - (1 - b2) * d**2 * np.sign(v - d**2)
        w = w + eta * m / (np.sqrt(v) + tau)
    return w


@pytest.mark.parametrize("cls, rule", [(FedAdagrad, "adagrad"), (FedAdam, "adam"), (FedYogi, "yogi")])
def test_adaptive_server_optimizers_follow_reddi_et_al(cls, rule, rng):
    deltas = [rng.normal(size=3) for _ in range(4)]
    strategy = cls(server_learning_rate=0.05, beta_1=0.8, beta_2=0.95, tau=1e-2)
    state = strategy.initialize([np.zeros(3, np.float32)], _ctx())
    for d in deltas:
        state, _ = _round(strategy, state, [_update(d, 7)])
    np.testing.assert_allclose(state.weights[0], _reddi(deltas, rule, 0.05, 0.8, 0.95, 1e-2, 1e-4), rtol=1e-5)


def test_fedavgm_is_keras_sgd_momentum_on_minus_delta(rng):
    deltas = [rng.normal(size=4).astype(np.float32) for _ in range(5)]
    strategy = FedAvgM(server_learning_rate=0.7, server_momentum=0.9)
    state = strategy.initialize([np.zeros(4, np.float32)], _ctx())
    variable = keras.Variable(np.zeros(4, np.float32))
    optimizer = keras.optimizers.SGD(learning_rate=0.7, momentum=0.9)
    for d in deltas:
        state, _ = _round(strategy, state, [_update(d, 3)])
        optimizer.apply([-d], [variable])
    np.testing.assert_allclose(state.weights[0], variable.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("seeded_noise", [True, False])
def test_dp_clips_each_update_and_adds_noise_of_the_stated_std(seeded_noise):
    # 20,000 coordinates of pure noise: the sample std has relative SE 0.5%; 3% is > 5 SE. CSPRNG noise is
    # not seeded, so each bound here keeps its false-alarm rate at or below 1e-6 per run.
    d, clip, z, m = 20_000, 2.0, 1.3, 10
    strategy = DifferentialPrivacyFixedClipping(
        FedAvg(weighted=False), clipping_norm=clip, noise_multiplier=z, target_delta=1e-5, seeded_noise=seeded_noise
    )
    ctx = _ctx(population=100, sampler=UniformSampler(m / 100))
    state = strategy.initialize([np.zeros(d, np.float32)], ctx)
    big = np.zeros(d)
    big[0] = 100.0
    summand = strategy.summand(_update(big, 1), state)
    assert np.linalg.norm(summand.vector) == pytest.approx(clip)
    new, metrics = strategy.aggregate(state, None, ctx)
    noise = new.weights[0].astype(np.float64)
    assert metrics["noise_stddev"] == pytest.approx(z * clip)
    assert np.std(noise) == pytest.approx(z * clip / m, rel=0.03)
    assert abs(np.mean(noise)) < 5 * z * clip / m / np.sqrt(d)
    assert stats.normaltest(noise).pvalue > 1e-6
    # Seeded noise is a function of the round's seed; CSPRNG-seeded noise never repeats.
    again, _ = strategy.aggregate(state, None, _ctx(population=100, sampler=UniformSampler(m / 100)))
    assert (again.weights[0].tobytes() == new.weights[0].tobytes()) is seeded_noise


def test_adaptive_clipping_moves_towards_the_quantile():
    strategy = DifferentialPrivacyAdaptiveClipping(
        FedAvg(weighted=False),
        noise_multiplier=0.1,
        target_delta=1e-5,
        initial_clipping_norm=1.0,
        clipped_count_stddev=0.1,
        target_unclipped_quantile=0.5,
        clipping_learning_rate=0.2,
    )
    ctx = _ctx(population=1000, sampler=UniformSampler(0.1))
    state = strategy.initialize([np.zeros(3, np.float32)], ctx)
    small = [_update([0.1, 0, 0], 5, i) for i in range(100)]  # all unclipped: C shrinks by ~exp(-0.2 * 0.5)
    new, metrics = _round(strategy, state, small, ctx)
    assert metrics["unclipped_fraction_estimate"] == pytest.approx(1.0, abs=0.01)
    assert new.scalars["clipping_norm"] == pytest.approx(np.exp(-0.1), rel=0.01)
    # The round's noise multiplier is split: 1/z^2 = 1/z_update^2 + 1/(2 sigma_b)^2.
    z_update = strategy.update_noise_multiplier(ctx)
    assert 1 / z_update**2 + 1 / 0.2**2 == pytest.approx(1 / 0.1**2)
    # Secure aggregation's coordinate range leaves the moving norm headroom: 4 C_0 (fixed clipping: C).
    assert strategy.secure_aggregation_range(600) == 4.0
    assert (
        DifferentialPrivacyFixedClipping(
            FedAvg(weighted=False), clipping_norm=0.3, noise_multiplier=1.0, target_delta=1e-5
        ).secure_aggregation_range(600)
        == 0.3
    )
    # Without DP: weighted averaging sends n_k * delta_k.
    assert FedAvg().secure_aggregation_range(600) == 4800.0
    assert FedAvg(weighted=False).secure_aggregation_range(600) == 8.0


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda: DifferentialPrivacyFixedClipping(FedAvg(), clipping_norm=1, noise_multiplier=1, target_delta=1e-5),
            "weighted=False",
        ),
        (
            lambda: DifferentialPrivacyFixedClipping(
                FedAvg(weighted=False), clipping_norm=0, noise_multiplier=1, target_delta=1e-5
            ),
            r"clipping_norm must be in \[1.18\d*e-271, 1e\+06\]",
        ),
        (
            lambda: DifferentialPrivacyAdaptiveClipping(
                FedAvg(weighted=False), noise_multiplier=1.0, target_delta=1e-5
            ).initialize([np.zeros(2, np.float32)], _ctx(population=100, sampler=UniformSampler(0.1))),
            "clipped_count_stddev=0.5 is too small for noise_multiplier=1",
        ),
        (lambda: UniformSampler(1.5), r"fraction must be in \(0, 1\], got 1.5"),
        (lambda: PoissonSampler(0.0), r"sampling_probability must be in \(0, 1\], got 0.0"),
        (lambda: FedAvgM(server_momentum=1.0), r"server_momentum must be in \[0, 1\)"),
        (lambda: ClientConfig(learning_rate=float("nan")), "learning_rate must be a finite number > 0"),
    ],
)
def test_bad_settings_are_named(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_dp_noise_covers_the_aggregations_rounding_and_csprng_noise_hides_the_sample():
    """With secure aggregation's quantization one clipped update can move by C + rounding_bound: the
    noise is z times that. Without seeded noise the round's clients come from the OS CSPRNG, not the seed."""
    from federated.simulation.round import RoundPlan

    clip, z, bound = 2.0, 1.3, 0.25
    strategy = DifferentialPrivacyFixedClipping(
        FedAvg(weighted=False), clipping_norm=clip, noise_multiplier=z, target_delta=1e-5
    )
    ctx = RoundContext(
        round=1,
        population=100,
        sampler=UniformSampler(0.1),
        total_rounds=10,
        rng=np.random.default_rng(0),
        rounding_bound=bound,
    )
    state = strategy.initialize([np.zeros(4, np.float32)], ctx)
    _, metrics = strategy.aggregate(state, None, ctx)
    assert metrics["noise_stddev"] == pytest.approx(z * (clip + bound))
    assert strategy.secret_randomness and not FedAvg(weighted=False).secret_randomness
    plans = [
        RoundPlan.make(
            seed=7,
            round_index=3,
            sampler=UniformSampler(0.5),
            population=1000,
            dropout_rate=0.0,
            chunk_size=8,
            secret_sampling=secret,
        )
        for secret in (False, False, True, True)
    ]
    assert np.array_equal(plans[0].positions, plans[1].positions)  # seeded: replayable from the seed
    assert not np.array_equal(plans[2].positions, plans[3].positions)  # C(1000, 500) samples: never equal
    assert len(plans[2].positions) == len(plans[0].positions) == 500


def test_an_accountant_without_an_analysis_is_refused_before_any_round():
    """Uniform client sampling is sampling without replacement: dp-accounting's PLD has no analysis."""
    strategy = DifferentialPrivacyFixedClipping(
        FedAvg(weighted=False), clipping_norm=1.0, noise_multiplier=1.0, target_delta=1e-5, accountant="pld"
    )
    with pytest.raises(ValueError, match="accountant='pld' cannot account this run: dp-accounting's PLD"):
        strategy.initialize([np.zeros(3, np.float32)], _ctx(sampler=UniformSampler(0.1)))
    strategy.initialize([np.zeros(3, np.float32)], _ctx(sampler=PoissonSampler(0.1)))


@pytest.mark.parametrize("delta", [[10.0, 0, 0], [0.1, 0, 0], [np.nan, 0, 0]], ids=["clipped", "unclipped", "nan"])
def test_an_emptied_client_moves_the_adaptive_round_as_a_removed_one_and_the_epsilon_matches(delta):
    """N is public, so under Poisson sampling the neighbour without one client's data is that client emptied
    (it is sampled as before and sends a zero update with no examples). Measured on the strategy's own
    summands over a cohort: the update sum moves by at most C and the centred clipped count by at most 1/2,
    which is what the noise split accounts; the epsilon it reports is dp-accounting's for that change."""
    import dp_accounting
    from dp_accounting import dp_event

    z, sigma_b, q, rounds, target_delta = 0.8, 0.5, 0.1, 3, 1e-3
    strategy = DifferentialPrivacyAdaptiveClipping(
        FedAvg(weighted=False),
        noise_multiplier=z,
        target_delta=target_delta,
        initial_clipping_norm=1.0,
        clipped_count_stddev=sigma_b,
        accountant="pld",
    )
    ctx = RoundContext(
        round=1, population=100, sampler=PoissonSampler(q), total_rounds=rounds, rng=np.random.default_rng(0)
    )
    state = strategy.initialize([np.zeros(3, np.float32)], ctx)
    others = [_update([0.3 * i, 0, 0], 5, i) for i in range(1, 9)]
    with_data = others + [_update(delta, 7, 9)]
    emptied = others + [_update([0.0, 0, 0], 0, 9)]
    totals = [
        TreeSum.of((i, strategy.summand(u, state)) for i, u in enumerate(cohort)).result()
        for cohort in (with_data, emptied)
    ]
    update_change = np.linalg.norm(totals[0].vector - totals[1].vector)
    centred = [int(t.counts[-1]) - int(t.counts[-2]) / 2 for t in totals]
    count_change = abs(centred[0] - centred[1])
    assert update_change <= 1.0 + 1e-12 and count_change == 0.5
    # The round is one Gaussian mechanism whose noise multiplier, for the measured changes, is z.
    z_update = strategy.update_noise_multiplier(ctx)
    effective = ((1.0 / z_update) ** 2 + (count_change / sigma_b) ** 2) ** -0.5
    assert effective == pytest.approx(z, rel=1e-9)
    for r in range(rounds):
        state, metrics = strategy.aggregate(
            state,
            totals[0],
            RoundContext(
                round=r + 1,
                population=100,
                sampler=PoissonSampler(q),
                total_rounds=rounds,
                rng=np.random.default_rng(r),
            ),
        )
    accountant = dp_accounting.pld.PLDAccountant(dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE)
    accountant.compose(dp_event.PoissonSampledDpEvent(q, dp_event.GaussianDpEvent(effective)), rounds)
    assert metrics["epsilon_pld"] == pytest.approx(accountant.get_epsilon(target_delta), rel=1e-6)


def test_poisson_samplers_old_probability_keyword_works_for_one_release():
    with pytest.deprecated_call(
        match=r"^PoissonSampler\(probability=\.\.\.\) is deprecated: use sampling_probability$"
    ):
        old = PoissonSampler(probability=0.25)
    assert old == PoissonSampler(0.25) == PoissonSampler(sampling_probability=0.25)
    assert old.to_dict() == {"name": "poisson", "sampling_probability": 0.25}
    with pytest.raises(ValueError, match="give sampling_probability only"):
        PoissonSampler(0.25, probability=0.25)
    with pytest.raises(ValueError, match=r"sampling_probability must be in \(0, 1\], got None"):
        PoissonSampler()
    with pytest.deprecated_call(match=r"^PoissonSampler.probability is deprecated: use sampling_probability$"):
        assert PoissonSampler(0.25).probability == 0.25  # not the InitVar's default None


def test_client_configs_old_epochs_keyword_works_for_one_release():
    with pytest.deprecated_call(match=r"^ClientConfig\(epochs=\.\.\.\) is deprecated: use local_epochs$"):
        old = ClientConfig(epochs=3, batch_size=None)
    assert old == ClientConfig(local_epochs=3, batch_size=None) and old.local_epochs == 3
    assert FedAvg(old).to_dict()["client"]["local_epochs"] == 3
    for given in (2, 1):  # 1, the default, too: an explicit local_epochs is never overridden by the old name
        with pytest.raises(ValueError, match="give local_epochs only"):
            ClientConfig(local_epochs=given, epochs=3)
    with pytest.raises(ValueError, match="give local_epochs only"):
        dataclasses.replace(ClientConfig(), epochs=3)
    assert ClientConfig().local_epochs == 1
    with pytest.deprecated_call(match=r"^ClientConfig.epochs is deprecated: use local_epochs$"):
        assert ClientConfig(local_epochs=4).epochs == 4  # not the InitVar's default None
    with pytest.raises(ValueError, match="local_epochs must be an integer >= 1, got 0"):
        ClientConfig(local_epochs=0)


@pytest.mark.parametrize("shortfall", [1e-3, 1e-6, 1e-9, 1e-12])
def test_the_stop_reason_prints_the_epsilon_above_max_epsilon(shortfall):
    """privacy.compared widens both: before, '.4g' and ':g' printed a max_epsilon just below one round's epsilon
    2.13300599543 (Poisson q = 0.1, z = 1, RDP, delta 1e-5) as 'to 2.133 > max_epsilon=2.13301'."""
    event = dp_accounting.PoissonSampledDpEvent(0.1, dp_accounting.GaussianDpEvent(1.0))
    first = dp_accounting.rdp.RdpAccountant().compose(event).get_epsilon(1e-5)
    strategy = DifferentialPrivacyFixedClipping(
        FedAvg(weighted=False),
        clipping_norm=1.0,
        noise_multiplier=1.0,
        target_delta=1e-5,
        max_epsilon=first * (1 - shortfall),
    )
    ctx = _ctx(sampler=PoissonSampler(0.1))
    reason = strategy.stop_reason(strategy.initialize([np.zeros(2, np.float32)], ctx), ctx)
    shown, bound = (float(x) for x in re.search(r"to (\S+) > max_epsilon=(\S+)$", reason).groups())
    assert shown > bound and shown == pytest.approx(first, rel=1e-3), reason


@pytest.mark.parametrize(
    "clip, head, tail, count",
    [
        (1.0, 1.0, 2.0**-27 * 0.999, 10**6),  # 16 ones, then squares under half an ulp of the running sum
        (1e-200, 1e-190, 1e-190, 100),  # squares below float64's smallest number
        (3e-7, 3.0e38, 1.4e-45, 1000),  # float32's largest and smallest updates together
        (1.0, 1e308, 1e-300, 10),  # squares beyond float64's largest number (the update was zeroed)
    ],
)
def test_a_clipped_update_is_within_the_clipping_norm_exactly(clip, head, tail, count):
    """The L2 norm of what a client sends, computed exactly (Fractions; the coordinates take two values), is at most
    C, whatever float64's rounding of the norm: np.linalg.norm summed 16 ones and a million squares under half an ulp
    to 4e-13 too little (the update went out 1 + 4e-13 times C), and squared 1e-190 to 0 (the update went out whole,
    1e11 times C). The clipped update still has norm C to a relative 1e-6, and the adaptive bit sees the norm."""
    strategy = DifferentialPrivacyAdaptiveClipping(
        FedAvg(weighted=False), noise_multiplier=0.5, initial_clipping_norm=clip, target_delta=1e-5
    )
    state = strategy.initialize([np.zeros(16 + count, np.float32)], _ctx())
    delta = np.concatenate([np.full(16, head), np.full(count, tail)])
    summand = strategy.summand(_update(delta, 1), state)
    first, last = Fraction(float(summand.vector[0])), Fraction(float(summand.vector[-1]))
    assert np.all(summand.vector[:16] == summand.vector[0]) and np.all(summand.vector[16:] == summand.vector[-1])
    squared = 16 * first**2 + count * last**2
    assert squared <= Fraction(clip) ** 2
    assert squared >= Fraction(clip) ** 2 * (1 - Fraction(1, 10**6))
    assert summand.counts.tolist() == [1, 0]  # counted as clipped


def test_one_client_moves_a_plain_sum_by_exactly_its_clipped_update():
    """Clients at every other population position, so TreeSum forms no node and adds them in order. 2^12 - 1 clients
    at C = 1 put the sum just below 2^12; the client that differs (at 1) pushes it to 2^12, where each of 2^13 later
    clients, just over half an ulp there, was rounded up to a whole ulp: the client moved the float sum by
    1 + 3.7e-9 C. On the sum grid the sums are exact: it moves the sum by its own clipped update (Fractions)."""
    strategy = DifferentialPrivacyFixedClipping(
        FedAvg(weighted=False), clipping_norm=1.0, noise_multiplier=1.0, target_delta=1e-5
    )
    state = strategy.initialize([np.zeros(1, np.float32)], _ctx())
    ones, record, tiny = (
        strategy.summand(_update([value], 1), state) for value in (1.0, 1.0, 2.0**-41 * (1 + 2.0**-20))
    )
    totals = []
    for with_record in (False, True):
        items = [(2 * i, ones) for i in range((1 << 12) - 1)] + ([(2 * 4095, record)] if with_record else [])
        items += [(2 * (4096 + j), tiny) for j in range(1 << 13)]
        totals.append(Fraction(float(TreeSum.of(items).result().vector[0])))
    assert totals[1] - totals[0] == Fraction(float(record.vector[0])) and 0 < record.vector[0] <= 1


def test_a_central_dp_run_over_more_clients_than_the_sum_grid_holds_is_refused():
    """The sum grid (2^-24 C) is exact for at most 2^28 clients a round (`MAX_SUM_CLIENTS`); a population that
    large is accepted, one more client is refused before anything runs."""
    assert MAX_SUM_CLIENTS == 1 << 28
    largest = on_sum_grid(np.array([np.nextafter(1.0, 0.0)]), np.nextafter(1.0, 0.0))[0]  # C just below 2^0
    assert Fraction(largest) * MAX_SUM_CLIENTS < 2**53 * Fraction(2.0 ** (-1 - 24))  # below 2^53 grid steps
    strategy = DifferentialPrivacyFixedClipping(
        FedAvg(weighted=False), clipping_norm=1.0, noise_multiplier=1.0, target_delta=1e-12
    )
    sampler = PoissonSampler(1e-6)
    strategy.initialize([np.zeros(2, np.float32)], _ctx(population=MAX_SUM_CLIENTS, sampler=sampler))
    with pytest.raises(ValueError, match=f"at most {MAX_SUM_CLIENTS} clients .* population of {MAX_SUM_CLIENTS + 1}"):
        strategy.initialize([np.zeros(2, np.float32)], _ctx(population=MAX_SUM_CLIENTS + 1, sampler=sampler))


def test_a_clipping_norm_near_float64s_smallest_numbers_is_refused_and_adaptive_c_stops_above_them():
    """At C = 5e-323 the sum grid's step was 0 (every summand NaN) and the clipped norm 1.04 C: such a C is refused,
    and adaptive clipping, which shrinks C every round its clients go unclipped, stops at `MIN_CLIPPING_NORM`, where
    the clip is still within C exactly (Fractions) and on a non-zero grid."""
    for bad in (5e-323, MIN_CLIPPING_NORM / 2):
        with pytest.raises(ValueError, match="clipping_norm"):
            check_clipping_norm(bad)
    strategy = DifferentialPrivacyAdaptiveClipping(
        FedAvg(weighted=False), noise_multiplier=0.5, initial_clipping_norm=MIN_CLIPPING_NORM, target_delta=1e-5
    )
    state = strategy.initialize([np.zeros(3, np.float32)], _ctx())
    summand = strategy.summand(_update([1.0, 1e-300, 3.0], 1), state)
    assert np.all(np.isfinite(summand.vector)) and np.count_nonzero(summand.vector) == 2
    squared = sum(Fraction(float(x)) ** 2 for x in summand.vector)
    assert Fraction(MIN_CLIPPING_NORM) ** 2 * (1 - Fraction(1, 10**6)) <= squared <= Fraction(MIN_CLIPPING_NORM) ** 2
    everyone_unclipped = Summand(np.zeros(3), np.array([10, 10], np.int64))  # 10 clients, the expected number
    norms = [strategy.next_clipping_norm(MIN_CLIPPING_NORM, everyone_unclipped, _ctx(seed=s))[0] for s in range(20)]
    assert norms == [MIN_CLIPPING_NORM] * 20
