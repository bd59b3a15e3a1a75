"""Encrypted-inference gate: bless a model only if secret-shared prediction matches plaintext prediction."""

from pipelines.components.encrypted_gate.component import EncryptedInferenceGate

__all__ = ["EncryptedInferenceGate"]
