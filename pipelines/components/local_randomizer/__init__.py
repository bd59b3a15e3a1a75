"""Local randomizer: applies a local DP randomizer (`privacy.local`) to declared columns of ExampleGen's examples.

`spec` (no TensorFlow or TFX) holds the settings, the artifact keys and how reports are stored; `estimate` reads
the randomized examples back into frequency estimates (TensorFlow, no TFX); `component.LocalRandomizer` is the
component (loaded on first use of the name) and `executor.Executor` the work.
"""


def __getattr__(name: str):
    if name == "LocalRandomizer":
        from pipelines.components.local_randomizer.component import LocalRandomizer

        return LocalRandomizer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["LocalRandomizer"]
