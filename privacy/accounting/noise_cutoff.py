r"""The delta that the noise sampler's cut-off adds to a Gaussian accountant's guarantee (no TensorFlow).

ppml's Gaussian noise (`privacy.keras.noise`) comes in Box-Muller pairs whose radius is at most R (the cut-off,
in units of the noise's standard deviation, set by the bits of its uniforms): each pair is N(0, I_2)
conditioned on the disk |z| <= R, so one step's noise is N(0, I) truncated to A, a product of P disks
(P = the pairs drawn per step; a tensor of odd size discards one coordinate of its last pair, which only
releases less, so that pair counts whole). The accountants analyse untruncated Gaussians; this module bounds
what the truncation adds. Float rounding of the noise itself (Mironov 2012) is out of scope here.

The bound. Noise units: a neighbouring dataset shifts one step's sum by a with ||a|| <= r = s k / sigma (s the
mechanism's sensitivity in C, k the examples per privacy unit, 1 at example level, sigma the noise
multiplier). Let b_j = ||a restricted to pair j||, so sum_j b_j^2 <= r^2.

1. One step, known shift. The truncated densities are g(y) 1_A(y) / Z and g(y - a) 1_{A + a}(y) / Z, the
   Gaussian's with one normaliser Z = P(N(0, I) in A) = (1 - exp(-R^2 / 2))^P (exact: the radius of a
   standard pair is Rayleigh). Where both are positive their ratio is the Gaussian's; elsewhere one side has
   mass only where the other's is 0. So H_eps(trunc) <= (H_eps(Gaussian) + p_bad) / Z with
   p_bad = P(Y in A, Y - a not in A), Y ~ N(0, I).
2. T adaptive steps, by the neighbours' sampling. Let G, G' be the untruncated mechanism's transcript densities on
   the neighbours (mixtures over the sampling), whose hockey-stick divergence the accountant bounds: H_eps(G || G')
   <= delta_acc(eps) in both directions. The truncated ones are Q = sum_pi P(pi) G_pi 1[S_pi] / Z^T (Q' alike),
   pi the sampling's outcome, S_pi the transcripts whose noise under pi stays in A at every step, Z^T =
   (1 - exp(-R^2 / 2))^(T P) (the transcript's density is the product of the steps'). Three bounds on
   H_eps(Q || Q') Z^T - H_eps(G || G'), each for the conditions it states:

   (a) Any sampling (the distance to the untruncated mechanism): Z^T Q <= G and Z^T Q' = G' - E' with E' >= 0 the
       mass the cut removes, of total 1 - Z^T, so (Z^T (Q - e^eps Q'))_+ <= (G - e^eps G')_+ + e^eps E':
       at most e^eps (1 - Z^T).
   (b) One-sided neighbours (Poisson add-remove, not truncated; q = 1 is the case of one outcome): condition on the
       other units' batch membership, independent of the differing unit's, which the accountants' analyses let be
       arbitrary (so their bound holds for each, and the hockey-stick divergence, jointly convex, averages). The side
       without the unit is one Gaussian G_0 (its support S_0); the side with
       it mixes its inclusion patterns pi, whose sum moves at step t by a_t(past) (||a_t|| <= r) where pi_t
       includes it. Adding the unit, H(Q_mix || Q_0): on S_0, sum_pi P(pi) G_pi 1[S_pi] <= G_mix; off S_0 only
       sum_pi P(pi) G_pi 1[S_pi \ S_0] is left, and under G_pi the noise z_t is in A while z_t + a_t is not at a
       step that includes the unit: P <= |pi| p_bad, of mean q_u T p_bad (q_u the probability that a step moves
       the sum at all). Removing it, H(Q_0 || Q_mix) on S_0: writing Z^T Q_mix = G_mix - sum_pi P(pi) G_pi
       1[S_pi^c], the integrand is at most (G_0 - e^eps G_mix)_+ + e^eps sum_pi P(pi) G_pi 1[S_0 \ S_pi], whose
       second term has mass e^eps P(z_t not in A, z_t + a_t in A at an included step) <= e^eps q_u T p_bad
       (a centred Gaussian gives a symmetric convex set no more mass when shifted: Anderson), and also at most
       G_0 1[S_0, some S_pi cut], of mass <= n_s T p_bad, n_s the distinct nonzero shifts a step can have (1 for
       one example; 2^k - 1 for a group of k, one per subset). So both directions are within
       min(n_s, e^eps q_u) T p_bad, q_u = 1 - (1 - q)^k.
   (c) Replace-one under Poisson sampling (one example, not truncated), conditioned on the others as in (b): both
       sides mix the same inclusion pattern pi (the slot's), x moving the sum by a_t and x' by a'_t. With
       Z^T Q <= G and the integrand also at most Z^T Q, (Z^T (Q - e^eps Q'))_+ <= (G - e^eps G')_+ +
       Z^T Q 1[some component of Q' cut], of mass <= sum_pi P(pi) sum_t P(z_t in A and z_t + v not in A for a
       shift v the D' patterns give), one shift (-a'_t) where pi_t excludes the slot and two (a_t, a_t - a'_t)
       where it includes it: (1 + q) T p_bad with r the replace-one shift (T p_bad at q = 1, one pattern).
       Shuffled batches (replace-one, one example or a group; the accountants claim no amplification there, so
       their bound holds given the permutation) are the case of one pattern: given the permutation each side is
       one Gaussian per step, the two means apart by at most r at the unit's steps, so n_s = 1: T p_bad.

   Fixed-size batches, truncated Poisson sampling and groups under Poisson replace-one have only (a): conditioning
   on the others' batches there would change the others' sums across the mixture's components (or the accountants'
   analyses would not hold per condition). Where epsilon is not yet known (a planned run), e^eps is taken as
   infinite, so only (b)'s n_s T p_bad and (c) apply. The delta reported is the larger of the two directions,
   each within the accountant's delta (the larger of its directions) plus the term above:

       delta_total(eps) <= (delta_acc(eps) + B(eps)) / Z^T,  B(eps) = min(c(eps) T p_bad, e^eps (1 - Z^T)),

   c(eps) = min(n_s, e^eps q_u) for one-sided neighbours (b), n_s under replace-one ((c): 1 + q, 1 shuffled), and
   infinite where only (a) applies, so that B(eps) = e^eps (1 - Z^T) there (`NoiseCutoff.weight`). One step of (b)
   at q = 0.01, 0.5, 1 and of (c) is checked on a grid where the shifts are whole cells, so the pointwise
   inequalities hold for the sums too (the tests ``test_one_step_mixture_obeys_the_sampling_credited_bound`` and
   ``test_replace_one_mixture_...``).

   Composition with exact mechanisms (preprocessing releases, a push decision) multiplies each side's density by
   that side's density of the releases (which differ between neighbours, and which the cut-off does not touch).
   The inequalities above hold pointwise with the releases' outputs fixed (the training's shifts stay within r
   whatever they are), so multiplied by those densities and integrated they bound the composed mechanism the same
   way, with the composed accountant's delta and its (larger) epsilon in place of the training's.
3. p_bad for one shift. Y in A and Y - a not in A needs some pair j to leave its disk while the other pairs
   stay inside theirs: p_bad <= Z_1^(P - 1) sum_j e(b_j), Z_1 = 1 - exp(-R^2 / 2), e(b) = P(|Y_j| <= R,
   |Y_j - b| > R). By the triangle inequality only the annulus R - b < |Y_j| <= R can leave, of probability
   f(b) = exp(-(R - b)^2 / 2) - exp(-R^2 / 2) (Rayleigh), and of it only the angles facing away from the
   shift: e(b) <= f(b) m(b), with m(b) the mean share of such angles across the annulus (`_outward_share`:
   1/pi for small b, at most 1/2 + o(1); valid where R - b >= 1, else m = 1). f is convex on [0, R - 1] with
   f(0) = 0 and m rises with b, so e(b) <= b f(tau) m(tau) / tau for b <= tau <= R - 1. Split the pairs at
   tau: fewer than r^2 / tau^2 have b_j > tau, each e(b_j) <= f(r) m(r); the others sum to at most
   (f(tau) m(tau) / tau) sqrt(P) r (Cauchy-Schwarz on sum_j b_j). So for every tau in (0, min(r, R - 1)]

       p_bad <= Z_1^(P - 1) [min(P, floor(r^2 / tau^2)) f(r) m(r) + sqrt(P) r f(tau) m(tau) / tau],

   minimised over a grid of tau (any tau is valid), and never above Z_1^(P - 1) P f(r) m(r). A shift in one
   pair (the first term, ~ exp(-(R - r)^2 / 2)) dominates at small P or small sigma; a shift spread over all
   pairs (the second, ~ R exp(-R^2 / 2) sqrt(P) r / pi) at large P. r >= R is refused. The bound is checked
   against exact integrals for one to 1000 pairs (tests/privacy/accounting/test_noise_cutoff.py).

ppml's Gaussian samplers and their cut-offs (in stds): `privacy.keras.noise` (DP-SGD; also the Federated
Trainer's central DP-FedAvg noise, drawn in float64) 9.42 per pair in float32, 12.0 in float64; accounted here
for DP-SGD (the model's report, the ledger, ``ppml report``, ``ppml epsilon --weights``) and in DP-FedAvg's ledger
(the central DP strategies' `noise_draws`; checked when the ledger is written, after training), where at
12.0 it adds, for 10^7 weights over 1000 rounds at epsilon 3, 5e-21 at z = 0.5 or 0.3, fixed-size or Poisson samples
(bound (a); without epsilon, Poisson's n_s T p_bad alone gives 1.6e-19 / 2.3e-14). `privacy.local.OsRandom.normal`
(local-DP clients) 9.42 per pair (64-bit words; z >= 2 is required, `federated.strategies.dp_local`), not added to
any delta. numpy's ``Generator.normal`` (`privacy.preprocessing.NoiseSource`: preprocessing releases, PATE, the
push decision; seeded federated test noise) is a ziggurat whose tail draws r + x with x = -ln(1 - U) / r, U a
53-bit uniform, r = 3.654: at most 13.7 per coordinate, not added to any delta (a shift of s stds exposes at most
P(13.7 - s < |N| <= 13.7) per coordinate).

What is released: (eps, delta + added_delta) with added_delta = delta (Z^-T - 1) + B(eps) Z^-T; the epsilon is
the accountants' at delta, unchanged. `MAX_ADDED_FRACTION` bounds added_delta / delta.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from fractions import Fraction

import ml_dtypes
import numpy as np

from privacy import validation
from privacy.compared import compared

RADIUS_BITS = {"float64": 104}
"""Bits of the uniform w behind the radius sqrt(-2 ln w) of ppml's sampler (`privacy.keras.noise`) by dtype: two
float64 uniforms (2 x 52) for float64 tensors, `DEFAULT_RADIUS_BITS` (two Philox words) for any other."""
DEFAULT_RADIUS_BITS = 64


def sampler_radius(dtype_name: str = "float32") -> float:
    """The cut-off of ppml's sampler for tensors of ``dtype_name``: sqrt(2 bits ln 2) (9.42 float32, 12.0 float64)."""
    return math.sqrt(2.0 * RADIUS_BITS.get(dtype_name, DEFAULT_RADIUS_BITS) * math.log(2.0))


def noise_scale_range(dtype_name: str = "float32") -> tuple[float, float]:
    """[smallest, largest]: the standard deviations (besides 0) at which ppml's sampler (`privacy.keras.noise.normal`)
    draws the Gaussian the accountant assumes, up to rounding, in tensors of ``dtype_name``. TensorFlow's CPU kernels
    flush subnormal results to 0, so a standard deviation s zeroes every N(0, 1) draw below tiny / s in magnitude
    (tiny the dtype's smallest normal number); s >= tiny / eps (eps its machine epsilon) keeps that below eps, the
    size of the draws' own rounding error near 1. Above largest = max / (R' (1 + eps)^2) draws could overflow: R' is
    `sampler_radius` rounded up to the dtype, one eps covers a draw's rounding above it, one the scale's rounding up
    (a sound bound, a few ulps below the first overflowing scale, for 16-bit dtypes too, where max / R alone is not:
    float16's rounds up to a scale that overflows)."""
    info = ml_dtypes.finfo(np.dtype(getattr(ml_dtypes, dtype_name, dtype_name)))
    eps = float(info.eps)
    return float(info.tiny) / eps, float(info.max) / (_rounded_radius(dtype_name) * (1 + eps) ** 2)


def _rounded_radius(dtype_name: str) -> float:
    """R': `sampler_radius` rounded up to ``dtype_name``."""
    dtype = np.dtype(getattr(ml_dtypes, dtype_name, dtype_name))
    radius = sampler_radius(dtype_name)
    rounded = dtype.type(radius)
    if float(rounded) < radius:
        rounded = np.nextafter(rounded, dtype.type(np.inf))
    return float(rounded)


def check_noise_scale(stddev, dtype_name: str = "float32", *, context: str = "", error=ValueError) -> None:
    """Refuses a noise standard deviation ``stddev`` (a float or Fraction) outside `noise_scale_range` (0 passes).

    Raises:
      ``error``: in one line, ``context`` first, naming ``stddev``, the dtype and the accepted range.
    """
    smallest, largest = noise_scale_range(dtype_name)
    if stddev != 0 and not smallest <= stddev <= largest:
        raise error(
            f"{context}the noise's standard deviation {float(stddev)!r} in {dtype_name} must be 0 or in "
            f"[{smallest!r}, {largest!r}]: below, its draws are flushed to 0; above, they overflow"
        )


def check_step_noise(noise_multiplier: float, l2_norm_clip: float, denominator: float, *, error=ValueError) -> None:
    """Refuses, before any model is built, a DP-SGD step whose noise's standard deviation sigma C (1 + SLACK) m
    (1 / ``denominator`` = m 2^k, `folded_multiplier`; the denominator is the step's B: ``num_microbatches``, else the
    expected batch size) is outside float32's `noise_scale_range`. The private step takes float32 and
    float64 weights, and float32's range lies within float64's, so float32's is the one that holds whatever the
    model's dtype (a float64 model is refused between the two ranges too); the first step checks the model's own
    dtype again (`privacy.keras.noise.checked_scale`). Only the lower end (draws flushed to 0) can refuse an
    ``l2_norm_clip`` within `max_l2_norm_clip`: with sigma <= 1e6 and m <= 1 the standard deviation stays below
    2.48e33, under float32's upper end (3.6e37); that end is checked all the same.

    Raises:
      ``error``: in one line naming ``l2_norm_clip`` (with sigma and B), the standard deviation and the range.
    """
    from privacy.accounting.mechanism import SLACK, SLACK_TEXT, folded_multiplier

    multiplier, doublings = folded_multiplier(1 / Fraction(float(denominator)))
    stddev = Fraction(float(noise_multiplier)) * Fraction(float(l2_norm_clip)) * (1 + SLACK) * multiplier
    scale = "/ batch size" if doublings == 0 else f"/ batch size / 2^{doublings} (then times 2^{doublings})"
    context = (
        f"l2_norm_clip={l2_norm_clip!r} (with noise_multiplier {noise_multiplier!r} and batch size {denominator!r}): "
        f"noise_multiplier * l2_norm_clip * (1 + {SLACK_TEXT}) {scale}, "
    )
    check_noise_scale(stddev, "float32", context=context, error=error)


MAX_STEP_POSITIONS = 2**23
"""Most terms one sum of a DP-SGD step adds (all replicas together), as `max_l2_norm_clip` assumes: the clipping units,
times a layer's positions per unit where its clipped sum runs over them (a ghost-norm matmul, an embedding's rows);
the step refuses a batch of more rows and a layer's clipped sum over more rows times positions, when traced or, for
sizes known only then, when it runs or (under XLA) is compiled for them (`check_step_positions`,
`privacy.keras.clipping.checked_positions`)."""
UNIT_MAGNITUDE = 2**13
"""Bound, in m C, on the sum of the magnitudes of one clipping unit's scaled terms in the clipped sum (the products
a_t (s g_t) over a layer's positions, an embedding's scaled rows, a materialised gradient's scaled entries), which can
exceed its sum's norm, m C (1 + SLACK), where the terms cancel: the clipping then divides by at least r / SLACK with r
at least gamma_2 = 2u / (1 - 2u) times that magnitude (`privacy.keras.roundoff`'s `sum_rounding`: gamma_{T+1},
`segment_rounding`: gamma_T, for T >= 2 positions), so it is at most m C SLACK (1 + u) / gamma_2 < 2^13 m C in float32
(u = 2^-24, SLACK = 2^-10, the (1 + u) the scaled side's rounding); one position's term is within the unit's norm."""


@functools.lru_cache(maxsize=1)
def max_l2_norm_clip() -> float:
    """The largest ``l2_norm_clip`` C (a float) at which no partial sum of a float32 DP-SGD step's noisy sum can
    overflow, whatever the data: every unit's scaled terms sum to at most `UNIT_MAGNITUDE` m C in magnitude (m <= 1,
    `folded_multiplier`), a sum over at most N = `MAX_STEP_POSITIONS` positions of at most N units rounds, in any order
    (fused multiply-adds too), each partial sum within (1 + u)^(N + 1) <= 1 / (1 - (N + 1) u) of its terms' magnitudes
    (Higham, Sec. 3.1), and the noise adds a draw of at most R' (1 + eps)^2 sigma C (1 + SLACK) m (`noise_scale_range`)
    for sigma up to `NOISE_MULTIPLIER_RANGE`'s 1e6 (its addition, and on several replicas the replicas' sum after it,
    round it too: within the terms' bound's slack, since units whose terms can cancel have T >= 2 positions, so at
    most N / 2 of them, and one position's term is within (1 + SLACK)(1 + u) m C). So C is the largest float with

        C (N UNIT_MAGNITUDE / (1 - (N + 1) u) + R' (1 + eps)^2 1e6 (1 + SLACK)) <= max,

    about 2.5e27 (exact rationals). The step's final multiplication by 2^k (B < 1) is post-processing of the noisy
    sum."""
    from privacy.accounting.mechanism import NOISE_MULTIPLIER_RANGE, SLACK

    info = np.finfo(np.float32)
    u, eps = Fraction(float(info.eps)) / 2, Fraction(float(info.eps))
    positions = MAX_STEP_POSITIONS
    terms = positions * UNIT_MAGNITUDE / (1 - (positions + 1) * u)
    noise = Fraction(_rounded_radius("float32")) * (1 + eps) ** 2 * Fraction(NOISE_MULTIPLIER_RANGE[1]) * (1 + SLACK)
    exact = Fraction(float(info.max)) / (terms + noise)
    clip = float(exact)
    return clip if Fraction(clip) <= exact else math.nextafter(clip, 0.0)


def check_l2_norm_clip(l2_norm_clip, *, error=ValueError) -> None:
    """Refuses an ``l2_norm_clip`` (a positive number, checked before) above `max_l2_norm_clip`.

    Raises:
      ``error``: in one line naming ``l2_norm_clip`` and the largest accepted.
    """
    largest = max_l2_norm_clip()
    if not float(l2_norm_clip) <= largest:
        raise error(
            f"l2_norm_clip={l2_norm_clip!r} must be at most {largest!r}: beyond, a step of up to "
            f"{MAX_STEP_POSITIONS} positions could overflow float32 in its noisy sum for some data (a huge record), "
            f"and not for its neighbour"
        )


def check_step_positions(positions: int, what: str = "batch rows", *, error=ValueError) -> None:
    """Refuses a DP-SGD sum over more than `MAX_STEP_POSITIONS` ``positions`` (``what`` they are: a batch's rows, a
    layer's rows times positions; all replicas together), which `max_l2_norm_clip` does not cover.

    Raises:
      ``error``: in one line naming the count and the limit.
    """
    if positions > MAX_STEP_POSITIONS:
        raise error(
            f"a DP-SGD step over {positions} {what} (all replicas) is beyond the {MAX_STEP_POSITIONS} that "
            f"l2_norm_clip's bound (privacy.accounting.noise_cutoff.max_l2_norm_clip) keeps finite in one float32 "
            f"sum; use smaller batches (or shorter inputs)"
        )


MAX_ADDED_FRACTION = 0.01
"""Largest added_delta / delta accepted: beyond it the cut-off is refused (raise sigma, train fewer steps, or
use a sampler with a larger cut-off)."""
_TAU_GRID = 1000
"""Points of the log-spaced grid of split thresholds tau that `escape_bound` minimises over."""
_LOG_FLOAT_MAX = 700.0
"""Beyond exp(700) a float overflows."""
_SHARE_POINTS = 256
"""Points of the Riemann sum in `_outward_share`."""


_JSON_KEYS = {"unit_shift": "shift", "distinct_shifts": "shifts"}
"""`NoiseCutoff.to_dict`'s keys for the fields renamed since reports were first written with them."""


class NoiseCutoffError(ValueError):
    """The noise's cut-off cannot be accounted within `MAX_ADDED_FRACTION` of delta."""


def _annulus(radius: float, shift: float) -> float:
    """f(b) = P(R - b < |Y| <= R) for a standard pair Y (Rayleigh radius): where a shift b can leave the disk."""
    if shift >= radius:
        return -math.expm1(-radius * radius / 2)
    return math.exp(-((radius - shift) ** 2) / 2) * -math.expm1(-shift * (2 * radius - shift) / 2)  # no overflow


def _outward_share(radius: float, shift: float) -> float:
    """m(b): an upper bound on the share of the annulus R - b < |Y| <= R that a shift b moves out of the disk.

    At radius rho = R - s b the share of angles that leave is g = 1 - arccos(c) / pi, c = (b (1 + s^2) - 2 R s) /
    (2 (R - s b)); g falls with s, so the mean over s in [0, 1] is at most the left Riemann sum taken here. Where
    R - b >= 1 the Rayleigh density falls across the annulus while g rises, so the escape probability is at most
    f(b) times that mean (Chebyshev's integral inequality); elsewhere 1. c rises with b at every s, so m(b) does.
    """
    if radius - shift < 1:
        return 1.0
    s = np.arange(_SHARE_POINTS) / _SHARE_POINTS
    c = (shift * (1 + s * s) - 2 * radius * s) / (2 * (radius - s * shift))
    return float(np.mean(1 - np.arccos(np.clip(c, -1.0, 1.0)) / math.pi))


@functools.lru_cache(maxsize=256)
def escape_bound(radius: float, pairs: int, shift: float) -> float:
    """Upper bound on P(Y in A, Y - a not in A) over shifts ||a|| <= ``shift`` of ``pairs`` disks of ``radius``
    (item 3 of the module docstring)."""
    if shift <= 0:
        return 0.0
    if shift >= radius:
        raise NoiseCutoffError(f"a shift of {shift:.4g} noise stds is not below the sampler's cut-off {radius:.4g}")
    others_inside = math.exp((pairs - 1) * math.log1p(-math.exp(-radius * radius / 2)))
    whole = _annulus(radius, shift) * _outward_share(radius, shift)
    best = pairs * whole
    high = min(radius - 1.0, shift)
    if high > 0:
        for tau in np.geomspace(high * 1e-6, high, _TAU_GRID):
            tau = float(tau)
            large = min(pairs, math.floor(shift * shift / (tau * tau)))
            small = math.sqrt(pairs) * shift * _annulus(radius, tau) * _outward_share(radius, tau) / tau
            best = min(best, large * whole + small)
    return others_inside * best


@dataclasses.dataclass(frozen=True)
class NoiseDraws:
    """What a run's Gaussian sampler drew, as its cut-off's delta needs it (``parameters['noise_cutoff']`` of a
    ledger, `NoiseDraws.to_dict`).

    Attributes:
      radius: R, the smallest cut-off of the draws (the largest radius of a Box-Muller pair), in noise stds.
      pairs: P, the most Box-Muller pairs drawn in one step (all tensors together).
    """

    radius: float
    pairs: int

    def __post_init__(self):
        object.__setattr__(self, "radius", validation.number("radius", self.radius, low=1, low_open=True))
        object.__setattr__(self, "pairs", validation.integer("pairs", self.pairs, minimum=1))

    def merged(self, other: "NoiseDraws | None") -> "NoiseDraws":
        """The draws of a run that drew both: the smaller radius and the more pairs (either bounds the other's)."""
        if other is None:
            return self
        return NoiseDraws(radius=min(self.radius, other.radius), pairs=max(self.pairs, other.pairs))

    def to_dict(self) -> dict:
        """The ledger's JSON form, ``{"radius": float, "pairs": int}``."""
        return {"radius": float(self.radius), "pairs": int(self.pairs)}

    @classmethod
    def from_dict(cls, data: dict) -> "NoiseDraws":
        """The draws a `to_dict` form holds; KeyError, TypeError or ValueError where it is malformed."""
        return cls(radius=data["radius"], pairs=data["pairs"])


@dataclasses.dataclass(frozen=True)
class NoiseCutoff:
    """A run's noise cut-off as the guarantee needs it.

    Attributes:
      radius: R, the largest radius of a Box-Muller pair, in noise standard deviations.
      pairs: P, Box-Muller pairs drawn per step (all tensors together).
      steps: T, noisy steps.
      unit_shift: r, the most one privacy unit moves a step's sum, in noise standard deviations (s k / sigma).
      distinct_shifts: n_s, the distinct nonzero shifts a step can have where the support argument applies (item 2
        (b), (c): 2^k - 1 for a group of k under Poisson add-remove, 1 for one example; 1 + q for one example under
        Poisson replace-one; 1 for shuffled batches, any group); None where it does not (fixed batches, truncated
        Poisson sampling, groups under Poisson replace-one): then only the distance to the untruncated mechanism,
        e^eps (1 - Z^T), bounds the cut-off.
      moves: q_u, the probability that a step moves the sum at all, where the neighbours are one-sided (item 2 (b):
        1 - (1 - q)^k); None elsewhere (no credit for sampling).
    """

    radius: float
    pairs: int
    steps: int
    unit_shift: float
    distinct_shifts: float | None = 1.0
    moves: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "radius", validation.number("radius", self.radius, low=1, low_open=True))
        object.__setattr__(self, "pairs", validation.integer("pairs", self.pairs, minimum=1))
        object.__setattr__(self, "steps", validation.integer("steps", self.steps, minimum=1))
        object.__setattr__(self, "unit_shift", validation.number("unit_shift", self.unit_shift, low=0, low_open=True))
        if self.distinct_shifts is not None:
            object.__setattr__(
                self, "distinct_shifts", validation.number("distinct_shifts", self.distinct_shifts, low=1)
            )
        if self.moves is not None:
            object.__setattr__(self, "moves", validation.number("moves", self.moves, low=0, high=1, low_open=True))

    @classmethod
    def for_mechanism(cls, mechanism, draws: NoiseDraws) -> "NoiseCutoff":
        """The cut-off of a `DpSgdMechanism` run (all its steps) whose sampler drew ``draws`` each step, with the
        support and sampling terms its sampling and adjacency allow (module docstring, item 2)."""
        from privacy.accounting.mechanism import Adjacency, Sampling

        group = mechanism.max_examples_per_user or 1
        distinct = moves = None
        poisson = mechanism.sampling is Sampling.POISSON and mechanism.truncated_batch_size is None
        if mechanism.sampling is Sampling.SHUFFLE:
            distinct = 1.0
        elif poisson and mechanism.adjacency is Adjacency.ADD_REMOVE:
            distinct = float(2 ** min(group, 60) - 1)
            q = mechanism.sampling_probability
            moves = 1.0 if q >= 1 else -math.expm1(group * math.log1p(-q))
        elif poisson and group == 1:
            q = mechanism.sampling_probability
            distinct = 1.0 if q >= 1 else 1.0 + q
        return cls(
            radius=draws.radius,
            pairs=draws.pairs,
            steps=mechanism.steps,
            unit_shift=mechanism.sensitivity * group / mechanism.effective_noise_multiplier,
            distinct_shifts=distinct,
            moves=moves,
        )

    @property
    def escape(self) -> float:
        """p_bad of one step (`escape_bound`)."""
        return escape_bound(self.radius, self.pairs, self.unit_shift)

    @property
    def log_mass(self) -> float:
        """ln Z^T, the log-probability that T steps' untruncated noise stays inside the cut-off."""
        return self.steps * self.pairs * math.log1p(-math.exp(-self.radius * self.radius / 2))

    def weight(self, epsilon: float = math.inf) -> float:
        """c(eps) of item 2: min(n_s, e^eps q_u), inf where neither applies."""
        credited = math.inf if self.moves is None or epsilon > _LOG_FLOAT_MAX else math.exp(epsilon) * self.moves
        return min(math.inf if self.distinct_shifts is None else self.distinct_shifts, credited)

    def added_delta(self, delta: float, epsilon: float = math.inf) -> float:
        """What the cut-off adds to the accountant's ``delta`` at ``epsilon`` (inf: not known yet, the bound for
        every epsilon): delta (Z^-T - 1) + B(eps) Z^-T, B(eps) = min(c(eps) T p_bad, e^eps (1 - Z^T)) (inf where
        Z^-T overflows or no bound applies)."""
        if not epsilon >= 0:  # inf is allowed (not known yet); NaN is not
            raise ValueError(f"epsilon must be a number >= 0 or inf, got {epsilon!r}")
        if -self.log_mass > _LOG_FLOAT_MAX:
            return math.inf
        weight = self.weight(epsilon)
        escape = self.escape  # refuses a shift at or beyond the cut-off whichever bound is taken
        support = 0.0 if escape == 0 else weight * self.steps * escape
        distance = math.inf if epsilon > _LOG_FLOAT_MAX else math.exp(epsilon) * -math.expm1(self.log_mass)
        return delta * math.expm1(-self.log_mass) + min(support, distance) * math.exp(-self.log_mass)

    def check(self, delta: float, epsilon: float = math.inf) -> float:
        """`added_delta`, or NoiseCutoffError (one line) when it exceeds `MAX_ADDED_FRACTION` of ``delta``."""
        added = self.added_delta(delta, epsilon)
        if self.distinct_shifts is None and math.isinf(epsilon):
            raise NoiseCutoffError(
                f"the noise sampler's cut-off at {self.radius:.3g} stds is bounded only through epsilon for this "
                f"sampling (fixed-size or truncated batches, or a group under Poisson replace-one), and no "
                f"accountant gave a finite one"
            )
        if added > MAX_ADDED_FRACTION * delta:
            at = "" if math.isinf(epsilon) else f" at epsilon {epsilon:.4g}"
            shown, bound = compared(added, MAX_ADDED_FRACTION * delta, digits=3, bound_digits=3)
            raise NoiseCutoffError(
                f"the noise sampler's cut-off at {self.radius:.3g} stds adds delta {shown} over {self.steps} "
                f"steps{at}, more than {MAX_ADDED_FRACTION:.0%} of delta={delta:g} ({bound}; one unit moves the "
                f"noise by {self.unit_shift:.3g} stds over {self.pairs} noise pairs): raise noise_multiplier, train "
                f"fewer steps, or raise the target delta"
            )
        return added

    def describe(self, delta: float, epsilon: float = math.inf) -> str:
        """One line for reports."""
        return (
            f"Box-Muller pairs cut at radius {self.radius:.4g} stds ({self.pairs} pairs x {self.steps} steps, shift "
            f"{self.unit_shift:.3g} stds): adds {self.added_delta(delta, epsilon):.3g} to delta"
            f"{'' if math.isinf(epsilon) else f' at epsilon {epsilon:.4g}'} (privacy.accounting.noise_cutoff)"
        )

    def to_dict(self, delta: float, epsilon: float = math.inf) -> dict:
        """The JSON form (``epsilon`` None: the bound for every epsilon), keys in the order reports were written
        with: ``shift`` is `unit_shift` and ``shifts`` `distinct_shifts` (`_JSON_KEYS`)."""
        fields = {_JSON_KEYS.get(name, name): value for name, value in dataclasses.asdict(self).items()}  # in order
        added = self.added_delta(delta, epsilon)
        return {**fields, "epsilon": None if math.isinf(epsilon) else epsilon, "added_delta": added}
