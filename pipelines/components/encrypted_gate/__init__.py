"""Encrypted-inference gate: bless a model only if secret-shared prediction matches plaintext prediction.

`spec` (no TensorFlow or TFX) holds the settings and artifact keys; `component.EncryptedInferenceGate`
is the component (loaded on first use of the name, so reading `spec` stays cheap) and
`executor.Executor` the work.
"""


def __getattr__(name: str):
    if name == "EncryptedInferenceGate":
        from pipelines.components.encrypted_gate.component import EncryptedInferenceGate

        return EncryptedInferenceGate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["EncryptedInferenceGate"]
