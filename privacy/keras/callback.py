"""A Keras callback that reports, enforces and checkpoints the privacy budget of private training (and
`StateGuardLogic`, which refuses training that changes non-trainable weights and keeps metric state
out of the checkpoints saved during fit).

`make_private`'s `fit` puts one first in the callback list (a `PrivacyBudgetCallback` you pass yourself
is moved first), so `epsilon` reaches `logs`, and the training loss and metrics leave them, before
History, TensorBoard, ModelCheckpoint or EarlyStopping read them. TensorBoard therefore needs nothing special:

    model.fit(x, y, epochs=10, callbacks=[keras.callbacks.TensorBoard(log_dir)])
    # <log_dir>/train: "epoch_epsilon" at steps 0, 1, ... (epochs); no training loss (removed from the logs)

    model.fit(x, y, epochs=10, callbacks=[PrivacyBudgetCallback(update_freq=100),
                                          keras.callbacks.TensorBoard(log_dir, update_freq=100)])
    # also "batch_epsilon" every 100 steps, at TensorBoard's step (batches run in this fit)

(Keras 3's TensorBoard with an integer update_freq writes the epoch summaries of every metric only
for epochs that end on a multiple of it; choose N dividing the steps per epoch to keep them all.)
"""

from __future__ import annotations

import functools

import numpy as np

from privacy import training_state
from privacy.accounting import UnsupportedAccounting
from privacy.keras import compat, monitoring
from privacy.keras.params import DPConfigurationError
from privacy.keras.private_training import private_training


class PrivacyBudgetLogic:
    """Composes the budget as steps run, logs epsilon, stops before a target, saves its state.

    * After every epoch ``logs["epsilon"]`` is the epsilon spent so far (all private steps of the
      model, resumed ones included) at the model's target delta, from the accountant `PrivateTraining`
      uses (``accountant=`` of `make_private`, else RDP where it applies, else PLD). History, the
      progress bar and TensorBoard (as ``epoch_epsilon``) record it like any metric. The training loss
      and metrics Keras logs beside it, computed from the training batches without noise, are removed
      from the batch and epoch logs (`privacy.keras.monitoring.strip_training_metrics`), so no later
      callback can act on them; validation metrics (``val_*``) stay.
    * With ``update_freq="batch"`` or an integer N it is also put in the batch logs after every step
      or every N steps of the current `fit` (the batches `keras.callbacks.TensorBoard` with the same
      ``update_freq`` writes as ``batch_epsilon``). Each value composes the ledger: under a millisecond
      with RDP (cached per-event curves), about a second with PLD on 2 CPU cores: with PLD choose N so
      that this stays small beside N training steps.
    * With a ``target_epsilon`` given to `make_private`, training stops after the last step that keeps
      epsilon within it; starting `fit` with nothing left raises `PrivacyBudgetExceeded`.
    * With a ``state_path`` given to `make_private`, the steps and budget ledger are written at the end
      of every epoch and of training, i.e. whenever Keras' BackupAndRestore or ModelCheckpoint save; a
      new run of the same script resumes from them (steps run after the last save, whose weights are
      lost with the crash, are run again and counted once).

    Args:
      update_freq: "epoch" (default), "batch", or an integer N >= 1 (every N steps of a `fit`).
    """

    def __init__(self, update_freq: str | int = "epoch"):
        super().__init__()
        if update_freq == "batch":
            every = 1
        elif update_freq == "epoch":
            every = None
        elif isinstance(update_freq, int) and not isinstance(update_freq, bool) and update_freq >= 1:
            every = update_freq
        else:
            raise ValueError(f"update_freq must be 'epoch', 'batch' or an integer >= 1, got {update_freq!r}")
        self.update_freq = update_freq
        self._every = every
        self._max_steps = None
        self._steps_at_begin = 0

    @property
    def private(self):
        return private_training(self.model)

    def on_train_begin(self, logs=None):
        private = self.private
        self._max_steps = private.check_budget()
        self._steps_at_begin = private.steps

    def on_train_batch_end(self, batch, logs=None):
        private = self.private
        if self._max_steps is not None and private.steps >= self._max_steps:
            self.model.stop_training = True
        steps_this_fit = private.steps - self._steps_at_begin
        monitoring.strip_training_metrics(logs)
        if self._every is not None and logs is not None and steps_this_fit % self._every == 0:
            logs["epsilon"] = _epsilon(private)

    def on_epoch_end(self, epoch, logs=None):
        private = self.private
        if private.state_path:  # first: the steps are saved even where epsilon raises (PLD's cost limits)
            private.save_state()
        monitoring.strip_training_metrics(logs)
        if logs is not None:
            logs["epsilon"] = _epsilon(private)

    def on_train_end(self, logs=None):
        private = self.private
        if private.state_path:
            private.save_state()


class StateGuardLogic:
    """Refuses a private fit whose training changes non-trainable weights, of any dtype, but the counters of
    Keras 3 seed generators (`privacy.training_state.changed_state`): checked after the first step, to fail
    early, and when the fit ends (state a later step changed); and one whose seed generators draw another
    number of times in a batch than in the first (checked after every batch).

    For tf-keras, which saves the compiled metrics' accumulators with a SavedModel or checkpoint, it also zeroes
    them, before any later callback runs (it is the first), so that no file saved during fit holds them: at every
    epoch end, and after every step when one of ``others`` (the fit's other callbacks) may see the model between
    two steps (`reads_between_steps`), decided when the fit begins. The training logs then hold the running means
    of the epoch (Keras' own), or with the per-step zeroing each step's own values (batch logs) and 0 (epoch
    logs); an accounted fit removes them anyway (`PrivacyBudgetLogic`), an unaccounted one returns them. Code
    that reads the model between steps without a callback's hook (a thread, the input pipeline, a patched train
    function) is not covered. Keras 3 saves no metric state in any format, and recomputes its epoch logs from the
    accumulators, so they are left running there.

    Args:
      others: the fit's callbacks after this one (Keras' History and progress bar need not be among them).
    """

    def __init__(self, others):
        super().__init__()
        self._others = list(others)

    def on_train_begin(self, logs=None):
        self._variables = list(self.model.non_trainable_variables)
        self._before = [np.array(v.numpy()) for v in self._variables]
        self._seeds = training_state.seed_states(self.model)
        self._steps_at_begin = private_training(self.model).steps
        self._first = True
        self._zero_per_epoch = compat.is_tf_keras(self.model)
        keras = compat.keras_of(self.model)
        self._zero_per_step = self._zero_per_epoch and any(reads_between_steps(cb, keras) for cb in self._others)
        self._generators = [v for v in self._variables if id(v) in self._seeds]
        self._last_draws, self._draws_per_step = None, None

    def on_train_batch_begin(self, batch, logs=None):
        if self._last_draws is None:  # after later callbacks' on_train_begin (BackupAndRestore may load state)
            self._last_draws = (self._counters(), private_training(self.model).steps)

    def on_train_batch_end(self, batch, logs=None):
        self._check_draws()
        if self._first:
            self._first = False
            self._check()
        if self._zero_per_step:
            self.model.reset_metrics()

    def on_epoch_end(self, epoch, logs=None):
        if self._zero_per_epoch:
            self.model.reset_metrics()

    def on_train_end(self, logs=None):
        self._check()

    def _counters(self) -> list[int]:
        return [int(np.asarray(v.numpy())[1]) for v in self._generators]

    def _check_draws(self) -> None:
        """Refuses a seed generator whose counter advances by another number of draws per step than in the
        first batch (a count that can depend on the batch, e.g. a draw under a condition on the data, which
        the end-of-fit check of a multiple of the steps misses when the counts balance)."""
        if not self._generators:
            return
        counters, steps = self._counters(), private_training(self.model).steps
        last, last_steps = self._last_draws
        advance, ran = [now - before for now, before in zip(counters, last, strict=True)], steps - last_steps
        if self._draws_per_step is None:
            self._draws_per_step = (advance, ran)
        first, first_ran = self._draws_per_step
        uneven = [
            training_state.variable_name(v)
            for v, a, f in zip(self._generators, advance, first, strict=True)
            if a * first_ran != f * ran  # the same draws per step as in the first batch
        ]
        if uneven:
            raise DPConfigurationError(training_state.uneven_draws_error(uneven))
        self._last_draws = (counters, steps)

    def _check(self) -> None:
        after = [v.numpy() for v in self._variables]
        steps = private_training(self.model).steps - self._steps_at_begin
        changed = training_state.changed_state(self._variables, self._before, after, seeds=self._seeds, steps=steps)
        if changed:
            raise DPConfigurationError(training_state.updated_state_error(changed))


EPOCH_HOOKS = ("on_train_begin", "on_epoch_begin", "on_epoch_end", "on_train_end")
"""The hooks of a callback that see a tf-keras model only where its compiled metrics hold no step's sums (Keras
zeroes them before ``on_epoch_begin``, the state guard at ``on_epoch_end`` before any later callback, private
`fit` when it returns)."""


def reads_between_steps(cb, keras) -> bool:
    """Whether the callback ``cb`` of a ``keras`` (tf-keras) fit may see the model where its compiled metrics hold
    the sums of the epoch's steps: between two steps, or at the validation that precedes the epoch end (its
    ``on_test_begin``). True for an object that is no ``keras`` Callback, for one with any hook but `EPOCH_HOOKS`
    set on it (as LambdaCallback does), and for one whose class has any such hook that is not
    `keras.callbacks.Callback`'s own no-op (``_implements_train_batch_hooks`` is not trusted: BackupAndRestore's
    says no per epoch, yet its batch hook saves on preemption) unless the class is exactly one of ppml's own,
    Keras' History or ProgbarLogger (they read the logs only) or a ModelCheckpoint saving per epoch
    (``save_freq="epoch"``)."""
    kind, base = type(cb), keras.callbacks.Callback
    if not isinstance(cb, base):
        return True
    hooks = [name for name in dir(base) if name.startswith("on_") and name not in EPOCH_HOOKS]
    if any(name in vars(cb) for name in hooks):
        return True
    harmless = (state_guard_class(keras), callback_class(keras), keras.callbacks.History, keras.callbacks.ProgbarLogger)
    if kind in harmless or (kind is keras.callbacks.ModelCheckpoint and cb.save_freq == "epoch"):
        return False
    return any(getattr(kind, name) is not getattr(base, name) for name in hooks)


def _epsilon(private) -> float:
    """``private.epsilon()``; where the accountant is not asked for it (PLD's cost limits crossed by a fit
    whose length was not known up front), the steps are saved (with a state_path) and a one-line
    `DPConfigurationError` says so."""
    try:
        return private.epsilon()
    except UnsupportedAccounting as err:
        saved = ""
        if private.state_path:
            private.save_state()
            saved = f"; the {private.steps} steps run are saved in {private.state_path}"
        raise DPConfigurationError(
            f"after {private.steps} private steps the epsilon cannot be reported: {err}{saved}"
        ) from None


@functools.cache
def callback_class(keras) -> type:
    """`PrivacyBudgetCallback` for the Keras package ``keras`` (`keras` or `tf_keras`)."""
    return type(
        "PrivacyBudgetCallback",
        (PrivacyBudgetLogic, keras.callbacks.Callback),
        {"__doc__": PrivacyBudgetLogic.__doc__, "__module__": __name__},
    )


@functools.cache
def state_guard_class(keras) -> type:
    return type(
        "StateGuard",
        (StateGuardLogic, keras.callbacks.Callback),
        {"__doc__": StateGuardLogic.__doc__, "__module__": __name__},
    )


def state_guard_for(model, others):
    """A `StateGuardLogic` callback of ``model``'s Keras flavour, run before ``others``."""
    return state_guard_class(compat.keras_of(model))(others)


def callback_for(model, update_freq: str | int = "epoch"):
    """A `PrivacyBudgetCallback` of ``model``'s Keras flavour."""
    return callback_class(compat.keras_of(model))(update_freq)


PrivacyBudgetCallback = callback_class(compat.default_keras())
