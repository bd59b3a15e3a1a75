"""DP optimizers with the names and arguments TF Privacy users know.

``DPKerasSGDOptimizer(l2_norm_clip, noise_multiplier, num_microbatches=None, learning_rate=...)`` is a
Keras SGD that carries DP-SGD hyperparameters. Per-example clipping needs each example's loss, which an
optimizer never sees in Keras 3's `fit`, so the work is done by the private training step that
`make_private` (or `DPModel` / `DPSequential`) installs on the model; that step reads the optimizer's
hyperparameters. Used on a model without the private step, or from a custom loop that computes
ordinary averaged gradients, the optimizer refuses to apply them and says what to do, instead of
silently training without privacy (TF Privacy #134).

The classes subclass the optimizers of the Keras behind `tf.keras` in this process (Keras 3, or
tf-keras when TF_USE_LEGACY_KERAS=1); `make_dp_optimizer_class` wraps any other optimizer class.
"""

from __future__ import annotations

import contextlib
import threading

from privacy.keras import compat
from privacy.keras.params import DPConfigurationError, DPParams

_PRIVATE_STEP = threading.local()


@contextlib.contextmanager
def private_step():
    """Marks the enclosed `apply_gradients` as coming from the private training step."""
    previous = getattr(_PRIVATE_STEP, "active", False)
    _PRIVATE_STEP.active = True
    try:
        yield
    finally:
        _PRIVATE_STEP.active = previous


def _require_private_step(optimizer) -> None:
    if not getattr(_PRIVATE_STEP, "active", False):
        raise DPConfigurationError(
            f"{type(optimizer).__name__} was asked to apply gradients that did not come from the private "
            "training step, so they were never clipped per example and no noise was added. Wrap the model "
            "with privacy.keras.make_private(model) (or build it as DPModel / DPSequential) and train with "
            "model.fit(...) or model.train_step(batch); a custom GradientTape loop cannot be made private by "
            "the optimizer alone.")


def make_dp_optimizer_class(base: type) -> type:
    """A subclass of the Keras optimizer class ``base`` that carries DP-SGD hyperparameters."""

    class DPOptimizer(base):  # pylint: disable=missing-class-docstring
        def __init__(self, l2_norm_clip: float, noise_multiplier: float, num_microbatches: int | None = None,
                     *args, **kwargs):
            if (kwargs.get("gradient_accumulation_steps") or 1) > 1:
                raise DPConfigurationError(ACCUMULATION_REFUSED)
            params = DPParams(l2_norm_clip, noise_multiplier, num_microbatches)
            super().__init__(*args, **kwargs)
            self.dp_params = params

        @property
        def l2_norm_clip(self) -> float:
            return self.dp_params.l2_norm_clip

        @property
        def noise_multiplier(self) -> float:
            return self.dp_params.noise_multiplier

        @property
        def num_microbatches(self) -> int | None:
            return self.dp_params.num_microbatches

        def apply_gradients(self, grads_and_vars, *args, **kwargs):
            _require_private_step(self)
            return super().apply_gradients(grads_and_vars, *args, **kwargs)

        if hasattr(base, "apply"):
            def apply(self, grads, trainable_variables=None):  # Keras 3's entry point
                _require_private_step(self)
                return super().apply(grads, trainable_variables)

        def get_config(self):
            config = super().get_config()
            config.update(l2_norm_clip=self.l2_norm_clip, noise_multiplier=self.noise_multiplier,
                          num_microbatches=self.num_microbatches)
            return config

    DPOptimizer.__name__ = DPOptimizer.__qualname__ = f"DPKeras{base.__name__}Optimizer"
    DPOptimizer.__doc__ = (
        f"Keras {base.__name__} carrying DP-SGD hyperparameters for the private training step.\n\n"
        "    Args:\n"
        "      l2_norm_clip: C, the L2 bound on each example's (or microbatch's) gradient.\n"
        "      noise_multiplier: sigma; the noise on the summed clipped gradients has std sigma * C.\n"
        "      num_microbatches: clip M microbatches instead of single examples (sensitivity 2C).\n"
        f"      *args, **kwargs: the arguments of {base.__name__}.\n")
    return DPOptimizer


def dp_params_of(optimizer) -> DPParams | None:
    """The DP hyperparameters an optimizer carries, or None for an ordinary optimizer."""
    return getattr(optimizer, "dp_params", None)


def gradient_accumulation_steps(optimizer) -> int:
    return int(getattr(optimizer, "gradient_accumulation_steps", None) or 1)


ACCUMULATION_REFUSED = (
    "the optimizer accumulates gradients (gradient_accumulation_steps > 1), which would add noise at every "
    "accumulated step; use a larger expected batch size instead (Poisson sampling keeps memory bounded by "
    "max_batch_size)")
"""Why DP-SGD refuses gradient accumulation (one message for the optimizer, the training and the validator)."""


_keras = compat.default_keras()
_register = _keras.saving.register_keras_serializable(package="ppml")
DPKerasSGDOptimizer = _register(make_dp_optimizer_class(_keras.optimizers.SGD))
DPKerasAdamOptimizer = _register(make_dp_optimizer_class(_keras.optimizers.Adam))
DPKerasAdagradOptimizer = _register(make_dp_optimizer_class(_keras.optimizers.Adagrad))
del _keras, _register
