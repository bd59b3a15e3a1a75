"""A Keras callback that reports, enforces and checkpoints the privacy budget of private training.

`make_private`'s `fit` puts one first in the callback list (unless you pass your own), so `epsilon`
reaches `logs` before History, TensorBoard, ModelCheckpoint or EarlyStopping read them.
"""

from __future__ import annotations

import functools

from privacy.keras import _compat
from privacy.keras.private_training import PrivacyBudgetExceeded


class _PrivacyBudgetLogic:
    """Composes the budget as steps run, logs epsilon, stops before a target, saves its state.

    * After every epoch (and every batch with ``update_freq="batch"``) ``logs["epsilon"]`` is the
      epsilon spent so far at the model's target delta, from the accountant `PrivateTraining` chose
      (RDP where it applies, else PLD). History and TensorBoard record it like any metric.
    * With a ``target_epsilon`` given to `make_private`, training stops after the last step that keeps
      epsilon within it; starting `fit` with nothing left raises `PrivacyBudgetExceeded`.
    * With a ``state_path`` given to `make_private`, the steps and budget ledger are written at the end
      of every epoch and of training, i.e. whenever Keras' BackupAndRestore or ModelCheckpoint save; a
      new run of the same script resumes from them (steps run after the last save, whose weights are
      lost with the crash, are run again and counted once).

    Args:
      update_freq: "epoch" or "batch" (computing epsilon every step costs a few ms with RDP).
    """

    def __init__(self, update_freq: str = "epoch"):
        super().__init__()  # pylint: disable=super-with-arguments
        if update_freq not in ("epoch", "batch"):
            raise ValueError(f"update_freq must be 'epoch' or 'batch', got {update_freq!r}")
        self.update_freq = update_freq
        self._max_steps = None

    @property
    def private(self):
        from privacy.keras.model import private_training  # pylint: disable=import-outside-toplevel
        return private_training(self.model)

    def on_train_begin(self, logs=None):
        private = self.private
        self._max_steps = private.max_steps()
        if self._max_steps is not None and private.steps >= self._max_steps:
            raise PrivacyBudgetExceeded(
                f"target epsilon {private.target_epsilon:g} is spent: {private.steps} private steps give "
                f"epsilon {private.epsilon():.4g} at delta {private.target_delta:g}; training more would exceed it")

    def on_train_batch_end(self, batch, logs=None):
        private = self.private
        if self._max_steps is not None and private.steps >= self._max_steps:
            self.model.stop_training = True
        if self.update_freq == "batch" and logs is not None:
            logs["epsilon"] = private.epsilon()

    def on_epoch_end(self, epoch, logs=None):
        private = self.private
        if logs is not None:
            logs["epsilon"] = private.epsilon()
        if private.state_path:
            private.save_state()

    def on_train_end(self, logs=None):
        private = self.private
        if private.state_path:
            private.save_state()


@functools.cache
def callback_class(keras) -> type:
    """`PrivacyBudgetCallback` for the Keras package ``keras`` (`keras` or `tf_keras`)."""
    return type("PrivacyBudgetCallback", (_PrivacyBudgetLogic, keras.callbacks.Callback),
                {"__doc__": _PrivacyBudgetLogic.__doc__, "__module__": __name__})


def callback_for(model, update_freq: str = "epoch"):
    """A `PrivacyBudgetCallback` of ``model``'s Keras flavour."""
    return callback_class(_compat.keras_of(model))(update_freq)


PrivacyBudgetCallback = callback_class(_compat.default_keras())
