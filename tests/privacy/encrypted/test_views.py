"""A single party's view is independent of the secret: two inputs give indistinguishable views.

Each party's view of an exact truncation of a product, the ReLU fused with it, a comparison of the
ReLU's result (re-shared first) and the servers' input check (its two components of the input and every
array it receives) is collected for 4000 copies of input A and 4000 of input B, each copy freshly
shared. Ring words, mapped to [0, 1), must pass a two-sample Kolmogorov-Smirnov test A vs B and a
one-sample test against uniform; the comparisons' residues mod 127 a chi-square test of homogeneity A
vs B and one of uniformity. A helper also sees the two test vectors of a comparison together: their sum
mod 127 must have its zero (if any) at a uniform position and uniform nonzero entries elsewhere, for A
and B alike (the combined view, not only each array alone). Keys are fixed, so the test is
deterministic. The same statistics applied to the unmasked secrets reject at p < 1e-300, and to a sum
whose zero sits where the carry is decided, so the test has power against leaks of those sizes.
"""

import numpy as np
import pytest
from scipy import stats

from privacy.encrypted.model.intervals import Interval, IntervalBackend
from privacy.encrypted.model.layers import relu
from privacy.encrypted.model.ring import as_ring
from privacy.encrypted.protocol import arithmetic
from privacy.encrypted.protocol.backend import SecureBackend, Value
from privacy.encrypted.protocol.comparison import MODULUS
from privacy.encrypted.protocol.input_check import CheckedBounds, InputCheck

N = 4000
ALPHA = 1e-4  # per test; about 100 tests, so a false alarm has probability < 1 % (and keys are fixed)


class Recording:
    def __init__(self, link, log, peer):
        self.link, self.log, self.peer = link, log, peer

    def send(self, step, arrays):
        self.link.send(step, arrays)

    def recv(self, step, timeout):
        arrays = self.link.recv(step, timeout)
        self.log.extend((self.peer, step, a) for a in arrays)
        return arrays


def uniform01(words):
    return (np.asarray(words, dtype=np.uint64) >> np.uint64(11)).astype(np.float64) / 2.0**53


def residues_look_alike(first, second):
    counts = np.stack([np.bincount(first, minlength=MODULUS), np.bincount(second, minlength=MODULUS)])
    assert counts[:, MODULUS:].sum() == 0  # residues mod p only
    assert stats.chi2_contingency(counts[:, :MODULUS]).pvalue > ALPHA
    assert stats.chisquare(counts.sum(axis=0)[:MODULUS]).pvalue > ALPHA


def combined_looks_uniform(first, second):
    """A helper's sum of one comparison's two test vectors, rows (examples) x R, for the two secrets: the
    zero's position (R when there is none) and the nonzero values are alike for both and uniform."""
    bits = first.shape[1]
    positions = [np.where((rows == 0).any(axis=1), (rows == 0).argmax(axis=1), bits) for rows in (first, second)]
    counts = np.stack([np.bincount(p, minlength=bits + 1) for p in positions])
    assert stats.chi2_contingency(counts[:, counts.sum(axis=0) > 0]).pvalue > ALPHA
    if bits > 1:
        assert stats.chisquare(counts[:, :bits].sum(axis=0)).pvalue > ALPHA  # a uniform position
    values = np.stack([np.bincount(rows[rows != 0], minlength=MODULUS)[1:MODULUS] for rows in (first, second)])
    assert stats.chi2_contingency(values).pvalue > ALPHA
    assert stats.chisquare(values.sum(axis=0)).pvalue > ALPHA


def model(backend, v):
    """relu(floor(v / 2^f)), then [relu(...) >= 0] on its re-shared result: the operations of a hidden layer."""
    return backend.bit(relu(backend, backend.narrow(v)))


@pytest.mark.parametrize("viewer", [0, 1, 2])
def test_views_of_two_different_inputs_are_indistinguishable(run_parties, fixed, viewer):
    a, b = fixed.encode(-3.0), fixed.encode(1234.5)
    secret = np.concatenate([np.full(N, a), np.full(N, b)])
    weight = fixed.encode(np.full(2 * N, 0.75))
    bounds = CheckedBounds.of(as_ring(np.int64(fixed.encode(-4.0))), as_ring(np.int64(fixed.encode(2000.0))))
    intervals = IntervalBackend(fixed)
    model(intervals, Interval.exact(secret * weight, wide=True))  # the range plan of the two products
    ops = tuple(intervals.ops)
    views = []

    def body(p, x, w):
        log = []
        if p.index == viewer:
            p.channel.links = {j: Recording(link, log, j) for j, link in p.channel.links.items()}
            views.append(log)
            log.extend((None, None, c) for c in (x.a, x.b))
        check = InputCheck(p, x, bounds)
        backend = SecureBackend(p, fixed, ops)
        out = model(backend, Value(arithmetic.mul_local(x, w), wide=True))
        p.finish_riders()
        backend.finish()
        assert check.refused() is None
        return out.data

    run_parties(body, secret, weight)
    (view,) = views
    # The input check's digest (32 bytes) is of a component the receiver holds itself; all else is per example.
    view = [(peer, step, a) for peer, step, a in view if a.shape != (32,)]
    rows = [row for _, _, array in view for row in np.asarray(array).reshape(2 * N, -1).T]
    words = [row for row in rows if row.dtype == np.uint64]
    residues = [row for row in rows if row.dtype == np.uint8]
    assert len(words) >= 3 and len(residues) >= 10
    for row in words:
        first, second = uniform01(row[:N]), uniform01(row[N:])
        assert stats.ks_2samp(first, second).pvalue > ALPHA
        assert stats.kstest(uniform01(row), "uniform").pvalue > ALPHA
    for row in residues:
        residues_look_alike(row[:N], row[N:])
    # The helper's combined view of each comparison: the two pair members' vectors, in the order of a step.
    by_step: dict = {}
    for peer, step, array in view:
        if array.dtype == np.uint8 and array.ndim >= 2:
            by_step.setdefault(step, {}).setdefault(peer, []).append(array)
    pairs = [
        (x, y)
        for peers in by_step.values()
        if len(peers) == 2
        for x, y in zip(*peers.values(), strict=True)
        if x.shape == y.shape
    ]
    assert pairs or viewer != 0  # party 0 helps the input check's comparisons
    for first, second in pairs:
        total = ((first.astype(np.int64) + second) % MODULUS).reshape(2 * N, -1).astype(np.uint8)
        combined_looks_uniform(total[:N], total[N:])


def test_the_statistics_detect_an_unmasked_secret(fixed):
    first = uniform01(np.full(N, fixed.encode(-3.0)) + np.arange(N, dtype=np.uint64))
    second = uniform01(np.full(N, fixed.encode(1234.5)) + np.arange(N, dtype=np.uint64))
    assert stats.ks_2samp(first, second).pvalue < 1e-300
    uniform = (np.arange(N) % MODULUS).astype(np.uint8)
    with pytest.raises(AssertionError):  # a residue that depends on the secret (half the range for B)
        residues_look_alike(uniform, (np.arange(N) % 64).astype(np.uint8))


def test_the_combined_view_statistics_detect_an_unrotated_sum():
    """Without the rotation the zero sits at the bit where the carry is decided: about geometric for
    uniform operands, which the combined-view check must reject (the review's mutation, C1)."""
    rng = np.random.default_rng(3)
    bits = 12
    rows = rng.integers(1, MODULUS, size=(2 * N, bits)).astype(np.uint8)
    position = np.minimum(rng.geometric(0.5, size=2 * N) - 1, bits - 1)
    has_zero = rng.random(2 * N) < 0.5
    rows[np.flatnonzero(has_zero), position[has_zero]] = 0
    with pytest.raises(AssertionError):
        combined_looks_uniform(rows[:N], rows[N:])
    rotated = np.stack([np.roll(r, k) for r, k in zip(rows, rng.integers(0, bits, size=2 * N), strict=True)])
    combined_looks_uniform(rotated[:N], rotated[N:])  # the same with a uniform rotation passes
