"""The noise cut-off's delta: the bound against exact integrals on one and two Box-Muller pairs, the hockey-stick
claim on one pair (with and without sampling), the report's and refusal's values."""

import dataclasses
import math
import re
from fractions import Fraction

import dp_accounting as dpa
import ml_dtypes
import numpy as np
import pytest
from scipy import integrate, stats

from privacy.accounting import DpSgdMechanism, NoiseCutoff, NoiseCutoffError, NoiseDraws, dp_sgd_report
from privacy.accounting.noise_cutoff import (
    MAX_ADDED_FRACTION,
    MAX_STEP_POSITIONS,
    UNIT_MAGNITUDE,
    check_l2_norm_clip,
    check_step_positions,
    escape_bound,
    max_l2_norm_clip,
    noise_scale_range,
    sampler_radius,
)


def _inside_both(radius, b):
    """P(|Y| <= R, |Y - b| <= R) for Y ~ N(0, I_2) and a shift of length b (1-D integral in polar coordinates)."""
    if b == 0:
        return -math.expm1(-radius * radius / 2)

    def angles(rho):
        c = (rho * rho + b * b - radius * radius) / (2 * rho * b) if rho > 0 else -1.0
        return math.acos(min(1.0, max(-1.0, c))) / math.pi

    value, _ = integrate.quad(lambda rho: rho * math.exp(-rho * rho / 2) * angles(rho), 0, radius, limit=200)
    return value


def _escape_exact(radius, shifts):
    """P(Y in A, Y - a not in A) for A the product of disks and a with pair norms ``shifts``."""
    inside = -math.expm1(-radius * radius / 2)
    return inside ** len(shifts) - math.prod(_inside_both(radius, b) for b in shifts)


@pytest.mark.parametrize("radius", [2.5, 3.5, 5.0])
@pytest.mark.parametrize("pairs", [1, 2, 50, 1000])
@pytest.mark.parametrize("shift", [0.3, 1.0])
def test_escape_bound_covers_concentrated_and_spread_shifts(radius, pairs, shift):
    """The bound is above the exact escape probability of a shift in one pair, spread evenly over every pair, and
    over half of them, and within a factor of 8 of the largest of those (1.1-6.1 here: it is not vacuous)."""
    bound = escape_bound(radius, pairs, shift)
    exact = []
    for spread in sorted({1, max(1, pairs // 2), pairs}):
        shifts = [shift / math.sqrt(spread)] * spread + [0.0] * (pairs - spread)
        exact.append(_escape_exact(radius, shifts))
        assert bound >= exact[-1] * (1 - 1e-9), (spread, bound, exact[-1])
    assert bound <= 8 * max(exact), (bound, exact)


def _hockey_stick(p, q, eps, cell):
    return float(np.sum(np.maximum(p - math.exp(eps) * q, 0.0)) * cell)


@pytest.mark.parametrize("radius, shift", [(2.5, 0.5), (2.5, 1.0), (3.5, 1.0)])
@pytest.mark.parametrize("q", [1.0, 0.3])
def test_truncated_pair_obeys_the_bound_in_both_directions(radius, shift, q):
    """One pair, the neighbour's sum moved by ``shift`` with probability q (Poisson sampling; q = 1: always): the
    truncated mechanism's hockey-stick divergence, integrated on a grid, is at most (the untruncated one's + T
    p_bad) / Z in both directions, with T = 1 and the exact p_bad, itself below `escape_bound` (margins 1e-5 to
    0.1 here: at R = 2.5, shift 0.5, eps 2 the inequality is nearly tight)."""
    h = 0.01
    axis = np.arange(-9.0, 9.0 + shift, h) + h / 2
    x, y = np.meshgrid(axis, axis, indexing="ij")
    g0 = np.exp(-(x * x + y * y) / 2) / (2 * math.pi)
    ga = np.exp(-((x - shift) ** 2 + y * y) / 2) / (2 * math.pi)
    z = -math.expm1(-radius * radius / 2)
    t0 = g0 * (x * x + y * y <= radius * radius) / z
    ta = ga * ((x - shift) ** 2 + y * y <= radius * radius) / z
    gaussian = (g0, (1 - q) * g0 + q * ga)  # the example absent, present (in the batch with probability q)
    truncated = (t0, (1 - q) * t0 + q * ta)
    bad = escape_bound(radius, 1, shift)
    exact = _escape_exact(radius, [shift])  # the derivation's p_bad itself, below the bound
    cell = h * h
    for eps in (0.25, 1.0, 2.0):
        for first, second in ((0, 1), (1, 0)):  # both directions
            h_gauss = _hockey_stick(gaussian[first], gaussian[second], eps, cell)
            h_trunc = _hockey_stick(truncated[first], truncated[second], eps, cell)
            assert h_trunc <= (h_gauss + exact) / z + 2e-3 and exact <= bad, (eps, first, h_trunc, h_gauss, exact)
    if q == 1.0:  # the Gaussian part against its closed form: the grid integrates well
        closed = stats.norm.cdf(-1.0 / shift + shift / 2) - math.e * stats.norm.cdf(-1.0 / shift - shift / 2)
        assert _hockey_stick(g0, ga, 1.0, cell) == pytest.approx(closed, abs=1e-4)


def test_added_delta_is_the_formula_of_the_module():
    """delta (Z^-T - 1) + min(c(eps) T p_bad, e^eps (1 - Z^T)) Z^-T with c(eps) = min(n_s, e^eps q_u)."""
    p_bad = escape_bound(6.0, 1000, 0.8)
    z_t = math.exp(500 * 1000 * math.log1p(-math.exp(-18.0)))
    delta = 1e-5

    def formula(weight, eps):
        return delta * (1 / z_t - 1) + min(weight * 500 * p_bad, math.exp(eps) * (1 - z_t)) / z_t

    one_sided = NoiseCutoff(radius=6.0, pairs=1000, steps=500, unit_shift=0.8, distinct_shifts=1.0, moves=0.01)
    assert one_sided.added_delta(delta, 1.0) == pytest.approx(formula(0.01 * math.e, 1.0), rel=1e-9)
    assert one_sided.added_delta(delta, 10.0) == pytest.approx(formula(1.0, 10.0), rel=1e-9)
    assert one_sided.added_delta(delta) == pytest.approx(delta * (1 / z_t - 1) + 500 * p_bad / z_t, rel=1e-9)
    replace = NoiseCutoff(radius=6.0, pairs=1000, steps=500, unit_shift=0.8, distinct_shifts=1.3)
    assert replace.added_delta(delta, 1.0) == pytest.approx(formula(1.3, 1.0), rel=1e-9)
    distance_only = NoiseCutoff(radius=6.0, pairs=1000, steps=500, unit_shift=0.8, distinct_shifts=None)
    assert distance_only.added_delta(delta, 2.0) == pytest.approx(formula(math.inf, 2.0), rel=1e-9)
    assert distance_only.added_delta(delta) == math.inf
    assert one_sided.escape == p_bad > 0
    with pytest.raises(ValueError, match="epsilon must be a number >= 0 or inf, got nan"):
        one_sided.added_delta(delta, math.nan)


@pytest.mark.parametrize("q", [0.01, 0.5, 1.0])
def test_one_step_mixture_obeys_the_sampling_credited_bound(q):
    """One pair at R = 2, the neighbour's sum moved by r = 1 with probability q (Poisson add-remove): the truncated
    mechanism's hockey-stick divergence, integrated on a grid on which the shift is whole cells (so the
    derivation's pointwise inequalities hold on the grid sums too), is within (the untruncated one's + min(1, q
    e^eps) p_bad) / Z in both directions (item 2 (b) of privacy.accounting.noise_cutoff). At eps 3, adding the
    example at q = 0.01 nearly attains it (a term q p_bad / 2 would not cover it), and removing it at q = 1 needs
    more than half of p_bad: the credit for sampling is neither dropped nor overdone."""
    radius, shift, cells = 2.0, 1.0, 50
    h = shift / cells
    axis = np.arange(-(radius + 2 * shift + 1), radius + 2 * shift + 1 + h / 2, h)
    x, y = np.meshgrid(axis, axis, indexing="ij")
    g0 = np.exp(-(x * x + y * y) / 2) / (2 * math.pi)
    inside0 = x * x + y * y <= radius * radius + 1e-12
    inside_a = np.zeros_like(inside0)
    inside_a[cells:, :] = inside0[:-cells, :]  # the disk moved by the shift along x, exactly on the grid
    ga = np.zeros_like(g0)
    ga[cells:, :] = g0[:-cells, :]
    z = float(np.sum(g0 * inside0) * h * h)  # the grid's own normaliser
    absent, present = g0 * inside0 / z, ((1 - q) * g0 * inside0 + q * ga * inside_a) / z
    p_bad = float(np.sum(ga * inside_a * ~inside0) * h * h)  # P(Y in A, Y + a not in A) on the grid
    assert p_bad <= escape_bound(radius, 1, shift) * 1.01
    gauss = (g0, (1 - q) * g0 + q * ga)
    truncated = (absent, present)
    for eps in (0.1, 1.0, 3.0):
        weight = min(1.0, q * math.exp(eps))
        for first, second in ((1, 0), (0, 1)):  # adding, removing the example
            h_gauss = _hockey_stick(gauss[first], gauss[second], eps, h * h)
            h_trunc = _hockey_stick(truncated[first], truncated[second], eps, h * h)
            assert h_trunc <= (h_gauss + weight * p_bad) / z * (1 + 1e-9), (eps, first, h_trunc, h_gauss, p_bad)
            if q == 0.01 and first == 1 and eps == 3.0:
                assert h_trunc > (h_gauss + q * p_bad / 2) / z, (eps, h_trunc)
            if q == 1.0 and first == 0 and eps == 3.0:
                assert h_trunc > (h_gauss + p_bad / 2) / z, (eps, h_trunc)


def test_for_mechanism_takes_the_terms_its_sampling_allows():
    """One-sided Poisson add-remove credits q (1 - (1 - q)^k for a user of k examples, 2^k - 1 shifts); Poisson
    replace-one has 1 + q shifts and no credit; shuffled batches one shift; fixed and truncated batches neither."""
    base = {"dataset_size": 1000, "batch_size": 10, "noise_multiplier": 2.0, "steps": 5}

    def terms(**kwargs):
        cutoff = NoiseCutoff.for_mechanism(DpSgdMechanism(**base, **kwargs), NoiseDraws(radius=9.0, pairs=4))
        return cutoff.distinct_shifts, cutoff.moves

    assert terms() == (1.0, pytest.approx(0.01))
    assert terms(max_examples_per_user=3) == (7.0, pytest.approx(1 - 0.99**3))
    assert terms(adjacency="replace-one") == (pytest.approx(1.01), None)
    assert terms(adjacency="replace-one", max_examples_per_user=3) == (None, None)
    assert terms(sampling="shuffle") == (1.0, None)
    assert terms(sampling="fixed") == (None, None)
    assert terms(truncated_batch_size=30) == (None, None)
    full = DpSgdMechanism(dataset_size=1000, batch_size=1000, noise_multiplier=2.0, steps=5)
    assert NoiseCutoff.for_mechanism(full, NoiseDraws(radius=9.0, pairs=4)).moves == 1.0


def test_noise_draws_merge_to_the_smaller_radius_and_more_pairs_and_keep_the_ledgers_json():
    """`NoiseDraws` is frozen and validated; `merged` is what a run drawing both drew (a float32 tensor's 9.42
    with a larger float64 draw's pairs); its dict is the ledger's ``{"radius", "pairs"}`` (as ledgers were written
    before it existed) and reads back equal. A report's cut-off keeps its JSON keys ``shift`` and ``shifts``."""
    float64, float32 = NoiseDraws(radius=12.0073, pairs=1000), NoiseDraws(radius=np.float64(9.42), pairs=np.int64(7))
    assert float64.merged(float32) == float32.merged(float64) == NoiseDraws(radius=9.42, pairs=1000)
    assert float32.merged(None) is float32
    assert type(float32.radius) is float and type(float32.pairs) is int  # numpy scalars serialise as plain JSON
    written = {"radius": 9.42, "pairs": 7}
    assert float32.to_dict() == written and NoiseDraws.from_dict(written) == float32
    with pytest.raises(dataclasses.FrozenInstanceError):
        float32.pairs = 8
    with pytest.raises(ValueError, match="radius must be"):
        NoiseDraws(radius=1.0, pairs=7)
    with pytest.raises(ValueError, match="pairs must be an integer >= 1"):
        NoiseDraws(radius=9.42, pairs=0)
    cutoff = NoiseCutoff.for_mechanism(_mechanism(), float32)
    data = cutoff.to_dict(1e-5)
    assert (data["shift"], data["shifts"]) == (cutoff.unit_shift, cutoff.distinct_shifts) == (1.0, 1.0)
    assert "unit_shift" not in data and "distinct_shifts" not in data


def test_the_cutoffs_json_keeps_the_keys_and_their_order_reports_were_written_with():
    """Reports (and the ledgers that embed them, `ppml epsilon --json`) were written with the cut-off's keys in
    this order before `unit_shift` and `distinct_shifts` were renamed: the JSON text stays the same byte for byte."""
    data = NoiseCutoff.for_mechanism(_mechanism(), MLP).to_dict(1e-5, 2.0)
    assert list(data) == ["radius", "pairs", "steps", "shift", "shifts", "moves", "epsilon", "added_delta"]


def test_shift_at_or_beyond_the_cutoff_is_refused():
    with pytest.raises(NoiseCutoffError, match="not below the sampler's cut-off 7.99"):
        NoiseCutoff(radius=7.99, pairs=10, steps=1, unit_shift=8.0).added_delta(1e-5)


def _mechanism(sigma=1.0, steps=14_063):
    return DpSgdMechanism(dataset_size=60_000, batch_size=256, noise_multiplier=sigma, steps=steps)


MLP = NoiseDraws(radius=math.sqrt(128 * math.log(2)), pairs=669_706 // 2)
"""What ppml's float32 sampler draws per step for the MLP 784-512-512-10 (its cut-off, one pair per two weights)."""


def test_report_states_delta_plus_the_cutoffs_and_keeps_epsilon():
    """The report's epsilon is dp-accounting's at delta (recomputed here); its guarantee is (epsilon, delta + X)."""
    mechanism = _mechanism(sigma=0.8)
    report = dp_sgd_report(mechanism, delta=1e-5, noise_draws=MLP)
    accountant = dpa.rdp.RdpAccountant()
    accountant.compose(dpa.PoissonSampledDpEvent(256 / 60_000, dpa.GaussianDpEvent(0.8)), 14_063)
    assert report.epsilon["rdp"] == pytest.approx(accountant.get_epsilon(1e-5), rel=1e-9)
    eps = min(e for e in report.epsilon.values() if e is not None)
    cutoff = NoiseCutoff(radius=MLP.radius, pairs=MLP.pairs, steps=14_063, unit_shift=1 / 0.8, moves=256 / 60_000)
    expected = cutoff.added_delta(1e-5, eps)
    assert report.added_delta == pytest.approx(expected) and 0 < expected < 1e-9
    assert expected < cutoff.added_delta(1e-5) / 2  # the credit for sampling (q e^eps ~ 0.04)
    assert report.guarantee_delta == 1e-5 + report.added_delta
    data = report.to_dict()
    assert data["noise_cutoff"]["pairs"] == MLP.pairs and data["noise_cutoff"]["added_delta"] == report.added_delta
    assert data["guarantee_delta"] == report.guarantee_delta and data["delta"] == 1e-5
    assert f"1e-05 + {report.added_delta:.3g})-DP" in report.format_text()
    assert dp_sgd_report(mechanism, delta=1e-5).added_delta == 0.0


@pytest.mark.parametrize(
    "radius, sigma, refused",
    [
        (math.sqrt(-2 * math.log(2.0**-46)), 1.0, True),  # ppml's float32 sampler before: cut at 7.99 stds
        (MLP.radius, 1.0, False),
        (MLP.radius, 0.5, False),
        (MLP.radius, 0.3, True),
    ],
)
def test_cutoffs_adding_more_than_one_percent_of_delta_are_refused(radius, sigma, refused):
    """The MLP's 60 epochs at n = 60 000, B = 256, for every epsilon: 7.99 stds adds 24 % of delta at sigma 1
    (refused), 9.42 stds 0.18 % at sigma 0.5 (accepted) and 980 % at sigma 0.3 (refused)."""
    mechanism = _mechanism(sigma=sigma)
    cutoff = NoiseCutoff.for_mechanism(mechanism, NoiseDraws(radius=radius, pairs=MLP.pairs))
    assert (cutoff.added_delta(1e-5) > MAX_ADDED_FRACTION * 1e-5) is refused
    if refused:
        with pytest.raises(NoiseCutoffError, match=r"more than 1% of delta=1e-05 .* raise noise_multiplier"):
            dp_sgd_report(mechanism, delta=1e-5, noise_draws=NoiseDraws(radius=radius, pairs=MLP.pairs))
    else:
        dp_sgd_report(mechanism, delta=1e-5, noise_draws=NoiseDraws(radius=radius, pairs=MLP.pairs))


def test_the_refusal_prints_what_the_cutoff_adds_above_one_percent_of_delta():
    """The 7.99-std cut-off at a delta whose 1 % is just below what it adds (2.3897e-06 against 2.3896e-06): the
    refusal prints both, ordered as the numbers are (privacy.compared). Before, it printed the added delta to 3
    digits beside delta, not its 1 %, which can read as not more (2.3849e-06 as '2.38e-06' against 1 % of
    delta=0.000238485)."""
    cutoff = NoiseCutoff.for_mechanism(
        _mechanism(sigma=1.0), NoiseDraws(radius=math.sqrt(-2 * math.log(2.0**-46)), pairs=MLP.pairs)
    )
    delta = cutoff.added_delta(cutoff.added_delta(1e-5) / MAX_ADDED_FRACTION) / MAX_ADDED_FRACTION  # added grows
    added = cutoff.added_delta(delta)  # with delta: a little above 1 % of it
    assert 1 < added / (MAX_ADDED_FRACTION * delta) < 1.001
    with pytest.raises(NoiseCutoffError) as refused:
        cutoff.check(delta)
    shown, bound = re.search(r"adds delta (\S+) .* of delta=\S+ \((\S+); one unit", str(refused.value)).groups()
    assert float(shown) > float(bound) and float(shown) == pytest.approx(added, rel=1e-3), str(refused.value)


def test_shift_follows_sensitivity_and_group():
    replace = DpSgdMechanism(
        dataset_size=1000, batch_size=10, noise_multiplier=2.0, steps=5, sampling="fixed", max_examples_per_user=3
    )
    assert NoiseCutoff.for_mechanism(replace, NoiseDraws(radius=9.0, pairs=4)).unit_shift == pytest.approx(2 * 3 / 2.0)


@pytest.mark.parametrize("q", [0.01, 0.5, 1.0])
def test_replace_one_mixture_obeys_the_support_and_distance_bounds(q):
    """Replace-one under Poisson sampling, one pair at R = 2, one step: x moves the sum by +a and x' by -a (|a| = 1/2,
    sensitivity r = 1), both included with probability q. In both directions the truncated hockey-stick divergence
    (grid sums, shifts whole cells) is within (the untruncated one's + n_s p_bad(r)) / Z, n_s = 1 + q (1 at q = 1),
    and within (the untruncated one's + e^eps (1 - Z)) / Z (items 2 (c) and (a) of privacy.accounting.noise_cutoff);
    at q = 1 and eps 3 the first is nearly attained."""
    radius, half, cells = 2.0, 0.5, 25
    h = half / cells
    axis = np.arange(-(radius + 2), radius + 2 + h / 2, h)
    x, y = np.meshgrid(axis, axis, indexing="ij")

    def moved(k):  # the standard pair's density and disk moved by k cells along x (k > 0: +x)
        g = np.exp(-((x - k * h) ** 2 + y * y) / 2) / (2 * math.pi)
        return g, (x - k * h) ** 2 + y * y <= radius * radius + 1e-12

    (g0, in0), (gp, inp), (gm, inm) = moved(0), moved(cells), moved(-cells)
    z = float(np.sum(g0 * in0) * h * h)
    gauss = ((1 - q) * g0 + q * gp, (1 - q) * g0 + q * gm)
    truncated = (((1 - q) * g0 * in0 + q * gp * inp) / z, ((1 - q) * g0 * in0 + q * gm * inm) / z)
    g2, in2 = moved(2 * cells)
    p_bad = float(np.sum(g2 * in2 * ~in0) * h * h)  # P(Y in A, Y - a not in A) at the sensitivity |a| = 1, on the grid
    shifts = 1.0 if q == 1.0 else 1.0 + q
    for eps in (0.1, 1.0, 3.0):
        for first, second in ((0, 1), (1, 0)):
            h_gauss = _hockey_stick(gauss[first], gauss[second], eps, h * h)
            h_trunc = _hockey_stick(truncated[first], truncated[second], eps, h * h)
            assert h_trunc <= (h_gauss + shifts * p_bad) / z * (1 + 1e-9), (eps, first, h_trunc, h_gauss, p_bad)
            assert h_trunc <= (h_gauss + math.exp(eps) * (1 - z)) / z * (1 + 1e-9), (eps, first, h_trunc)
            if q == 1.0 and eps == 3.0:
                assert h_trunc > (h_gauss + 0.9 * p_bad) / z, (first, h_trunc)


def test_a_large_radius_does_not_overflow():
    """f(b) = exp(-(R - b)^2 / 2) (1 - exp(-b (2R - b) / 2)) is computed without exp(R b) (OverflowError at R = 1000
    before); its values elsewhere are checked against exact integrals above."""
    assert 0 <= NoiseCutoff(radius=1000.0, pairs=3, steps=2, unit_shift=1.0).added_delta(1e-5) < 1e-300


@pytest.mark.parametrize("name", ["float16", "bfloat16", "float32"])
def test_the_largest_noise_scale_cannot_overflow_in_16_bit_dtypes_either(name):
    """The non-float64 sampler's draws are float32 of magnitude at most R = sqrt(128 ln 2) rounded up to float32, plus
    a float32 ulp of its own rounding, cast to the dtype and multiplied there by the standard deviation rounded up
    to the dtype: at the range's top the largest such product is finite. max / R alone is not an upper bound in
    float16 (it rounds up to 6956, and 9.42 x 6956 overflows) nor in bfloat16, even for a draw of float32(R)."""
    dtype = np.dtype(getattr(ml_dtypes, name, name))
    top = np.nextafter(np.nextafter(np.float32(sampler_radius(name)), np.float32(np.inf)), np.float32(np.inf))
    draw = top.astype(dtype)  # the cast of the largest float32 draw, rounded to nearest

    def rounded_up(value):
        near = np.array(value).astype(dtype)
        return near if float(near) >= value else np.nextafter(near, dtype.type(np.inf))

    smallest, largest = noise_scale_range(name)
    info = ml_dtypes.finfo(dtype)
    assert smallest == float(info.tiny) / float(info.eps)
    with np.errstate(over="ignore"):
        assert np.isfinite(draw * rounded_up(largest)), (name, largest)
        old = float(info.max) / sampler_radius(name)
        if name != "float32":
            assert not np.isfinite(np.float32(sampler_radius(name)).astype(dtype) * rounded_up(old)), (name, old)


def largest_clip_recomputed() -> float:
    """The largest float C with C (N 2^13 / (1 - (N + 1) u) + R' (1 + eps)^2 1e6 (1 + 2^-10)) <= float32's max, N =
    2^23 positions, u = 2^-24, R' = sqrt(128 ln 2) rounded up to float32, from numpy's float32 and Fractions."""
    info = np.finfo(np.float32)
    eps = Fraction(float(info.eps))
    u = eps / 2
    assert u == Fraction(1, 2**24)
    radius = np.float32(math.sqrt(128 * math.log(2)))
    radius = radius if float(radius) >= math.sqrt(128 * math.log(2)) else np.nextafter(radius, np.float32(np.inf))
    positions = 2**23
    per_clip = positions * 2**13 / (1 - (positions + 1) * u) + Fraction(float(radius)) * (1 + eps) ** 2 * Fraction(
        10**6
    ) * (1 + Fraction(1, 1024))
    exact = Fraction(float(info.max)) / per_clip
    clip = float(exact)
    while Fraction(clip) > exact:
        clip = math.nextafter(clip, 0.0)
    assert Fraction(math.nextafter(clip, math.inf)) > exact
    return clip


def test_the_largest_clip_keeps_a_step_of_the_most_positions_finite_and_the_next_float_is_refused():
    """max_l2_norm_clip is the largest float C at which MAX_STEP_POSITIONS units' terms (2^13 m C each in magnitude,
    m <= 1), rounded in any order, plus the largest noise draw at sigma 1e6 stay within float32's max (recomputed
    here); it is accepted and the next float refused naming l2_norm_clip; the step's rows likewise at 2^23."""
    largest = largest_clip_recomputed()
    assert max_l2_norm_clip() == largest and 2.47e27 < largest < 2.48e27
    assert MAX_STEP_POSITIONS == 2**23 and UNIT_MAGNITUDE == 2**13
    check_l2_norm_clip(largest)
    check_l2_norm_clip(np.float32(1e27))
    for bad in (math.nextafter(largest, math.inf), 1e39, math.inf):
        with pytest.raises(ValueError) as info:
            check_l2_norm_clip(bad)
        message = str(info.value)
        assert message.startswith(f"l2_norm_clip={bad!r} must be at most {largest!r}") and "\n" not in message
    check_step_positions(2**23)
    with pytest.raises(ValueError, match=r"step over 8388609 batch rows \(all replicas\) is beyond the 8388608"):
        check_step_positions(2**23 + 1)


def test_no_accepted_clip_reaches_the_top_of_float32s_noise_range_and_small_ones_reach_the_bottom():
    """Docs say only the lower end of float32's noise range can refuse a clip within the cap: the largest standard
    deviation an accepted step can ask for, sigma 1e6 times the cap times (1 + 2^-10) (m <= 1 after folding), stays
    below 2.48e33, under float32's top, max / (R' (1 + eps)^2) (recomputed from numpy, above 3.6e37); check_step_noise
    accepts it at B = 1 and B = 1/2, and refuses a tiny clip's noise naming l2_norm_clip (the checks stay)."""
    from privacy.accounting.noise_cutoff import check_step_noise

    info = np.finfo(np.float32)
    radius = np.float32(math.sqrt(128 * math.log(2)))
    radius = radius if float(radius) >= math.sqrt(128 * math.log(2)) else np.nextafter(radius, np.float32(np.inf))
    top = Fraction(float(info.max)) / (Fraction(float(radius)) * (1 + Fraction(float(info.eps))) ** 2)
    largest = Fraction(10**6) * Fraction(largest_clip_recomputed()) * (1 + Fraction(1, 1024))
    assert largest < Fraction(2.48e33) and top > Fraction(3.6e37), (float(largest), float(top))
    for batch in (1.0, 0.5):
        check_step_noise(1e6, max_l2_norm_clip(), batch)
    with pytest.raises(ValueError, match=r"^l2_norm_clip=1e-33 .*below, its draws are flushed to 0"):
        check_step_noise(1.0, 1e-33, 1.0)
