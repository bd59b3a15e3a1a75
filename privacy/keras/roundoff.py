"""Rigorous floating-point error bounds for the clipping (Higham, "Accuracy and Stability of Numerical Algorithms",
2nd ed., Sec. 3.1): a sum or dot product of n terms computed in a dtype of unit roundoff u, in any order and with
fused multiply-adds (so also as XLA compiles it), is within gamma_n = n u / (1 - n u) of the sum of the terms'
magnitudes.

A unit's gradient norm that the clipping divides by must bound the norm of what the unit adds to the released sum:
ghost norms compute ||A^T G||^2 = sum_ts (A A^T)_ts (G G^T)_ts, a sum of signed terms, so an adversarial record
(positions whose terms cancel) can make the computed norm 0 while A^T G, summed by a separate matmul, is huge. The
factors (`privacy.keras.factors`) answer rigorous upper bounds on their units' exact squared norms from these
gammas, and the clipping divides by those (`privacy.keras.clipping`).

Underflow: TensorFlow's CPU kernels flush subnormals (FTZ and DAZ): a result below the dtype's smallest normal lambda
(2^-126 for float32 and bfloat16, 2^-14 for float16, 2^-1022 for float64) comes out 0 and a subnormal operand is read
as 0 (1e-30 * 1e-10 and 1e-40 * 1 are 0 in float32); other kernels round among the subnormals (within half their
spacing, lambda u: 2^-25 for float16). Either way a result that is not normal is within lambda of its exact value,
which no relative gamma covers, and an operand read as 0 moves a product x y by below lambda |y|: the bounds add
absolute terms for both, and a unit's term of the clipped sum is within s r + e of s grad for its scale s <= 1 (r and
e from the factor's ``rounding``: `sum_rounding`); the clipping sizes its divisor for both (`clipping.divisors`).
Float16 and bfloat16 factors get their own lambda (float16's 2^-14 also covers kernels that flush it); the private
step itself computes in float32 or float64 only (`validator` refuses half-precision layers).
"""

from __future__ import annotations

import os
from fractions import Fraction

import tensorflow as tf

from privacy.keras.params import DPConfigurationError

FLOAT64_MARGIN = 2.0**-26
"""Covers the bounds' own float64 arithmetic: sums of n non-negative terms (products of the inputs, exact in float64
for float32 ones) round by at most gamma_{n+4} < 2^-27 relative for n < 2^25 (`last_axis_squares`' block bounds,
`quadratic_form`'s x); a few roundings in `sum_of_squares_bound`; the clipping's add_n over
variables, sqrt, max, the room SLACK - e / (m C) and the division by it by at most (V + 5) 2^-53 for V < 2^25
variables (`clipping.divisors`). Bounds and divisors are multiplied by (1 + FLOAT64_MARGIN) where they are not exact
(the addition of a computed norm c to its error bound is covered by a term 2^-52 |c| of its own: `ghost_bound`)."""

_UNIT_ROUNDOFF = {tf.float64: 2.0**-53, tf.float32: 2.0**-24, tf.float16: 2.0**-11, tf.bfloat16: 2.0**-8}
_SMALLEST_NORMAL = {tf.float64: 2.0**-1022, tf.float32: 2.0**-126, tf.float16: 2.0**-14, tf.bfloat16: 2.0**-126}


def unit_roundoff(dtype) -> float:
    """u of the float ``dtype`` a computation rounds in (2^-24 for float32). Refuses float32 on a GPU or TPU where
    TensorFloat-32 is enabled: its matmuls round to 2^-11 (2^-8), which no float32 bound may assume away. This runs
    when a step is traced; `fit` checks again each time (its traced step is kept across fits), but a custom loop
    that enables TF32 after tracing `dp_gradients` is not checked again."""
    dtype = tf.as_dtype(dtype)
    if dtype == tf.float32:
        refuse_tensor_float_32()
        refuse_onednn_fast_math()
    return _UNIT_ROUNDOFF[dtype]


def refuse_tensor_float_32():
    """Raises `DPConfigurationError` when a GPU or TPU is visible and TensorFloat-32 execution is enabled (TF's
    default; on a TPU it leaves float32 matmuls at XLA's default precision, one bfloat16 pass)."""
    accelerator = tf.config.list_physical_devices("GPU") or tf.config.list_logical_devices("TPU")
    if accelerator and tf.config.experimental.tensor_float_32_execution_enabled():
        raise DPConfigurationError(
            "TensorFloat-32 is enabled on this GPU or TPU: float32 matmuls then round to 2^-11 (2^-8 on a TPU), "
            "beyond the clipping's rounding bounds; call "
            "tf.config.experimental.enable_tensor_float_32_execution(False) before training"
        )


_FPMATH_VARIABLES = ("ONEDNN_DEFAULT_FPMATH_MODE", "DNNL_DEFAULT_FPMATH_MODE", "TF_SET_ONEDNN_FPMATH_MODE")


def refuse_onednn_fast_math():
    """Raises `DPConfigurationError` when an environment variable sets oneDNN's floating-point math mode to anything
    but strict: float32 matmuls on the CPU may then run in bfloat16 (2^-8) or float16."""
    for name in _FPMATH_VARIABLES:
        value = os.environ.get(name)
        if value is not None and value.strip().lower() != "strict":
            raise DPConfigurationError(
                f"{name}={value} lets oneDNN round float32 matmuls to a narrower type, beyond the clipping's rounding "
                f"bounds; unset it or set it to strict"
            )


def gamma(n, dtype):
    """gamma_n = n u / (1 - n u), rounded up to float64: a float for a Python int ``n``, else a float64 scalar tensor
    (a count known only when the step runs: n u and 1 - n u are exact in float64, the division is rounded up by
    2^-52); inf where n u >= 1 (no bound: the units it applies to are dropped, `clipping`)."""
    if not isinstance(n, int):
        nu = tf.cast(n, tf.float64) * unit_roundoff(dtype)
        return tf.where(nu < 1, nu / (1 - nu) * (1 + 2.0**-52), float("inf"))
    exact = n * Fraction(unit_roundoff(dtype))
    if exact >= 1:
        return float("inf")
    value = exact / (1 - exact)
    result = float(value)
    return result if Fraction(result) >= value else float(Fraction(result) * (1 + Fraction(2) ** -52))


def pairs_gamma(tensor, dtype):
    """gamma_{T^2} for the T^2 pairs of positions of ``tensor``'s axis 1 (its T^2 products and their sum)."""
    positions = dim_size(tensor, 1)
    return gamma(positions * positions, dtype)


def float64(tensor):
    """``tensor`` (or a count) in float64: exact for float32, float16 and bfloat16 values, but for subnormals, which
    the CPU cast may read as 0 (`_float64_squares`)."""
    return tf.cast(tensor, tf.float64)


def sum_of_squares_bound(computed, count, dtype):
    """An upper bound (float64) on the exact sum of n = ``count`` squares w_i^2 from ``computed`` = fl(sum fl(w_i^2)),
    their sum in ``dtype`` (any order, FMA, a wider accumulator: every operation at least as precise as ``dtype``'s).
    Each of the at most 2n + 1 operations (n squares, n - 1 additions, a final cast; an FMA counts as one) returns
    fl(x) >= (1 - u) x - tiny for its exact result x >= 0, tiny ``dtype``'s smallest normal (2^-126 for float32 and
    bfloat16, 2^-14 for float16, 2^-1022 for float64): to nearest within u relative where x >= tiny, else at worst
    flushed to 0 (FTZ; gradual underflow loses at most half a subnormal ulp); inf on overflow (the bound is inf: the
    unit is dropped). Each w_i^2 passes through at most n + 1 of them, so computed >= (1 - u)^(n+1) sum w_i^2 -
    (2n + 1) tiny, and sum w_i^2 <= (computed + (2n + 1) tiny) (1 + gamma_{n+1}) (the float64 addition and product:
    FLOAT64_MARGIN)."""
    dtype = tf.as_dtype(dtype)
    absolute = tf.cast(2 * count + 1, tf.float64) * _SMALLEST_NORMAL[dtype]
    return (float64(computed) + absolute) * (1 + gamma(count + 1, dtype)) * (1 + FLOAT64_MARGIN)


BLOCK = 64
"""The longest float32 sum of squares a bound is taken from (`row_norms`, `squares`): the bound is looser than one from
float64 sums by below 7.8e-6 relative, about 2 gamma_65 (a block sum rounds within gamma_65 of its exact value, and
the bound adds gamma_65 to it), but for the underflow terms."""


def row_norms(tensor):
    """An upper bound on each row's exact norm sqrt(sum over the last axis of tensor^2), float64: `root_bound` of
    `last_axis_squares`."""
    return root_bound(last_axis_squares(tensor))


def root_bound(squares):
    """An upper bound (float64) on the exact square root of each of ``squares`` (float64, >= 0, an upper bound on a
    sum of squares): the root rounded to nearest (correctly rounded, it can lie an ulp below the exact root) and moved
    one ulp up where positive; 0, inf and NaN stay."""
    root = tf.sqrt(squares)
    return tf.where(squares > 0, tf.math.nextafter(root, tf.constant(float("inf"), tf.float64)), root)


def squares_and_bounds(tensor):
    """(the sums of squares over ``tensor``'s last axis computed in its dtype, `last_axis_squares`' upper bound on
    their exact values): for float32 with a last axis known at trace time both from one pass of float32 squares (the
    block sums, summed in float32 for the first: the same sum in another order), otherwise from a pass each."""
    if tensor.dtype != tf.float32 or tensor.shape[-1] is None:
        return tf.reduce_sum(tf.square(tensor), -1), last_axis_squares(tensor)
    blocks, k = _block_sums(tensor)
    return tf.reduce_sum(blocks, -1), _blocks_bound(blocks, k)


def squares(tensor):
    """An upper bound (float64) on each row's exact sum of squares of ``tensor``'s values over all axes but the
    first: `last_axis_squares` of the flattened rows (inf where a block overflows: the unit's reported squared norm,
    the float32 sum of the same squares, is then beyond float32's range too, so the clipping drops it either way)."""
    values = tensor.shape[1:].num_elements()
    return last_axis_squares(tf.reshape(tensor, [tf.shape(tensor)[0], -1 if values is None else values]))


def last_axis_squares(tensor):
    """An upper bound (float64) on the exact sum of squares over ``tensor``'s last axis (n long). Float32, float16
    and bfloat16 values (cast to float32 exactly) are squared and summed in float32 over blocks of k <= BLOCK
    values (k the largest divisor of n up to BLOCK), each block sum bounded by `sum_of_squares_bound` (float32's
    gamma_{k+1} and absolute (2k + 1) 2^-126: underflow), and the n / k block bounds summed in float64
    (FLOAT64_MARGIN). A block sum that overflows (values beyond about 1.8e19) makes the bound inf: the clipping
    drops the unit, where float64 sums would have kept it (no fallback: the step branches on nothing the data
    decides, so its duration does not tell). Float64 values, or an n unknown at trace time: float64 sums
    (`_float64_squares`)."""
    if tensor.dtype == tf.float64 or tensor.shape[-1] is None:
        return _float64_squares(tensor)
    return _blocks_bound(*_block_sums(tensor))


def _block_sums(tensor):
    """(float32 sums of squares over blocks of k values of the last axis (n known), k): k the largest divisor of n
    up to BLOCK."""
    n = tensor.shape[-1]
    k = max(size for size in range(1, min(n, BLOCK) + 1) if n % size == 0)
    shape = [tf.shape(tensor)[i] if size is None else size for i, size in enumerate(tensor.shape[:-1])]
    return tf.reduce_sum(tf.square(tf.reshape(tf.cast(tensor, tf.float32), [*shape, n // k, k])), -1), k


def _blocks_bound(blocks, k: int):
    """`last_axis_squares`' bound from `_block_sums`: each block's `sum_of_squares_bound`, summed in float64."""
    return tf.reduce_sum(sum_of_squares_bound(blocks, k, tf.float32), -1) * (1 + FLOAT64_MARGIN)


def _float64_squares(tensor):
    """The sums of squares over the last axis in float64 (exact squares of float32 and narrower values), bounded by
    `sum_of_squares_bound` (its absolute term covers float64 underflow). The cast to float64 may read a value below
    its dtype's lambda as 0 (DAZ), losing below lambda^2: n lambda^2 more for n values (exact in float64; one more
    term of the sum)."""
    count = dim_size(tensor, -1)
    computed = tf.reduce_sum(tf.square(float64(tensor)), -1)
    if tensor.dtype != tf.float64:
        computed += float64(count) * _smallest_normal(tensor.dtype) ** 2
        count += 1
    return sum_of_squares_bound(computed, count, tf.float64)


def dim_size(tensor, axis: int):
    """``tensor``'s size along ``axis``: the static int when known, else an int64 scalar tensor (a count's square
    overflows int32 from 46341: `pairs_gamma`)."""
    size = tensor.shape[axis]
    return size if size is not None else tf.shape(tensor, out_type=tf.int64)[axis]


def pair_sum(p, q):
    """sum_ts P_ts Q_ts per unit of (U, T, T) ``p``, ``q``, in float64: each product of two float32 (or narrower)
    values is exact there (float64 values' products round once, and may underflow) and the sum of the T^2 products
    rounds within float64's gamma_{T^2} (`ghost_bound` covers both), so a ghost norm's bound stays finite where a
    float32 sum's would not (float32's gamma_{T^2} is inf from T = 4096)."""
    return tf.reduce_sum(float64(p) * float64(q), [1, 2])


def dot_error(length, dtype) -> tuple:
    """(gamma, alpha) for a dot product of ``length`` terms computed in ``dtype``: its error is within
    gamma sum|x_i y_i| + alpha, gamma = gamma_length, and alpha = 2 length tiny (1 + gamma) the underflow (each of its
    at most 2 length operations may flush a result below the smallest normal tiny to 0, an error below tiny, later
    magnified by at most 1 + gamma). An operand read as 0 (DAZ: x_i below tiny) moves a Gram entry P_ts by below
    tiny sqrt(length) |x_s|, not counted here: in `ghost_bound` its term 2 tiny sqrt(d) |a_s| |g_s| |g_t| is below
    gamma_p a_s^2 |Q_ss| + alpha_p G^2 >= 2 sqrt(2 d gamma_p tiny) |a_s| |g_s| |g_t| (AM-GM), both in its bound."""
    gamma_n = gamma(length, dtype)
    return gamma_n, 2 * length * _smallest_normal(dtype) * (1 + gamma_n)


def ghost_bound(computed, p, q, a_norms, g_norms, error_p: tuple, error_q: tuple):
    """An upper bound on the exact sum_ts p_ts q_ts per unit, from ``computed`` = `pair_sum` (P, Q), P = fl(p),
    Q = fl(q) (U, T, T), where |P_ts - p_ts| <= e^P_ts = gamma_p a_t a_s + alpha_p (``error_p`` = (gamma_p, alpha_p):
    the dot products' relative gamma with Cauchy-Schwarz and their underflow: `dot_error`) and likewise for Q
    with g (``a_norms``, ``g_norms``: (U, T), row norms). Since |pq - PQ| <= e^P |Q| + |P| e^Q + e^P e^Q:

        |computed - exact| <= sum_ts (gamma_{T^2} |P Q| + e^P |Q| + |P| e^Q + e^P e^Q) + 2 T^2 2^-1022,

    the first and last terms the float64 rounding and underflow of the T^2 products and their sum. In O(U T) but
    for two quadratic forms: sum e^P |Q| = gamma_p a^T |Q| a + alpha_p sum |Q| (`quadratic_form`), likewise
    |P| e^Q; with |P_ts| <= (1 + gamma_p) a_t a_s + alpha_p (|p_ts| <= a_t a_s), sum |P| <= (1 + gamma_p) A^2 +
    alpha_p T^2 and sum |P||Q|, sum e^P e^Q <= sums of such products, from S = sum_t a_t g_t, A = sum_t a_t,
    G = sum_t g_t (each plus 2 T 2^-1022: their float64 products' and sums' underflow). The error's float64 terms
    pass through at most 2T + 32 roundings (S, A and G T + 1 each, then squared: gamma_{2T+32}, times
    FLOAT64_MARGIN besides) and at most 64 underflows;
    c + E + 2^-52 |c|, whose float64 addition rounds by at most 2^-53 (|c| + E'), is at least c + E."""
    positions = dim_size(p, 1)
    pairs = tf.cast(positions * positions, tf.float64)
    tiny = _SMALLEST_NORMAL[tf.float64]
    (gamma_p, alpha_p), (gamma_q, alpha_q) = error_p, error_q
    lost = 2 * tf.cast(positions, tf.float64) * tiny
    s = tf.reduce_sum(a_norms * g_norms, 1) + lost
    a2 = tf.square(tf.reduce_sum(a_norms, 1) + lost)
    g2 = tf.square(tf.reduce_sum(g_norms, 1) + lost)
    abs_p = (1 + gamma_p) * a2 + alpha_p * pairs
    abs_q = (1 + gamma_q) * g2 + alpha_q * pairs
    abs_pq = (1 + gamma_p) * (1 + gamma_q) * s * s + (1 + gamma_p) * alpha_q * a2 + alpha_p * abs_q
    e_pq = gamma_p * gamma_q * s * s + gamma_p * alpha_q * a2 + alpha_p * (gamma_q * g2 + alpha_q * pairs)
    error = gamma(positions * positions, tf.float64) * abs_pq + e_pq + alpha_p * abs_q + alpha_q * abs_p
    error += _form_term(gamma_p, a_norms, q) + _form_term(gamma_q, g_norms, p)
    error = (error + (2 * pairs + 64) * tiny) * ((1 + gamma(2 * positions + 32, tf.float64)) * (1 + FLOAT64_MARGIN))
    computed = float64(computed)
    return computed + (error + 2.0**-52 * tf.abs(computed))


def _form_term(gamma_n, x, m):
    """gamma_n `quadratic_form` (x, m); 0 where ``gamma_n`` is 0 (an exact m: `EmbeddingRows`' one-hot P)."""
    if isinstance(gamma_n, float) and gamma_n == 0:
        return 0.0
    return gamma_n * quadratic_form(x, m)


def quadratic_form(x, m):
    """An upper bound (float64, (U,)) on sum_ts x_t |m_ts| x_s per unit, x (U, T) float64 >= 0, m (U, T, T): in
    float32 (m float32 or narrower, cast exactly; x first scaled exactly by a power of two 2^-k below 1, k >= 0
    (`_scaled_down`; the bound times 2^2k), then rounded up: `_rounded_up`; so it overflows only where |m|'s
    entries sum beyond float32's range, and is then inf: the unit is dropped), in float64 for float64 m (unscaled).
    Computed as v = |m| x, then
    sum_t x_t v_t: each of the T^2 terms passes through at most 2T operations (any order, FMA) of unit roundoff u,
    each fl(y) >= (1 - u) y - tiny for y >= 0; v_t loses at most (2T - 1) tiny, then multiplied by x_t; an entry of
    m below tiny may be read as 0 (TensorFlow's CPU kernels flush subnormal inputs), losing below tiny x_t x_s; so
    with X = sum_t x_t the exact form is at most (R + 2T tiny (X + 1) + tiny X^2) (1 + gamma_{2T}) for the computed
    R (float64 arithmetic: FLOAT64_MARGIN)."""
    dtype = tf.float64 if m.dtype == tf.float64 else tf.float32
    scale = 1.0
    if dtype != tf.float64:
        x, scale = _scaled_down(x)
        x = _rounded_up(x)
    computed = tf.reduce_sum(x * tf.linalg.matvec(tf.abs(tf.cast(m, dtype)), x), 1)
    positions = dim_size(x, 1)
    total = tf.reduce_sum(float64(x), 1)
    tiny = _SMALLEST_NORMAL[dtype]
    absolute = 2 * tf.cast(positions, tf.float64) * tiny * (total + 1) + tiny * tf.square(total)
    return (float64(computed) + absolute) * ((1 + gamma(2 * positions, dtype)) * (1 + FLOAT64_MARGIN)) * scale * scale


def _scaled_down(x):
    """(x 2^-k, 2^k) for float64 x (U, T) >= 0, k >= 0 per unit the least making its largest x below 1 (at most
    1022: inf and NaN x stay so). Both factors are powers of two, built from the exponent bits, so the scaling is
    exact (an x below 2^(k - 1022) may lose less than 2^-1022, which `_rounded_up`'s 2^-126 covers) and the
    products by 2^k exact up to overflow."""
    biased = tf.bitwise.right_shift(tf.bitcast(tf.reduce_max(x, 1), tf.int64), 52)
    k = tf.clip_by_value(biased, 1022, 2044) - 1022
    down = tf.bitcast(tf.bitwise.left_shift(1023 - k, 52), tf.float64)
    up = tf.bitcast(tf.bitwise.left_shift(1023 + k, 52), tf.float64)
    return x * down[:, None], up


def _rounded_up(x):
    """float64 x >= 0 as float32 values not below it: x (1 + 2^-23) rounds to nearest twice (float64, float32) within
    (1 + 2^-23) (1 - 2^-53) (1 - 2^-24) > 1 of x; + 2^-126 where the cast flushes or rounds a subnormal (an exact
    sum there; above, a positive addend never rounds it down); inf above float32's range."""
    return tf.cast(x * (1 + 2.0**-23), tf.float32) + 2.0**-126


def sum_rounding(a_norms, g_norms, d_in, d_out, dtype):
    """(r, e), float64 (U,) each, for the clipped sum of an outer product over T positions (``a_norms``, ``g_norms``:
    (U, T) bounds on the rows' norms, ``d_in`` and ``d_out`` wide): the unit's term R of fl(sum_t y'_t z_t^T), y'_t =
    fl(s y_t) the scaled side (a or g; the bound is symmetric) and z the other, the other units scaled 0 (exact
    zeros; the float32 sum over units adds its own rounding, which no unit's bound holds), is within s r + e of
    s sum_t a_t g_t^T (Frobenius) for every scale 0 <= s <= 1. Entry (d, e) is a dot
    product of T terms z_td y'_te (any order, FMA): y'_te is within u s |y_te| of s y_te where normal, else within
    lambda (flushed, or y_te read as 0: s |y_te| < lambda); each of the T products and T - 1 additions rounds
    within u or, below lambda, within lambda, magnified by at most 1 + gamma_T later; a z_td read as 0 moves its
    product by below lambda |y'_te| <= lambda ((1 + u) s |y_te| + lambda). So

        |R_de - s sum_t z_td y_te| <= gamma_{T+1} s sum_t |z_td| |y_te| + lambda (1 + gamma_T) sum_t |z_td|
                                      + lambda sum_t ((1 + u) |y_te| + lambda) + (2T - 1) lambda (1 + gamma_T),

    and by Minkowski over t, r = gamma_{T+1} sum_t |a_t| |g_t| and e = lambda (1 + gamma_{T+1}) (sqrt(d_out)
    sum_t |a_t| + sqrt(d_in) sum_t |g_t| + 3 T sqrt(d_in d_out)). E.g. float32, T = 2, a = 2^-60, s g = (1.5,
    -0.75) 2^-66: R = 1.5 2^-126, twice s a^T g, its second product flushed. e is lambda times a sum of at least 1
    (no float64 underflow); float64 arithmetic: FLOAT64_MARGIN."""
    positions = dim_size(a_norms, 1)
    relative = gamma(positions + 1, dtype) * tf.reduce_sum(a_norms * g_norms, 1)
    sides = tf.sqrt(float64(d_out)) * tf.reduce_sum(a_norms, 1) + tf.sqrt(float64(d_in)) * tf.reduce_sum(g_norms, 1)
    steps = 3 * float64(positions) * tf.sqrt(float64(d_in) * float64(d_out))
    absolute = _smallest_normal(dtype) * (1 + gamma(positions + 1, dtype)) * (sides + steps)
    return relative * (1 + FLOAT64_MARGIN), absolute * (1 + FLOAT64_MARGIN)


def segment_rounding(g_norms, width, dtype):
    """(r, e) as `sum_rounding`'s for `factors.EmbeddingRows`: row v of the unit's term sums the n_v scaled rows
    fl(s g_t) of its id (n_v - 1 additions, any order), so each entry is within gamma_{n_v} s sum_t |g_te| +
    lambda (1 + gamma_T) (2 n_v - 1) of s sum_t g_te (n_v scalings and n_v - 1 additions flushed within lambda each;
    s <= 1: a g_te read as 0 moves s g_te by below lambda), and over the rows, ``width`` d wide: r = gamma_T
    sum_t |g_t|, e = 2 T lambda (1 + gamma_T) sqrt(d)."""
    positions = dim_size(g_norms, 1)
    gamma_t = gamma(positions, dtype)
    absolute = 2 * float64(positions) * _smallest_normal(dtype) * (1 + gamma_t) * tf.sqrt(float64(width))
    relative = gamma_t * tf.reduce_sum(g_norms, 1) * (1 + FLOAT64_MARGIN)
    return relative, tf.fill(tf.shape(relative), absolute * (1 + FLOAT64_MARGIN))


def scaling_rounding(squared_bounds, entries, dtype):
    """(r, e) as `sum_rounding`'s for a materialised W, one value per unit of ``squared_bounds`` (bounds on the very
    W's squares) with ``entries`` values: fl(s W) rounds each once, within u s |W_i| where normal, else within lambda
    (flushed, or W_i read as 0): r = gamma_1 ||W||, e = lambda sqrt(entries)."""
    relative = gamma(1, dtype) * tf.sqrt(squared_bounds) * (1 + FLOAT64_MARGIN)
    absolute = _smallest_normal(dtype) * tf.sqrt(float64(entries)) * (1 + FLOAT64_MARGIN)
    return relative, tf.fill(tf.shape(relative), absolute)


def _smallest_normal(dtype) -> float:
    """lambda, ``dtype``'s smallest normal."""
    return _SMALLEST_NORMAL[tf.as_dtype(dtype)]
