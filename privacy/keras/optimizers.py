"""DP optimizers with the names and arguments TF Privacy users know.

``DPKerasSGDOptimizer(l2_norm_clip, noise_multiplier, num_microbatches=None, learning_rate=...)`` is a
Keras SGD that carries DP-SGD hyperparameters (``DPGradientDescentGaussianOptimizer`` is the same class
under TF Privacy's older name). Two ways to train with it:

* ``model.compile(optimizer=DPKerasSGDOptimizer(...), loss=...)`` then `fit`, as TF Privacy's tutorials
  do: the first `fit` of a model compiled with a DP optimizer makes it private (`make_private(model,
  sampling="shuffle")`: shuffled epochs of the arrays given to `fit` in batches of its batch_size, or
  the caller's dataset of shuffled batches, accounted by the once-per-epoch bound; a training it cannot
  account is refused; call `make_private` yourself before the first `fit` for Poisson sampling or other
  settings). Its private step clips per example with ghost norms and reads the optimizer's
  hyperparameters. Models that override `train_step` are left alone.
* ``optimizer.minimize(loss, var_list, tape=tape)`` (or `compute_gradients`, or TF Privacy's
  `_compute_gradients`) with a per-example loss vector and the tape that recorded it, as tf-keras's
  own `train_step` and TF Privacy's custom loops call it: the loss is averaged over
  ``num_microbatches`` equal microbatches (default: one per example), each microbatch's gradient is
  clipped to L2 norm C over all variables (one whose gradient or loss is not finite contributes 0),
  noise of std sigma C (1 + SLACK) is added once to their sum (`privacy.keras.params.SLACK`), and the result is
  divided by the number of microbatches, as TF Privacy does. These steps are not accounted by ppml
  (`compute_dp_sgd_privacy` or `privacy.accounting` do it).

Gradients from anywhere else (a custom loop applying ordinary averaged gradients) are refused with an
error naming `make_private`, instead of silently training without privacy (TF Privacy #134).

The classes subclass the optimizers of the Keras behind `tf.keras` in this process (Keras 3, or
tf-keras when TF_USE_LEGACY_KERAS=1); `make_dp_optimizer_class` wraps any other optimizer class.
"""

from __future__ import annotations

import contextlib

import tensorflow as tf

from privacy.keras import clipping, compat
from privacy.keras.factors import PerExample, dim
from privacy.keras.masking import select_rows
from privacy.keras.noise import GaussianNoise
from privacy.keras.params import DPConfigurationError, DPParams
from privacy.keras.thread_flag import ThreadFlag

_PRIVATE_STEP = ThreadFlag()
private_step = _PRIVATE_STEP.raised
"""Marks the enclosed `apply_gradients` as coming from the private training step."""


def _require_private_step(optimizer) -> None:
    if not _PRIVATE_STEP.up:
        raise DPConfigurationError(
            f"{type(optimizer).__name__} was asked to apply gradients that did not come from the private "
            "training step or from its own minimize / compute_gradients, so they were never clipped per "
            "example and no noise was added. Wrap the model with privacy.keras.make_private(model) (or "
            "compile a plain model with this optimizer) and train with model.fit(...), or in a custom loop "
            "call optimizer.minimize(per_example_losses, variables, tape=tape)."
        )


def make_dp_optimizer_class(base: type) -> type:
    """A subclass of the Keras optimizer class ``base`` that carries DP-SGD hyperparameters."""

    class DPOptimizer(base):
        def __init__(
            self, l2_norm_clip: float, noise_multiplier: float, num_microbatches: int | None = None, *args, **kwargs
        ):
            if (kwargs.get("gradient_accumulation_steps") or 1) > 1:
                raise DPConfigurationError(ACCUMULATION_REFUSED)
            params = DPParams(l2_norm_clip, noise_multiplier, num_microbatches)
            super().__init__(*args, **kwargs)
            self.dp_params = params
            self._ppml_noise = GaussianNoise()
            self._ppml_noise.build()
            self._ppml_noised = False  # DP gradients computed and not yet applied

        def compute_gradients(self, loss, var_list, tape=None):
            """DP-SGD gradients of a per-example ``loss`` vector recorded by ``tape`` (see the module)."""
            grads = dp_gradients(self.dp_params, self._ppml_noise, loss, var_list, tape)
            self._ppml_noised = True
            return grads

        def _compute_gradients(self, loss, var_list, grad_loss=None, tape=None):  # TF Privacy's name
            del grad_loss
            return self.compute_gradients(loss, var_list, tape)

        def minimize(self, loss, var_list, tape=None):
            self.apply_gradients(self.compute_gradients(loss, var_list, tape))

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
            with self._applying():
                return super().apply_gradients(grads_and_vars, *args, **kwargs)

        if hasattr(base, "apply"):

            def apply(self, grads, trainable_variables=None):  # Keras 3's entry point
                with self._applying():
                    return super().apply(grads, trainable_variables)

        @contextlib.contextmanager
        def _applying(self):
            """Applies only gradients of the private step or of this optimizer's own DP gradients."""
            noised, self._ppml_noised = self._ppml_noised, False
            if not noised:
                _require_private_step(self)
            with private_step():
                yield

        def get_config(self):
            config = super().get_config()
            config.update(
                l2_norm_clip=self.l2_norm_clip,
                noise_multiplier=self.noise_multiplier,
                num_microbatches=self.num_microbatches,
            )
            return config

    DPOptimizer.__name__ = DPOptimizer.__qualname__ = f"DPKeras{base.__name__}Optimizer"
    DPOptimizer.__doc__ = (
        f"Keras {base.__name__} carrying DP-SGD hyperparameters for the private training step.\n\n"
        "    Args:\n"
        "      l2_norm_clip: C, the L2 bound on each example's (or microbatch's) gradient.\n"
        "      noise_multiplier: sigma; the noise on the summed clipped gradients has std sigma * C (1 + SLACK),\n"
        "        SLACK covering the clipped sum's rounding (`privacy.keras.params.SLACK`).\n"
        "      num_microbatches: clip M microbatches instead of single examples (one example can move a\n"
        "        microbatch by 2C; see `privacy.accounting.DpSgdMechanism.sensitivity`).\n"
        f"      *args, **kwargs: the arguments of {base.__name__}.\n"
    )
    return DPOptimizer


def dp_gradients(params: DPParams, noise: GaussianNoise, loss, var_list, tape=None) -> list:
    """TF Privacy's optimizer step: [(gradient, variable)] from a per-example loss vector and its tape.

    ``loss`` is a vector of per-example losses recorded by ``tape``, or a callable returning it (then
    ``tape`` may be None). Microbatch losses are means over ``num_microbatches`` equal slices (default:
    one per example); each microbatch's gradient is clipped to ``l2_norm_clip`` over all variables, one
    whose gradient or loss is not finite contributes 0, Gaussian noise of std sigma C (1 + SLACK) is added once to
    the sum (`DPParams.exact_noise_stddev`), and the sum is divided by the number of microbatches.
    """
    if not callable(loss) and tape is None:
        raise ValueError("`tape` is required when a `Tensor` loss is passed.")
    tape = tape if tape is not None else tf.GradientTape()
    with tape:
        if callable(loss):
            if not callable(var_list):
                tape.watch(var_list)
            loss = loss()
        if loss.shape.rank != 1:
            raise DPConfigurationError(
                f"DP-SGD needs one loss per example (a vector), got shape {loss.shape}; use a loss with "
                "reduction NONE (e.g. keras.losses.CategoricalCrossentropy(reduction='none'))"
            )
        count = params.num_microbatches or tf.shape(loss)[0]
        microbatch_losses = tf.reduce_mean(tf.reshape(loss, [count, -1]), axis=1)
    var_list = tf.nest.flatten(var_list() if callable(var_list) else var_list)
    jacobians = tape.jacobian(microbatch_losses, var_list)
    jacobians = [
        tf.zeros([count, *v.shape], loss.dtype) if j is None else j for j, v in zip(jacobians, var_list, strict=True)
    ]
    per_unit = [PerExample(j) for j in jacobians]
    divisor = clipping.divisors(
        [f.squared_norm_bounds() for f in per_unit], [f.rounding() for f in per_unit], params.l2_norm_clip
    )
    finite = tf.math.is_finite(divisor) & tf.math.is_finite(microbatch_losses)
    scale = clipping.clip_scale(divisor, params.l2_norm_clip, finite, jacobians[0].dtype)
    sums = [tf.tensordot(scale, select_rows(finite, j), axes=1) for j in jacobians]
    with tf.control_dependencies(clipping.checked_positions((dim(loss),))):
        noisy = noise.add(sums, params.exact_noise_stddev)
    return [(g / tf.cast(count, g.dtype), v) for g, v in zip(noisy, var_list, strict=True)]


def dp_params_of(optimizer) -> DPParams | None:
    """The DP hyperparameters an optimizer carries, or None for an ordinary optimizer."""
    return getattr(optimizer, "dp_params", None)


def gradient_accumulation_steps(optimizer) -> int:
    return int(getattr(optimizer, "gradient_accumulation_steps", None) or 1)


ACCUMULATION_REFUSED = (
    "the optimizer accumulates gradients (gradient_accumulation_steps > 1), which would add noise at every "
    "accumulated step; use a larger expected batch size instead (Poisson sampling keeps memory bounded by "
    "max_batch_size)"
)
"""Why DP-SGD refuses gradient accumulation (one message for the optimizer, the training and the validator)."""


_keras = compat.default_keras()
_register = _keras.saving.register_keras_serializable(package="ppml")
DPKerasSGDOptimizer = _register(make_dp_optimizer_class(_keras.optimizers.SGD))
DPKerasAdamOptimizer = _register(make_dp_optimizer_class(_keras.optimizers.Adam))
DPKerasAdagradOptimizer = _register(make_dp_optimizer_class(_keras.optimizers.Adagrad))
DPGradientDescentGaussianOptimizer = DPKerasSGDOptimizer
"""TF Privacy's older name for DP-SGD with Gaussian noise (same arguments: l2_norm_clip, noise_multiplier,
num_microbatches, learning_rate)."""
del _keras, _register
