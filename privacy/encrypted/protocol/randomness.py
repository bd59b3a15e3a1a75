"""Cryptographic randomness: AES-128 in counter mode as a PRF, keyed from the operating system.

Every random ring element in the protocol (input shares, masks, zero-sharings) comes from a `Prf`
stream: AES-128-CTR (the `cryptography` package, i.e. OpenSSL) under a 128-bit key drawn with
`os.urandom`. Two parties holding the same key and nonce draw identical streams, which is how
correlated randomness (zero-sharings, shared masks) is made without any communication. numpy and
tf.random are never used for shares or masks.

`self_test()` runs once per process before the first key is made: a NIST SP 800-38A known-answer
test of AES-CTR, and a health check of the OS generator and of a fresh stream (distinct draws,
balanced bits). A failure raises `RandomnessSelfTestError` instead of ever computing on weak masks. It
then compiles the comparison's kernels (`kernels`), so that a server has them before it serves.
"""

from __future__ import annotations

import importlib
import math
import operator
import os
import threading

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from privacy import validation

KEY_BYTES = 16
NONCE_BYTES = 16

_ZEROS = bytes(1 << 16)
"""Plaintext of the keystream, encrypted a block of this size at a time."""
_CTR_SLACK = 15
"""Bytes beyond the data that `update_into` asks of its output buffer (a cipher block less one)."""

_SELF_TEST_LOCK = threading.Lock()
_SELF_TEST_PASSED = False

# NIST SP 800-38A, F.5.1 CTR-AES128.Encrypt, first block.
_KAT_KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
_KAT_COUNTER = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
_KAT_PLAINTEXT = bytes.fromhex("6bc1bee22e409f96e93d7e117393172a")
_KAT_CIPHERTEXT = bytes.fromhex("874d6191b620e3261bef6864990db6ce")


class RandomnessSelfTestError(RuntimeError):
    """The start-up self-test of the random generator failed: nothing may be shared."""


def self_test() -> None:
    """Checks AES-CTR against a known answer and the OS generator for health, and compiles the comparison's
    kernels (`kernels`: so a server compiles them before it serves), once per process.

    Raises:
        RandomnessSelfTestError: if any check fails.
    """
    global _SELF_TEST_PASSED
    with _SELF_TEST_LOCK:
        if _SELF_TEST_PASSED:
            return
        encryptor = Cipher(algorithms.AES(_KAT_KEY), modes.CTR(_KAT_COUNTER)).encryptor()
        if encryptor.update(_KAT_PLAINTEXT) != _KAT_CIPHERTEXT:
            raise RandomnessSelfTestError("AES-128-CTR failed the NIST SP 800-38A known-answer test")
        draws = {os.urandom(KEY_BYTES) for _ in range(8)}
        if len(draws) != 8 or bytes(KEY_BYTES) in draws:
            raise RandomnessSelfTestError("os.urandom returned repeated or all-zero 128-bit draws")
        words = Prf(os.urandom(KEY_BYTES)).words((4096,))
        ones = int(np.unpackbits(words.view(np.uint8)).sum())
        # 262144 fair bits: std of the count is 256, so +-2560 is a 10-sigma band.
        if abs(ones - 131072) > 2560 or len(np.unique(words)) < 4090:
            raise RandomnessSelfTestError(f"a fresh AES-CTR stream looks biased ({ones} ones in 262144 bits)")
        importlib.import_module("privacy.encrypted.protocol.kernels")  # compiles them before the first key
        _SELF_TEST_PASSED = True


def new_key() -> bytes:
    """A fresh 128-bit key from the operating system's CSPRNG (after the self-test)."""
    self_test()
    return os.urandom(KEY_BYTES)


def session_nonce(session: int) -> bytes:
    """The CTR starting block for session number `session`: 64-bit session, 64-bit block counter."""
    session = validation.integer("session number", session, minimum=0, maximum=2**64 - 1)
    return session.to_bytes(8, "big") + bytes(8)


def _size(shape) -> int:
    """The number of values in `shape` (a tuple or list of ints, or an int): math.prod, as np.prod costs a few
    microseconds a call, a sizeable part of a small draw."""
    return math.prod(shape) if isinstance(shape, (tuple, list)) else operator.index(shape)


class Prf:
    """A stream of pseudorandom ring elements: AES-128-CTR keystream read as little-endian uint64.

    Two `Prf` objects with equal key and nonce return equal sequences as long as they are asked for
    the same sizes in the same order; that is the contract correlated randomness relies on.
    """

    def __init__(self, key: bytes, nonce: bytes = bytes(NONCE_BYTES)):
        if len(key) != KEY_BYTES or len(nonce) != NONCE_BYTES:
            raise ValueError(
                f"Prf needs a {KEY_BYTES}-byte key and a {NONCE_BYTES}-byte nonce, "
                f"got {len(key)} and {len(nonce)} bytes"
            )
        self._encryptor = Cipher(algorithms.AES(key), modes.CTR(nonce)).encryptor()

    def words(self, shape) -> np.ndarray:
        """The next prod(shape) uniform uint64 words of the stream (a read-only array)."""
        count = _size(shape)
        return np.frombuffer(self._encryptor.update(bytes(8 * count)), dtype="<u8").reshape(shape)

    def residues(self, shape, modulus: int) -> np.ndarray:
        """The next prod(shape) values uniform in [0, modulus) (uint8), by rejection sampling.

        Each value is a stream byte's low k bits (2^k >= modulus, k <= 8); the positions where that is
        >= modulus are drawn again, in order, until none is left: exactly uniform, and two streams in
        step return the same values and stay in step.
        """
        modulus = validation.integer("modulus", modulus, minimum=2, maximum=256)
        bits_mask = np.uint8((1 << (modulus - 1).bit_length()) - 1)
        count = _size(shape)
        values = self._stream(count)
        from privacy.encrypted.protocol import kernels  # imported where used: see kernels' docstring

        redo = kernels.masked_draws(values, bits_mask, modulus)
        while len(redo):
            fresh = np.frombuffer(self._encryptor.update(bytes(len(redo))), np.uint8)
            redo = kernels.redraw(values, redo, fresh, bits_mask, modulus)
        return values.reshape(shape)

    def _stream(self, count: int) -> np.ndarray:
        """The next `count` stream bytes as a writable array: encrypted in place from a shared block of zeros
        (no input or output copy of the full size)."""
        buffer = bytearray(count + _CTR_SLACK)
        view, zeros = memoryview(buffer), memoryview(_ZEROS)
        for start in range(0, count, len(_ZEROS)):
            size = min(len(_ZEROS), count - start)
            self._encryptor.update_into(zeros[:size], view[start : start + size + _CTR_SLACK])
        return np.frombuffer(buffer, np.uint8, count)
