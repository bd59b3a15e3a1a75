"""Directed rounding of the step's constants (`privacy.keras.rounding`) against numpy's nextafter and exact
rationals, in every float dtype a tensor can have."""

from fractions import Fraction

import numpy as np
import pytest
import tensorflow as tf

from privacy.keras.rounding import rounded_down, rounded_up

RNG = np.random.default_rng(28)
VALUES = [
    *(Fraction(1.1) * Fraction(1.0) / b for b in range(1, 300)),  # sigma C / B
    *(Fraction(1, b) for b in range(1, 300)),  # 1 / B
    *(float(v) for v in RNG.uniform(0, 10, 200)),
    *(Fraction(int(n), int(d)) for n, d in RNG.integers(1, 2**40, (200, 2))),
    0.0,
    Fraction(1, 2**30),
]


@pytest.mark.parametrize("dtype", [tf.float16, tf.float32, tf.float64])
def test_rounded_up_and_down_are_the_neighbours_of_the_exact_value(dtype):
    kind = dtype.as_numpy_dtype
    for value in VALUES:
        up, down = rounded_up(value, dtype), rounded_down(value, dtype)
        assert up.dtype == kind and down.dtype == kind
        assert Fraction(float(down)) <= Fraction(value) <= Fraction(float(up)), value
        if Fraction(float(up)) != Fraction(value):  # inexact: they are adjacent values of the dtype
            assert np.nextafter(down, kind(np.inf)) == up, value


def test_bfloat16_rounds_in_the_right_direction_by_at_most_one_step():
    for value in VALUES:
        up, down = rounded_up(value, tf.bfloat16), rounded_down(value, tf.bfloat16)
        assert Fraction(float(down)) <= Fraction(value) <= Fraction(float(up)), value
        steps = int(np.array([up]).view(np.uint16)[0]) - int(np.array([down]).view(np.uint16)[0])
        assert steps == (0 if Fraction(float(up)) == Fraction(value) else 1), value


def test_a_step_constant_rounded_to_nearest_would_be_on_the_wrong_side():
    """The cases the module exists for: float32(1.1 / 1000) < 1.1 / 1000 and float32(1 / 1000) > 1 / 1000."""
    stddev, inverse = Fraction(1.1) / 1000, Fraction(1, 1000)
    assert Fraction(float(np.float32(float(stddev)))) < stddev < Fraction(float(rounded_up(stddev, tf.float32)))
    assert Fraction(float(np.float32(float(inverse)))) > inverse > Fraction(float(rounded_down(inverse, tf.float32)))


def test_negative_and_overflowing_values_are_refused():
    with pytest.raises(ValueError, match="-1"):
        rounded_up(-1.0, tf.float32)
    with pytest.raises(ValueError, match="largest float16"):
        rounded_up(70000.0, tf.float16)


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16, tf.float32, tf.float64])
def test_clip_factors_never_exceed_the_exact_factor_down_to_the_subnormals(dtype):
    """C / D_u times 1 / B in ``dtype`` is at most its exact value, for divisors whose factor falls among the
    dtype's subnormals too (spacing 2^-24 in float16: rounding to nearest there was up to 1.5 times the factor, a
    unit then adding 1.29 C under float16 with 1 / 256)."""
    from privacy.keras.clipping import clip_scale

    info = np.finfo(dtype.as_numpy_dtype) if dtype != tf.bfloat16 else None
    tiny = float(info.smallest_subnormal) if info is not None else 2.0**-133
    multiplier = Fraction(1, 256)
    factors = [Fraction(k, 4) * Fraction(tiny) for k in range(1, 64)] + [Fraction(1, 3) ** e for e in range(1, 30)]
    divisors = [float(multiplier / f) for f in factors if 1 < multiplier / f < Fraction(np.finfo(np.float64).max)]
    scale = clip_scale(tf.constant(divisors, tf.float64), 1.0, tf.constant([True] * len(divisors)), dtype, multiplier)
    for divisor, value in zip(divisors, scale.numpy().astype(np.float64), strict=True):
        assert Fraction(float(value)) <= Fraction(1) / Fraction(divisor) * multiplier, (divisor, value)


def test_the_ghost_sums_gamma_for_a_length_known_only_when_the_step_runs_past_int32():
    """gamma_{T^2} of T = 46341 positions unknown at trace time (T^2 > 2^31: an int32 product wrapped negative, a
    negative gamma lowering the bound) equals the static count's."""
    from privacy.keras import roundoff

    step = tf.function(
        lambda a: roundoff.pairs_gamma(a, tf.float32), input_signature=[tf.TensorSpec([1, None, 1], tf.float32)]
    )
    for positions in (3, 46340, 46341, 70000):
        got = float(step(tf.zeros([1, positions, 1])).numpy())
        assert got >= roundoff.gamma(positions * positions, tf.float32) > 0, positions
