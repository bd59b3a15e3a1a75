"""The DP Trainer's settings: what a pipeline author puts in the Trainer's ``custom_config``.

Keys (all optional; the defaults are shown by `DpTrainingConfig`):

=====================  ==========================================================================
private                true: DP-SGD with a privacy ledger; false: ordinary training, no ledger
batch_size             B, the expected batch size (Poisson) or the batch size (fixed, shuffle)
epochs                 passes over the training data: T = ceil(epochs * n / B) noisy steps (Poisson,
                       fixed); whole epochs of ceil(n / B) steps (shuffle)
l2_norm_clip           C, the L2 norm each example's gradient is clipped to
noise_multiplier       sigma: noise std on the summed clipped gradients is sigma * C (1 + 2^-10)
target_epsilon         instead of noise_multiplier: calibrate sigma so that epsilon <= this
delta                  delta of the guarantee (default: the largest power of ten at most 1/(2n))
sampling               poisson (add/remove adjacency, exact analysis), fixed (B drawn without replacement
                       at every step; replace-one adjacency, RDP analysis only) or shuffle
                       (replace-one adjacency, once-per-epoch bound, no amplification)
num_microbatches       clip per microbatch instead of per example (one example moves a microbatch of several
                       by 2C); must divide fixed and shuffled batches
truncated_batch_size   K or "default" (B + 4 standard deviations): truncated Poisson sampling, a batch that
                       draws more than K examples is cut to a uniformly random K of them (Poisson sampling, per-example
                       clipping, PLD only: dp-accounting's TruncatedSubsampledGaussianDpEvent); the ledger
                       records the batches cut
accountant             rdp or pld: the accountant that calibrates target_epsilon (fixed: rdp only; truncated
                       Poisson: pld only)
skip_padding           true: a Poisson step leaves the sampler's padding rows out before the forward pass
                       (make_private's skip_padding); alone, each step's duration follows the batch size drawn,
                       outside the guarantee (the ledger lists it)
batch_size_noise_multiplier
                       sigma_c in rows, with skip_padding (noisy padding, make_private's): each step runs on its
                       drawn examples plus a Gaussian number of padding rows, its row count covered by epsilon;
                       accounted (and target_epsilon calibrated) as one Gaussian of (sigma^-2 + sigma_c^-2)^-1/2 per
                       step, the ledger's delta adding the clamp's T 2^-50 (1 + 2^-40) (1 + e^eps). Poisson
                       sampling, per-example clipping, untruncated batches only; the run_fn's step refuses XLA
decision_epsilon       the push decision's budget: the Private Evaluator releases the held-out accuracy
                       with Gaussian noise calibrated to spend this alone (`privacy.decision`); the
                       ledger reserves it and sigma is calibrated so that everything composed meets
                       target_epsilon. None: no private push decision (the gate then refuses a utility
                       threshold)
public_schema          true: the schema and the examples' feature kinds were fixed before the data was read
                       (ImportSchemaGen; the pipeline sets it with a schema_file); false (default): the
                       ledger lists the data-inferred feature spec (the serving signature's) outside the
                       guarantee (`privacy_ledger.INFERRED_SPEC`)
=====================  ==========================================================================

Other keys are left to the trainer module (e.g. ``learning_rate``), except near-misses of these
names and the glossary's other names for them (`SPELLED_OTHERWISE`: ``target_delta``, ``sampling_probability``, ...),
which are rejected so that a typo or another command's spelling cannot silently leave a privacy setting at its default.

When the Trainer has a Transform graph, its private preprocessing releases are part of the model:
`DpTrainingConfig.plan` composes their events before the training's, calibrates sigma so that both
together meet ``target_epsilon`` at the accountant's delta (``delta`` minus what private vocabularies
add), and the ledger lists both parts.
`DpTrainingConfig.from_custom_config` checks the settings alone; `DpTrainingConfig.plan` checks them
against the data (n) and resolves sigma and delta. Both raise `InvalidPrivacySetting`, naming the key,
before any training. This module does not import TensorFlow.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from typing import Any, Mapping, Sequence

from pipelines.components import settings
from pipelines.privacy_ledger import (
    INFERRED_SPEC,
    SEPARATE_RUNS,
    LedgerError,
    PrivacyLedger,
    accountant_delta_of,
    stopped_early,
)
from pipelines.transform.artifact import NO_COVERAGE_RECORD
from privacy import validation
from privacy.accounting import (
    CALIBRATED_RANGE,
    NOISE_MULTIPLIER_RANGE,
    AccountantKind,
    DpSgdMechanism,
    NoiseDraws,
    PaddingBelowPldFloor,
    PaddingNoiseTooSmall,
    PrivacyBudget,
    Sampling,
    UnsupportedAccounting,
    calibrate_noise_multiplier,
    default_delta,
    delta_below_one_over_n,
    resolve_adjacency,
    steps_for_epochs,
    truncation,
)
from privacy.accounting.mechanism import noisy_padding_uncovered
from privacy.accounting.noise_cutoff import check_l2_norm_clip, check_step_noise, check_step_positions
from privacy.compared import compared
from privacy.decision import DecisionError, NoisyAccuracy
from privacy.preprocessing import PreprocessingAccount, PreprocessingPart, RecordError

SUPPORTED_SAMPLING = tuple(s.value for s in Sampling)
SPELLED_OTHERWISE = {
    "target_delta": "'delta'",
    "sampling_probability": "'batch_size' (q = batch_size / n)",
    "sampling_rate": "'batch_size' (q = batch_size / n)",
    "local_epochs": "'epochs' (total passes over the data)",
    "dp": "'private'",
}
"""Keys that name a DP Trainer setting in the CLI's glossary (README, "Glossary") but not in its ``custom_config``:
refused, since the config passes unknown keys on to the trainer module and would otherwise ignore them silently."""


class InvalidPrivacySetting(settings.InvalidSetting):
    """A DP Trainer setting in ``custom_config`` is invalid; ``setting`` names the key."""


@dataclasses.dataclass(frozen=True)
class DpTrainingConfig:
    """Privacy and batching settings of the DP Trainer (see the module docstring for each key)."""

    private: bool = True
    batch_size: int = 32
    epochs: float = 10.0
    l2_norm_clip: float = 1.0
    noise_multiplier: float | None = None
    target_epsilon: float | None = None
    delta: float | None = None
    sampling: str = Sampling.POISSON.value
    num_microbatches: int | None = None
    truncated_batch_size: int | str | None = None
    accountant: str = AccountantKind.RDP.value
    decision_epsilon: float | None = None
    public_schema: bool = False
    skip_padding: bool = False
    batch_size_noise_multiplier: float | None = None

    @classmethod
    def from_custom_config(cls, custom_config: Mapping[str, Any] | None) -> "DpTrainingConfig":
        """Reads and checks the settings from a Trainer ``custom_config``.

        Raises:
          InvalidPrivacySetting: naming the first bad key.
        """
        custom_config = dict(custom_config or {})
        names = [f.name for f in dataclasses.fields(cls)]
        for key in custom_config:
            if key in SPELLED_OTHERWISE:
                raise InvalidPrivacySetting(
                    key, f"not a DP Trainer setting: this config spells it {SPELLED_OTHERWISE[key]}"
                )
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.8)
            if key not in names and close:
                raise InvalidPrivacySetting(key, f"unknown setting; did you mean {close[0]!r}?")
        values = {k: custom_config[k] for k in names if k in custom_config}
        for key in ("private", "public_schema", "skip_padding"):
            if key in values and not isinstance(values[key], bool):
                raise InvalidPrivacySetting(key, f"must be true or false, got {values[key]!r}")
        for key in ("batch_size", "num_microbatches"):
            if values.get(key) is not None:
                values[key] = settings.integer(InvalidPrivacySetting, key, values[key])
        for key in ("epochs", "l2_norm_clip", "noise_multiplier", "target_epsilon", "decision_epsilon"):
            if values.get(key) is not None:
                values[key] = settings.positive(InvalidPrivacySetting, key, values[key])
        if values.get("delta") is not None:
            values["delta"] = settings.probability(InvalidPrivacySetting, "delta", values["delta"])
        config = cls(**values)
        settings.choice(InvalidPrivacySetting, "sampling", config.sampling, SUPPORTED_SAMPLING)
        settings.choice(InvalidPrivacySetting, "accountant", config.accountant, [a.value for a in AccountantKind])
        config._check_truncation()
        config._check_padding()
        if (
            config.private
            and config.target_epsilon is not None
            and config.sampling == Sampling.FIXED.value
            and config.accountant == AccountantKind.PLD.value
        ):
            raise InvalidPrivacySetting(
                "accountant",
                "dp-accounting's PLD accountant has no analysis of fixed-size "
                "sampling without replacement, so it cannot calibrate "
                "target_epsilon; use 'rdp'",
            )
        if (
            config.num_microbatches is not None
            and config.sampling != Sampling.POISSON.value
            and config.batch_size % config.num_microbatches
        ):
            raise InvalidPrivacySetting(
                "num_microbatches",
                f"{config.sampling} batches of {config.batch_size} "
                f"cannot be split into {config.num_microbatches} equal "
                f"microbatches; use a divisor of batch_size",
            )
        if config.private and (config.noise_multiplier is None) == (config.target_epsilon is None):
            both = "both are" if config.noise_multiplier is not None else "neither is"
            raise InvalidPrivacySetting(
                "noise_multiplier",
                f"private training needs exactly one of 'noise_multiplier' and 'target_epsilon' ({both} set)",
            )
        config._check_noise()
        return config

    def _check_noise(self) -> None:
        """Refuses, before TFX runs, a ``noise_multiplier`` outside `NOISE_MULTIPLIER_RANGE`, an ``l2_norm_clip`` above
        `max_l2_norm_clip` (a step's float32 noisy sum could overflow), a ``batch_size`` of more rows than that bound
        covers (`check_step_positions`; a padded Poisson batch a little above it is refused when the step is traced),
        and an ``l2_norm_clip`` whose step noise is below float32's range (`check_step_noise`; above it, out of reach
        of a clip within the cap, is checked too) at the ``noise_multiplier`` given or, for a ``target_epsilon``
        (calibrated once n is known), at any noise multiplier calibration may return (`CALIBRATED_RANGE`)."""
        if not self.private:
            return
        try:
            check_step_positions(self.batch_size)
        except ValueError as err:
            raise InvalidPrivacySetting("batch_size", str(err)) from None
        try:
            validation.positive("l2_norm_clip", self.l2_norm_clip)
            check_l2_norm_clip(self.l2_norm_clip)
        except ValueError as err:
            raise InvalidPrivacySetting("l2_norm_clip", str(err)) from None
        if self.noise_multiplier is not None:
            low, high = NOISE_MULTIPLIER_RANGE
            try:
                validation.number("noise_multiplier", self.noise_multiplier, low=low, high=high)
            except ValueError as err:
                raise InvalidPrivacySetting("noise_multiplier", str(err)) from None
        sigmas = CALIBRATED_RANGE if self.noise_multiplier is None else (self.noise_multiplier,)
        for sigma in sigmas:
            try:
                check_step_noise(sigma, self.l2_norm_clip, self.num_microbatches or self.batch_size)
            except ValueError as err:
                why = (
                    ""
                    if self.noise_multiplier is not None
                    else (
                        f"; target_epsilon calibrates noise_multiplier within {list(CALIBRATED_RANGE)}, all "
                        "of it must be drawable"
                    )
                )
                raise InvalidPrivacySetting("l2_norm_clip", f"{err}{why}") from None

    def _check_truncation(self) -> None:
        """``truncated_batch_size`` alone: K or "default", for private Poisson sampling clipped per example and
        calibrated (if at all) by PLD (its bounds against n are checked by `plan`)."""
        if self.truncated_batch_size is None:
            return
        try:
            truncation.check_truncated_batch_size(self.truncated_batch_size, expected_batch_size=self.batch_size)
        except ValueError as err:
            raise InvalidPrivacySetting("truncated_batch_size", str(err)) from None
        if not self.private:
            raise InvalidPrivacySetting(
                "truncated_batch_size", "applies to private training only (non-private training runs shuffled batches)"
            )
        if self.sampling != Sampling.POISSON.value:
            raise InvalidPrivacySetting(
                "truncated_batch_size", f"applies to Poisson sampling only, not sampling {self.sampling!r}"
            )
        if self.num_microbatches is not None:
            raise InvalidPrivacySetting(
                "truncated_batch_size",
                "truncated Poisson sampling is analysed for per-example clipping only; drop num_microbatches",
            )
        if self.target_epsilon is not None and self.accountant != AccountantKind.PLD.value:
            raise InvalidPrivacySetting(
                "accountant",
                "dp-accounting's RDP accountant has no analysis of truncated "
                "Poisson sampling (truncated_batch_size), so it cannot "
                "calibrate target_epsilon; use 'pld'",
            )

    def _check_padding(self) -> None:
        """``skip_padding`` and ``batch_size_noise_multiplier`` alone: private training only, and noisy padding where
        make_private takes it (with skip_padding, on the runs `noisy_padding_uncovered` does not name)."""
        if self.skip_padding and not self.private:
            raise InvalidPrivacySetting("skip_padding", "applies to private training only")
        sigma_c = self.batch_size_noise_multiplier
        if sigma_c is None:
            return
        low, high = NOISE_MULTIPLIER_RANGE
        try:
            validation.number("batch_size_noise_multiplier", sigma_c, low=low, high=high)
        except ValueError as err:
            raise InvalidPrivacySetting("batch_size_noise_multiplier", str(err)) from None
        sampling = Sampling(self.sampling)
        why = (
            ("private=false (noisy padding is of private steps)" if not self.private else None)
            or ("skip_padding=false" if not self.skip_padding else None)
            or noisy_padding_uncovered(
                sampling, resolve_adjacency(sampling), self.truncated_batch_size, self.num_microbatches
            )
        )
        if why:
            raise InvalidPrivacySetting(
                "batch_size_noise_multiplier",
                f"{sigma_c!r} needs private training with skip_padding=true, untruncated Poisson batches and "
                f"per-example clipping; got {why}",
            )

    def to_custom_config(self) -> dict[str, Any]:
        """The settings as ``custom_config`` entries (JSON values)."""
        return dataclasses.asdict(self)

    def plan(
        self, *, dataset_size: int, steps: int | None = None, preprocessing: PreprocessingAccount | None = None
    ) -> "DpTrainingPlan":
        """Resolves the run on ``dataset_size`` training examples: steps, delta and sigma.

        Args:
          dataset_size: n, the number of training examples.
          steps: the number of steps, when the Trainer's ``train_args.num_steps`` sets it; else
            ``ceil(epochs * n / B)``.
          preprocessing: what the Transform graph the model embeds released; its events are composed
            before the training's (sigma is calibrated for both together).

        Raises:
          InvalidPrivacySetting: when a setting does not fit the data or the target epsilon cannot
            be reached.
        """
        n = validation.integer("dataset_size", dataset_size, minimum=1)
        self._check_noise()  # a config built directly, not by from_custom_config
        if self.batch_size > n:
            raise InvalidPrivacySetting("batch_size", f"must be <= the {n} training examples, got {self.batch_size}")
        if self.sampling == Sampling.SHUFFLE.value:
            steps = self._shuffled_steps(n, steps)
            self._check_last_shuffled_batch(n)
        elif steps is None:
            steps = steps_for_epochs(self.epochs, n, self.batch_size)
        if not self.private:
            return DpTrainingPlan(config=self, dataset_size=n, steps=steps)
        delta = default_delta(n) if self.delta is None else float(self.delta)
        if not delta_below_one_over_n(delta, n):
            shown, bound = compared(delta, 1 / n, digits=6, bound_digits=3)
            raise InvalidPrivacySetting(
                "delta",
                f"must be below 1/n = {bound} for n = {n} training examples "
                f"(a mechanism that publishes one random record meets delta = 1/n), got {shown}",
            )
        try:
            sampling = Sampling(self.sampling)
            # Shuffled epochs are ceil(n / B) batches, the last one short (as Keras iterates them).
            steps_per_epoch = math.ceil(n / self.batch_size) if sampling is Sampling.SHUFFLE else None
            mechanism = DpSgdMechanism(
                dataset_size=n,
                batch_size=self.batch_size,
                noise_multiplier=self.noise_multiplier or 1.0,
                steps=steps,
                sampling=sampling,
                num_microbatches=self.num_microbatches,
                steps_per_epoch=steps_per_epoch,  # the sampling's natural adjacency
                truncated_batch_size=truncation.resolve_truncated_batch_size(
                    self.truncated_batch_size, n, self.batch_size
                ),
                batch_size_noise_multiplier=self.batch_size_noise_multiplier,
            )
        except ValueError as err:
            setting = next(
                (key for key in ("truncated_batch_size", "num_microbatches") if key in str(err)), "batch_size"
            )
            raise InvalidPrivacySetting(setting, str(err)) from None
        part, accountant_delta = self._preprocessing(preprocessing, mechanism, delta)
        decision = self._decision(accountant_delta)
        if self.target_epsilon is not None:
            prior = ([] if part is None else part.private_events()) + ([] if decision is None else [decision.event()])
            try:
                sigma = calibrate_noise_multiplier(
                    mechanism,
                    target_epsilon=self.target_epsilon,
                    target_delta=accountant_delta,
                    accountant=self.accountant,
                    prior_events=prior,
                )
            except (PaddingNoiseTooSmall, PaddingBelowPldFloor) as err:
                raise InvalidPrivacySetting("batch_size_noise_multiplier", f"cannot calibrate: {err}") from None
            except (ValueError, UnsupportedAccounting) as err:
                raise InvalidPrivacySetting("target_epsilon", f"cannot calibrate: {err}") from None
            mechanism = mechanism.replace(noise_multiplier=sigma)
        return DpTrainingPlan(
            config=self,
            dataset_size=n,
            steps=steps,
            mechanism=mechanism,
            delta=delta,
            preprocessing=part,
            decision=decision,
        )

    def _decision(self, delta: float) -> NoisyAccuracy | None:
        """The push decision's noise, calibrated for ``decision_epsilon`` alone at ``delta`` (None without one)."""
        if self.decision_epsilon is None:
            return None
        try:
            return NoisyAccuracy.calibrate(self.decision_epsilon, delta)
        except DecisionError as err:
            raise InvalidPrivacySetting("decision_epsilon", str(err)) from None

    @staticmethod
    def _preprocessing(
        account: PreprocessingAccount | None, mechanism: DpSgdMechanism, delta: float
    ) -> tuple[PreprocessingPart | None, float]:
        """The preprocessing part under the training's adjacency, and the accountant's delta it leaves."""
        if account is None or not (account.mechanisms or account.unaccounted or account.coverage):
            return None, delta  # no Transform graph, or one that computes nothing from the data
        if account.coverage is None:  # not built with private_preprocessing_fn: fail closed, whatever was found
            raise InvalidPrivacySetting("private", "; ".join(account.unaccounted or (NO_COVERAGE_RECORD,)))
        part = PreprocessingPart(account, mechanism.adjacency)
        try:
            part.events()
            return part, accountant_delta_of(delta, part)
        except RecordError as err:
            raise InvalidPrivacySetting(
                "sampling",
                f"the Transform's private preprocessing does not fit the "
                f"training's {mechanism.adjacency.value} adjacency: "
                f"{err}",
            ) from None
        except LedgerError as err:
            raise InvalidPrivacySetting("delta", str(err)) from None

    def _check_last_shuffled_batch(self, n: int) -> None:
        """Every shuffled batch, the short last one included, must split into equal microbatches."""
        last = n % self.batch_size
        if self.private and self.num_microbatches is not None and last % self.num_microbatches:
            raise InvalidPrivacySetting(
                "num_microbatches",
                f"the last shuffled batch of each epoch holds {last} of "
                f"the {n} training examples, which "
                f"{self.num_microbatches} microbatches cannot split "
                f"equally",
            )

    def _shuffled_steps(self, n: int, steps: int | None) -> int:
        """Shuffled training runs whole epochs of ceil(n / B) batches (the last one short)."""
        per_epoch = math.ceil(n / self.batch_size)
        if steps is not None:
            if steps % per_epoch:
                raise InvalidPrivacySetting(
                    "sampling",
                    f"shuffled training runs whole epochs of {per_epoch} steps; "
                    f"train_args.num_steps={steps} is not a multiple",
                )
            return steps
        if self.epochs != int(self.epochs):
            raise InvalidPrivacySetting("epochs", f"shuffled training runs whole epochs, got {self.epochs:g}")
        return int(self.epochs) * per_epoch


@dataclasses.dataclass(frozen=True)
class DpTrainingPlan:
    """A resolved run: how many steps, and for private runs the mechanism to account.

    Attributes:
      config: the settings it was resolved from.
      dataset_size: n.
      steps: T, the number of (noisy, when private) optimizer steps.
      mechanism: the DP-SGD mechanism (sigma resolved), or None for non-private training.
      delta: delta of the guarantee (the artifact's), or None for non-private training.
      preprocessing: the Transform graph's releases, accounted before the training, or None.
      decision: the push decision's release, reserved (accounted before the training), or None.
    """

    config: DpTrainingConfig
    dataset_size: int
    steps: int
    mechanism: DpSgdMechanism | None = None
    delta: float | None = None
    preprocessing: PreprocessingPart | None = None
    decision: NoisyAccuracy | None = None

    @property
    def private(self) -> bool:
        return self.mechanism is not None

    @property
    def noise_multiplier(self) -> float | None:
        return None if self.mechanism is None else self.mechanism.noise_multiplier

    def ledger(
        self,
        *,
        steps_taken: int | None = None,
        budget: PrivacyBudget | None = None,
        trainer: dict[str, Any] | None = None,
        truncated_batches: int | None = None,
        noise_draws: NoiseDraws | None = None,
        validation_decisions: Sequence[str] | None = None,
        uncovered_padding: bool | None = None,
    ) -> PrivacyLedger:
        """The ledger of the run after ``steps_taken`` steps (default: all planned steps); one that stopped before
        its planned steps lists what decided the stop outside the guarantee (`privacy_ledger.stopped_early`).

        Args:
          budget: the budget the training callback composed, checked against the plan.
          truncated_batches: under truncated Poisson sampling, how many batches the sampler cut (required then).
          noise_draws: what the noise sampler drew (cut-off radius, pairs per step), whose delta the ledger adds.
          validation_decisions: the run's callbacks that acted on validation metrics or wrote them to disk
            (`privacy.keras.PrivateTraining.validation_decisions`), listed outside the guarantee
            (`privacy_ledger.validation_decided`); None (not reported) lists them as unknown.
          uncovered_padding: whether steps left their padding out without noisy padding, so that their durations
            follow the batch sizes drawn (`privacy.keras.PrivateTraining.uncovered_padding`), listed outside the
            guarantee (`privacy_ledger.padding_left_out`); None (not reported) lists it as unknown.
        """
        if self.mechanism is None:
            raise ValueError("a non-private run has no privacy ledger")
        steps = self.steps if steps_taken is None else steps_taken
        outside = {
            **SEPARATE_RUNS,
            **({} if self.config.public_schema else INFERRED_SPEC),
            **(stopped_early(steps, self.steps) if steps < self.steps else {}),
        }
        return PrivacyLedger.for_dp_sgd(
            self.mechanism.replace(steps=steps),
            l2_norm_clip=self.config.l2_norm_clip,
            delta=self.delta,
            delta_is_default=self.config.delta is None,
            budget=budget,
            trainer=trainer,
            preprocessing=self.preprocessing,
            decision=self.decision,
            truncated_batches=truncated_batches,
            outside_guarantee=outside,
            noise_draws=noise_draws,
            validation_decisions=validation_decisions,
            uncovered_padding=uncovered_padding,
        )
