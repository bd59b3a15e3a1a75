"""Checks that a Keras model can be trained privately, with errors that say what to use instead.

Run by `make_private` and again by `fit` (after `compile`): it finds every problem at once, so one
error lists them all. What it looks for:

* layers that mix the examples of a batch (BatchNormalization: one example's gradient then depends on
  the others, and clipping no longer bounds its influence), and stateful RNNs (each batch row starts from the state
  the previous batch's row ended in, so one example's data reaches later examples' gradients);
* layers with trainable weights that compute or keep them in float16 or bfloat16 (a mixed precision policy):
  the private step computes per-example gradients and their norms in float32 or float64 only; and trainable layers whose
  weights are in different dtypes (float64 beside float32);
* losses added during the forward pass (`activity_regularizer`, `add_loss`), which depend on the batch;
* preprocessing layers adapted on data (`Normalization`, `Discretization`, `StringLookup`,
  `IntegerLookup`, `TextVectorization`): exact statistics of the training data inside the model
  (`privacy.preprocessing.adapted_layers`);
* model classes that override `train_step` or `compute_loss`, which the private step replaces;
* optimizers that accumulate gradients, and `steps_per_execution > 1` with a target epsilon (Keras
  would run several steps between two budget checks).

Non-trainable weights that training changes (whatever the layer's class and dtype; seed generators' counters
excepted) are refused by `fit` after the first step (`callback.StateGuardLogic`). Per-example losses are
checked when the step is traced (a loss that returns one number for the batch is refused there), and DP
optimizers refuse gradients that did not come from the private step.
"""

from __future__ import annotations

from privacy.keras import compat, optimizers
from privacy.keras.params import DPConfigurationError
from privacy.preprocessing.keras_layers import adapted_layers

_CROSS_EXAMPLE_LAYERS = {
    "BatchNormalization": "LayerNormalization or GroupNormalization (per-example statistics)",
    "SyncBatchNormalization": "LayerNormalization or GroupNormalization (per-example statistics)",
}
_BASE_CLASSES = ("Model", "Sequential", "Functional")
_HALF_PRECISION = {"float16", "bfloat16"}


def find_problems(model, *, target_epsilon: float | None = None) -> list[str]:
    """Every reason ``model`` (compiled or not) cannot be trained privately as it stands."""
    layers = list(model._flatten_layers(include_self=False, recursive=True))
    problems = adapted_layers(layers)
    weight_dtypes: dict[str, list[str]] = {}
    for layer in layers:
        names = [cls.__name__ for cls in type(layer).__mro__]
        for name, instead in _CROSS_EXAMPLE_LAYERS.items():
            if name in names:
                problems.append(
                    f"layer '{layer.name}' ({type(layer).__name__}) mixes the examples of a batch, "
                    f"so per-example clipping cannot bound one example's influence; use {instead}"
                )
                break
        if "RNN" in names and getattr(layer, "stateful", False):
            problems.append(
                f"layer '{layer.name}' ({type(layer).__name__}) is stateful: each batch row starts from the state "
                "the previous batch's row ended in, so one example's data reaches later examples' gradients and "
                "per-example clipping cannot bound its influence; use stateful=False (pass a state as initial_state)"
            )
        dtypes = (getattr(layer, "compute_dtype", None), getattr(layer, "variable_dtype", None))
        if compat.own_trainable_variables(layer) and _HALF_PRECISION & set(dtypes):
            problems.append(
                f"layer '{layer.name}' computes in {dtypes[0]} with {dtypes[1]} weights; the private step "
                "computes per-example gradients and their norms in float32 or float64 only: give it the float32 policy"
            )
        elif compat.own_trainable_variables(layer):
            weight_dtypes.setdefault(str(dtypes[1]), []).append(f"'{layer.name}'")
        if getattr(layer, "activity_regularizer", None) is not None:
            problems.append(
                f"layer '{layer.name}' has an activity_regularizer, a loss that depends on the whole "
                "batch; remove it or add a per-example penalty to the compiled loss"
            )
    if len(weight_dtypes) > 1:
        groups = "; ".join(f"{dtype}: {', '.join(names)}" for dtype, names in sorted(weight_dtypes.items()))
        problems.append(
            f"layers keep their weights in different dtypes ({groups}); the private step adds their per-example "
            "norms in one dtype: give every trainable layer the same dtype policy"
        )
    for method in overridden_training(model):
        problems.append(
            f"{type(model).__name__} overrides {method}(), which the private training step "
            f"replaces (so it would be ignored); express the loss as a per-example keras Loss "
            "passed to compile() and use a plain Model"
        )
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and optimizers.gradient_accumulation_steps(optimizer) > 1:
        problems.append(optimizers.ACCUMULATION_REFUSED)
    if (
        target_epsilon is not None
        and getattr(model, "optimizer", None) is not None
        and compat.steps_per_execution(model) > 1
    ):
        problems.append(
            "steps_per_execution > 1 runs several steps between budget checks, so a target epsilon "
            "could be overshot; compile with steps_per_execution=1"
        )
    return problems


def validate(model, *, target_epsilon: float | None = None) -> None:
    """Raises `DPConfigurationError` listing every problem `find_problems` finds."""
    problems = find_problems(model, target_epsilon=target_epsilon)
    if problems:
        raise DPConfigurationError(
            "this model cannot be trained with DP-SGD as it stands:\n  - " + "\n  - ".join(problems)
        )


def overridden_training(model) -> list[str]:
    """Which of `train_step` and `compute_loss` the model's class defines itself (not Keras or ppml)."""
    out = []
    for method in ("train_step", "compute_loss"):
        owner = _defining_class(type(model), method)
        if (
            owner is not None
            and owner.__name__ not in _BASE_CLASSES
            and not owner.__module__.startswith(("keras.", "tf_keras.", "privacy.keras."))
        ):
            out.append(method)
    return out


def _defining_class(cls, method):
    for klass in cls.__mro__:
        if method in vars(klass):
            return klass
    return None
