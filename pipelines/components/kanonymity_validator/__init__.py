"""k-anonymity validator: an ExampleAnomalies artifact, like ExampleValidator's, for declared quasi-identifiers.

`spec` (no TensorFlow or TFX) holds the keys and the settings; `component.KAnonymityValidator` is the component
(loaded on first use of the name) and `executor.Executor` the work (`privacy.minimization.kanonymity_report`).
"""


def __getattr__(name: str):
    if name == "KAnonymityValidator":
        from pipelines.components.kanonymity_validator.component import KAnonymityValidator

        return KAnonymityValidator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["KAnonymityValidator"]
