"""The DP-SGD state of one model: hyperparameters, noise, steps run, and the privacy they spent.

`PrivateTraining` is what `make_private` attaches to a model. It counts private steps in a variable
that the training step increments (they run only inside `fit`: see `outside_fit`) and turns the count
into a `privacy.accounting.PrivacyBudget` by composing the mechanism's unit event
(`DpSgdMechanism.unit_event`) up to the position reached (`PrivacyBudget.advance_to`): accounting is
never re-derived here. Its JSON state (steps and budget ledger) is written with the
checkpoints and read back by a resumed run, which then continues counting from where the state was
saved.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import secrets

import tensorflow as tf

from privacy import validation
from privacy.accounting import (
    MAX_STEPS,
    AccountantKind,
    Adjacency,
    DpSgdMechanism,
    PrivacyBudget,
    PrivacyReport,
    Sampling,
    UnsupportedAccounting,
    default_delta,
    dp_sgd_report,
    resolve_adjacency,
)
from privacy.accounting.mechanism import NOISE_MULTIPLIER_RANGE, noisy_padding_uncovered
from privacy.accounting.noise_cutoff import NoiseCutoff, NoiseCutoffError
from privacy.accounting.noisy_padding import UNCOVERED_PADDING, ClampDeltaError, check_clamp_delta
from privacy.atomic_files import write_atomically
from privacy.compared import compared
from privacy.keras import layer_rules, optimizers, recording
from privacy.keras import sampling as sampling_lib
from privacy.keras.noise import GaussianNoise
from privacy.keras.params import DPConfigurationError, DPParams

STATE_FORMAT = "ppml.keras.private_training/3"  # /3: the shuffled epochs' order; /2: sampling and adjacency
_STATE_FORMATS = (STATE_FORMAT, "ppml.keras.private_training/2")
WRITERS_KEPT = "validation_writers_kept"
"""True in a state whose ``validation_decisions`` name the callbacks that wrote validation metrics to disk too; one
saved without it (an older ppml) resumes them as unknown (None)."""

PERMUTED, IN_ORDER, CALLERS_DATASET = "permuted", "in order", "the caller's dataset"
"""Where the steps of a shuffled epoch come from: ppml's stream of the arrays given to `fit` (permuted
epochs, or in order with ``shuffle=False``), which a later `fit` continues; or the caller's dataset,
whose next iterator starts a new pass."""
_SOURCES = (PERMUTED, IN_ORDER, CALLERS_DATASET)


NOT_COVERED = (
    "fit's training loss and metrics (removed from the logs fit's callbacks see; fit zeroes the model's "
    "accumulators when it ends, and for tf-keras at every epoch end and after every step a callback may see, "
    "evaluate when it returns, so a "
    "model saved during or after them carries none) and "
    "PrivateTraining.dropped_examples are computed from the training data without noise: they are "
    "outside this guarantee (diagnostics, not for release with the model)"
)
"""What private training shows that its epsilon does not cover (a note of every `PrivateTraining.report`)."""

_ATTRIBUTE = "_ppml_private_training"
_NO_LIMIT = 2**62


class PrivacyBudgetExceeded(RuntimeError):
    """Training was asked to continue although the target epsilon is already spent."""


class PrivateTraining:
    """DP-SGD settings and accounting of one model (see `make_private` for the arguments)."""

    def __init__(
        self,
        *,
        params: DPParams | None,
        expected_batch_size: float | None,
        dataset_size: int | None,
        sampling: Sampling | str,
        adjacency: Adjacency | str | None,
        target_delta: float | None,
        target_epsilon: float | None,
        accountant: AccountantKind | str | None,
        state_path: str | os.PathLike | None,
        seed: int | None,
        secure_noise: bool,
        truncated_batch_size: int | str | None = None,
        skip_padding: bool = False,
        batch_size_noise_multiplier: float | None = None,
    ):
        self.params = params
        if not isinstance(skip_padding, bool):
            raise DPConfigurationError(f"skip_padding must be True or False, got {skip_padding!r}")
        self.skip_padding = skip_padding
        self.expected_batch_size = _positive_or_none("expected_batch_size", expected_batch_size)
        microbatches = params.num_microbatches if params is not None else None
        if microbatches and self.expected_batch_size is not None and microbatches > self.expected_batch_size:
            shown, bound = compared(microbatches, self.expected_batch_size, bound_digits=4)
            raise DPConfigurationError(
                f"num_microbatches={shown} exceeds expected_batch_size={bound}: most microbatches would be "
                f"empty; give at most one microbatch per expected example"
            )
        if dataset_size is not None:
            dataset_size = validation.integer("dataset_size", dataset_size, minimum=1, error=DPConfigurationError)
        self.dataset_size = dataset_size
        try:
            self.sampling = Sampling(sampling)
            self.adjacency = resolve_adjacency(self.sampling, adjacency)
            self.accountant = AccountantKind(accountant) if accountant is not None else None
        except ValueError as err:
            raise DPConfigurationError(str(err)) from None
        if target_delta is not None:
            target_delta = validation.probability("target_delta", target_delta, error=DPConfigurationError)
        self._target_delta = target_delta
        self.target_epsilon = _positive_or_none("target_epsilon", target_epsilon)
        self.state_path = os.fspath(state_path) if state_path is not None else None
        if truncated_batch_size is not None:
            if self.sampling is not Sampling.POISSON:
                raise DPConfigurationError(
                    f"truncated_batch_size applies to Poisson sampling only, not sampling={self.sampling.value!r}"
                )
            if microbatches:
                raise DPConfigurationError(
                    "truncated Poisson sampling is analysed for per-example clipping only; "
                    "drop num_microbatches or truncated_batch_size"
                )
            truncated_batch_size = sampling_lib.check_truncated_batch_size(
                truncated_batch_size, dataset_size, self.expected_batch_size
            )
        self.truncated_batch_size = truncated_batch_size  # None, an integer K, or "default"
        self.batch_size_noise_multiplier = _noisy_padding(batch_size_noise_multiplier, self, microbatches)
        self._samplers: dict[int, sampling_lib.BatchSampling] = {}  # the truncating samplers fit has run
        self.steps_per_epoch: int | None = None  # shuffled batches: steps per epoch, set by fit from the data
        self.noise = GaussianNoise(seed=seed, secure=secure_noise)
        self.sampling_seed = None if seed is None else seed + 1
        self.shuffle_seed = secrets.randbits(63) if seed is None else seed + 2  # saved in the state
        self._in_fit = False  # a fit of this model is running (its replicas may trace the step on other threads)
        self.held_train_function = None  # the step an earlier fit traced, out of the model's reach between fits
        # Shuffled batches: the source of the partial epoch when the last fit ended, and of the fit running now.
        self._open_epoch: str | None = None
        # `note_validation_decisions`; saved in the state; None: unknown (resumed from a state saved before they, or
        # the writers among them, were kept: `WRITERS_KEPT`), and stays so
        self.validation_decisions: list[str] | None = []
        self._fitting: str | None = None
        self._counter = None
        self._dropped = None
        self._padding_left_out = False  # a traced step left padding out (skip_padding, no XLA, no microbatches)
        # whether the resumed state's steps left padding out without noisy padding (None: a state saved before
        # ppml recorded it, so unknown)
        self._uncovered_before: bool | None = False
        self._limit = None  # the counter must stay below it (target_epsilon); set by check_budget
        self._max_steps: tuple | None = None  # (what it depends on, max_steps)
        self._steps_base = 0
        self.require_accounting = False  # set for the drop-in: fit refuses a private training it cannot account
        self._budget: PrivacyBudget | None = None
        self._units: dict[int, list] = {}

    # --- the training step's needs -------------------------------------------------------------
    def build(self) -> None:
        """Creates the noise generator and step counter (eagerly, under the strategy in scope)."""
        self.noise.build()
        if self._counter is None:
            self._counter = tf.Variable(
                0,
                dtype=tf.int64,
                trainable=False,
                name="ppml_private_steps",
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )
            self._dropped = tf.Variable(
                0, dtype=tf.int64, trainable=False, name="ppml_dropped_examples", aggregation=tf.VariableAggregation.SUM
            )
            self._limit = tf.Variable(
                _NO_LIMIT if self.target_epsilon is None else 0,
                dtype=tf.int64,
                trainable=False,
                name="ppml_step_limit",
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )
            if self.state_path and os.path.exists(self.state_path):
                self._load_state(self.state_path)
                self.noise.resume_at(self._steps_base)

    def resolve_params(self, optimizer) -> DPParams:
        """The step's clipping and noise: from `make_private`, or from a DP optimizer (not both, unless equal)."""
        carried = optimizers.dp_params_of(optimizer)
        if self.params is not None and carried is not None and carried != self.params:
            raise DPConfigurationError(
                f"make_private was given {self.params} but the optimizer carries {carried}; give the DP "
                "hyperparameters in one place"
            )
        params = self.params or carried
        if params is None:
            raise DPConfigurationError(
                "no DP-SGD hyperparameters: pass l2_norm_clip and noise_multiplier to make_private, or compile "
                "with DPKerasSGDOptimizer / DPKerasAdamOptimizer / DPKerasAdagradOptimizer"
            )
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
                "expected_batch_size to make_private (or batch with drop_remainder=True)"
            )
        return float(static * replicas)

    def count_step(self, after) -> None:
        """Counts one step once the tensors ``after`` (the step's gradients) exist: a step whose batch
        failed to load is not counted (it changed nothing)."""
        if self._counter is None:
            raise RuntimeError("PrivateTraining.build() must run before the training step is traced")
        with tf.control_dependencies(after):
            self._counter.assign_add(1)

    def note_padding_left_out(self) -> None:
        """Notes, when the step is traced, that it leaves the sampler's padding out (for the report's note)."""
        self._padding_left_out = True

    def count_dropped(self, examples) -> None:
        """Counts examples whose gradient (or its norm's bound), loss or weight was not finite (dropped: they
        contributed 0 to the step)."""
        self._dropped.assign_add(examples)

    def step_checks(self) -> list:
        """Refuses a step outside this model's `fit` (`outside_fit`); returns the assertions the step makes
        before it applies its update: with a target epsilon, that it stays within the limit `check_budget`
        set when fit began, a backstop behind the budget callback's stop (XLA drops assertions)."""
        if not self._in_fit:
            raise DPConfigurationError(outside_fit("calling train_step outside fit"))
        if self.target_epsilon is None:
            return []
        return [
            tf.debugging.assert_less(
                self._counter,
                self._limit,
                message=f"make_private(target_epsilon={self.target_epsilon:g}) allows no further private step: the "
                f"target would be exceeded",
            )
        ]

    def note_validation_decisions(self, decisions) -> None:
        """Adds the callbacks a `fit` runs with that decide on validation metrics or write them to disk
        (`monitoring.validation_decisions`) to `validation_decisions`: every fit's, a resumed run's saved ones
        included, each named once. They are outside the guarantee (the ledger lists them): the model, or the files
        written, depend on held-out records through them. Unknown ones (None: resumed from a state saved before they,
        or the writers among them, were kept) stay unknown."""
        if self.validation_decisions is not None:
            self.validation_decisions += [d for d in decisions if d not in self.validation_decisions]

    @property
    def dropped_examples(self) -> int:
        """Examples dropped so far because their gradient (or its norm's bound: an overflow), loss or weight was not
        finite (this process).

        An exact count computed from the training data without noise: outside the privacy guarantee (it
        can tell that a given record is in the data), so it is not in `fit`'s logs; a diagnostic only.
        """
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
                f"taken were accounted with {self.steps_per_epoch}; keep the batch size and data of the run"
            )
        self.steps_per_epoch = steps_per_epoch

    def open_epoch(self) -> str | None:
        """Where the steps of the current, partial shuffled epoch came from (one of `PERMUTED`, `IN_ORDER`,
        `CALLERS_DATASET`), or None at an epoch boundary."""
        if not self.steps_per_epoch or self.steps % self.steps_per_epoch == 0:
            return None
        return self._fitting if self._fitting is not None else self._open_epoch

    def shuffled_start(self, source: str) -> int:
        """Checks that a `fit` drawing its shuffled batches from ``source`` can follow the steps taken;
        returns the step it starts at.

        In the middle of an epoch only ppml's own stream (``PERMUTED`` or ``IN_ORDER``) can continue it,
        and only if that epoch's steps so far came from the same stream: a new pass over the caller's
        dataset or another order could use some examples twice in what is accounted as one epoch, so
        those are refused.
        """
        position = self.steps % self.steps_per_epoch
        open_epoch = self.open_epoch()
        if position and (source == CALLERS_DATASET or open_epoch != source):
            raise DPConfigurationError(
                f"the last shuffled epoch stopped after {position} of its {self.steps_per_epoch} steps "
                f"({open_epoch}); a new pass over {source} would use some of its examples twice in what is "
                f"accounted as one epoch. Finish epochs within one fit (leave steps_per_epoch unset for a dataset), "
                f"or give fit the arrays with the same shuffle setting, whose epochs ppml continues across fit calls"
            )
        return self.steps

    @contextlib.contextmanager
    def fitting(self, source: str | None):
        """Marks the block as a `fit` of this model, the only place its private steps may run, drawing
        shuffled batches from ``source`` (None: not shuffled)."""
        self._in_fit, self._fitting = True, source
        try:
            yield
        finally:
            if source is not None:
                self._open_epoch = self.open_epoch()
            self._in_fit, self._fitting = False, None

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
        # fit sets steps_per_epoch from the data; before the first fit the mechanism takes floor(n / B).
        kwargs = {"steps_per_epoch": self.steps_per_epoch} if self.sampling is Sampling.SHUFFLE else {}
        if self.truncated_batch_size is not None:
            kwargs["truncated_batch_size"] = sampling_lib.resolve_truncated_batch_size(
                self.truncated_batch_size, self.dataset_size, self.expected_batch_size
            )
        try:
            return DpSgdMechanism(
                dataset_size=self.dataset_size,
                batch_size=self.expected_batch_size,
                noise_multiplier=self.params.noise_multiplier,
                steps=max(1, self.steps if steps is None else steps),
                sampling=self.sampling,
                adjacency=self.adjacency,
                num_microbatches=self.params.num_microbatches,
                batch_size_noise_multiplier=self.batch_size_noise_multiplier,
                **kwargs,
            )
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

    def unaccountable_reason(
        self, accountant: AccountantKind | str | None = None, steps: int | None = None
    ) -> str | None:
        """Why ``accountant`` (default: `accountant_kind`) is not asked for the epsilon of ``steps`` steps
        (default: those run): no analysis, PLD's cost limits (as `privacy.accounting.compute_epsilon`), or the noise
        sampler's cut-off or noisy padding's clamp adding more than 1 % of delta over those steps
        (`_noise_cutoff_reason`)."""
        kind = AccountantKind(accountant) if accountant is not None else self.accountant_kind()
        mechanism = self.mechanism(steps)
        return (
            mechanism.unsupported_reason(kind.value)
            or mechanism.cost_reason(kind.value, self.target_delta)
            or self._noise_cutoff_reason(mechanism)
        )

    def _noise_cutoff_reason(self, mechanism: DpSgdMechanism) -> str | None:
        """Why the noise's cut-off cannot be accounted within `noise_cutoff.MAX_ADDED_FRACTION` of delta at
        `target_epsilon` (the bound for every epsilon without one), or None: also where the noise's tensors are not
        known yet (`GaussianNoise.draws`), or only epsilon bounds the cut-off (fixed or truncated batches) and
        there is no target: `report` then checks it at the epsilon spent. With noisy padding, likewise its clamp's
        delta (`noisy_padding.check_clamp_delta`) at `target_epsilon` when there is one."""
        if mechanism.batch_size_noise_multiplier is not None and self.target_epsilon is not None:
            try:  # noisy padding's clamp: T p (1 + e^eps) at the target (`report` checks it at the epsilon spent)
                check_clamp_delta(mechanism.steps, self.target_epsilon, self.target_delta)
            except ClampDeltaError as err:
                return str(err)
        if self.noise.draws is None:
            return None
        cutoff = NoiseCutoff.for_mechanism(mechanism, self.noise.draws)
        if cutoff.distinct_shifts is None and self.target_epsilon is None:
            return None
        try:
            cutoff.check(self.target_delta, math.inf if self.target_epsilon is None else self.target_epsilon)
        except NoiseCutoffError as err:
            return str(err)
        return None

    def epsilon(self, accountant: AccountantKind | str | None = None) -> float:
        """Epsilon spent so far at `target_delta`.

        Raises:
          UnsupportedAccounting: where the accountant has no analysis or PLD would exceed its cost limits.
        """
        kind = AccountantKind(accountant) if accountant is not None else self.accountant_kind()
        reason = self.unaccountable_reason(kind)
        if reason:
            raise UnsupportedAccounting(reason)
        return self.budget.epsilon(kind)

    def report(self) -> PrivacyReport:
        """The `PrivacyReport` of the steps run (one DP-SGD configuration throughout)."""
        budget = self.budget
        mechanism = self.mechanism()
        if len(budget.ledger) != 1 or budget.ledger[0][0] != mechanism.unit_event():
            raise DPConfigurationError("the budget composes several configurations; read it from .budget")
        try:
            report = dp_sgd_report(mechanism, delta=self.target_delta, noise_draws=self.noise.draws)
        except (NoiseCutoffError, ClampDeltaError) as err:
            raise DPConfigurationError(str(err)) from None
        notes = (*report.notes, f"not covered: {NOT_COVERED}.")
        if mechanism.truncated_batch_size is not None:
            notes += (
                f"truncated Poisson sampling cut {self.truncated_batches} batch(es) to "
                f"{mechanism.truncated_batch_size} examples (the steps are accounted with the cut hidden; "
                f"this count is not covered by epsilon: it depends on the batch sizes drawn, so on n and, "
                f"under add-remove, on an example's presence; counted when drawn in this process, so "
                f"batches prefetched but not trained on are included).",
            )
        if self.uncovered_padding:
            notes += (f"skip_padding: {UNCOVERED_PADDING}.",)
        elif self.uncovered_padding is None:
            notes += (
                "skip_padding: unknown whether the resumed steps left their batch's padding out (their state was "
                f"saved before ppml recorded it); where they did, {UNCOVERED_PADDING}.",
            )
        return dataclasses.replace(report, notes=notes)

    def max_steps(self) -> int | None:
        """The most steps in total (resumed ones included) whose epsilon stays within `target_epsilon`."""
        if self.target_epsilon is None:
            return None
        budget, mechanism, kind = self.budget, self.mechanism(), self.accountant_kind()
        event = mechanism.unit_event()
        ledger = budget.ledger
        before = ledger[:-1] if ledger and ledger[-1][0] == event else ledger  # earlier configurations
        key = (event, before, kind, self.target_epsilon, self.target_delta, mechanism.epoch_length, self.noise.draws)
        if self._max_steps is None or self._max_steps[0] != key:
            trial = PrivacyBudget(
                target_delta=self.target_delta,
                neighboring_relation=budget.neighboring_relation,
                group_size=budget.group_size,
            )
            for earlier, count in before:
                trial.compose(earlier, count)

            def steps_of(units: int) -> int:
                if self.sampling is Sampling.SHUFFLE:
                    return math.floor(units * mechanism.epoch_length + 1e-9)
                return units

            def fits(more: int) -> bool:  # beyond MAX_STEPS or PLD's cost limits nothing is known to fit
                steps = steps_of(trial.units + more)
                return (
                    steps <= MAX_STEPS
                    and self.unaccountable_reason(kind, steps) is None
                    and trial.epsilon_after(event, more, kind) <= self.target_epsilon
                )

            self._max_steps = (key, steps_of(trial.units + _most(fits)))
        return self._max_steps[1]

    def check_budget(self) -> int | None:
        """Lets the training step run up to `max_steps` (None: no target) and returns it.

        Raises:
          PrivacyBudgetExceeded: when no step is left within `target_epsilon` (or within the noise cut-off's 1 % of
            delta).
        """
        limit = self.max_steps()
        if limit is None:
            return None
        self._limit.assign(limit - self._steps_base)
        if self.steps >= limit:
            cutoff = self._noise_cutoff_reason(self.mechanism(self.steps + 1))
            if cutoff:
                raise PrivacyBudgetExceeded(f"no step is left after {self.steps} private steps: {cutoff}")
            spent, target = compared(self.epsilon(), self.target_epsilon, bound_digits=4)
            raise PrivacyBudgetExceeded(
                f"target epsilon {target} is spent: {self.steps} private steps give epsilon "
                f"{spent} at delta {self.target_delta:g}; training more would exceed it"
            )
        return limit

    def ran_sampler(self, sampler) -> None:
        """Notes a truncating Poisson sampler that `fit` runs, for `truncated_batches`."""
        if sampler.truncated:
            self._samplers[id(sampler.cut)] = sampler

    @property
    def truncated_batches(self) -> int:
        """Batches that truncated Poisson sampling cut in this process (counted when drawn, so a batch
        prefetched but not trained on may be included; not kept across resumed runs)."""
        return sum(sampler.truncated_batches for sampler in self._samplers.values())

    def missing_for_accounting(self) -> list[str]:
        """What accounting still lacks, among dataset_size, expected_batch_size and noise_multiplier."""
        return [
            name
            for name, value in (
                ("dataset_size", self.dataset_size),
                ("expected_batch_size", self.expected_batch_size),
                ("noise_multiplier", self.params),
            )
            if value is None
        ]

    def _require_accounting(self) -> None:
        missing = self.missing_for_accounting()
        if missing:
            raise DPConfigurationError(f"accounting needs {', '.join(missing)}; pass them to make_private")

    @property
    def uncovered_padding(self) -> bool | None:
        """Whether a step (this process's or a resumed state's) left its batch's padding out without noisy padding,
        so that its duration followed the batch size drawn (saved in the state; a privacy ledger lists it outside the
        guarantee); None where that is unknown: no step of this process did, and the state it resumed was saved
        before ppml recorded it."""
        if (self._padding_left_out and self.batch_size_noise_multiplier is None) or self._uncovered_before:
            return True
        return None if self._uncovered_before is None else False

    # --- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = {
            "format": STATE_FORMAT,
            "steps": self.steps,
            "sampling": self.sampling.value,
            "adjacency": self.adjacency.value,
            "budget": self.budget.to_dict(),
            "validation_decisions": None if self.validation_decisions is None else list(self.validation_decisions),
            WRITERS_KEPT: True,
            "batch_size_noise_multiplier": self.batch_size_noise_multiplier,
            "uncovered_padding": self.uncovered_padding,
        }
        if self.sampling is Sampling.SHUFFLE:
            state["shuffle"] = {
                "seed": self.shuffle_seed,
                "steps_per_epoch": self.steps_per_epoch,
                "open_epoch": self.open_epoch(),
            }
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
            decisions = state.get("validation_decisions")  # None: unknown (absent from states saved before them)
            if state.get(WRITERS_KEPT) is not True:  # saved before they named the writers: whether any wrote is unknown
                decisions = None
            uncovered = state.get("uncovered_padding")  # None: unknown (absent from states saved before it)
            noisy = state.get("batch_size_noise_multiplier")  # absent: saved before noisy padding existed
            if noisy is not None and (type(noisy) not in (int, float) or not noisy > 0):
                raise ValueError(f"batch_size_noise_multiplier must be a positive number or null, got {noisy!r}")
            if uncovered is not None and not isinstance(uncovered, bool):
                raise ValueError(f"uncovered_padding must be true, false or null, got {uncovered!r}")
            if decisions is not None and not (
                isinstance(decisions, list) and all(isinstance(d, str) for d in decisions)
            ):
                raise ValueError("validation_decisions must be a list of callback names or null")
            shuffled = state.get("shuffle") if ran[0] is Sampling.SHUFFLE else None
            if ran[0] is Sampling.SHUFFLE and shuffled is None:
                raise ValueError(
                    "it was saved without the order of its shuffled epochs (an older ppml); start from a new state_path"
                )
            if shuffled is not None:
                seed, per_epoch, open_epoch = (
                    int(shuffled["seed"]),
                    shuffled["steps_per_epoch"],
                    shuffled["open_epoch"],
                )
                if open_epoch not in (None, *_SOURCES):
                    raise ValueError(f"unknown open_epoch {open_epoch!r}")
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise DPConfigurationError(f"cannot resume from the private training state {path}: {err}") from None
        if ran != (self.sampling, self.adjacency):
            # Steps and epochs are different units, and one ledger cannot mix relations.
            raise DPConfigurationError(
                f"cannot resume from the private training state {path}: it accounted {ran[0].value} batches under "
                f"{ran[1].value} adjacency, this training declares {self.sampling.value} under "
                f"{self.adjacency.value}; resume with the same sampling and adjacency or use a new state_path"
            )
        if steps and noisy != self.batch_size_noise_multiplier:
            # The earlier steps' clamp delta and cut-off shift follow their own sigma_c: one report cannot mix them.
            raise DPConfigurationError(
                f"cannot resume from the private training state {path}: its steps ran with "
                f"batch_size_noise_multiplier={noisy!r}, this training declares {self.batch_size_noise_multiplier!r}; "
                "resume with the same one or use a new state_path"
            )
        self._steps_base, self._budget, self.validation_decisions = steps, budget, decisions
        self._uncovered_before = uncovered if steps else False
        if shuffled is not None:
            self.shuffle_seed, self.steps_per_epoch, self._open_epoch = seed, per_epoch, open_epoch


def _most(fits) -> int:
    """The largest k >= 0 with fits(k), for fits true at 0 and monotone (0 when fits(1) is false)."""
    if not fits(1):
        return 0
    hi = 2
    while fits(hi):
        hi *= 2
    lo = hi // 2  # fits(lo) holds, fits(hi) does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def outside_fit(what: str) -> str:
    """The one-line refusal of a private step that ``what`` (`train_on_batch`, a direct `train_step` call)
    would take on the caller's batch: what cannot be checked is not accounted on the caller's word."""
    return (
        f"{what} cannot train a private model: ppml cannot check how the caller's batch was sampled, so it "
        f"cannot account the step; train with fit, which samples the batches itself (or checks those of "
        f"poisson_batches, fixed_size_batches or a shuffled dataset)"
    )


def _positive_or_none(name, value):
    return None if value is None else validation.positive(name, value, error=DPConfigurationError)


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


def detach(model) -> None:
    """Removes ``model``'s `PrivateTraining` (see `attach`)."""
    object.__delattr__(model, _ATTRIBUTE)


def attach(model, private: PrivateTraining) -> None:
    """Makes ``private`` the `PrivateTraining` of ``model`` and builds it under the model's strategy."""
    object.__setattr__(model, _ATTRIBUTE, private)
    with model.distribute_strategy.scope():
        private.build()


def _noisy_padding(value, private: PrivateTraining, microbatches: int | None) -> float | None:
    """``batch_size_noise_multiplier`` checked (a number in `NOISE_MULTIPLIER_RANGE`, with skip_padding and the
    runs `privacy.accounting.noisy_padding` covers; the step refuses XLA and replicas), or None."""
    if value is None:
        return None
    low, high = NOISE_MULTIPLIER_RANGE
    value = validation.number("batch_size_noise_multiplier", value, low=low, high=high, error=DPConfigurationError)
    why = "skip_padding=False" if not private.skip_padding else None
    why = why or noisy_padding_uncovered(
        private.sampling, private.adjacency, private.truncated_batch_size, microbatches
    )
    if why:
        raise DPConfigurationError(
            f"batch_size_noise_multiplier={value!r} needs skip_padding=True, untruncated Poisson batches, add-remove "
            f"adjacency and per-example clipping; got {why}"
        )
    return value
