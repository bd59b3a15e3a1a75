"""Keras preprocessing layers whose statistics come from `adapt` on the training data.

`Normalization`, `Discretization`, `StringLookup`, `IntegerLookup` and `TextVectorization` learn their
constants (mean and variance, bin boundaries, vocabularies) from data in ``adapt``: adapted on the
private training data, they carry exact statistics that no epsilon covers. Given their constants in
the constructor (from a private release of `privacy.preprocessing`, or declared public) they carry
nothing of the data, and the constants appear in their config. A layer counts as adapted when its
config lacks them, or (a Keras 3 `Discretization`, whose config keeps what ``adapt`` learnt) when it was
built with ``num_bins`` for ``adapt`` to fill. A lookup layer (`LOOKUP_LAYERS`) whose vocabulary differs from
the one its config records was given another one after construction (``set_vocabulary``): it counts as
adapted too, since its config no longer says what it carries. Where constants given to a constructor came
from cannot be checked: they are the author's declaration.
"""

from __future__ import annotations

from typing import Any, Iterable

ADAPTED_LAYERS = {
    "Normalization": (("mean", "variance"), "Normalization(mean=..., variance=...) with a private mean_and_var "
                                            "release (privacy.preprocessing.MeanVariance) or public constants"),
    "Discretization": (("bin_boundaries",), "Discretization(bin_boundaries=...) with private quantiles "
                                            "(privacy.preprocessing.TreeHistogram) or public boundaries"),
    "StringLookup": (("vocabulary",), "StringLookup(vocabulary=...) with a private vocabulary "
                                      "(privacy.preprocessing.GaussianThresholding) or a public one"),
    "IntegerLookup": (("vocabulary",), "IntegerLookup(vocabulary=...) with a private vocabulary "
                                       "(privacy.preprocessing.GaussianThresholding) or a public one"),
    "TextVectorization": (("vocabulary",), "TextVectorization(vocabulary=...) with a private vocabulary "
                                           "(privacy.preprocessing.GaussianThresholding) or a public one"),
}


LOOKUP_LAYERS = ("StringLookup", "IntegerLookup", "TextVectorization")


def adapted_layer_problem(name: str, class_name: str, config: dict[str, Any] | None) -> str | None:
    """Why the layer ``name`` of class ``class_name`` with ``config`` carries exact statistics, or None."""
    if class_name not in ADAPTED_LAYERS:
        return None
    keys, instead = ADAPTED_LAYERS[class_name]
    config = config or {}
    if all(config.get(key) is not None for key in keys) and config.get("num_bins") is None:
        return None
    return (f"layer '{name}' ({class_name}) learns {' and '.join(keys)} from data with adapt(), so it carries exact "
            f"statistics of the training data that no epsilon covers; use {instead}")


def adapted_layers(layers: Iterable) -> list[str]:
    """Problems of the adapted preprocessing layers among ``layers`` (Keras 3 or tf-keras layer objects)."""
    problems = []
    for layer in layers:
        names = [cls.__name__ for cls in type(layer).__mro__]
        class_name = next((n for n in names if n in ADAPTED_LAYERS), None)
        if class_name is None:
            continue
        try:
            config = layer.get_config()
        except (NotImplementedError, TypeError, ValueError):
            config = {}
        problem = adapted_layer_problem(layer.name, class_name, config) or _vocabulary_set_later(layer, class_name,
                                                                                                  config)
        if problem:
            problems.append(problem)
    return problems


def _vocabulary_set_later(layer, class_name: str, config: dict[str, Any]) -> str | None:
    """Why a lookup layer whose vocabulary is not its config's carries unrecorded constants, or None."""
    given = config.get("vocabulary")
    if class_name not in LOOKUP_LAYERS or not isinstance(given, (list, tuple)):
        return None   # no vocabulary (adapt: found above) or a file path, read when the layer is built
    try:
        current = layer.get_vocabulary(include_special_tokens=False)
    except (AttributeError, TypeError, ValueError, RuntimeError):
        return None
    as_text = lambda tokens: [t.decode("utf-8", "surrogateescape") if isinstance(t, bytes) else str(t)  # noqa: E731
                              for t in tokens]
    if as_text(current) == as_text(given):
        return None
    return (f"layer '{layer.name}' ({class_name}) holds a vocabulary of {len(current)} tokens that is not the one its "
            f"config records (set_vocabulary after construction), so what it carries is unaccounted; give the "
            f"vocabulary to the constructor: {ADAPTED_LAYERS[class_name][1]}")
