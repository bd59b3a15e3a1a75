"""PII scrubber: after ExampleGen, before StatisticsGen, so that no later artifact holds the detected PII.

`spec` (no TensorFlow or TFX) holds the keys and the settings' exec property; `component.PiiScrubber` is the
component (loaded on first use of the name) and `executor.Executor` the work (`privacy.minimization`).
"""


def __getattr__(name: str):
    if name == "PiiScrubber":
        from pipelines.components.pii_scrubber.component import PiiScrubber

        return PiiScrubber
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["PiiScrubber"]
