r"""Noisy padding: Poisson batches padded by a Gaussian number of rows, the padded size inside the guarantee.

A Poisson step of m drawn examples runs on K = min(cap, m + max(0, ceil(mu + Z))) rows, Z ~ N(0, sigma_c^2) drawn
fresh each step (sigma_c, the *batch-size noise multiplier*, in rows), mu = sigma_c z_p - 1 with
P(N(0, 1) < -z_p) = p = `CLAMP_PROBABILITY`, and cap the sampler's padded batch size (public). The step rounds K up
to a multiple of `NOISY_ROWS_MULTIPLE` rows (at most cap; 1: not at all): post-processing of K.

Why the row count K is covered (and with it the step's duration, where that is a function of K: rows whose cost
does not depend on their content; not the input pipeline's time to gather the m examples):

* The ideal mechanism releases Y = m + mu + Z beside the noisy clipped sum. Adding an example moves (m, sum) by
  (1, at most C') (C' = C (1 + SLACK), per-example clipping), so with noises of std (sigma_c, sigma C') the pair
  is one Gaussian mechanism on (m / sigma_c, sum / (sigma C')), whose per-example contribution has L2 norm at most
  sqrt(sigma_c^-2 + sigma^-2): each step is PoissonSampled(q, Gaussian(sigma_eff)), sigma_eff = (sigma^-2 +
  sigma_c^-2)^-1/2 (`effective_noise_multiplier`): one event, not two composed.
* Off the clamp event {mu + Z <= -1}, ceil(mu + Z) >= 0 and K = min(cap, ceil(Y)), a function of Y. The clamp
  event has probability p per step whatever the data (Z is independent of it; ppml's float64 Box-Muller pair is
  conditioned on a disk of radius R >= 12 std, which raises it by a factor 1 / (1 - exp(-R^2 / 2)) < 1 + 2^-100,
  covered by `CLAMP_BOUND`). Z's pair counts among the step's noise pairs for the cut-off's delta
  (`noise_cutoff`, whose shift is then 1 / sigma_eff). Coupling the real and ideal runs on the same Z, they
  differ with probability at most T p over T steps, so (eps, delta)-DP of the ideal run gives
  (eps, delta + T p (1 + e^eps)) for the real one (`clamp_delta`).
* The cap is the sampler's padded batch size, a public constant; a draw of m > cap stops the input pipeline, as
  it does without noisy padding (probability 1e-9 per step at the default cap: not in this delta, as today).

Holds for per-example clipping under add-remove adjacency, one replica, outside XLA (where the step leaves rows
out), untruncated Poisson batches; `DpSgdMechanism` refuses the rest. Float rounding of Z and of mu + Z is out of
scope here, as it is for the gradient noise (`noise_cutoff`). No TensorFlow here.
"""

from __future__ import annotations

import math

CLAMP_PROBABILITY = 2.0**-50
"""p: per-step probability that mu + Z <= -1 (the padding clamped at 0, K = m: the one case K is not a function
of Y)."""
CLAMP_BOUND = CLAMP_PROBABILITY * (1 + 2.0**-40)
"""p with the Box-Muller disk's conditioning (a factor below 1 + 2^-100) rounded up generously."""
MAX_CLAMP_SHARE = 0.01
"""Largest accepted `clamp_delta`, as a fraction of the accountants' delta."""
PADDED_ROWS_MULTIPLE = 32
"""With ``skip_padding`` alone, outside XLA a step drops its batch's padding down to a multiple of this many rows
(coarse: its row count, hence its duration, is outside the guarantee, and a finer multiple shows it more finely)."""
NOISY_ROWS_MULTIPLE = 1
"""With noisy padding, a step rounds its K rows up to a multiple of this many (at most cap). 1: not rounded, the
fewest rows; the more distinct batch shapes cost no measurable set-up or retrace without XLA on the machine measured
(benchmarks/README.md, dp_sgd_speed.py, "Noisy padding's row multiple")."""
UNCOVERED_PADDING = (
    f"steps without XLA or microbatches left their batch's padding out down to a multiple of {PADDED_ROWS_MULTIPLE} "
    "rows (the sampler's padding only: real examples of sample weight 0 stay), so each step's duration follows the "
    "batch size drawn; that is not covered by epsilon (whoever timed the steps learns the batch sizes to within "
    f"{PADDED_ROWS_MULTIPLE} rows)"
)
"""Why ``skip_padding`` without noisy padding is outside the guarantee (the training's report and its ledger)."""


def covered_rows(batch_size_noise_multiplier: float, effective_noise_multiplier: float) -> str:
    """What a noisy-padding report (a run's, its ledger's, ``ppml epsilon``'s) says the row count adds to the
    guarantee."""
    rounded = "" if NOISY_ROWS_MULTIPLE == 1 else f", rounded up to a multiple of {NOISY_ROWS_MULTIPLE} rows"
    return (
        f"each step runs on its drawn examples plus max(0, ceil(mu + Z)) padding rows, Z ~ "
        f"N(0, {batch_size_noise_multiplier:g}^2){rounded}; the row "
        f"count is covered by epsilon (accounted as one Gaussian of noise multiplier {effective_noise_multiplier:.4g}, "
        "its delta plus clamp_delta for the clamp at 0), and so the step's duration where a row's cost does not "
        "depend on its content (not ragged inputs), not the input pipeline's time to gather the drawn examples"
    )


class ClampDeltaError(ValueError):
    """The clamp's delta exceeds `MAX_CLAMP_SHARE` of delta (`check_clamp_delta`)."""


def effective_noise_multiplier(noise_multiplier: float, batch_size_noise_multiplier: float | None) -> float:
    """sigma_eff = (sigma^-2 + sigma_c^-2)^-1/2; sigma itself (the same float) without noisy padding."""
    if batch_size_noise_multiplier is None:
        return noise_multiplier
    return 1.0 / math.sqrt(noise_multiplier**-2 + batch_size_noise_multiplier**-2)


def padding_offset(batch_size_noise_multiplier: float) -> float:
    """mu = sigma_c z_p - 1 rows, z_p the standard normal's upper p-quantile (p = `CLAMP_PROBABILITY`)."""
    from scipy import stats

    return batch_size_noise_multiplier * float(stats.norm.isf(CLAMP_PROBABILITY)) - 1.0


def mean_padding(batch_size_noise_multiplier: float) -> float:
    """E[max(0, ceil(mu + Z))] in rows, before the cap and any rounding to a row multiple (numerical sum, in
    vectorised chunks: about 20 sigma_c terms)."""
    import numpy as np
    from scipy import stats

    mu, sigma = padding_offset(batch_size_noise_multiplier), batch_size_noise_multiplier
    top = math.ceil(mu + 12 * sigma)
    chunk = 1 << 20
    # P(ceil(mu + Z) >= k) = P(Z > k - 1 - mu); E = sum_{k >= 1} P(... >= k), j = k - 1
    return math.fsum(
        float(np.sum(stats.norm.sf((np.arange(low, min(low + chunk, top), dtype=np.float64) - mu) / sigma)))
        for low in range(0, top, chunk)
    )


def clamp_delta(steps: int, epsilon: float) -> float:
    """T p (1 + e^eps): what the clamp event adds to the ideal run's delta at ``epsilon`` (inf where e^eps
    overflows)."""
    try:
        return steps * CLAMP_BOUND * (1.0 + math.exp(epsilon))
    except OverflowError:
        return math.inf


def check_clamp_delta(steps: int, epsilon: float, delta: float) -> float:
    """`clamp_delta`, or `ClampDeltaError` where it exceeds `MAX_CLAMP_SHARE` of ``delta`` (an infinite epsilon, no
    accountant's, guarantees nothing anyway and is let through)."""
    added = clamp_delta(steps, epsilon)
    if math.isfinite(epsilon) and not added <= MAX_CLAMP_SHARE * delta:
        raise ClampDeltaError(
            f"noisy padding's clamp adds delta {added:.3g} ({steps} steps x p {CLAMP_PROBABILITY:.3g} x (1 + "
            f"e^{epsilon:.4g})), more than {MAX_CLAMP_SHARE:g} of delta {delta:g}"
        )
    return added
