"""The DP-SGD state of one model: hyperparameters, noise, steps run, and the privacy they spent.

`PrivateTraining` is what `make_private` attaches to a model. It counts private steps in a variable
that the training step increments (so `fit`, `train_on_batch` and direct `train_step` calls are all
counted) and turns the count into a `privacy.accounting.PrivacyBudget` by composing the mechanism's
unit event (`DpSgdMechanism.unit_event`) up to the position reached (`PrivacyBudget.advance_to`):
accounting is never re-derived here. Its JSON state (steps and budget ledger) is written with the
checkpoints and read back by a resumed run, which then continues counting from where the state was
saved.
"""

from __future__ import annotations

import json
import math
import os
import secrets

import tensorflow as tf

from privacy.accounting import (AccountantKind, Adjacency, DpSgdMechanism, PrivacyBudget, PrivacyReport,
                                Sampling, default_delta, dp_sgd_report, resolve_adjacency)
from privacy.atomic_files import write_atomically
from privacy.keras import layer_rules, optimizers, recording
from privacy.keras.noise import GaussianNoise
from privacy.keras.params import DPConfigurationError, DPParams

STATE_FORMAT = "ppml.keras.private_training/3"   # /3: the shuffled epochs' order; /2: sampling and adjacency
_STATE_FORMATS = (STATE_FORMAT, "ppml.keras.private_training/2")

PERMUTED, IN_ORDER, CALLERS_DATASET = "permuted", "in order", "the caller's dataset"
"""Where the steps of a shuffled epoch come from: ppml's stream of the arrays given to `fit` (permuted
epochs, or in order with ``shuffle=False``), which a later `fit` continues; or the caller's dataset,
whose next iterator starts a new pass."""


_ATTRIBUTE = "_ppml_private_training"


class PrivacyBudgetExceeded(RuntimeError):
    """Training was asked to continue although the target epsilon is already spent."""


class PrivateTraining:
    """DP-SGD settings and accounting of one model (see `make_private` for the arguments)."""

    def __init__(self, *, params: DPParams | None, expected_batch_size: float | None, dataset_size: int | None,
                 sampling: Sampling | str, adjacency: Adjacency | str | None, target_delta: float | None,
                 target_epsilon: float | None, accountant: AccountantKind | str | None,
                 state_path: str | os.PathLike | None, seed: int | None, secure_noise: bool):
        self.params = params
        self.expected_batch_size = _positive_or_none("expected_batch_size", expected_batch_size)
        if dataset_size is not None and (isinstance(dataset_size, bool) or not isinstance(dataset_size, int)
                                         or dataset_size < 1):
            raise DPConfigurationError(f"dataset_size must be an integer >= 1, got {dataset_size!r}")
        self.dataset_size = dataset_size
        try:
            self.sampling = Sampling(sampling)
            self.adjacency = resolve_adjacency(self.sampling, adjacency)
            self.accountant = AccountantKind(accountant) if accountant is not None else None
        except ValueError as err:
            raise DPConfigurationError(str(err)) from None
        if target_delta is not None and not (isinstance(target_delta, (int, float)) and 0 < target_delta < 1):
            raise DPConfigurationError(f"target_delta must be in (0, 1), got {target_delta!r}")
        self._target_delta = target_delta
        self.target_epsilon = _positive_or_none("target_epsilon", target_epsilon)
        self.state_path = os.fspath(state_path) if state_path is not None else None
        self.steps_per_epoch: int | None = None  # shuffled batches: steps per epoch, set by fit from the data
        self.noise = GaussianNoise(seed=seed, secure=secure_noise)
        self.sampling_seed = None if seed is None else seed + 1
        self.shuffle_seed = secrets.randbits(63) if seed is None else seed + 2  # saved in the state
        self._open_epoch: str | None = None  # shuffled batches: the source of an epoch left partial
        self._counter = None
        self._dropped = None
        self._steps_base = 0
        self._budget: PrivacyBudget | None = None
        self._units: dict[int, list] = {}

    # --- the training step's needs -------------------------------------------------------------
    def build(self) -> None:
        """Creates the noise generator and step counter (eagerly, under the strategy in scope)."""
        self.noise.build()
        if self._counter is None:
            self._counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="ppml_private_steps",
                                        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            self._dropped = tf.Variable(0, dtype=tf.int64, trainable=False, name="ppml_dropped_examples",
                                        aggregation=tf.VariableAggregation.SUM)
            if self.state_path and os.path.exists(self.state_path):
                self._load_state(self.state_path)

    def resolve_params(self, optimizer) -> DPParams:
        """The step's clipping and noise: from `make_private`, or from a DP optimizer (not both, unless equal)."""
        carried = optimizers.dp_params_of(optimizer)
        if self.params is not None and carried is not None and carried != self.params:
            raise DPConfigurationError(
                f"make_private was given {self.params} but the optimizer carries {carried}; give the DP "
                "hyperparameters in one place")
        params = self.params or carried
        if params is None:
            raise DPConfigurationError(
                "no DP-SGD hyperparameters: pass l2_norm_clip and noise_multiplier to make_private, or compile "
                "with DPKerasSGDOptimizer / DPKerasAdamOptimizer / DPKerasAdagradOptimizer")
        if optimizers.gradient_accumulation_steps(optimizer) > 1:
            raise DPConfigurationError(optimizers.ACCUMULATION_REFUSED)
        self.params = params
        return params

    def units(self, model) -> list:
        if id(model) not in self._units:
            self._units[id(model)] = recording.find_units(model, layer_rules.rule_for)
        return self._units[id(model)]

    def global_expected_batch_size(self, x, replicas: int) -> float:
        """B for the division: given, else the static (public) size of the batch times the replicas."""
        if self.expected_batch_size is not None:
            return float(self.expected_batch_size)
        static = tf.nest.flatten(x)[0].shape[0]
        if static is None:
            raise DPConfigurationError(
                "the batch size is not static, so it cannot serve as the public batch size to divide by; pass "
                "expected_batch_size to make_private (or batch with drop_remainder=True)")
        return float(static * replicas)

    def count_step(self, after) -> None:
        """Counts one step once the tensors ``after`` (the step's gradients) exist: a step whose batch
        failed to load is not counted (it changed nothing)."""
        if self._counter is None:
            raise RuntimeError("PrivateTraining.build() must run before the training step is traced")
        with tf.control_dependencies(after):
            self._counter.assign_add(1)

    def count_dropped(self, examples) -> None:
        """Counts examples whose gradient was not finite (dropped: they contributed 0 to the step)."""
        self._dropped.assign_add(examples)

    @property
    def dropped_examples(self) -> int:
        """Examples dropped so far because their gradient, loss or weight was not finite (this process)."""
        return int(self._dropped.numpy()) if self._counter is not None else 0

    @property
    def steps(self) -> int:
        """Private steps run so far, including those of a resumed run's saved state."""
        return self._steps_base + (int(self._counter.numpy()) if self._counter is not None else 0)

    # --- shuffled epochs -----------------------------------------------------------------------
    def set_epoch_length(self, steps_per_epoch: int, where: str) -> None:
        """Fixes the steps of one shuffled epoch (``where`` says what they were read from).

        One run has one epoch length: after steps were taken with another, the epochs counted so far
        would no longer be the passes that ran, so it is refused.
        """
        if self.steps_per_epoch not in (None, steps_per_epoch) and self.steps > 0:
            raise DPConfigurationError(
                f"{where} gives {steps_per_epoch} steps per shuffled epoch, but the {self.steps} steps already "
                f"taken were accounted with {self.steps_per_epoch}; keep the batch size and data of the run")
        self.steps_per_epoch = steps_per_epoch

    def begin_shuffled_fit(self, source: str) -> int:
        """Checks that a `fit` drawing its shuffled batches from ``source`` can follow the steps taken.

        A new iterator over the caller's dataset starts a new pass; in the middle of an epoch, examples
        of the partial epoch could be used twice in what is accounted as one, so that is refused. ppml's
        own stream (``PERMUTED`` or ``IN_ORDER``) continues the epoch instead. Returns the step to start at.
        """
        position = self.steps % self.steps_per_epoch
        if position and (source == CALLERS_DATASET or self._open_epoch not in (None, source)):
            left = self._open_epoch or "steps taken outside fit"
            raise DPConfigurationError(
                f"the last shuffled epoch stopped after {position} of its {self.steps_per_epoch} steps "
                f"({left}); a new pass over {source} would use some of its examples twice in what is accounted "
                f"as one epoch. Finish epochs within one fit (leave steps_per_epoch unset for a dataset), or "
                f"give fit the arrays, whose shuffled epochs ppml continues across fit calls")
        return self.steps

    def end_shuffled_fit(self, source: str) -> None:
        self._open_epoch = source if self.steps % self.steps_per_epoch else None

    # --- accounting ----------------------------------------------------------------------------
    @property
    def target_delta(self) -> float:
        if self._target_delta is not None:
            return self._target_delta
        self._require_accounting()
        return default_delta(self.dataset_size)

    def mechanism(self, steps: int | None = None) -> DpSgdMechanism:
        """The DP-SGD mechanism that ran (``steps`` defaults to the steps run, at least 1)."""
        self._require_accounting()
        if self.params.noise_multiplier == 0:
            raise DPConfigurationError("noise_multiplier is 0: this training is not differentially private")
        # fit sets steps_per_epoch from the data; for steps taken only outside fit the epoch length is
        # unknown and the mechanism takes the conservative floor(n / B).
        kwargs = {"steps_per_epoch": self.steps_per_epoch} if self.sampling is Sampling.SHUFFLE else {}
        try:
            return DpSgdMechanism(dataset_size=self.dataset_size, batch_size=self.expected_batch_size,
                                  noise_multiplier=self.params.noise_multiplier,
                                  steps=max(1, self.steps if steps is None else steps), sampling=self.sampling,
                                  adjacency=self.adjacency, num_microbatches=self.params.num_microbatches,
                                  **kwargs)
        except ValueError as err:
            raise DPConfigurationError(f"cannot account this training: {err}") from None

    @property
    def budget(self) -> PrivacyBudget:
        """The privacy spent by the steps run so far (composed up to now on every access)."""
        mechanism = self.mechanism()
        if self._budget is None:
            self._budget = PrivacyBudget.for_mechanism(mechanism, self.target_delta)
        self._budget.advance_to(mechanism.units(self.steps), mechanism.unit_event())
        return self._budget

    def accountant_kind(self) -> AccountantKind:
        """The accountant for logs and stopping: the one asked for, else RDP where it applies, else PLD."""
        if self.accountant is not None:
            return self.accountant
        return AccountantKind.PLD if self.mechanism().unsupported_reason("rdp") else AccountantKind.RDP

    def epsilon(self, accountant: AccountantKind | str | None = None) -> float:
        """Epsilon spent so far at `target_delta`."""
        return self.budget.epsilon(accountant or self.accountant_kind())

    def report(self) -> PrivacyReport:
        """The `PrivacyReport` of the steps run (one DP-SGD configuration throughout)."""
        budget = self.budget
        mechanism = self.mechanism()
        if len(budget.ledger) != 1 or budget.ledger[0][0] != mechanism.unit_event():
            raise DPConfigurationError("the budget composes several configurations; read it from .budget")
        return dp_sgd_report(mechanism, delta=self.target_delta)

    def max_steps(self) -> int | None:
        """The most steps in total (resumed ones included) whose epsilon stays within `target_epsilon`."""
        if self.target_epsilon is None:
            return None
        budget, mechanism, kind = self.budget, self.mechanism(), self.accountant_kind()
        event = mechanism.unit_event()

        def fits(more: int) -> bool:
            return budget.epsilon_after(event, more, kind) <= self.target_epsilon

        if not fits(1):
            return self.steps
        hi = 2
        while fits(hi):
            hi *= 2
        lo = hi // 2  # fits(lo) holds, fits(hi) does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid)
        allowed_units = budget.units + lo
        if self.sampling is Sampling.SHUFFLE:
            return math.floor(allowed_units * mechanism.epoch_length + 1e-9)
        return allowed_units

    def _require_accounting(self) -> None:
        missing = [name for name, value in (("dataset_size", self.dataset_size),
                                            ("expected_batch_size", self.expected_batch_size),
                                            ("noise_multiplier", self.params)) if value is None]
        if missing:
            raise DPConfigurationError(f"accounting needs {', '.join(missing)}; pass them to make_private")

    # --- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = {"format": STATE_FORMAT, "steps": self.steps, "sampling": self.sampling.value,
                 "adjacency": self.adjacency.value, "budget": self.budget.to_dict()}
        if self.sampling is Sampling.SHUFFLE:
            state["shuffle"] = {"seed": self.shuffle_seed, "steps_per_epoch": self.steps_per_epoch,
                                "open_epoch": self._open_epoch}
        return state

    def save_state(self, path: str | os.PathLike | None = None) -> None:
        """Writes steps and budget atomically to ``path`` (default: `state_path`)."""
        write_atomically(path or self.state_path, json.dumps(self.state_dict(), indent=2))

    def _load_state(self, path: str) -> None:
        try:
            with open(path) as f:
                state = json.load(f)
            if state.get("format") not in _STATE_FORMATS:
                raise ValueError(f"expected format {STATE_FORMAT!r}")
            budget = PrivacyBudget.from_dict(state["budget"])
            steps = int(state["steps"])
            ran = (Sampling(state["sampling"]), Adjacency(state["adjacency"]))
            shuffled = state.get("shuffle") if ran[0] is Sampling.SHUFFLE else None
            if ran[0] is Sampling.SHUFFLE and shuffled is None:
                raise ValueError("it was saved without the order of its shuffled epochs (an older ppml); "
                                 "start from a new state_path")
            if shuffled is not None:
                seed, per_epoch, open_epoch = (int(shuffled["seed"]), shuffled["steps_per_epoch"],
                                               shuffled["open_epoch"])
                if open_epoch not in (None, PERMUTED, IN_ORDER, CALLERS_DATASET):
                    raise ValueError(f"unknown open_epoch {open_epoch!r}")
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise DPConfigurationError(f"cannot resume from the private training state {path}: {err}") from None
        if ran != (self.sampling, self.adjacency):
            # Steps and epochs are different units, and one ledger cannot mix relations.
            raise DPConfigurationError(
                f"cannot resume from the private training state {path}: it accounted {ran[0].value} batches under "
                f"{ran[1].value} adjacency, this training declares {self.sampling.value} under "
                f"{self.adjacency.value}; resume with the same sampling and adjacency or use a new state_path")
        self._steps_base, self._budget = steps, budget
        if shuffled is not None:
            self.shuffle_seed, self.steps_per_epoch, self._open_epoch = seed, per_epoch, open_epoch


def _positive_or_none(name, value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < math.inf):
        raise DPConfigurationError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def private_training(model) -> PrivateTraining:
    """The `PrivateTraining` of a model made private by `make_private` or built as DPModel/DPSequential."""
    private = getattr(model, _ATTRIBUTE, None)
    if private is None:
        raise DPConfigurationError(f"model '{getattr(model, 'name', model)}' is not private; call make_private(model)")
    return private


def privacy_budget(model) -> PrivacyBudget:
    """The `privacy.accounting.PrivacyBudget` spent by the private steps ``model`` has run."""
    return private_training(model).budget


def is_private(model) -> bool:
    return hasattr(model, _ATTRIBUTE)


def attach(model, private: PrivateTraining) -> None:
    """Makes ``private`` the `PrivateTraining` of ``model`` and builds it under the model's strategy."""
    object.__setattr__(model, _ATTRIBUTE, private)
    with model.distribute_strategy.scope():
        private.build()
