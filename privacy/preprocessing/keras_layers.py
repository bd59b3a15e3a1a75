"""Keras preprocessing layers whose statistics come from `adapt` on the training data.

`Normalization`, `Discretization`, `StringLookup`, `IntegerLookup` and `TextVectorization` learn their
constants (mean and variance, bin boundaries, vocabularies) from data in ``adapt``: adapted on the
private training data, they carry exact statistics that no epsilon covers. Given their constants in
the constructor (from a private release of `privacy.preprocessing`, or declared public) they carry
nothing of the data, and the constants appear in their config. A layer counts as adapted when its
config lacks them, or (a Keras 3 `Discretization`, whose config keeps what ``adapt`` learnt) when it was
built with ``num_bins`` for ``adapt`` to fill. A lookup layer (`LOOKUP_LAYERS`) whose vocabulary differs from
the one its config records was given another one after construction (``set_vocabulary``): it counts as
adapted too, since its config no longer says what it carries; a vocabulary given as a file is read and
compared the same way (a file that cannot be read cannot be checked, so it counts too); so does one in
``tf_idf`` mode whose idf weights are not its config's (``set_vocabulary(..., idf_weights=...)`` with the same
vocabulary: the weights are document frequencies). A `Normalization`
whose mean or variance no longer equals its config's (assigned after construction) counts as adapted.
Where constants given to a constructor came from cannot be checked: they are the author's declaration.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

ADAPTED_LAYERS = {
    "Normalization": (
        ("mean", "variance"),
        "Normalization(mean=..., variance=...) with a private mean_and_var "
        "release (privacy.preprocessing.MeanVariance) or public constants",
    ),
    "Discretization": (
        ("bin_boundaries",),
        "Discretization(bin_boundaries=...) with private quantiles "
        "(privacy.preprocessing.TreeHistogram) or public boundaries",
    ),
    "StringLookup": (
        ("vocabulary",),
        "StringLookup(vocabulary=...) with a private vocabulary "
        "(privacy.preprocessing.GaussianThresholding) or a public one",
    ),
    "IntegerLookup": (
        ("vocabulary",),
        "IntegerLookup(vocabulary=...) with a private vocabulary "
        "(privacy.preprocessing.GaussianThresholding) or a public one",
    ),
    "TextVectorization": (
        ("vocabulary",),
        "TextVectorization(vocabulary=...) with a private vocabulary "
        "(privacy.preprocessing.GaussianThresholding) or a public one",
    ),
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
    return (
        f"layer '{name}' ({class_name}) learns {' and '.join(keys)} from data with adapt(), so it carries exact "
        f"statistics of the training data that no epsilon covers; use {instead}"
    )


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
        problem = (
            adapted_layer_problem(layer.name, class_name, config)
            or _vocabulary_set_later(layer, class_name, config)
            or _idf_weights_set_later(layer, class_name, config)
            or _moments_set_later(layer, class_name, config)
        )
        if problem:
            problems.append(problem)
    return problems


def _vocabulary_set_later(layer, class_name: str, config: dict[str, Any]) -> str | None:
    """Why a lookup layer whose vocabulary is not its config's (a list, or a file's lines) carries unrecorded
    constants, or None."""
    given = config.get("vocabulary")
    if class_name not in LOOKUP_LAYERS or not isinstance(given, (list, tuple, str)):
        return None  # no vocabulary: adapt, found above
    try:
        current = layer.get_vocabulary(include_special_tokens=False)
    except (AttributeError, TypeError, ValueError, RuntimeError):
        return None
    if isinstance(given, str):
        try:
            given = _file_lines(given)
        except OSError as err:
            return (
                f"layer '{layer.name}' ({class_name}) names the vocabulary file {given!r}, which cannot be read "
                f"({err}), so what it carries cannot be checked; give the vocabulary to the constructor: "
                f"{ADAPTED_LAYERS[class_name][1]}"
            )

    def as_text(tokens):
        return [t.decode("utf-8", "surrogateescape") if isinstance(t, bytes) else str(t) for t in tokens]

    if as_text(current) == as_text(given):
        return None
    return (
        f"layer '{layer.name}' ({class_name}) holds a vocabulary of {len(current)} tokens that is not the one its "
        f"config records (set_vocabulary after construction), so what it carries is unaccounted; give the "
        f"vocabulary to the constructor: {ADAPTED_LAYERS[class_name][1]}"
    )


def _idf_weights_set_later(layer, class_name: str, config: dict[str, Any]) -> str | None:
    """Why a ``tf_idf`` lookup layer whose idf weights are not its config's carries unrecorded constants, or None.

    The layer holds one weight per token, its special tokens' (mask, OOV) first, so its last weights are the
    vocabulary's (Keras 3 and tf-keras; a TextVectorization's are its lookup layer's), compared exactly with the
    config's rounded to the layer's dtype (float32)."""
    given = config.get("idf_weights")
    if class_name not in LOOKUP_LAYERS or given is None:
        return None
    current = getattr(getattr(layer, "_lookup_layer", layer), "idf_weights", None)
    if current is None:
        return None
    current = np.asarray(current).ravel()
    given = np.asarray(list(given), dtype=np.float64).ravel().astype(current.dtype)  # as the layer stores them
    if given.size <= current.size and np.array_equal(current[current.size - given.size :], given):
        return None  # exactly: a tolerance would let data-dependent low digits through
    return (
        f"layer '{layer.name}' ({class_name}) holds idf weights that are not the ones its config records "
        f"(set_vocabulary after construction), so what it carries is unaccounted; give them to the constructor: "
        f"{ADAPTED_LAYERS[class_name][1]}"
    )


def _file_lines(path: str) -> list[str]:
    import tensorflow as tf

    try:
        with tf.io.gfile.GFile(path, "rb") as handle:
            text = handle.read().decode("utf-8", "surrogateescape")
    except tf.errors.OpError as err:
        raise OSError(err.message) from None
    return text.splitlines()


def _moments_set_later(layer, class_name: str, config: dict[str, Any]) -> str | None:
    """Why a `Normalization` whose mean or variance differs from its config's carries unrecorded constants, or
    None (also before it is built, when it holds nothing yet)."""
    if class_name != "Normalization" or config.get("mean") is None:
        return None
    changed = []
    for key in ("mean", "variance"):
        current = getattr(layer, key, None)
        if current is None or isinstance(current, (int, float, list, tuple)):
            continue  # not built: only the config's constants exist
        current = np.asarray(current, dtype=np.float64)
        try:
            given = np.broadcast_to(np.asarray(config[key], dtype=np.float64), current.shape)
        except ValueError:
            given = np.asarray(config[key], dtype=np.float64)
        if given.size != current.size or not np.allclose(current.ravel(), given.ravel(), rtol=1e-6, atol=0):
            changed.append(key)
    if not changed:
        return None
    return (
        f"layer '{layer.name}' (Normalization) holds a {' and '.join(changed)} that is not its config's (assigned "
        f"after construction), so what it carries is unaccounted; use {ADAPTED_LAYERS[class_name][1]}"
    )
