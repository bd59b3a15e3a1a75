"""Secure aggregation: exact recovery of the quantized sum, dropouts, threshold, and what the server sees."""

import math
import types
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from federated.aggregation import SecureAggregation, Summand
from federated.aggregation.secure import shamir
from federated.aggregation.secure.quantization import dequantize_sum, quantize
from federated.client import ClientConfig
from federated.sampling import UniformSampler
from federated.simulation import FederatedSimulation
from federated.strategies import FedAvg

from .conftest import linear_model

BITS, RANGE = 12, 1.0
STEP = 2 * RANGE / ((1 << BITS) - 1)


def _plan(m):
    return types.SimpleNamespace(
        round=3, positions=np.arange(m), client_keys=np.arange(m, dtype=np.uint64), secret=False
    )


def _run(secagg, summands, dropped=()):
    keys = secagg.open_round(_plan(len(summands)), seed=11)
    accumulator = secagg.new_accumulator()
    reported = [r for r in range(len(summands)) if r not in dropped]
    for rank in reported[::-1]:  # any order
        accumulator = secagg.accumulate(accumulator, secagg.encode(rank, summands[rank], keys))
    return secagg.finish(accumulator, reported, keys), keys


def _on_grid(rng, m, d):
    """Vectors on the quantization grid, so stochastic rounding is exact: v = k * step - r."""
    ks = rng.integers(0, 1 << BITS, size=(m, d))
    return ks, [Summand(k * STEP - RANGE, np.array([rng.integers(1, 500), 1])) for k in ks]


def test_unmasked_sum_equals_the_plain_quantized_sum(rng):
    secagg = SecureAggregation(clipping_range=RANGE, bits=BITS, modulus_bits=24)
    ks, summands = _on_grid(rng, 7, 300)
    (total, report), _ = _run(secagg, summands)
    np.testing.assert_array_equal(np.round((total.vector + 7 * RANGE) / STEP).astype(np.int64), ks.sum(axis=0))
    np.testing.assert_array_equal(total.counts, sum(s.counts for s in summands))
    np.testing.assert_allclose(total.vector, sum(s.vector for s in summands), atol=1e-9)
    assert report["aborted"] is False and report["clients"] == 7 and report["client_key_agreements"] == 6


def test_random_vectors_are_summed_within_the_quantization_error(rng):
    secagg = SecureAggregation(clipping_range=RANGE, bits=BITS, modulus_bits=24)
    summands = [Summand(rng.uniform(-1, 1, 1000), np.array([1])) for _ in range(5)]
    (total, _), _ = _run(secagg, summands)
    error = total.vector - sum(s.vector for s in summands)
    assert np.max(np.abs(error)) <= 5 * STEP
    assert abs(error.mean()) < 4 * np.sqrt(5 / 6) * STEP / np.sqrt(1000)  # unbiased rounding


def test_dropouts_under_the_threshold_still_recover(rng):
    secagg = SecureAggregation(clipping_range=RANGE, bits=BITS, modulus_bits=24, threshold=0.6)
    ks, summands = _on_grid(rng, 10, 200)
    dropped = {1, 4, 8}  # 7 of 10 report, t = 6
    (total, report), _ = _run(secagg, summands, dropped)
    alive = [r for r in range(10) if r not in dropped]
    np.testing.assert_array_equal(np.round((total.vector + 7 * RANGE) / STEP).astype(np.int64), ks[alive].sum(0))
    assert report["dropped"] == 3 and report["server_reconstructions"] == 10
    (none, aborted), _ = _run(secagg, summands, dropped={0, 1, 2, 3, 4})  # 5 < t = 6
    assert none is None and aborted["aborted"] is True


def test_server_view_is_uniform_whatever_the_input(rng):
    """Each masked vector is uniform mod 2^M and uncorrelated with the input, for extreme inputs."""
    secagg = SecureAggregation(clipping_range=RANGE, bits=BITS, modulus_bits=24)
    d = 4096
    for fill in (-RANGE, RANGE):
        summands = [
            Summand(np.full(d, fill), np.zeros(0, np.int64)),
            Summand(rng.uniform(-1, 1, d), np.zeros(0, np.int64)),
            Summand(np.zeros(d), np.zeros(0, np.int64)),
        ]
        keys = secagg.open_round(_plan(3), seed=0)
        for rank, summand in enumerate(summands):
            masked = secagg.encode(rank, summand, keys).total
            top = (masked >> np.uint64(20)).astype(np.int64)  # 16 bins of the top 4 bits
            assert stats.chisquare(np.bincount(top, minlength=16)).pvalue > 1e-4
            assert abs(stats.pearsonr(masked.astype(np.float64), summand.vector + 1e-9 * np.arange(d))[0]) < 0.08


def test_shamir_threshold():
    secret = bytes(range(32))
    shares = shamir.split(secret, list(range(6)), threshold=4)
    assert shamir.reconstruct({h: shares[h] for h in (5, 0, 3, 2)}) == secret
    with pytest.raises(ValueError, match="do not determine"):  # 3 < t: a uniform field element, not the secret
        shamir.reconstruct({h: shares[h] for h in (0, 1, 2)})


def test_bad_settings_and_overflow():
    with pytest.raises(ValueError, match=r"threshold must be in \(0.5, 1\], got 0.5"):
        SecureAggregation(clipping_range=1.0, threshold=0.5)
    with pytest.raises(ValueError, match=r"raise modulus_bits to >= 20"):
        SecureAggregation(clipping_range=1.0, bits=16, modulus_bits=18).open_round(_plan(10), seed=0)
    values, clipped = quantize(np.array([-3.0, 0.0, 0.5, 9.0]), 1.0, 8, np.random.default_rng(0))
    assert clipped == 2 and values[0] == 0 and values[-1] == 255


def test_simulation_with_secure_aggregation_matches_plain_fedavg(digits_iid):
    data, test = digits_iid
    client = ClientConfig(local_epochs=1, batch_size=10, learning_rate=0.3)

    def run(aggregation, dropout_rate=0.0):
        sim = FederatedSimulation(
            linear_model,
            data,
            FedAvg(client, weighted=False),
            rounds=2,
            sampler=UniformSampler(0.5),
            seed=3,
            aggregation=aggregation,
            dropout_rate=dropout_rate,
            evaluation=test,
        )
        return sim, sim.run()

    plain, _ = run(None)
    secure, history = run(SecureAggregation(clipping_range=1.0, bits=20, modulus_bits=40))
    # Rounding error per coordinate <= one step 2 / (2^20 - 1) per client, then averaged.
    for a, b in zip(plain.state.weights, secure.state.weights, strict=True):
        np.testing.assert_allclose(a, b, atol=2 * 2.0 / 2**20)
    assert history.rounds[0].aggregation["clients"] == 10
    assert history.rounds[0].aggregation["clipped_coordinates"] == 0
    clipped = run(SecureAggregation(clipping_range=1e-3, bits=20, modulus_bits=40))[1]
    assert clipped.rounds[0].aggregation["clipped_coordinates"] > 0  # reported, so a user can widen the range
    _, dropped = run(SecureAggregation(clipping_range=1.0, bits=20, modulus_bits=40), dropout_rate=0.2)
    assert all(r.reported == r.sampled - r.dropped for r in dropped.rounds)
    assert all(r.aggregation["aborted"] is False for r in dropped.rounds)


def test_rounding_bound_covers_the_quantization_of_a_clipped_update():
    """Stochastic rounding moves one vector by less than sqrt(d) steps in L2 (the DP noise covers this)."""
    secagg = SecureAggregation(clipping_range=RANGE, bits=BITS)
    rng = np.random.default_rng(3)
    d = 2_000
    vector = rng.uniform(-RANGE, RANGE, d)
    values, _ = quantize(vector, RANGE, BITS, rng)
    moved = np.linalg.norm(values.astype(np.float64) * STEP - RANGE - vector)
    assert 0 < moved <= secagg.rounding_bound(d, 1) == pytest.approx(np.sqrt(d) * STEP)
    assert moved > 0.3 * secagg.rounding_bound(d, 1)  # the bound is the worst case, not far above typical


def test_rounding_bound_covers_float64_rounding_of_the_quantization():
    """At many bits float64 cannot hold the scaled value and the uniform draw exactly: a coordinate whose scaled value
    lies just below an integer k and the generator's largest draw 1 - 2^-53 round to k + 1, more than one step from the
    coordinate (1.0078 steps here at b = 48). The bound covers it; the error is measured exactly (Fractions)."""
    bits = 48
    levels = (1 << bits) - 1
    target = Fraction(1 << (bits - 1)) - Fraction(1, 128)  # the scaled value (v + r) (2^b - 1) / 2r, with r = 1
    vector = np.array([float(2 * target / levels - 1)])
    scaled = (Fraction(vector[0]) + 1) * levels / 2
    assert 1 - Fraction(1, 64) < scaled - math.floor(scaled) < 1
    largest_draw = types.SimpleNamespace(random=lambda shape: np.full(shape, 1 - 2.0**-53))
    values, _ = quantize(vector, 1.0, bits, largest_draw)
    moved = abs(Fraction(int(values[0])) * 2 / levels - 1 - Fraction(vector[0]))
    assert moved <= Fraction(SecureAggregation(clipping_range=1.0, bits=bits, modulus_bits=63).rounding_bound(1, 1))
    assert moved > Fraction(2, levels)  # beyond one step: what the bound must cover


def test_rounding_bound_covers_the_float64_dequantization_of_a_sum_with_or_without_one_client():
    """The server turns the modular sum of m quantized vectors into floats (up to 2 m r, rounded to float64's 2^-52
    relative): adding one client moves that by its own value plus this rounding, about 2^-52 m r, far more than one
    step at b = 48 (the bound before covered only the quantization). Measured exactly (Fractions) over random sums."""
    bits, m = 48, (1 << 14) - 1
    secagg = SecureAggregation(clipping_range=1.0, bits=bits, modulus_bits=63)
    quantization_only = (1 + 2.0 ** (bits - 51)) * 2.0 / ((1 << bits) - 1)
    rng = np.random.default_rng(7)
    vector = rng.uniform(-1, 1, 400)
    client = quantize(vector, 1.0, bits, rng)[0]
    others = np.array([int(x) for x in rng.integers(0, 1 << bits, size=400)], dtype=object) * m  # m clients' sum
    without = dequantize_sum(others.astype(np.uint64), m, 1.0, bits)
    with_client = dequantize_sum((others + client.astype(object)).astype(np.uint64), m + 1, 1.0, bits)
    moved = [
        abs(Fraction(float(b)) - Fraction(float(a)) - Fraction(float(v)))
        for a, b, v in zip(without, with_client, vector, strict=True)
    ]
    assert max(moved) > 100 * quantization_only  # the dequantization's rounding, not the quantization's, dominates
    assert max(moved) <= Fraction(secagg.rounding_bound(1, m + 1))
    assert secagg.rounding_bound(400, m + 1) == pytest.approx(20 * (quantization_only + (m + 1) * 2.0**-49))


def _neighbour_plans(secret=False):
    """The same round over clients {a, b, c, d} and over {new, a, b, c, d}: client 'c' has rank 2, then 3."""
    from federated.simulation.round import RoundPlan, client_keys

    plans = []
    for ids in (["a", "b", "c", "d"], ["new", "a", "b", "c", "d"]):
        plans.append(
            RoundPlan.make(
                seed=5,
                round_index=2,
                sampler=UniformSampler(1.0),
                population=len(ids),
                dropout_rate=0.0,
                chunk_size=8,
                client_keys=client_keys(ids),
                secret_sampling=secret,
            )
        )
    return plans


def test_one_clients_presence_changes_nothing_about_the_others_rounding(rng):
    """Stochastic rounding draws from each client's own randomness: adding a client before 'c' shifts
    its rank, not its rounding (seeded from the client's id, never from its rank)."""
    secagg = SecureAggregation(clipping_range=RANGE, bits=BITS, modulus_bits=24)
    summand = Summand(rng.uniform(-1, 1, 500), np.zeros(0, np.int64))  # off the grid: rounding is random
    without, with_new = _neighbour_plans()
    values = [
        secagg.quantized(rank, summand, secagg.open_round(plan, seed=5)) for plan, rank in ((without, 2), (with_new, 3))
    ]
    np.testing.assert_array_equal(values[0], values[1])
    other = secagg.quantized(1, summand, secagg.open_round(without, seed=5))  # client 'b': its own draws
    assert not np.array_equal(values[0], other)


def test_secret_randomness_draws_each_clients_rounding_from_the_csprng(rng):
    """With the DP strategies' CSPRNG randomness the rounding is not a function of the seed either."""
    secagg = SecureAggregation(clipping_range=RANGE, bits=BITS, modulus_bits=24)
    summand = Summand(rng.uniform(-1, 1, 500), np.zeros(0, np.int64))
    plan, _ = _neighbour_plans(secret=True)
    first, second = (secagg.quantized(2, summand, secagg.open_round(plan, seed=5)) for _ in range(2))
    assert not np.array_equal(first, second)  # 500 coordinates rounded up or down: never all equal
    keys = secagg.open_round(plan, seed=5)
    assert len(set(keys.rounding_entropy.values())) == 4


def _poisoned(data, client):
    """``data`` with one client's features scaled until its local loss overflows (a NaN update)."""
    from federated.data import ClientData

    x = data.x.copy()
    x[data.partition.indices[client]] *= 1e38
    return ClientData(x, data.y, data.partition)


def test_under_dp_a_nonfinite_client_reports_zero_and_cannot_abort_the_round(digits_iid):
    """With every client required (threshold 1), one client whose update is NaN would abort the round
    and discard everyone's contribution; under DP it reports a zero update (clipped) instead."""
    from federated.strategies import DifferentialPrivacyAdaptiveClipping

    data, _ = digits_iid
    client = ClientConfig(local_epochs=1, batch_size=10, learning_rate=0.3)

    def round_one(clients, strategy):
        sim = FederatedSimulation(
            linear_model,
            clients,
            strategy,
            rounds=1,
            sampler=UniformSampler(1.0),
            seed=3,
            aggregation=SecureAggregation(clipping_range=1.0, bits=20, modulus_bits=40, threshold=1.0),
        )
        return sim.run().rounds[0]

    dp = DifferentialPrivacyAdaptiveClipping(
        FedAvg(client, weighted=False),
        noise_multiplier=0.5,
        target_delta=1e-3,
        clipped_count_stddev=2.0,
        seeded_noise=True,
    )
    record = round_one(_poisoned(data, 3), dp)
    assert (record.sampled, record.reported, record.nonfinite) == (20, 20, None)  # not recorded under DP
    assert record.aggregation["aborted"] is False
    # The poisoned client counts as clipped, like any update above C; its vector is zero.
    clean = round_one(data, dp)
    assert clean.aggregation["aborted"] is False and clean.reported == 20
    public = round_one(_poisoned(data, 3), FedAvg(client, weighted=False))  # no DP: it does not report
    assert (public.reported, public.nonfinite, public.aggregation["aborted"]) == (19, 1, True)


def test_dp_refuses_dropouts_that_let_one_clients_presence_abort_a_poisson_round(digits_iid):
    """Under Poisson sampling the threshold counts the sampled clients, so one added client that drops out
    can abort a round another client set would finish: outside the add/remove analysis, refused. With
    uniform sampling (replace-one) the abort depends on the dropouts alone, which no client's data sets."""
    from federated.sampling import PoissonSampler
    from federated.strategies import DifferentialPrivacyFixedClipping

    data, _ = digits_iid
    client = ClientConfig(local_epochs=1, batch_size=10, learning_rate=0.3)
    dp = DifferentialPrivacyFixedClipping(
        FedAvg(client, weighted=False), clipping_norm=1.0, noise_multiplier=1.0, target_delta=1e-3, seeded_noise=True
    )
    secagg = SecureAggregation(clipping_range=1.0, bits=20, modulus_bits=40, threshold=0.9)
    with pytest.raises(ValueError, match="one client's presence can abort a round"):
        FederatedSimulation(
            linear_model, data, dp, rounds=1, sampler=PoissonSampler(0.5), aggregation=secagg, dropout_rate=0.2
        )
    FederatedSimulation(linear_model, data, dp, rounds=1, sampler=PoissonSampler(0.5), aggregation=secagg)

    def aborts(clients, seed=1):
        sim = FederatedSimulation(
            linear_model,
            clients,
            dp,
            rounds=6,
            sampler=UniformSampler(0.5),
            seed=seed,
            aggregation=secagg,
            dropout_rate=0.2,
        )
        return [r.aggregation["aborted"] for r in sim.run().rounds]

    outcome = aborts(data)
    assert True in outcome and False in outcome  # some rounds abort, some do not
    # Replace-one neighbours: client 7's data replaced by nothing, by a copy of client 0's, by every
    # example, or by data whose update is not finite. The abort pattern is the same for each.
    for replaced in (
        _with_client(data, 7, []),
        _with_client(data, 7, data.partition.indices[0]),
        _with_client(data, 7, np.arange(len(data.y))),
        _poisoned(data, 7),
    ):
        assert replaced.num_clients == data.num_clients and aborts(replaced) == outcome
    # ... whereas the dropout draws do decide it: other seeds abort other rounds.
    assert any(aborts(data, seed) != outcome for seed in (2, 3, 4))


def _with_client(data, client, rows):
    """``data`` with client ``client`` holding copies of the examples ``rows`` instead (N unchanged)."""
    from federated.data import ClientData
    from federated.partitioners import Partition

    rows = np.asarray(rows, np.int64)
    new = np.arange(len(data.y), len(data.y) + rows.size)
    indices = [new if k == client else ix for k, ix in enumerate(data.partition.indices)]
    y = np.concatenate([data.y, data.y[rows]])
    return ClientData(
        np.concatenate([data.x, data.x[rows]]), y, Partition(list(data.client_ids), indices, labels=y, allow_empty=True)
    )


def test_a_dp_round_over_secure_aggregation_adds_noise_for_the_rounding_of_a_sum_of_the_whole_population(digits_iid):
    """The noise is z (C + rounding_bound(d, N)): the dequantization's rounding grows with the clients summed, at most
    the population N (a Poisson round can sample all of them)."""
    from federated.strategies import DifferentialPrivacyFixedClipping

    data, _ = digits_iid
    client = ClientConfig(local_epochs=1, batch_size=10, learning_rate=0.3)
    dp = DifferentialPrivacyFixedClipping(
        FedAvg(client, weighted=False), clipping_norm=1.0, noise_multiplier=1.3, target_delta=1e-3, seeded_noise=True
    )
    secagg = SecureAggregation(clipping_range=1.0, bits=40, modulus_bits=60)
    sim = FederatedSimulation(linear_model, data, dp, rounds=1, sampler=UniformSampler(0.5), aggregation=secagg)
    [round_] = sim.run().rounds
    dimension = sum(w.size for w in sim.state.weights)
    bound = secagg.rounding_bound(dimension, data.num_clients)
    assert bound > secagg.rounding_bound(dimension, 1)
    assert round_.metrics["noise_stddev"] == pytest.approx(1.3 * (1.0 + bound), rel=1e-12)
