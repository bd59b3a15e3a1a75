"""Fixed-point encoding and the CSPRNG (AES-128-CTR) with its start-up self-test."""

import numpy as np
import pytest

from privacy.encrypted.model.ring import FixedPoint, as_signed
from privacy.encrypted.protocol import randomness
from privacy.encrypted.protocol.randomness import Prf, RandomnessSelfTestError, session_nonce


def test_encoding_rounds_to_the_nearest_multiple_of_the_resolution():
    fixed = FixedPoint(16)
    x = np.array([0.0, 1.0, -1.0, 1.5e-5, -3.25, 1234.5678, -(2.0**29)])
    enc = fixed.encode(x)
    assert np.array_equal(as_signed(enc), np.rint(x * 65536).astype(np.int64))
    assert np.abs(fixed.decode(enc) - x).max() <= 2**-17


@pytest.mark.parametrize("bad, message", [(np.array([1.0, np.nan]), "NaN"), (np.array([2.0**30 + 1]), "magnitude")])
def test_encoding_rejects_values_it_cannot_represent(bad, message):
    with pytest.raises(ValueError, match=message) as err:
        FixedPoint(16).encode(bad, what="input")
    assert "input" in str(err.value)


def test_fixed_point_format_is_validated():
    with pytest.raises(ValueError, match="frac_bits"):
        FixedPoint(40)


def test_aes_ctr_stream_is_deterministic_per_key_and_nonce_and_differs_otherwise():
    key = bytes(range(16))
    a, b = Prf(key, session_nonce(3)), Prf(key, session_nonce(3))
    assert np.array_equal(np.concatenate([a.words(5), a.words((2, 3)).ravel()]), b.words(11))
    assert not np.array_equal(Prf(key, session_nonce(4)).words(8), Prf(key, session_nonce(3)).words(8))
    assert not np.array_equal(Prf(bytes(16)).words(8), Prf(key).words(8))


def test_stream_words_are_uniform_bits():
    words = Prf(randomness.new_key()).words(1 << 16)
    bits = np.unpackbits(words.view(np.uint8)).reshape(-1, 64)
    # Each of the 64 bit positions is fair: 65536 draws, std 128; 6 sigma = 768.
    assert np.abs(bits.sum(axis=0).astype(int) - 32768).max() < 768


def test_self_test_rejects_a_broken_os_generator(monkeypatch):
    monkeypatch.setattr(randomness, "_SELF_TEST_PASSED", False)
    monkeypatch.setattr(randomness.os, "urandom", lambda n: bytes(n))
    with pytest.raises(RandomnessSelfTestError, match="os.urandom"):
        randomness.new_key()


def test_self_test_rejects_a_wrong_cipher(monkeypatch):
    monkeypatch.setattr(randomness, "_SELF_TEST_PASSED", False)
    monkeypatch.setattr(randomness, "_KAT_CIPHERTEXT", bytes(16))
    with pytest.raises(RandomnessSelfTestError, match="known-answer"):
        randomness.self_test()
