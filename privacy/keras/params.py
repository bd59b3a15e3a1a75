"""The DP-SGD hyperparameters of the training step: clipping norm, noise multiplier, microbatches."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

from privacy import validation
from privacy.accounting import (  # the step's slack (defined there, without TensorFlow)
    NOISE_MULTIPLIER_RANGE,
    SLACK,
    noise_cutoff,
)


class DPConfigurationError(ValueError):
    """A model, optimizer, loss or input that DP-SGD cannot train privately, with what to use instead."""

    ag_pass_through = True  # raised while a step is traced: AutoGraph must not rewrap it as a StagingError


@dataclasses.dataclass(frozen=True)
class DPParams:
    """Clipping and noise of one DP-SGD step.

    Attributes:
      l2_norm_clip: C, the L2 bound on each example's (or microbatch's) gradient, over all variables; at most
        `privacy.accounting.noise_cutoff.max_l2_norm_clip` (about 2.5e27), beyond which a step's float32 noisy sum
        could overflow for some data and not for its neighbour.
      noise_multiplier: sigma; Gaussian noise with standard deviation sigma * C (1 + SLACK) is added once to the sum
        of clipped gradients (`exact_noise_stddev`); in `privacy.accounting.NOISE_MULTIPLIER_RANGE`, or 0 to train
        without noise (no privacy; for tests and baselines).
      num_microbatches: M to clip the mean gradients of M equal slices of each batch instead of single
        examples (a microbatch may then hold several examples, and one of them can move its clipped
        mean by 2C: the accountant is told so); None clips per example.
    """

    l2_norm_clip: float
    noise_multiplier: float
    num_microbatches: int | None = None

    def __post_init__(self):
        validation.positive("l2_norm_clip", self.l2_norm_clip, error=DPConfigurationError)
        noise_cutoff.check_l2_norm_clip(self.l2_norm_clip, error=DPConfigurationError)
        low, high = NOISE_MULTIPLIER_RANGE
        if not (_is_number(self.noise_multiplier) and self.noise_multiplier == 0):
            validation.number(
                "noise_multiplier",
                self.noise_multiplier,
                low=low,
                high=high,
                note="the range the accountants are used on; or 0: no privacy",
                error=DPConfigurationError,
            )
        if self.num_microbatches is not None:
            validation.integer(
                "num_microbatches", self.num_microbatches, minimum=1, note="or None", error=DPConfigurationError
            )

    @property
    def exact_noise_stddev(self) -> Fraction:
        """sigma * C * (1 + SLACK) exactly (the floats as given, unrounded): the standard deviation of the noise on
        the summed clipped gradients, which the noise added must not fall below. Each unit's term of the released
        sum, its floating-point rounding included, is within C (1 + SLACK) (`privacy.keras.roundoff`), so the noise
        is sigma times that: the accountant's sigma is unchanged."""
        return Fraction(float(self.noise_multiplier)) * Fraction(float(self.l2_norm_clip)) * (1 + SLACK)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
