"""Per-example gradients of one variable, in a factored form that rarely needs materialising.

A *clipping unit* is one example, or one microbatch when `num_microbatches` is set. Each factor below
describes the gradient of every unit u with respect to one variable and answers two questions:

* ``squared_norms()``: ||grad_u||^2 for every unit, shape (U,), as computed (reported; may be far below the exact
  norm where a ghost norm's terms cancel);
* ``squared_norm_bounds()``: float64 (U,), an upper bound on the exact ||grad_u||^2 (real arithmetic on the float
  inputs the factor holds; `roundoff`), which the clipping divides by;
* ``rounding()``: (r, e), float64 (U,) each: the unit's term of ``clipped_sum(scale)`` is within scale_u r_u + e_u
  of scale_u grad_u exactly for every scale_u in [0, 1], r the relative rounding and e the underflow (flushed
  subnormals; `roundoff.sum_rounding`, `roundoff.segment_rounding`, `roundoff.scaling_rounding`); a subnormal
  scale_u that a kernel reads as 0 makes the term 0 instead;
* ``clipped_sum(scale)``: sum_u scale_u * grad_u, shaped like the variable;
* ``summed_rows()``: the sizes of the axes one entry of ``clipped_sum`` adds over (units, and positions where it
  sums over them), ints where known at trace time, else scalar tensors (`clipping` refuses too many);
* ``kept(keep)``: the same with the units where ``keep`` is False set to zero by selection (so that a
  non-finite unit contributes 0, not 0 x inf = NaN) in ``clipped_sum`` and ``materialized``; `OuterProduct` and
  `OutputRows` select lazily, so their ``squared_norms`` after ``kept`` are still every unit's (the clipping takes
  the norms before it drops units);
* ``materialized()``: every unit's gradient, shape (U, *variable_shape) (for variables that several
  layers use, e.g. tied weights, whose per-example gradients add up: `combined`).

A one-position Dense bias (`OutputRows`) shares its kernel's `OuterProduct`: the output norms and the prepared
(scaled or selected) output side of the clipped sum.

`OuterProduct` is the ghost-norm trick (Goodfellow 2015; Li et al. 2022, "Large language models can be
strong differentially private learners", Sec. 4): the gradient of a linear map z = a W summed over T
positions is A^T G, and ||A^T G||_F^2 = <A A^T, G G^T> costs O(T^2 (d_in + d_out)) instead of
O(T d_in d_out). It picks whichever of the two is cheaper for the shapes at hand. The clipped sum is
computed from the same factors (Bu et al. 2023, "book-keeping"), so no second backward pass is needed.
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf

from privacy.keras import roundoff
from privacy.keras.masking import scale_rows, select_rows


def dim(tensor, axis: int = 0):
    """``tensor``'s size along ``axis``: the static int when known, else a scalar tensor."""
    size = tensor.shape[axis]
    return size if size is not None else tf.shape(tensor)[axis]


def _group(tensor, units, merge_positions: bool):
    """(b, T, ...) -> (units, b/units * T, ...) when merging positions, else sums (b, ...) -> (units, ...)."""
    rest = [dim(tensor, axis) for axis in range(2 if merge_positions else 1, tensor.shape.rank)]
    if merge_positions:
        return tf.reshape(tensor, [units, -1, *rest])
    return tf.reduce_sum(tf.reshape(tensor, [units, -1, *rest]), axis=1)


def _entries(tensor):
    """The number of values in each row of ``tensor``: an int where known at trace time, else a scalar tensor."""
    count = tensor.shape[1:].num_elements()
    return count if count is not None else tf.reduce_prod(tf.shape(tensor)[1:])


def ghost_is_cheaper(positions, d_in, d_out) -> bool:
    """Whether ghost norms, O(T^2 (d_in + d_out)), cost less than materialising A^T G, O(T d_in d_out), per unit
    (True when a size is unknown at trace time)."""
    if positions is None or d_in is None or d_out is None:
        return True
    return positions * positions * (d_in + d_out) < positions * d_in * d_out


class OuterProduct:
    """grad_u = A_u^T G_u with A: (U, T, d_in), G: (U, T, d_out); ``to_variable`` maps (d_in, d_out) to the variable."""

    def __init__(self, a, g, to_variable: Callable[[tf.Tensor], tf.Tensor]):
        self.a = tf.stop_gradient(tf.cast(a, g.dtype))
        self.g = g
        self.to_variable = to_variable
        self._per_unit = None
        self._g_squares = None
        self._g_gram = None
        self._memo = {}
        self._keep = None  # set by `kept`: the units to keep, applied where the clipped sum touches the rows
        self._kept = None  # (keep, the factor `kept` made for it)
        self._sides = None  # (scale, `clipped_sides` for it)
        self._ghost = None  # (`roundoff.pair_sum` (P, G G^T) in float64, P = fl(A A^T)), computed once
        self._norms = None  # float64 row norms (|a_t|, |g_t|), (U, T) each
        self._squares = None  # one position: per side, (its squared row norms computed, their float64 bounds)

    def output_squared_norms(self):
        """sum_t ||g_ut||^2 for every unit, computed once (the norms of one position's Dense bias, too)."""
        if self._g_squares is None:
            if self.a.shape[1] == 1:
                self._g_squares = self._one_position()[1][0][:, 0]
            else:
                self._g_squares = tf.reduce_sum(tf.square(self.g), [1, 2])
        return self._g_squares

    def _one_position(self):
        """T = 1: per side (A, G), (the squared row norms computed, float64 upper bounds on them), (U, 1) each, from
        one pass of squares (`roundoff.squares_and_bounds`); computed once."""
        if self._squares is None:
            self._squares = tuple(roundoff.squares_and_bounds(side) for side in (self.a, self.g))
        return self._squares

    def grouped(self, units) -> "OuterProduct":
        return OuterProduct(_group(self.a, units, True), _group(self.g, units, True), self.to_variable)

    def _use_ghost(self) -> bool:
        """Ghost norms and the clipped sum from the two sides, or both from the materialised A^T G: decided at trace
        time from the static shapes (never from the data), the same for the norms and the sum."""
        return ghost_is_cheaper(self.a.shape[1], self.a.shape[2], self.g.shape[2])

    def squared_norms(self):
        if self._use_ghost():
            if self.a.shape[1] == 1:  # one position: ||a||^2 ||g||^2
                return self._one_position()[0][0][:, 0] * self.output_squared_norms()
            return tf.cast(self.ghost()[0], self.g.dtype)
        return tf.reduce_sum(tf.square(self.per_unit()), [1, 2])

    def squared_norm_bounds(self):
        """T = 1: ||a||^2 ||g||^2 in float64 (no cancellation); ghost: `roundoff.ghost_bound` (the dot products of
        P = A A^T d_in long, of G G^T d_out long); materialised: the squares of the very values summed."""
        if not self._use_ghost():
            return roundoff.squares(self.per_unit())
        a_norms, g_norms = self.row_norms()
        if self.a.shape[1] == 1:
            return tf.square(a_norms[:, 0] * g_norms[:, 0]) * (1 + roundoff.FLOAT64_MARGIN)
        computed, p = self.ghost()
        dtype = self.g.dtype
        return roundoff.ghost_bound(
            computed,
            p,
            self.output_gram(),
            a_norms,
            g_norms,
            roundoff.dot_error(self.a.shape[2], dtype),
            roundoff.dot_error(self.g.shape[2], dtype),
        )

    def rounding(self):
        if not self._use_ghost():
            return roundoff.scaling_rounding(self.squared_norm_bounds(), _entries(self.per_unit()), self.g.dtype)
        widths = roundoff.dim_size(self.a, 2), roundoff.dim_size(self.g, 2)
        return roundoff.sum_rounding(*self.row_norms(), *widths, self.g.dtype)

    def ghost(self):
        """(sum_ts P_ts (G G^T)_ts in float64 (`roundoff.pair_sum`), P = fl(A A^T)) per unit, computed once."""
        if self._ghost is None:
            p = tf.einsum("utd,usd->uts", self.a, self.a)
            self._ghost = (roundoff.pair_sum(p, self.output_gram()), p)
        return self._ghost

    def row_norms(self):
        """Upper bounds on (|a_ut|, |g_ut|), float64 (U, T) each (`roundoff.row_norms`); computed once. For one
        position, where they make the bound itself, from the same squares as the computed norms (`_one_position`;
        float32 block sums: within gamma_{k+1} <= gamma_65 < 3.9e-6 of float64 sums), their roots rounded up
        (`roundoff.root_bound`: never below the exact root of the squares' bound)."""
        if self._norms is None:
            if self.a.shape[1] == 1:
                self._norms = tuple(roundoff.root_bound(bound) for _, bound in self._one_position())
            else:
                self._norms = (roundoff.row_norms(self.a), roundoff.row_norms(self.g))
        return self._norms

    def clipped_sum(self, scale):
        if not self._use_ghost():
            return self.to_variable(tf.einsum("u,ude->de", scale, self._rows(self.per_unit())))
        a, g, _, _ = self.clipped_sides(scale)
        return self.to_variable(
            tf.matmul(tf.reshape(a, [-1, dim(a, 2)]), tf.reshape(g, [-1, dim(g, 2)]), transpose_a=True)
        )

    def summed_rows(self) -> tuple:
        return (dim(self.a), dim(self.a, 1)) if self._use_ghost() else (dim(self.a),)

    def clipped_sides(self, scale):
        """(A, G, scale, whether G is the scaled side) for the clipped sum A^T G over all units' positions: the
        smaller side scaled. Where units are dropped (`kept`), their scale is 0, applied by `scale_rows` (zeros even
        where a row holds inf or NaN), and the other side is selected: one pass over each side, as without dropping.
        Computed once per ``scale`` tensor (a one-position Dense bias sums the same G: `OutputRows`)."""
        if self._sides is not None and self._sides[0] is scale:
            return self._sides[1]
        given = scale
        if self._keep is not None:
            scale = tf.where(self._keep, scale, tf.zeros_like(scale))
        g_scaled = self.g.shape[2] is not None and self.a.shape[2] is not None and self.g.shape[2] < self.a.shape[2]
        if g_scaled:
            sides = self._rows(self.a), scale_rows(scale, self.g), scale, True
        else:
            sides = scale_rows(scale, self.a), self._rows(self.g), scale, False
        self._sides = (given, sides)
        return sides

    def materialized(self):
        return tf.vectorized_map(self.to_variable, self._rows(self.per_unit()))

    def per_unit(self):
        """Every unit's A^T G, (U, d_in, d_out), all units (`kept` drops rows where they are used); computed once."""
        if self._per_unit is None:
            self._per_unit = tf.einsum("utd,ute->ude", self.a, self.g)
        return self._per_unit

    def output_gram(self):
        """G G^T per unit, (U, T, T), all units; computed once."""
        if self._g_gram is None:
            self._g_gram = tf.einsum("ute,use->uts", self.g, self.g)
        return self._g_gram

    def kept(self, keep) -> "OuterProduct":
        """This factor with the units where ``keep`` is False dropped; the same object for the same ``keep``."""
        if self._kept is not None and self._kept[0] is keep:
            return self._kept[1]
        out = OuterProduct(self.a, self.g, self.to_variable)
        out._per_unit, out._g_squares, out._g_gram = self._per_unit, self._g_squares, self._g_gram
        out._keep = keep if self._keep is None else keep & self._keep
        self._kept = (keep, out)
        return out

    def _rows(self, tensor):
        return tensor if self._keep is None else select_rows(self._keep, tensor)

    def once(self, method: str, key):
        """``self.<method>(key)``, computed once per ``key`` object (for the `FeatureSlice`s sharing this product)."""
        if (method, id(key)) not in self._memo:  # the key is held with the value: its id stays unique
            self._memo[method, id(key)] = (key, getattr(self, method)(key))
        return self._memo[method, id(key)][1]


class OutputRows:
    """The per-unit gradients G_u of a bias added at one position of a linear map (a Dense bias on (batch, d_in)
    inputs), from that map's `OuterProduct`: its norms are the kernel factor's output norms, and its clipped sum
    sums the G side that the kernel's clipped sum prepares (scaled, or selected), with no pass of its own over G."""

    def __init__(self, kernel: OuterProduct):
        self.kernel = kernel
        self.g = kernel.g

    def grouped(self, units) -> "PerExample":
        return PerExample(self.materialized()).grouped(units)

    def squared_norms(self):
        return self.kernel.output_squared_norms()

    def squared_norm_bounds(self):
        return tf.square(self.kernel.row_norms()[1][:, 0]) * (1 + roundoff.FLOAT64_MARGIN)

    def rounding(self):
        return roundoff.scaling_rounding(self.squared_norm_bounds(), _entries(self.g), self.g.dtype)

    def clipped_sum(self, scale):
        if not self.kernel._use_ghost():
            return PerExample(self.materialized()).clipped_sum(scale)
        _, g, scale, g_scaled = self.kernel.clipped_sides(scale)
        g = tf.reshape(g, [dim(g), -1])
        return tf.reduce_sum(g, 0) if g_scaled else tf.tensordot(scale, g, axes=1)

    def summed_rows(self) -> tuple:
        return (dim(self.g),)

    def materialized(self):
        return tf.reshape(self.kernel._rows(self.g), [dim(self.g), -1])

    def kept(self, keep) -> "OutputRows":
        return OutputRows(self.kernel.kept(keep))


class FeatureSlice:
    """One variable's factor in an `OuterProduct` whose A holds several variables' inputs side by side, all with the
    same G (an LSTM's X, H_prev and a column of ones for W, U and b): the variable's gradient is A_k^T G with A_k =
    A[..., start:stop]. The product decides once between ghost norms and materialising (for the sum of the d_k),
    computes G G^T once (ghost norms: each variable's own <A_k A_k^T, G G^T>, so the variables' norms add up to the
    product's and stay exact one by one) and the clipped sums by one matmul of the kept units, sliced by rows."""

    def __init__(self, whole: OuterProduct, start: int, stop: int, to_variable: Callable[[tf.Tensor], tf.Tensor]):
        self.whole, self.start, self.stop, self.to_variable = whole, start, stop, to_variable
        self.g = whole.g
        self._ghost = None  # (`roundoff.pair_sum` (P_k, G G^T), P_k = fl(A_k A_k^T), |a_kt|)

    def _with(self, whole) -> "FeatureSlice":
        return FeatureSlice(whole, self.start, self.stop, self.to_variable)

    def grouped(self, units) -> "FeatureSlice":
        return self._with(self.whole.once("grouped", units))

    def squared_norms(self):
        if self.whole._use_ghost():
            return tf.cast(self.ghost()[0], self.g.dtype)
        return tf.reduce_sum(tf.square(self.whole.per_unit()[:, self.start : self.stop]), [1, 2])

    def squared_norm_bounds(self):
        """`roundoff.ghost_bound` of this slice's <A_k A_k^T, G G^T>, or the squares of its materialised rows."""
        if not self.whole._use_ghost():
            return roundoff.squares(self.whole.per_unit()[:, self.start : self.stop])
        computed, p, a_norms = self.ghost()
        dtype = self.g.dtype
        error_p, error_q = roundoff.dot_error(self.stop - self.start, dtype), roundoff.dot_error(self.g.shape[2], dtype)
        g_norms = self.whole.row_norms()[1]
        return roundoff.ghost_bound(computed, p, self.whole.output_gram(), a_norms, g_norms, error_p, error_q)

    def rounding(self):
        """The product's matmul, sliced: each of this slice's entries sums over the T positions."""
        d_out = roundoff.dim_size(self.g, 2)
        if not self.whole._use_ghost():
            return roundoff.scaling_rounding(self.squared_norm_bounds(), (self.stop - self.start) * d_out, self.g.dtype)
        g_norms = self.whole.row_norms()[1]
        return roundoff.sum_rounding(self.ghost()[2], g_norms, self.stop - self.start, d_out, self.g.dtype)

    def ghost(self):
        if self._ghost is None:
            a = self.whole.a[..., self.start : self.stop]
            p = tf.einsum("utd,usd->uts", a, a)
            self._ghost = (roundoff.pair_sum(p, self.whole.output_gram()), p, roundoff.row_norms(a))
        return self._ghost

    def clipped_sum(self, scale):
        return self.to_variable(self.whole.once("clipped_sum", scale)[self.start : self.stop])

    def summed_rows(self) -> tuple:
        return self.whole.summed_rows()

    def materialized(self):
        return tf.vectorized_map(self.to_variable, self.whole._rows(self.whole.per_unit()[:, self.start : self.stop]))

    def kept(self, keep) -> "FeatureSlice":
        return self._with(self.whole.once("kept", keep))


class PerExample:
    """Materialised gradients: (U, *variable_shape)."""

    def __init__(self, grads):
        self.grads = grads

    def grouped(self, units) -> "PerExample":
        return PerExample(_group(self.grads, units, False))

    def squared_norms(self):
        return tf.reduce_sum(tf.reshape(tf.square(self.grads), [dim(self.grads), -1]), axis=1)

    def squared_norm_bounds(self):
        return roundoff.squares(self.grads)

    def rounding(self):
        return roundoff.scaling_rounding(self.squared_norm_bounds(), _entries(self.grads), self.grads.dtype)

    def clipped_sum(self, scale):
        return tf.tensordot(scale, self.grads, axes=1)

    def summed_rows(self) -> tuple:
        return (dim(self.grads),)

    def materialized(self):
        return self.grads

    def kept(self, keep) -> "PerExample":
        return PerExample(select_rows(keep, self.grads))


class EmbeddingRows:
    """Row-sparse gradients of an embedding table: row ``ids[u, t]`` receives ``g[u, t]``.

    ||grad_u||^2 = sum_{t,s} [ids_t == ids_s] <g_t, g_s>, without materialising (U, vocab, dim): a ghost norm whose A
    is one-hot (P = [ids_t == ids_s], exact; `roundoff.ghost_bound` with gamma_P = 0 and |a_t| = 1).
    """

    def __init__(self, ids, g, vocabulary_size: int):
        self.ids = tf.stop_gradient(tf.cast(ids, tf.int32))
        self.g = g
        self.vocabulary_size = vocabulary_size
        self._computed = None  # (`roundoff.pair_sum` (P, Q), P, Q = fl(G G^T))
        self._g_norms = None  # `roundoff.row_norms` of g, (U, T), computed once

    def grouped(self, units) -> "EmbeddingRows":
        return EmbeddingRows(
            _group(self.ids[..., None], units, True)[..., 0], _group(self.g, units, True), self.vocabulary_size
        )

    def squared_norms(self):
        return tf.cast(self._ghost()[0], self.g.dtype)

    def squared_norm_bounds(self):
        computed, same, gg = self._ghost()
        g_norms = self.g_norms()
        error_q = roundoff.dot_error(self.g.shape[2], self.g.dtype)
        return roundoff.ghost_bound(computed, same, gg, tf.ones_like(g_norms), g_norms, (0.0, 0.0), error_q)

    def rounding(self):
        """The scaled rows of one id, summed: within a unit, T of them at most."""
        return roundoff.segment_rounding(self.g_norms(), roundoff.dim_size(self.g, 2), self.g.dtype)

    def g_norms(self):
        """Upper bounds on |g_ut|, float64 (U, T) (`roundoff.row_norms`); computed once for the bound and the
        rounding."""
        if self._g_norms is None:
            self._g_norms = roundoff.row_norms(self.g)
        return self._g_norms

    def _ghost(self):
        if self._computed is None:
            same = tf.cast(tf.equal(self.ids[:, :, None], self.ids[:, None, :]), self.g.dtype)
            gg = tf.einsum("ute,use->uts", self.g, self.g)
            self._computed = (roundoff.pair_sum(same, gg), same, gg)
        return self._computed

    def clipped_sum(self, scale):
        rows = tf.reshape(self.g * scale[:, None, None], [-1, self.g.shape[-1]])
        return tf.math.unsorted_segment_sum(rows, tf.reshape(self.ids, [-1]), self.vocabulary_size)

    def summed_rows(self) -> tuple:
        return dim(self.g), dim(self.g, 1)

    def materialized(self):
        units, rows = dim(self.g), self.vocabulary_size
        segments = self.ids + tf.range(units)[:, None] * rows
        table = tf.math.unsorted_segment_sum(
            tf.reshape(self.g, [-1, self.g.shape[-1]]), tf.reshape(segments, [-1]), units * rows
        )
        return tf.reshape(table, [units, rows, self.g.shape[-1]])

    def kept(self, keep) -> "EmbeddingRows":
        return EmbeddingRows(self.ids, select_rows(keep, self.g), self.vocabulary_size)


def combined(first, second) -> PerExample:
    """The factor of a variable used by two layers: each unit's gradients of both uses, added."""
    return PerExample(first.materialized() + tf.cast(second.materialized(), first.materialized().dtype))
