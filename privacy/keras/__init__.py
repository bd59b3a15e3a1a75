"""DP-SGD training for Keras 3 (TensorFlow backend) and tf-keras 2.21, with honest accounting.

Front door (works with ordinary `compile` and `fit`):

    from privacy.keras import make_private, poisson_batches, private_training

    model = make_private(model, l2_norm_clip=1.0, noise_multiplier=1.1, expected_batch_size=256,
                         dataset_size=n)         # sampling="poisson"; target_delta <= 1/(2n) by default
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(x, y, epochs=3)          # arrays are Poisson-sampled; history.history["epsilon"]
    # or: model.fit(poisson_batches(examples, dataset_size=n, expected_batch_size=256), epochs=3)
    private_training(model).budget               # privacy.accounting.PrivacyBudget of the steps that ran
    # or one planned mechanism instead of its parts: make_private(model, DpSgdMechanism(...), l2_norm_clip=1.0)

TF Privacy names: `DPKerasSGDOptimizer` (also `DPGradientDescentGaussianOptimizer`), `DPKerasAdamOptimizer`,
`DPKerasAdagradOptimizer` (l2_norm_clip, noise_multiplier, num_microbatches): a plain model compiled with
one becomes private at its first `fit` (`make_private(model, sampling="shuffle")`: shuffled epochs of
the arrays, or the caller's dataset, accounted by the once-per-epoch bound); or use them with
`make_private(model)` or `DPModel` / `DPSequential`; their `minimize(loss, var_list, tape=tape)` runs TF
Privacy's step on a per-example loss vector (see `privacy.keras.optimizers`). For that, importing this
package wraps `keras.Model.fit` (of the Keras behind tf.keras; see `model.install_drop_in`); nothing
else of Keras is changed. What is guaranteed:

* every example's gradient (over all trainable variables) is clipped to L2 norm C, by ghost norms for
  Dense, EinsumDense, Embedding, Conv1D, Conv2D, DepthwiseConv2D, LayerNormalization, LSTM and GRU (see
  `layer_rules` for the LSTMs and GRUs that take the fallback), and by exact vectorised per-example gradients
  for any other layer;
* Gaussian noise of std noise_multiplier * C is added once (per global batch, also under
  `tf.distribute.MirroredStrategy`) to the sum of clipped gradients, which is divided by the expected
  batch size;
* the budget composes `privacy.accounting`'s event of the sampling that ran, once per step; private
  steps run only inside `fit` (`train_on_batch` and direct `train_step` calls are refused: the
  caller's batch cannot be checked, so it cannot be accounted).

Epsilon is in `fit`'s logs, so History, the progress bar and `keras.callbacks.TensorBoard` show it
(``epoch_epsilon``; ``batch_epsilon`` with `PrivacyBudgetCallback(update_freq=N)`). The training loss
and metrics, computed without noise and not covered by epsilon (`NOT_COVERED`), are removed from the
logs every callback sees (validation metrics stay), and their accumulators in the model are zeroed when `fit`
ends, so a saved model carries none of them.
Compile as usual: on CPU leave ``jit_compile`` at its default (off), which measured as fast as or
faster than XLA for private steps (benchmarks/README.md); with ``jit_compile=True`` the step is
XLA-compiled too.

The model's class is unchanged, so it saves and serves as an ordinary Keras model. Importing this
package imports TensorFlow; the Keras flavour of the classes below follows TF_USE_LEGACY_KERAS, while
`make_private` accepts models of either flavour.
"""

from privacy.keras.callback import PrivacyBudgetCallback
from privacy.keras.model import DPModel, DPSequential, make_dp_model_class, make_private
from privacy.keras.optimizers import (
    DPGradientDescentGaussianOptimizer,
    DPKerasAdagradOptimizer,
    DPKerasAdamOptimizer,
    DPKerasSGDOptimizer,
    make_dp_optimizer_class,
)
from privacy.keras.params import DPConfigurationError, DPParams
from privacy.keras.private_training import (
    NOT_COVERED,
    PrivacyBudgetExceeded,
    PrivateTraining,
    privacy_budget,
    private_training,
)
from privacy.keras.sampling import BatchSampling, fixed_size_batches, poisson_batches, sampling_of
from privacy.keras.validator import find_problems, validate

__all__ = [
    "BatchSampling",
    "DPConfigurationError",
    "DPGradientDescentGaussianOptimizer",
    "DPKerasAdagradOptimizer",
    "DPKerasAdamOptimizer",
    "DPKerasSGDOptimizer",
    "DPModel",
    "DPParams",
    "DPSequential",
    "NOT_COVERED",
    "PrivacyBudgetCallback",
    "PrivacyBudgetExceeded",
    "PrivateTraining",
    "find_problems",
    "fixed_size_batches",
    "make_dp_model_class",
    "make_dp_optimizer_class",
    "make_private",
    "poisson_batches",
    "privacy_budget",
    "private_training",
    "sampling_of",
    "validate",
]
