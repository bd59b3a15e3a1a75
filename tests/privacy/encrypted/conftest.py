"""Fixtures for the encrypted-inference tests: run party code on shares and open the results."""

import numpy as np
import pytest

from privacy.encrypted.arithmetic import open_share
from privacy.encrypted.local import LocalParties
from privacy.encrypted.randomness import Prf
from privacy.encrypted.ring import FixedPoint
from privacy.encrypted.shares import AShare, BShare, reconstruct, reconstruct_xor, share

FIXED = FixedPoint(16)
TEST_KEYS = [bytes([i + 1]) * 16 for i in range(3)]


class Runner:
    """Runs ``fn(party, *shares)`` on three in-process parties; reconstructs what it returns.

    Keys and the data owner's randomness are fixed, so every run is reproducible.
    """

    def __init__(self):
        self.parties = LocalParties(range_bits=FIXED.range_bits, keys=TEST_KEYS, timeout=20)
        self.owner = Prf(bytes(16))
        self.last_parties = None

    def __call__(self, fn, *secrets):
        shared = [share(np.asarray(s, dtype=np.uint64), self.owner) for s in secrets]

        def body(party, index):
            outs = fn(party, *[AShare(*s[index]) for s in shared])
            outs = outs if isinstance(outs, tuple) else (outs,)
            opened = []
            for out in outs:
                if isinstance(out, BShare):
                    opened.append(("xor", out.a ^ party.zero_share_xor(out.shape)))
                else:
                    opened.append(("add", open_share(party, out)))
            return opened, party.overflow_words

        results, self.last_parties = self.parties.run(body, [0, 1, 2])
        values = []
        for k, (kind, _) in enumerate(results[0][0]):
            comps = [results[i][0][k][1] for i in range(3)]
            values.append(reconstruct_xor(comps) if kind == "xor" else reconstruct(comps))
        self.overflow = (reconstruct_xor([np.concatenate([w.a for w in results[i][1]]) for i in range(3)])
                         if results[0][1] else np.zeros(0, dtype=np.uint64))
        return values[0] if len(values) == 1 else values


@pytest.fixture
def run_parties():
    return Runner()


@pytest.fixture
def fixed():
    return FIXED
