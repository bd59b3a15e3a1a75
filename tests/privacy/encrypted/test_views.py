"""A single party's view is independent of the secret: two inputs give indistinguishable views.

Each party's view of a truncated product, a ReLU whose comparison rides on the truncation's round, the
re-sharing of its result and a second ReLU (its two components of the input and every array it
receives) is collected for 4000 copies of input A and 4000 of input B, each copy freshly shared. Ring
words, mapped to [0, 1), must pass a two-sample Kolmogorov-Smirnov test A vs B and a one-sample test
against uniform; the comparisons' residues mod 127 a chi-square test of homogeneity A vs B and one of
uniformity. Keys are fixed, so the test is deterministic. The same statistics applied to the unmasked
secrets reject at p < 1e-300, so the test has power against a leak of that size.
"""

import numpy as np
import pytest
from scipy import stats

from privacy.encrypted.protocol import arithmetic, comparison
from privacy.encrypted.protocol.comparison import MODULUS

N = 4000
ALPHA = 1e-4  # per test; about 100 tests, so a false alarm has probability < 1 % (and keys are fixed)


class Recording:
    def __init__(self, link, log):
        self.link, self.log = link, log

    def send(self, step, arrays):
        self.link.send(step, arrays)

    def recv(self, step, timeout):
        arrays = self.link.recv(step, timeout)
        self.log.extend(arrays)
        return arrays


def uniform01(words):
    return (np.asarray(words, dtype=np.uint64) >> np.uint64(11)).astype(np.float64) / 2.0 ** 53


def residues_look_alike(first, second):
    counts = np.stack([np.bincount(first, minlength=MODULUS), np.bincount(second, minlength=MODULUS)])
    assert counts[:, MODULUS:].sum() == 0  # residues mod p only
    assert stats.chi2_contingency(counts[:, :MODULUS]).pvalue > ALPHA
    assert stats.chisquare(counts.sum(axis=0)[:MODULUS]).pvalue > ALPHA


@pytest.mark.parametrize("viewer", [0, 1, 2])
def test_views_of_two_different_inputs_are_indistinguishable(run_parties, fixed, viewer):
    a, b = fixed.encode(-3.0), fixed.encode(1234.5)
    secret = np.concatenate([np.full(N, a), np.full(N, b)])
    weight = fixed.encode(np.full(2 * N, 0.75))
    views = []

    def body(p, x, w):
        log = []
        if p.index == viewer:
            p.channel.links = {j: Recording(link, log) for j, link in p.channel.links.items()}
            views.append(log)
            log.extend([x.a, x.b])
        product = arithmetic.truncate(p, arithmetic.mul_local(x, w), shift=fixed.frac_bits, bound_bits=44)
        (y,) = comparison.gate(p, comparison.compare(p, product, 12), [product.value()])
        y = arithmetic.reshare_pair(p, y)
        (z,) = comparison.gate(p, comparison.compare(p, y, 12), [y.value()])
        return z

    run_parties(body, secret, weight)
    (view,) = views
    rows = [row for array in view for row in np.asarray(array).reshape(2 * N, -1).T]
    words = [row for row in rows if row.dtype == np.uint64]
    residues = [row for row in rows if row.dtype == np.uint8]
    assert len(words) >= 3 and (viewer == 2 or len(residues) >= 10)
    for row in words:
        first, second = uniform01(row[:N]), uniform01(row[N:])
        assert stats.ks_2samp(first, second).pvalue > ALPHA
        assert stats.kstest(uniform01(row), "uniform").pvalue > ALPHA
    for row in residues:
        residues_look_alike(row[:N], row[N:])


def test_the_statistics_detect_an_unmasked_secret(fixed):
    first = uniform01(np.full(N, fixed.encode(-3.0)) + np.arange(N, dtype=np.uint64))
    second = uniform01(np.full(N, fixed.encode(1234.5)) + np.arange(N, dtype=np.uint64))
    assert stats.ks_2samp(first, second).pvalue < 1e-300
    uniform = (np.arange(N) % MODULUS).astype(np.uint8)
    with pytest.raises(AssertionError):  # a residue that depends on the secret (half the range for B)
        residues_look_alike(uniform, (np.arange(N) % 64).astype(np.uint8))
