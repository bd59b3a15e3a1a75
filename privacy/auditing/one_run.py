"""Lower bound on epsilon from one training run (Steinke, Nasr & Jagielski 2023, "Privacy Auditing with One (1)
Training Run", NeurIPS 2023).

m canaries are each included in the training data independently with probability 1/2 (secret bits S). After
training, an auditor scores every canary (higher = "more likely included") and guesses "in" for the k+ highest
scores, "out" for the k- lowest, and abstains on the rest: r = k+ + k- guesses, W of them correct. If training is
(eps, delta)-DP with respect to each canary, the paper's Theorem 3 (evaluated as in its Algorithm 2) bounds

    P[W >= v] <= P[Binomial(r, q) >= v] + 2 m delta max_{1<=i<=v} P[v - i <= Binomial(r, q) < v] / i,
    q = e^eps / (1 + e^eps)

(`p_value`). The bound at confidence c is the largest eps on a grid of step `EPSILON_RESOLUTION` such that
every grid point up to it is rejected at level 1 - c (`epsilon_lower_bound`); so P[bound > true eps] <= 1 - c,
over the secret bits and the training run's noise, whatever the p-value does between grid points.

Choosing (k+, k-) after seeing which guesses were right would invalidate the level. `audit_one_run` chooses it
without peeking, by one of two strategies (`THRESHOLD_STRATEGIES`):

* ``"bonferroni"`` (default): the bound is computed for each of a fixed list of (k+, k-) pairs, declared before
  the scores are seen (`guess_counts`), at level (1 - c) / L for L pairs, and the largest is reported (a union
  bound over the pairs);
* ``"split"``: a random half of the canaries (chosen by a CSPRNG, independent of the bits) picks the pair with
  the best bound on that half; the bound is then computed at level 1 - c on the other half alone, whose bits
  played no part in the choice.

The same game is bounded by one of `ESTIMATORS`: ``"counting"`` is the Theorem 3 bound above (sound for any
(eps, delta) claim); ``"f-dp"`` and ``"f-dp-gaussian"`` are the f-DP bounds of `privacy.auditing.f_dp_one_run`
(Mahloujifar, Melis & Chaudhuri 2024) with the (eps, delta) trade-off (sound for any (eps, delta) claim) and with
the mu-GDP trade-off (sound only for a run that is mu-GDP: the Gaussian mechanism, DP-SGD at sampling probability 1);
``"f-dp-claimed"`` tests the claimed DP-SGD mechanism's own trade-off curve (`privacy.auditing.claimed_curve`:
sound for any run whose claim, one curve fixed whatever the bits, holds, subsampled or not; it needs the claim,
``claim=``).

A lower bound is evidence, never proof: a bound far below the claimed epsilon says this attack found no
violation, not that the claim holds; a bound above the claim says (at the stated confidence) the claim is false.
"""

from __future__ import annotations

import dataclasses
import functools
import secrets
from typing import Any, Sequence

import numpy as np
from scipy import special, stats

from privacy import validation
from privacy.auditing import claimed_curve, f_dp_one_run

ESTIMATORS = ("counting", "f-dp", "f-dp-gaussian", "f-dp-claimed")
"""How the guesses are turned into a bound (module docstring); the f-DP family each of "f-dp" and "f-dp-gaussian"
uses is in `_FAMILIES`; "f-dp-claimed" uses the claim's own curve."""
_FAMILIES = {"f-dp": "eps-delta", "f-dp-gaussian": "gaussian"}
THRESHOLD_STRATEGIES = ("bonferroni", "split")
DEFAULT_CONFIDENCE = 0.95
EPSILON_RESOLUTION = 0.01
"""Step of the epsilon grid, in nats: the reported bound is rounded down to a multiple of it."""
_EPSILON_CEILING = 60.0
"""No bound is reported above this (q = e^eps / (1 + e^eps) is 1 - 1e-26 there, beyond float precision)."""
_GRID_CHUNK = 64
MIN_GUESSES = 16
"""Fewest guesses tried: below this the binomial tail cannot reject much at 95 % confidence."""
MIN_CANARIES = 2 * MIN_GUESSES
"""Fewest canaries an audit run accepts: each half of a ``"split"`` audit then tries `MIN_GUESSES` guesses."""


def p_value(m: int, r: int, v: int, epsilon: float | np.ndarray, delta: float) -> np.ndarray:
    """Upper bound on P[W >= v] for r guesses among m canaries under (epsilon, delta)-DP (Theorem 3).

    Args:
      m: number of canaries (each included with probability 1/2).
      r: guesses made (abstentions excluded), 0 <= r <= m.
      v: correct guesses, 0 <= v <= r.
      epsilon: one value or an array of values >= 0, in nats.
      delta: in [0, 1].

    Returns:
      Array of the shape of `epsilon`, values in [0, 1].
    """
    _check_counts(m, r, v)
    validation.probability("delta", delta, zero=True, one=True)
    eps = np.atleast_1d(np.asarray(epsilon, dtype=np.float64))
    if np.any(eps < 0) or not np.all(np.isfinite(eps)):
        raise ValueError("epsilon must be finite and >= 0")
    q = special.expit(eps)
    tail = stats.binom.sf(v - 1, r, q)  # P[Binomial(r, q) >= v]
    if delta > 0 and v > 0:
        below = stats.binom.pmf(np.arange(v - 1, -1, -1)[None, :], r, q[:, None])  # j = v-1, v-2, ..., 0
        steps = np.arange(1, v + 1)
        tail = tail + 2 * m * delta * np.max(np.cumsum(below, axis=1) / steps, axis=1)
    return np.minimum(tail, 1.0).reshape(np.shape(epsilon))


def epsilon_lower_bound(m: int, r: int, v: int, *, delta: float, alpha: float) -> float:
    """Largest grid epsilon (step `EPSILON_RESOLUTION`) such that (e, delta)-DP is rejected at level alpha for
    every grid point e up to it; 0.0 when even e = 0 is not rejected.

    Args:
      m, r, v: canaries, guesses and correct guesses (see `p_value`).
      delta: the delta of the claim being tested, in [0, 1].
      alpha: the test's level (1 - confidence), in (0, 1).
    """
    validation.probability("alpha", alpha)
    _check_counts(m, r, v)
    if r == 0 or v <= r / 2:
        return 0.0  # no better than a coin: no evidence against eps = 0 (also saves the grid search)
    start = 0
    while start * EPSILON_RESOLUTION < _EPSILON_CEILING:
        grid = np.arange(start, start + _GRID_CHUNK) * EPSILON_RESOLUTION
        accepted = np.flatnonzero(p_value(m, r, v, grid, delta) >= alpha)
        if accepted.size:
            first = start + int(accepted[0])
            return round(max(first - 1, 0) * EPSILON_RESOLUTION, 6)
        start += _GRID_CHUNK
    return _EPSILON_CEILING


def estimator_bound(
    estimator: str,
    m: int,
    r: int,
    v: int,
    *,
    delta: float,
    alpha: float,
    claim: claimed_curve.SampledGaussianClaim | None = None,
) -> float:
    """The bound on epsilon at `delta` from v correct of r guesses among m canaries at level alpha, by `estimator`
    (one of `ESTIMATORS`; "f-dp-claimed" tests `claim`), in nats rounded down to 0.01."""
    if estimator == "counting":
        return epsilon_lower_bound(m, r, v, delta=delta, alpha=alpha)
    if estimator == "f-dp-claimed":
        return claimed_curve.epsilon_lower_bound(m, [(r, v)], claim=_needs_claim(claim), delta=delta, alpha=alpha)[0]
    validation.choice("estimator", estimator, ESTIMATORS)
    return f_dp_one_run.epsilon_lower_bound(m, r, v, family=_FAMILIES[estimator], delta=delta, alpha=alpha)


def guess_counts(m: int) -> tuple[tuple[int, int], ...]:
    """The fixed (k+, k-) pairs tried for m canaries: total guesses r = m, m/2, m/4, ... down to
    `MIN_GUESSES` (or m if fewer), each split one-sided (r, 0) and two-sided (r - r // 2, r // 2).
    Depends on m only, never on the scores or the bits."""
    validation.integer("m", m, minimum=1, note="the number of canaries")
    totals = sorted({int(round(m / 2**k)) for k in range(64) if m / 2**k >= min(m, MIN_GUESSES)})
    pairs = []
    for r in totals:
        pairs.append((r, 0))
        if r >= 2:
            pairs.append((r - r // 2, r // 2))
    return tuple(pairs)


def largest_bound(
    m: int,
    *,
    delta: float,
    confidence: float = DEFAULT_CONFIDENCE,
    estimator: str = "counting",
    claim: claimed_curve.SampledGaussianClaim | None = None,
) -> float:
    """The largest bound a Bonferroni audit of m canaries can report: every guess right, at every pair of
    `guess_counts` (a noiseless, perfectly separating run). A claim above it cannot be refuted with m canaries
    at this delta, whatever the run does (the delta term grows with m delta)."""
    pairs = guess_counts(m)
    alpha = (1 - confidence) / len(pairs)
    totals = sorted({k_in + k_out for k_in, k_out in pairs})
    if estimator == "f-dp-claimed":  # one bisection over all totals (as `_best`)
        counts = [(r, r) for r in totals]
        return claimed_curve.epsilon_lower_bound(m, counts, claim=_needs_claim(claim), delta=delta, alpha=alpha)[0]
    return max(estimator_bound(estimator, m, r, r, delta=delta, alpha=alpha, claim=claim) for r in totals)


@dataclasses.dataclass(frozen=True)
class OneRunAudit:
    """Result of a one-run audit.

    Attributes:
      epsilon_lower_bound: eps such that the run is not (eps', delta)-DP for any eps' below it, at `confidence`;
        in nats, rounded down to `EPSILON_RESOLUTION`.
      delta: the delta the bound is for.
      confidence: probability, over the secret bits and the run's randomness, that the bound does not exceed the
        true epsilon.
      num_canaries: canaries m the bound counts (half of them with ``strategy="split"``).
      num_guesses: guesses r behind the reported bound (k+ + k-).
      num_correct: correct guesses v among them.
      guesses_in: k+, the highest scores guessed "in".
      guesses_out: k-, the lowest scores guessed "out".
      strategy: how (k+, k-) was chosen without peeking (one of `THRESHOLD_STRATEGIES`).
      pairs_tried: number of (k+, k-) pairs the level was divided among (1 for "split").
      estimator: which bound (one of `ESTIMATORS`).
    """

    epsilon_lower_bound: float
    delta: float
    confidence: float
    num_canaries: int
    num_guesses: int
    num_correct: int
    guesses_in: int
    guesses_out: int
    strategy: str
    pairs_tried: int
    estimator: str = "counting"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def audit_one_run(
    scores: Sequence[float],
    included: Sequence[bool],
    *,
    delta: float,
    confidence: float = DEFAULT_CONFIDENCE,
    strategy: str = "bonferroni",
    estimator: str = "counting",
    claim: claimed_curve.SampledGaussianClaim | None = None,
) -> OneRunAudit:
    """The one-run lower bound on epsilon from per-canary scores and the secret inclusion bits.

    Args:
      scores: one finite score per canary, higher meaning "more likely included" (e.g. minus the loss, or the
        model update's component along the canary's gradient). Ties are broken by canary index, which is
        independent of the bits.
      included: the secret bit of each canary (True = it was in the training data, drawn with probability 1/2).
      delta: the delta of the claim under test, in [0, 1) ((0, 1) for "f-dp-gaussian").
      confidence: in (0, 1), e.g. 0.95.
      strategy: "bonferroni" or "split" (see the module docstring).
      estimator: one of `ESTIMATORS` ("f-dp-gaussian" only for a run that is mu-GDP).
      claim: the run's claimed mechanism, for "f-dp-claimed" (required there, ignored otherwise).

    Raises:
      ValueError: naming the bad argument.
    """
    score_array = np.asarray(scores, dtype=np.float64).reshape(-1)
    bits = np.asarray(included).reshape(-1)
    if score_array.size == 0:
        raise ValueError("scores is empty: the audit needs at least one canary")
    if bits.shape != score_array.shape:
        raise ValueError(f"{score_array.size} scores but {bits.size} inclusion bits")
    if not np.isin(bits, (0, 1)).all():
        raise ValueError("included must hold booleans (or 0/1)")
    if not np.isfinite(score_array).all():
        # Neither which scores nor how many: with an overflowing run they are correlated with the secret bits.
        raise ValueError("scores must all be finite (some are NaN or infinite)")
    validation.probability("delta", delta, zero=True)
    validation.probability("confidence", confidence)
    validation.choice("strategy", strategy, THRESHOLD_STRATEGIES)
    validation.choice("estimator", estimator, ESTIMATORS)
    if estimator == "f-dp-gaussian" and delta == 0:
        raise ValueError("delta: estimator f-dp-gaussian needs delta > 0 (mu-GDP is (eps, 0)-DP for no finite eps)")
    if estimator == "f-dp-claimed":
        _needs_claim(claim)
        if delta == 0:
            raise ValueError("delta: estimator f-dp-claimed reports eps at the run's delta, which must be > 0, got 0")
    bits = bits.astype(bool)
    alpha = 1 - confidence
    best = functools.partial(
        _best, delta=delta, confidence=confidence, strategy=strategy, estimator=estimator, claim=claim
    )  # the scores, bits, pairs and level vary with the strategy
    if strategy == "bonferroni":
        pairs = guess_counts(score_array.size)
        return best(score_array, bits, pairs, alpha=alpha / len(pairs))
    if score_array.size < 2:
        raise ValueError("strategy 'split' needs at least 2 canaries")
    order = _csprng_permutation(score_array.size)
    choose, measure = order[: score_array.size // 2], order[score_array.size // 2 :]
    chosen = best(score_array[choose], bits[choose], guess_counts(choose.size), alpha=alpha)
    # The fractions chosen on one half, applied to the other half.
    scale = measure.size / choose.size
    pair = (int(round(chosen.guesses_in * scale)), int(round(chosen.guesses_out * scale)))
    pair = (min(pair[0], measure.size), min(pair[1], measure.size - min(pair[0], measure.size)))
    return best(score_array[measure], bits[measure], (pair,), alpha=alpha)


def _best(
    scores: np.ndarray,
    bits: np.ndarray,
    pairs: Sequence[tuple[int, int]],
    *,
    delta: float,
    alpha: float,
    confidence: float,
    strategy: str,
    estimator: str,
    claim: claimed_curve.SampledGaussianClaim | None,
) -> OneRunAudit:
    m = scores.size
    order = np.lexsort((np.arange(m), -scores))  # highest score first; ties by index
    ranked = bits[order]
    correct_in = np.concatenate([[0], np.cumsum(ranked)])  # included among the top k
    correct_out = np.concatenate([[0], np.cumsum(~ranked[::-1])])  # excluded among the bottom k
    for k_in, k_out in pairs:
        if k_in + k_out > m:
            raise ValueError(f"{k_in} + {k_out} guesses exceed {m} canaries")
    correct = [int(correct_in[k_in] + correct_out[k_out]) for k_in, k_out in pairs]
    if estimator == "f-dp-claimed":  # one bisection over all pairs finds the largest of their bounds
        bound, index = claimed_curve.epsilon_lower_bound(
            m, [(sum(pair), v) for pair, v in zip(pairs, correct, strict=True)], claim=claim, delta=delta, alpha=alpha
        )
        return _audit(bound, *pairs[index], correct[index], m, pairs, delta, confidence, strategy, estimator)
    best = None
    for (k_in, k_out), v in zip(pairs, correct, strict=True):
        if (
            best is not None
            and estimator == "counting"
            and delta > 0
            and epsilon_lower_bound(m, k_in + k_out, v, delta=0.0, alpha=alpha) <= best[0]
        ):
            continue  # the delta term only lowers the bound: this pair cannot beat the best (a shortcut)
        bound = estimator_bound(estimator, m, k_in + k_out, v, delta=delta, alpha=alpha, claim=claim)
        if best is None or bound > best[0]:
            best = (bound, k_in, k_out, v)
    return _audit(*best, m, pairs, delta, confidence, strategy, estimator)


def _audit(bound, k_in, k_out, v, m, pairs, delta, confidence, strategy, estimator) -> OneRunAudit:
    return OneRunAudit(
        epsilon_lower_bound=bound,
        delta=float(delta),
        confidence=float(confidence),
        num_canaries=m,
        num_guesses=k_in + k_out,
        num_correct=v,
        guesses_in=k_in,
        guesses_out=k_out,
        strategy=strategy,
        pairs_tried=len(pairs),
        estimator=estimator,
    )


def _needs_claim(claim: claimed_curve.SampledGaussianClaim | None) -> claimed_curve.SampledGaussianClaim:
    if not isinstance(claim, claimed_curve.SampledGaussianClaim):
        raise ValueError(
            f"claim: estimator f-dp-claimed needs the claimed mechanism (a SampledGaussianClaim), got {claim!r}"
        )
    return claim


def _csprng_permutation(n: int) -> np.ndarray:
    return np.random.default_rng(secrets.randbits(128)).permutation(n)


def _check_counts(m: int, r: int, v: int) -> None:
    if not 0 <= v <= r <= m:
        raise ValueError(f"need 0 <= correct <= guesses <= canaries, got v={v}, r={r}, m={m}")
