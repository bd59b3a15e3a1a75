"""Noisy padding as the accountant sees it: one joint Gaussian per Poisson step, the clamp's delta, refusals."""

import math
import time

import dp_accounting as dpa
import pytest
from scipy import stats

from privacy.accounting import DpSgdMechanism, compute_epsilon, dp_sgd_report
from privacy.accounting import noisy_padding as npad

N, B, SIGMA, EPOCHS, DELTA = 60000, 256, 1.1, 60, 1e-5


def _mechanism(**changes):
    kwargs = dict(dataset_size=N, batch_size=B, noise_multiplier=SIGMA, epochs=EPOCHS)
    kwargs.update(changes)
    return DpSgdMechanism.from_epochs(**kwargs)


def _direct_epsilon(accountant, sigma, steps):
    """dp-accounting alone: T x PoissonSampled(q, Gaussian(sigma)), add-remove."""
    event = dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(B / N, dpa.GaussianDpEvent(sigma)), steps)
    return accountant.compose(event).get_epsilon(DELTA)


@pytest.mark.parametrize("sigma_c", [3.0, 4.0])
def test_epsilon_is_dp_accountings_for_the_joint_gaussian_plus_the_clamp(sigma_c):
    m = _mechanism(batch_size_noise_multiplier=sigma_c)
    steps = math.ceil(EPOCHS * N / B)
    joint = (SIGMA**-2 + sigma_c**-2) ** -0.5  # (m / sigma_c, sum / (sigma C')) moves by this norm's inverse
    pld = _direct_epsilon(dpa.pld.PLDAccountant(value_discretization_interval=1e-4), joint, steps)
    rdp = _direct_epsilon(dpa.rdp.RdpAccountant(), joint, steps)
    assert compute_epsilon(m, DELTA, "pld") == pytest.approx(pld, rel=1e-12)
    assert compute_epsilon(m, DELTA, "rdp") == pytest.approx(rdp, rel=1e-12)
    # the joint event costs more than the gradient noise alone and less than two events composed
    alone = _direct_epsilon(dpa.pld.PLDAccountant(value_discretization_interval=1e-4), SIGMA, steps)
    assert alone < pld
    report = dp_sgd_report(m, delta=DELTA)
    clamp = steps * 2.0**-50 * (1 + 2.0**-40) * (1 + math.exp(min(pld, rdp)))
    assert report.clamp_delta == pytest.approx(clamp, rel=1e-12)
    assert report.guarantee_delta == DELTA + report.clamp_delta
    assert report.to_dict()["effective_noise_multiplier"] == pytest.approx(joint, rel=1e-15)
    assert "noisy padding" in report.format_text()


@pytest.mark.parametrize(
    "batch, sigma_c, stated",
    [(256, 2.0, 3.028), (256, 3.0, 2.660), (256, 4.0, 2.537), (1024, None, 5.347), (1024, 4.0, 5.712)],
)
def test_the_epsilons_benchmarks_readme_quotes_for_noisy_padding(batch, sigma_c, stated):
    """benchmarks/README.md's noisy-padding trade-off (section dp_sgd_speed.py): PLD epsilon at delta 1e-5 after
    60 epochs of n = 60 000 at sigma 1.1, each step one Gaussian of (sigma^-2 + sigma_c^-2)^-1/2 (sigma without
    noisy padding), from dp-accounting directly (the untruncated 2.382 at B = 256: test_epsilon.py)."""
    steps = math.ceil(EPOCHS * N / batch)
    sigma = SIGMA if sigma_c is None else (SIGMA**-2 + sigma_c**-2) ** -0.5
    event = dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(batch / N, dpa.GaussianDpEvent(sigma)), steps)
    pld = dpa.pld.PLDAccountant(value_discretization_interval=1e-4).compose(event).get_epsilon(DELTA)
    assert round(pld, 3) == stated, pld


@pytest.mark.parametrize("multiple", [1, 32])
def test_the_covered_rows_text_states_the_rounding_of_the_multiple_the_step_uses(monkeypatch, multiple):
    """What a report says about the row count follows `NOISY_ROWS_MULTIPLE` (read when the text is made): no
    rounding at 1, a multiple of 32 rows at 32."""
    monkeypatch.setattr(npad, "NOISY_ROWS_MULTIPLE", multiple)
    text = npad.covered_rows(4.0, 1.05)
    assert text.startswith("each step runs on its drawn examples plus max(0, ceil(mu + Z)) padding rows, Z ~ N(0, 4^2)")
    rounded = ", rounded up to a multiple of 32 rows; the row count" if multiple == 32 else "^2); the row count"
    assert rounded in text and ("rounded" in text) == (multiple == 32), text


def test_without_it_the_event_is_todays_bit_for_bit():
    m = _mechanism()
    assert m.unit_event() == dpa.PoissonSampledDpEvent(B / N, dpa.GaussianDpEvent(SIGMA))
    assert m.effective_noise_multiplier == SIGMA
    assert dp_sgd_report(m, delta=DELTA).guarantee_delta == DELTA


def test_offset_puts_the_clamp_at_probability_p():
    """mu = sigma_c z_p - 1: P(mu + Z <= -1) = P(Z <= -sigma_c z_p) = p."""
    for sigma_c in (0.5, 3.0, 40.0):
        mu = npad.padding_offset(sigma_c)
        assert stats.norm.cdf(-(mu + 1) / sigma_c) == pytest.approx(2.0**-50, rel=1e-9)


def test_mean_padding_matches_a_direct_sum():
    sigma_c = 3.0
    mu = npad.padding_offset(sigma_c)
    ks = range(0, 200)
    pmf = [stats.norm.cdf((k - mu) / sigma_c) - stats.norm.cdf((k - 1 - mu) / sigma_c) for k in ks]
    assert npad.mean_padding(sigma_c) == pytest.approx(sum(k * p for k, p in zip(ks, pmf, strict=True)), rel=1e-9)


@pytest.mark.parametrize(
    "changes, named",
    [
        (dict(sampling="fixed", adjacency="replace-one"), "sampling='fixed'"),
        (dict(adjacency="replace-one"), "adjacency='replace-one'"),
        (dict(truncated_batch_size=300), "truncated_batch_size=300"),
        (dict(num_microbatches=16), "num_microbatches=16"),
    ],
)
def test_refused_where_the_analysis_does_not_hold(changes, named):
    with pytest.raises(ValueError, match=named):
        _mechanism(batch_size_noise_multiplier=3.0, **changes)


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, "3"])
def test_bad_values_are_named(bad):
    with pytest.raises((ValueError, TypeError), match="batch_size_noise_multiplier"):
        _mechanism(batch_size_noise_multiplier=bad)


def test_a_clamp_delta_above_its_share_of_delta_is_refused():
    # 10^6 steps at epsilon 25: T p e^eps = 10^6 x 8.9e-16 x 7.2e10 = 0.064 > 1 % of 1e-5
    with pytest.raises(ValueError, match="clamp adds delta"):
        npad.check_clamp_delta(10**6, 25.0, 1e-5)
    assert npad.check_clamp_delta(10**6, 2.0, 1e-5) == npad.clamp_delta(10**6, 2.0)


def test_mean_padding_of_the_largest_sigma_c_is_computed_in_seconds():
    """sigma_c = 1e6 (the top of the accepted range): the sum has ~2e7 terms; for so wide a Gaussian the ceiling adds
    1/2 row to E[max(0, mu + Z)] = mu Phi(mu / s) + s phi(mu / s). A scalar loop over the terms took ~10 CPU
    minutes, so `ppml epsilon --batch-size-noise-multiplier 1e6` hung on its report's row."""
    sigma_c = 1e6
    mu = npad.padding_offset(sigma_c)
    start = time.process_time()
    got = npad.mean_padding(sigma_c)
    assert time.process_time() - start < 20
    want = mu * stats.norm.cdf(mu / sigma_c) + sigma_c * stats.norm.pdf(mu / sigma_c) + 0.5
    assert got == pytest.approx(want, abs=0.05)


def _readme_trade_off_rows() -> list[tuple[float, float, float, float]]:
    """README's noisy-padding table (header "sigma for epsilon 2.382"): (sigma_c, mean padding rows, epsilon at
    sigma 1.1, sigma for epsilon 2.382) per sigma_c row."""
    import pathlib
    import re

    text = (pathlib.Path(__file__).parents[3] / "README.md").read_text()
    table = text[text.index("| sigma_c | mean padding rows | epsilon at sigma 1.1 | sigma for epsilon 2.382 |") :]
    table = table[: table.index("\n\n")]
    rows = re.findall(r"^\| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", table, re.MULTILINE)
    return [tuple(float(v) for v in row) for row in rows]


def test_readme_trade_off_table_recomputed_from_dp_accounting():
    """Each row of README's table: the mean padding rows, the PLD epsilon at sigma 1.1 (60 epochs of n = 60 000 at
    B = 256, delta 1e-5, one Gaussian of (sigma^-2 + sigma_c^-2)^-1/2 per step) and the sigma stated, the smallest
    multiple of 0.001 whose epsilon is at most the 2.3818 of sigma 1.1 without noisy padding."""
    rows = _readme_trade_off_rows()
    assert [row[0] for row in rows] == [2, 3, 4, 6, 8]
    steps = math.ceil(EPOCHS * N / 256)

    def epsilon(sigma, sigma_c=None):
        joint = sigma if sigma_c is None else (sigma**-2 + sigma_c**-2) ** -0.5
        event = dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(256 / N, dpa.GaussianDpEvent(joint)), steps)
        return dpa.pld.PLDAccountant(value_discretization_interval=1e-4).compose(event).get_epsilon(DELTA)

    target = epsilon(SIGMA)
    assert round(target, 4) == 2.3818
    for sigma_c, padding, at_sigma, sigma in rows:
        assert round(npad.mean_padding(sigma_c), 1) == padding, sigma_c
        assert round(epsilon(SIGMA, sigma_c), 3) == at_sigma, sigma_c
        assert epsilon(sigma, sigma_c) <= target < epsilon(round(sigma - 0.001, 3), sigma_c), sigma_c
