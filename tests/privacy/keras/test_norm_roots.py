"""Row-norm bounds are roots rounded up (`roundoff.root_bound`): the float64 root of a squares' bound, rounded to
nearest, can lie an ulp below the exact root, so a bound taken from it could fall below the exact norm."""

from fractions import Fraction

import numpy as np
import tensorflow as tf

from privacy.keras import factors, roundoff


def _rounded_below(bounds) -> np.ndarray:
    """Where numpy's correctly rounded float64 sqrt of ``bounds`` is below the exact root (its square, exact in
    Fractions, below the bound)."""
    return np.array([Fraction(float(np.sqrt(b))) ** 2 < Fraction(float(b)) for b in bounds.ravel()]).reshape(
        bounds.shape
    )


def _check_roots(norms, bounds, rows) -> None:
    """Each norm is the exact root of its squares' bound or above it, by at most one ulp of the rounded root, and at
    least the exact norm of its row (Fractions)."""
    for norm, bound, row in zip(norms.ravel(), bounds.ravel(), rows.reshape(-1, rows.shape[-1]), strict=True):
        assert Fraction(float(norm)) ** 2 >= Fraction(float(bound)), (norm, bound)
        assert norm <= np.nextafter(np.sqrt(bound), np.inf), (norm, bound)
        assert Fraction(float(norm)) ** 2 >= sum((Fraction(float(v)) ** 2 for v in row), Fraction(0)), norm


def test_one_position_row_norms_are_never_below_the_root_of_their_bound():
    """T = 1 (`OuterProduct.row_norms` from the squares' one pass): 400 rows of each side, of which many have a
    bound whose rounded root is an ulp below its exact root (found with Fractions); every norm bound is at least
    that exact root (and the row's exact norm) and at most an ulp above the rounded root; 0, inf and NaN stay."""
    rng = np.random.default_rng(37)
    a = (rng.normal(size=(400, 1, 67)) * 10 ** rng.uniform(-3, 3, (400, 1, 1))).astype(np.float32)
    g = (rng.normal(size=(400, 1, 10)) * 10 ** rng.uniform(-3, 3, (400, 1, 1))).astype(np.float32)
    product = factors.OuterProduct(tf.constant(a), tf.constant(g), lambda m: m)
    for side, norms, (_, bounds) in zip((a, g), product.row_norms(), product._one_position(), strict=True):
        norms, bounds = norms.numpy(), bounds.numpy()
        below = _rounded_below(bounds)
        assert below.sum() >= 50, below.sum()  # the rows the rounding up is for
        _check_roots(norms, bounds, side)
    edges = roundoff.root_bound(tf.constant([0.0, np.inf, np.nan, 4.0], tf.float64)).numpy()
    assert edges[0] == 0 and edges[1] == np.inf and np.isnan(edges[2]) and edges[3] == np.nextafter(2.0, 3.0), edges


def test_row_norms_over_several_positions_are_never_below_the_root_of_their_bound():
    """`roundoff.row_norms` (ghost norms, embeddings): the same for (U, T) = (60, 5) rows of 33 entries."""
    rng = np.random.default_rng(38)
    values = (rng.normal(size=(60, 5, 33)) * 10 ** rng.uniform(-3, 3, (60, 5, 1))).astype(np.float32)
    norms, bounds = roundoff.row_norms(tf.constant(values)).numpy(), roundoff.last_axis_squares(values).numpy()
    assert _rounded_below(bounds).sum() >= 50
    _check_roots(norms, bounds, values)
