"""A single party's view is independent of the secret: two inputs give indistinguishable views.

Party 1's view of a ReLU and a truncated product (its two components of the input and every word it
receives) is collected for 4000 copies of input A and 4000 of input B, each copy freshly shared. Each
word, mapped to [0, 1), must pass a two-sample Kolmogorov-Smirnov test A vs B and a one-sample test
against uniform. Keys are fixed, so the test is deterministic. The same statistic applied to the
unmasked secrets rejects at p < 1e-300, so the test has power against a leak of that size.
"""

import numpy as np
import pytest
from scipy import stats

from privacy.encrypted import arithmetic, comparison

N = 4000
ALPHA = 1e-4  # per test; about 40 tests, so a false alarm has probability < 0.4 % (and keys are fixed)


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
        y = comparison.relu(p, x)
        return arithmetic.truncate(p, arithmetic.mul(p, y, w), fixed.frac_bits)

    run_parties(body, secret, weight)
    (view,) = views
    rows = [row for words in view for row in np.asarray(words).reshape(-1, 2 * N)]
    assert len(rows) >= 15  # input components and every message of the ReLU and the truncated product
    for row in rows:
        first, second = uniform01(row[:N]), uniform01(row[N:])
        assert stats.ks_2samp(first, second).pvalue > ALPHA
        assert stats.kstest(uniform01(row), "uniform").pvalue > ALPHA


def test_the_statistic_detects_an_unmasked_secret(fixed):
    first = uniform01(np.full(N, fixed.encode(-3.0)) + np.arange(N, dtype=np.uint64))
    second = uniform01(np.full(N, fixed.encode(1234.5)) + np.arange(N, dtype=np.uint64))
    assert stats.ks_2samp(first, second).pvalue < 1e-300
