"""Secure aggregation simulation: clip, quantize, mask (X25519 + ChaCha20), modular sum, dropout recovery."""

from federated.aggregation.secure.protocol import ModularSum, RoundKeys, SecureAggregation

__all__ = ["ModularSum", "RoundKeys", "SecureAggregation"]
