"""Pairwise and self masks (Bonawitz et al. 2017, arXiv 1611.04482): X25519 key agreement, HKDF, ChaCha20.

Clients i < j agree on s_ij = HKDF(X25519(sk_i, pk_j)); client i adds PRG(s_ij) and j subtracts it,
so pairwise masks cancel in the sum mod 2^M. Each client also adds PRG(b_i) for a fresh self-mask
seed b_i, so that its input stays hidden even if its pairwise masks are later revealed.
"""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_NONCE = bytes(16)  # each seed expands one stream only


def new_private_key() -> bytes:
    """A fresh X25519 private key (from the OS CSPRNG), raw 32 bytes."""
    return X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def public_key(private: bytes) -> bytes:
    return (
        X25519PrivateKey.from_private_bytes(private)
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )


def pairwise_seed(private: bytes, peer_public: bytes, round_index: int) -> bytes:
    """s_ij: the 32-byte seed two clients share (symmetric in i and j)."""
    shared = X25519PrivateKey.from_private_bytes(private).exchange(X25519PublicKey.from_public_bytes(peer_public))
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"ppml secagg pairwise mask, round %d" % round_index
    ).derive(shared)


def prg(seed: bytes, length: int, modulus_bits: int) -> np.ndarray:
    """``length`` uniform integers mod 2^modulus_bits (uint64) from ChaCha20 keyed by ``seed``."""
    stream = Cipher(algorithms.ChaCha20(seed, _NONCE), mode=None).encryptor().update(bytes(8 * length))
    return np.frombuffer(stream, dtype=np.uint64) & np.uint64((1 << modulus_bits) - 1)
