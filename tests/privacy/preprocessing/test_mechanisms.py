"""Private preprocessing mechanisms: adversarial neighbours against the stated sensitivity, the noise
against the recorded standard deviations, the events against dp-accounting, and bad settings."""

import dataclasses
import math
from fractions import Fraction

import dp_accounting
import numpy as np
import pytest
from dp_accounting import dp_event
from scipy import special, stats

from privacy.accounting import Adjacency
from privacy.preprocessing import (
    Bounds,
    CoverageRecord,
    GaussianThresholding,
    Grid,
    MeanVariance,
    MechanismRecord,
    NoiseSource,
    PreprocessingAccount,
    PreprocessingBudget,
    PreprocessingPart,
    PublicDeclaration,
    RecordError,
    ReleaseRecord,
    TreeHistogram,
    additive_delta,
    check_share,
    from_text,
    group_factor,
    noise,
    noise_multiplier_of,
    to_text,
)
from privacy.preprocessing.moments import SUM_BITS

RNG = np.random.default_rng(7)
DATA = np.concatenate([[[-5.0, -5.0]], RNG.uniform(-3, 9, size=(200, 2))])  # first record at the lower bounds
ADVERSARIAL = [[1e30, -1e30], [np.nan, np.inf], [-np.inf, np.nan], [10.0, 10.0], [-5.0, 15.0]]
"""Records that are huge, non-finite, or at and beyond the bounds [-5, 10] (replace-one swaps them in)."""


def _neighbours(data, adjacency):
    """(D, D') pairs: one adversarial record added (add-remove) or swapped for the first record (replace-one)."""
    for record in ADVERSARIAL:
        row = np.array([record], dtype=np.float64)
        if adjacency is Adjacency.ADD_REMOVE:
            yield data, np.concatenate([data, row])
        else:
            yield data, np.concatenate([row, data[1:]])


@pytest.mark.parametrize("adjacency", list(Adjacency))
def test_mean_variance_moves_each_block_by_at_most_its_sensitivity(adjacency):
    mechanism = MeanVariance((-5, 10), noise_multiplier=2.0, adjacency=adjacency, values_per_record=2)
    sensitivity = np.array([c.sensitivity for c in mechanism.components])
    assert list(sensitivity) == ([1, 15, 7.5**2 * 2] if adjacency is Adjacency.ADD_REMOVE else [0, 30, 7.5**2 * 2])
    moved = []
    for d, d_prime in _neighbours(DATA, adjacency):
        change = np.abs(mechanism.sums(mechanism.accumulate(d_prime)) - mechanism.sums(mechanism.accumulate(d)))
        assert np.all(change <= sensitivity * (1 + 1e-12)), (change, sensitivity)
        moved.append(change)
    # The bound is reached: a record at the upper bounds added, or swapped for one at the lower bounds.
    assert np.max(np.array(moved)[:, 1]) == pytest.approx(sensitivity[1], rel=0.05)


@pytest.mark.parametrize("adjacency", list(Adjacency))
@pytest.mark.parametrize("branching, bins", [(2, 16), (4, 64), (64, 64)])
def test_tree_histogram_moves_all_levels_by_at_most_its_sensitivity(adjacency, branching, bins):
    mechanism = TreeHistogram(Grid(Bounds(-5, 10), bins), 2.0, branching, adjacency, values_per_record=2)
    [component] = mechanism.components
    for d, d_prime in _neighbours(DATA, adjacency):
        levels = [mechanism.release(mechanism.accumulate(x), noise.ZeroNoise()) for x in (d, d_prime)]
        change = math.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(*levels, strict=True)))
        assert change <= component.sensitivity * (1 + 1e-12)
    assert component.sensitivity == 2 * math.sqrt(
        (1 if adjacency is Adjacency.ADD_REMOVE else 2) * (mechanism.height + 1)
    )


@pytest.mark.parametrize("adjacency", list(Adjacency))
@pytest.mark.parametrize("empty", [[], np.zeros((0,)), np.zeros((0, 2))])
def test_an_empty_data_set_is_released_like_its_one_record_neighbours(adjacency, empty):
    """An empty data set contributes zero sums (it used to raise from numpy's reshape, so whether a run
    failed told whether the data set was empty); its neighbour with one record moves within the sensitivity."""
    mean_variance = MeanVariance((-5, 10), noise_multiplier=2.0, adjacency=adjacency, values_per_record=2)
    tree = TreeHistogram(Grid(Bounds(-5, 10), 16), 2.0, 2, adjacency, values_per_record=2)
    assert np.array_equal(mean_variance.accumulate(empty), np.zeros(3))
    assert np.array_equal(tree.accumulate(empty), np.zeros(16))
    sensitivity = np.array([c.sensitivity for c in mean_variance.components])
    [tree_component] = tree.components
    for record in ADVERSARIAL:
        change = np.abs(mean_variance.sums(mean_variance.accumulate([record])) - mean_variance.sums(np.zeros(3)))
        if adjacency is Adjacency.ADD_REMOVE:  # replace-one has no one-record neighbour of an empty data set
            assert np.all(change <= sensitivity * (1 + 1e-12)), (change, sensitivity)
            levels = [tree.release(tree.accumulate(x), noise.ZeroNoise()) for x in (empty, [record])]
            moved = math.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(*levels, strict=True)))
            assert moved <= tree_component.sensitivity * (1 + 1e-12)
    released = mean_variance.release(mean_variance.accumulate(empty), NoiseSource(seed=3))
    assert -5 <= released["mean"] <= 10 and released["variance"] > 0


@pytest.mark.parametrize("width", [1, 3])
def test_records_of_the_wrong_width_are_refused_whether_or_not_the_data_is_empty(width):
    """A batch whose records hold 3 values (or 1) for a feature of 2 is refused with and without records: were
    the empty one accepted, whether a run failed would tell whether the data set was empty."""
    mechanism = MeanVariance((-5, 10), noise_multiplier=2.0, values_per_record=2)
    for rows in (0, 1, 5):
        with pytest.raises(ValueError, match=f"each record must hold 2 values .*got {width}"):
            mechanism.accumulate(np.zeros((rows, width)))
    assert mechanism.accumulate(np.zeros((0, 1, 2))).tolist() == [0, 0, 0]  # (0, 1, 2): records of 2 values


def test_thresholding_counts_move_by_at_most_sqrt_l0():
    mechanism = GaussianThresholding(noise_multiplier=2.0, threshold_delta=1e-6, max_tokens_per_record=3)
    records = [["a", "b"], ["a"], ["c", "a", "a", "b"]]
    extra = ["z", "z", "y", "a", "x", "w"]  # repeated tokens, more than l0 of them
    assert mechanism.record_tokens(extra) == ["z", "y", "a"]

    def counts(rows):
        out = {}
        for row in rows:
            for token in mechanism.record_tokens(row):
                out[token] = out.get(token, 0) + 1
        return out

    before, after = counts(records), counts(records + [extra])
    change = math.sqrt(sum((after.get(t, 0) - before.get(t, 0)) ** 2 for t in set(before) | set(after)))
    assert change <= mechanism.components[0].sensitivity == math.sqrt(3)


def test_noise_matches_the_recorded_standard_deviations():
    """Seeded draws, standardised by each block's recorded std, are N(0, 1) (Kolmogorov-Smirnov, p > 1e-6)."""
    mechanism = MeanVariance((0, 4), noise_multiplier=1.7)
    sums = mechanism.accumulate(RNG.uniform(0, 4, 50))
    stds = np.array([c.noise_std for c in mechanism.components])
    draws = np.array(
        [
            [mechanism.release(sums, NoiseSource(seed, "feature"))[k] for k in ("count", "sum", "sum_of_squares")]
            for seed in range(600)
        ]
    )
    standardised = ((draws - mechanism.sums(sums)) / stds).ravel()
    assert stats.kstest(standardised, "norm").pvalue > 1e-6
    assert np.std(standardised) == pytest.approx(1.0, abs=0.06)
    # Same seed and stream, same noise; another stream, independent noise.
    again = mechanism.release(sums, NoiseSource(3, "feature"))
    assert again == mechanism.release(sums, NoiseSource(3, "feature"))
    assert again != mechanism.release(sums, NoiseSource(3, "other"))
    assert not NoiseSource().seeded and NoiseSource(1).seeded


def test_a_release_is_the_gaussian_event_its_blocks_add_up_to():
    mechanism = MeanVariance((0, 4), noise_multiplier=1.7)
    blocks = mechanism.components
    assert noise_multiplier_of(blocks) == pytest.approx(1.7, rel=1e-12)
    assert noise_multiplier_of(blocks) == pytest.approx(
        1 / math.sqrt(sum((c.sensitivity / c.noise_std) ** 2 for c in blocks)), rel=1e-12
    )
    # Replace-one: the count is exact (n is public) and carries no privacy loss.
    replace = MeanVariance((0, 4), noise_multiplier=1.7, adjacency="replace-one").components
    assert replace[0].sensitivity == 0 and replace[0].noise_std == 0
    assert noise_multiplier_of(replace) == pytest.approx(1.7, rel=1e-12)


def test_shares_that_sum_to_one_spend_exactly_the_preprocessing_budget():
    budget = PreprocessingBudget(epsilon=1.2, delta=1e-5)
    shares = [0.5, 0.3, 0.2]
    events = [dp_event.GaussianDpEvent(budget.noise_multiplier_for(s)) for s in shares]
    rdp = dp_accounting.rdp.RdpAccountant().compose(dp_event.ComposedDpEvent(events)).get_epsilon(1e-5)
    pld = dp_accounting.pld.PLDAccountant().compose(dp_event.ComposedDpEvent(events)).get_epsilon(1e-5)
    assert rdp == pytest.approx(1.2, abs=1e-5)  # calibrated with the RDP accountant (the budget's default)
    assert pld <= rdp  # PLD's analysis of the same events is tighter


def test_quantiles_without_noise_are_within_one_bin():
    values = np.exp(RNG.normal(0, 1, 5000))
    for grid, branching in ((Grid(Bounds(1e-3, 1e3), 256, "log"), 4), (Grid(Bounds(0, 50), 64), 64)):
        mechanism = TreeHistogram(grid, 1.0, branching)
        released = mechanism.release(mechanism.accumulate(values), noise.ZeroNoise())
        estimate = mechanism.quantiles(released, [0.1, 0.5, 0.9])
        exact = np.quantile(values, [0.1, 0.5, 0.9])
        edges = grid.edges()
        width = np.diff(edges)[np.clip(np.searchsorted(edges, exact) - 1, 0, grid.bins - 1)]
        assert np.all(np.abs(estimate - exact) <= width), (estimate, exact)
        assert np.all(np.diff(estimate) >= 0)


def test_thresholding_releases_a_token_one_record_holds_with_probability_delta_t_over_l0():
    mechanism = GaussianThresholding(noise_multiplier=1.0, threshold_delta=0.2, max_tokens_per_record=2)
    s = mechanism.noise_std
    assert s == pytest.approx(math.sqrt(2))
    # Released counts are snapped to the grid g = 2^(floor(log2 s) - 10): a count passes the threshold from
    # threshold - g / 2, which leaves a singleton token at most delta_t / l0 = 0.1 (and within one grid step of it).
    half_step = 2.0 ** (math.floor(math.log2(s)) - 10) / 2
    passes = stats.norm.sf((mechanism.threshold - half_step - 1) / s)
    assert passes <= 0.1 and passes == pytest.approx(0.1, rel=1e-3)
    kept = sum(bool(mechanism.release({"rare": 1}, NoiseSource(seed, "v"))) for seed in range(4000))
    assert kept / 4000 == pytest.approx(0.1, abs=0.02)
    # A group of K records: K l0 Phi((K - threshold + g / 2) / s).
    for k in (1, 2, 3):
        expected = min(1.0, k * 2 * special.ndtr((k - mechanism.threshold + half_step) / s))
        assert additive_delta(
            threshold=mechanism.threshold, noise_std=s, max_tokens_per_record=2, group_size=k
        ) == pytest.approx(expected, rel=1e-12)
    assert additive_delta(threshold=0.5, noise_std=1.0, max_tokens_per_record=1) == 1.0


def test_bad_settings_are_refused_naming_them():
    with pytest.raises(ValueError, match="bounds: a private analyzer needs public bounds"):
        Bounds.of(None)
    with pytest.raises(ValueError, match="lower must be below upper"):
        Bounds.of((3, 1))
    with pytest.raises(ValueError, match="upper must be a finite number"):
        Bounds.of((0, math.inf))
    with pytest.raises(ValueError, match="share must be in \\(0, 1\\] \\(a fraction of the"):
        check_share(0)
    with pytest.raises(ValueError, match="share must be"):
        check_share(1.5)
    with pytest.raises(ValueError, match="log-scale grid needs bounds above 0"):
        Grid(Bounds(0, 10), 16, "log")
    with pytest.raises(ValueError, match="must be a power of branching"):
        TreeHistogram(Grid(Bounds(0, 10), 48), 1.0, 4)
    with pytest.raises(ValueError, match="add-remove adjacency only"):
        GaussianThresholding(1.0, 1e-6, adjacency="replace-one")
    with pytest.raises(ValueError, match="preprocessing epsilon must be"):
        PreprocessingBudget(0, 1e-5)
    with pytest.raises(ValueError, match="each record must hold 2 values"):
        MeanVariance((0, 1), 1.0, values_per_record=2).accumulate(np.zeros((4, 3)))


def test_group_factor_covers_what_the_neighbours_can_move():
    assert group_factor("add-remove", "add-remove", 1) == 1
    assert group_factor("add-remove", "add-remove", 5) == 5
    assert group_factor("add-remove", "replace-one", 5) == 10
    assert group_factor("replace-one", "replace-one", 1) == 1
    for target, k in (("add-remove", 1), ("replace-one", 2)):
        with pytest.raises(RecordError, match="cannot be accounted"):
            group_factor("replace-one", target, k)


def test_records_round_trip_and_account_for_a_trainer():
    mechanism = MeanVariance((0, 4), noise_multiplier=2.0)
    record = MechanismRecord(
        name="x/mean_and_var",
        analyzer="mean_and_var",
        mechanism="gaussian-sums",
        adjacency="add-remove",
        components=mechanism.components,
        parameters={"bounds": [0, 4]},
        noise="CSPRNG-keyed Philox (os.urandom)",
        share=0.5,
    )
    vocabulary = GaussianThresholding(3.0, 1e-7, 2)
    vocab_record = MechanismRecord(
        name="v/vocabulary",
        analyzer="vocabulary",
        mechanism="gaussian-thresholding",
        adjacency="add-remove",
        components=vocabulary.components,
        parameters=vocabulary.parameters(),
        noise="CSPRNG-keyed Philox (os.urandom)",
    )
    coverage = CoverageRecord(
        analyzer_outputs=2,
        private=("v/vocabulary", "x/mean_and_var"),
        public=(PublicDeclaration("n", "the count is public", 569),),
    )
    texts = [to_text(r) for r in (record, vocab_record, coverage, ReleaseRecord("x/mean_and_var", (1.0, 2.0, 3.0)))]
    assert [from_text(t) for t in texts][:3] == [record, vocab_record, coverage]
    account = PreprocessingAccount.from_texts(texts + texts[:1])  # a record found twice counts once
    assert account.problems() == [] and account.releases == {"x/mean_and_var": (1.0, 2.0, 3.0)}
    assert PreprocessingAccount.from_dict(account.to_dict()) == account
    # A declaration covering tft analyzer outputs (graphs from before declare_public took values only): exact.
    laundered = dataclasses.replace(coverage, public=(PublicDeclaration("n", "public", None, ("size:0",)),))
    assert PreprocessingAccount.from_texts([*texts[:2], to_text(laundered)]).problems() == [
        "the public declaration 'n' covers tft analyzer outputs ['size:0']: exact statistics of the training "
        "split (declare_public takes constant values only)"
    ]
    part = PreprocessingPart(account, "add-remove", group_size=2)
    assert part.events() == [dp_event.GaussianDpEvent(3.0 / 2), dp_event.GaussianDpEvent(2.0 / 2)]
    assert part.additive_delta() == pytest.approx(
        2 * 2 * special.ndtr((2 - vocabulary.threshold + noise.grid(vocabulary.noise_std) / 2) / vocabulary.noise_std),
        rel=1e-12,
    )
    with pytest.raises(RecordError, match="add-remove adjacency only"):
        PreprocessingPart(account, "replace-one").additive_delta()
    with pytest.raises(RecordError, match="not a ppml preprocessing record"):
        from_text("hello")
    with pytest.raises(RecordError, match="a reason is required"):
        PublicDeclaration("n", " ")


def test_problems_name_what_no_epsilon_covers():
    exact = MechanismRecord(
        name="x/mean_and_var",
        analyzer="mean_and_var",
        mechanism="exact",
        adjacency="add-remove",
        components=(),
        parameters={},
        noise="none (exact statistics)",
    )
    coverage = CoverageRecord(
        analyzer_outputs=2,
        private=("x/mean_and_var", "y/mean_and_var"),
        uncovered=(
            {"output": "scale_to_z_score/x:0", "analyzer": "tft.scale_to_z_score", "replacement": "P.scale_to_z_score"},
        ),
    )
    problems = PreprocessingAccount(mechanisms=(exact,), coverage=coverage).problems()
    assert any("tft.scale_to_z_score" in p and "P.scale_to_z_score" in p for p in problems)
    assert any("'y/mean_and_var' is listed but its record is missing" in p for p in problems)
    assert any("computed exact statistics" in p for p in problems)
    assert exact.event("add-remove") == dp_event.NonPrivateDpEvent()


def test_releases_are_snapped_to_a_power_of_two_grid_below_the_noise():
    """The low-order bits of x + N(0, s^2) in float64 depend on x (review item 7): every release is a multiple of
    2^(floor(log2 s) - 10), within half a step of the unrounded draw, and the statistics move no further."""
    mechanism = MeanVariance((0, 4), noise_multiplier=1.7)
    stds = np.array([c.noise_std for c in mechanism.components])
    step = noise.grid(stds)
    assert np.all((stds / 2048 < step) & (step <= stds / 1024)) and np.all(np.log2(step) == np.round(np.log2(step)))
    sums = mechanism.accumulate(RNG.uniform(0, 4, 50))
    for seed in range(50):
        released = mechanism.release(sums, NoiseSource(seed, "feature"))
        values = np.array([released[k] for k in ("count", "sum", "sum_of_squares")])
        assert np.all(values / step == np.round(values / step))
        drawn = mechanism.sums(sums) + NoiseSource(seed, "feature").normal(stds)  # the same draw, unrounded
        assert np.all(np.abs(values - drawn) <= step / 2)
    tree = TreeHistogram(Grid(Bounds(0, 1), 16), 2.0, 4)
    [component] = tree.components
    for level in tree.release(np.arange(16.0), NoiseSource(1, "tree")):
        assert np.all(level / noise.grid(component.noise_std) == np.round(level / noise.grid(component.noise_std)))
    assert np.array_equal(noise.snap([0.123456789], 0.0), [0.123456789])  # exact statistics: nothing to snap


def test_bounds_whose_sum_of_squares_can_overflow_are_refused():
    """With bounds (0, 1e154) eight records at the upper bound would make S2 = inf and seven a finite S2 (one
    record seen with certainty): such bounds are refused; at the widest accepted ones 2^53 records at the bounds
    plus a 40-sigma noise draw keep every sum finite."""
    with pytest.raises(ValueError, match=r"bounds \[0.0, 1e\+154\] are too wide .* half-width 5e\+153 must be <="):
        MeanVariance((0, 1e154), 1.0)
    MeanVariance((-2e144, 2e144), 1.0)  # accepted for one value per record
    with pytest.raises(ValueError, match="for 4 value"):
        MeanVariance((-2e144, 2e144), 1.0, values_per_record=4)
    widest = math.sqrt(np.finfo(np.float64).max / 2.0**64)
    for d in (1, 4):
        r = widest / math.sqrt(d) * (1 - 1e-12)
        mechanism = MeanVariance((-r, r), noise_multiplier=1e6, values_per_record=d)
        block = np.full((1 << 10, d), r)
        sums = mechanism.sums(mechanism.accumulate(block) * (1 << 43))  # 2^53 records at the upper bound
        noise_std = np.array([c.noise_std for c in mechanism.components])
        assert np.all(np.isfinite(sums + 40 * noise_std)), (sums, noise_std)


@pytest.mark.parametrize("noise_multiplier, threshold_delta, l0", [(0.5, 1e-15, 1), (1.0, 0.3, 1), (2.3, 1e-9, 10)])
def test_a_singleton_token_passes_the_snapped_threshold_with_at_most_the_reported_probability(
    noise_multiplier, threshold_delta, l0
):
    """Released counts are snapped to the grid g of s: snap(1 + N) >= T exactly when 1 + N >= (ceil(T / g) - 1/2) g.
    The exact probability of that stays within delta_t / l0 and within what `additive_delta` reports (comparing with
    the unsnapped tau let it through 1.0035 times as often at noise multiplier 0.5, delta_t 1e-15)."""
    mechanism = GaussianThresholding(noise_multiplier, threshold_delta, l0)
    s, threshold = mechanism.noise_std, mechanism.threshold
    step = 2.0 ** (math.floor(math.log2(s)) - 10)
    passes = stats.norm.sf(((math.ceil(threshold / step) - 0.5) * step - 1) / s)
    reported = additive_delta(threshold=threshold, noise_std=s, max_tokens_per_record=l0) / l0
    assert passes <= reported * (1 + 1e-12) and reported <= threshold_delta / l0 * (1 + 1e-12)
    assert passes == pytest.approx(threshold_delta / l0, rel=2e-2)  # the snapping costs under one grid step
    rng_counts = NoiseSource(seed=5, stream="t").noisy(np.ones(3), s)
    assert np.all(rng_counts == np.round(rng_counts / step) * step)  # the released counts are on that grid


def test_one_record_moves_the_combined_sums_by_at_most_the_sensitivity_whatever_the_rounding():
    """The combiner adds batch after batch (`pipelines.transform.beam_analyzers.SummedRelease`). 2^20 - 1 records at
    the bound 1 put S1 just below 2^20; the record that differs, at 1, pushes it to 2^20, where each of 2^16 later
    batches, just over half an ulp, is rounded up to a whole one (below 2^20, to its own value). With float64 sums the
    record moved the released S1 by 1 + 2^-17 (the sensitivity r = 1); with integer sums by 1, rounded once."""
    mechanism = MeanVariance((-1.0, 1.0), noise_multiplier=1.0)
    tiny = mechanism.accumulate(np.array([2.0**-33 * (1 + 2.0**-20)]))
    released = []
    for with_record in (False, True):
        accumulator = np.zeros(3, dtype=object) + mechanism.accumulate(np.ones((1 << 20) - 1))
        if with_record:
            accumulator = accumulator + mechanism.accumulate(np.array([1.0]))
        for _ in range(1 << 16):
            accumulator = accumulator + tiny
        released.append(mechanism.release(accumulator, noise.ZeroNoise()))
    moved = {k: abs(released[1][k] - released[0][k]) for k in ("count", "sum", "sum_of_squares")}
    assert moved["count"] == 1 and moved["sum_of_squares"] <= 1 + 1e-9
    assert moved["sum"] <= 1 + 2.0**-30, moved  # one rounding of each 2^20-sized sum: 2^-33 at most each


def test_the_noise_is_added_to_the_exact_sums_before_any_rounding():
    """The release is snap(S + noise) of the exact sums S (Fractions): converting S1 to float64 first rounded it by
    up to half an ulp of a large sum, which one record can tip (a sensitivity above 2 d r). With sums of 3 x 2^51
    grid steps g of the release (about 2^44 records at the bound, r = 1/3) an ulp is g / 2: the float path released
    another value for many draws; the release is the exact computation's for every draw."""
    mechanism = MeanVariance((-1 / 3, 1 / 3), noise_multiplier=1.0)
    stds = [c.noise_std for c in mechanism.components]
    step = [Fraction(float(noise.grid(s))) for s in stds]
    unit = Fraction(mechanism.bounds.radius) / (1 << SUM_BITS)  # of S1; unit * r of S2
    first, second = (int(3 * 2**51 * g / u) + 12345 for g, u in ((step[1], unit), (step[2], unit * Fraction(1 / 3))))
    accumulated = np.array([1 << 44, first, second], dtype=object)
    exact = mechanism.exact_sums(accumulated)
    assert exact[1] == Fraction(1 / 3) * first / (1 << SUM_BITS)
    float_path_differs = 0
    for seed in range(40):
        draws = NoiseSource(seed, "feature").normal(np.array(stds))
        expected = [float(round((v + Fraction(float(n))) / g) * g) for v, n, g in zip(exact, draws, step, strict=True)]
        released = mechanism.release(accumulated, NoiseSource(seed, "feature"))
        assert [released[k] for k in ("count", "sum", "sum_of_squares")] == expected
        float_path_differs += not np.array_equal(noise.snap(mechanism.sums(accumulated) + draws, stds), expected)
    assert float_path_differs >= 5


def test_thresholding_computes_its_threshold_once_per_release(monkeypatch):
    """The threshold (an inverse normal CDF and a grid) was recomputed for every token: 3 s more for 2e5 tokens."""
    from privacy.preprocessing import partition_selection

    calls = []
    ndtri = partition_selection.special.ndtri
    monkeypatch.setattr(partition_selection.special, "ndtri", lambda p: calls.append(p) or ndtri(p))
    mechanism = GaussianThresholding(noise_multiplier=1.0, threshold_delta=1e-5, max_tokens_per_record=4)
    kept = mechanism.release({f"t{i}": 1 + i % 50 for i in range(1000)}, NoiseSource(0, "v"))
    assert len(calls) == 1 and 0 < len(kept) < 1000
