"""The private preprocessing's settings: what the pipeline puts in the Transform's ``custom_config``.

Under the key `CONFIG_KEY` (all optional):

=============  ===========================================================================
private        true: analyzers release noisy statistics (default); false: exact ones, which
               the privacy gate never blesses
epsilon        the preprocessing's own budget: its releases together spend this epsilon when
               accounted alone (default: `DEFAULT_SHARE` of the pipeline's target epsilon)
delta          the delta that epsilon is calibrated at (default `CALIBRATION_DELTA`: n, and so
               the Trainer's default delta, is not known when the Transform is built)
adjacency      add-remove (the record count is noised) or replace-one (n public); must be the
               Trainer's: the pipeline sets it from the Trainer's sampling
noise_seed     fixes the noise, for tests only: the gate refuses a model whose noise was seeded
=============  ===========================================================================

The epsilon and shares only decide how much noise each release gets; what the artifact spent is
recomputed from the recorded releases by the Trainer, which calibrates DP-SGD so that everything
composed meets the pipeline's target. This module does not import TensorFlow.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from pipelines.components import settings
from privacy.accounting import Adjacency

CONFIG_KEY = "ppml_preprocessing"
DEFAULT_SHARE = 0.75
"""Fraction of the target epsilon the pipeline gives its preprocessing: the best of 0.25-0.9 for the bundled
pipeline at total epsilon 3 and 8, within 0.002 accuracy of the best at 1 (benchmarks/README.md)."""
CALIBRATION_DELTA = 1e-3
"""The delta preprocessing noise is calibrated at when the Trainer's delta is left to its default: the
default delta of a training set of 100 to 999 records, like the bundled one. With more data the real
delta is smaller and the preprocessing alone spends more than its share (the Trainer's calibration
still makes the whole meet the target); set the Trainer's delta to calibrate at the real one."""


REPLACEMENTS = {
    # tft analyzer (its name scope) -> what to use instead
    "scale_to_z_score": "PrivateAnalyzers.scale_to_z_score(x, bounds=..., share=...)",
    "scale_to_z_score_per_key": "no private per-key z-score yet: PrivateAnalyzers.scale_to_z_score(x, bounds=..., "
    "share=...) over all keys",
    "mean": "PrivateAnalyzers.mean_and_var(x, bounds=..., share=...)",
    "var": "PrivateAnalyzers.mean_and_var(x, bounds=..., share=...)",
    "mean_and_var": "PrivateAnalyzers.mean_and_var(x, bounds=..., share=...)",
    "scale_to_0_1": "PrivateAnalyzers.scale_by_min_max(x, bounds=..., share=...)",
    "scale_by_min_max": "PrivateAnalyzers.scale_by_min_max(x, bounds=..., share=...)",
    "min": "PrivateAnalyzers.quantiles(x, [0.0], bounds=..., share=...)",
    "max": "PrivateAnalyzers.quantiles(x, [1.0], bounds=..., share=...)",
    "quantiles": "PrivateAnalyzers.quantiles(x, probabilities, bounds=..., share=...)",
    "bucketize": "PrivateAnalyzers.bucketize(x, num_buckets, bounds=..., share=...)",
    "vocabulary": "PrivateAnalyzers.vocabulary(x, share=...)",
    "compute_and_apply_vocabulary": "PrivateAnalyzers.compute_and_apply_vocabulary(x, share=...)",
    "size": "no private count yet: declare_public(n, reason=...) only where n is public (replace-one adjacency)",
    "count": "no private per-key count yet: drop it, or declare_public(counts, reason=...) with public counts",
    "sum": "PrivateAnalyzers.mean_and_var(x, bounds=..., share=...) (a noisy sum and count)",
}
"""The private replacement of each tft analyzer, for error messages."""


def analyzer_scope(name: str) -> str:
    """The tft function whose name scope holds the op or tensor ``name``, e.g. 'scale_to_z_score' for
    'scale_to_z_score_3/mean_and_var/Placeholder:0'."""
    scope = name.split("/")[0]
    base, _, suffix = scope.rpartition("_")
    return base if suffix.isdigit() and base else scope


def replacement_for(analyzer: str) -> str:
    """What to use instead of the tft analyzer ``analyzer``."""
    return REPLACEMENTS.get(
        analyzer,
        "a private analyzer of pipelines.transform.analyzers.PrivateAnalyzers, or "
        "declare_public(public values, reason=...)",
    )


class InvalidPreprocessingSetting(settings.InvalidSetting):
    """A private preprocessing setting is invalid; ``setting`` names the key."""

    def __init__(self, setting: str, message: str):
        super().__init__(f"{CONFIG_KEY}.{setting}", message)


@dataclasses.dataclass(frozen=True)
class PreprocessingConfig:
    """The resolved settings (see the module docstring)."""

    private: bool = True
    epsilon: float | None = None
    delta: float = CALIBRATION_DELTA
    adjacency: Adjacency = Adjacency.ADD_REMOVE
    noise_seed: int | None = None

    @classmethod
    def from_custom_config(cls, custom_config: Mapping[str, Any] | None) -> "PreprocessingConfig":
        """Reads ``custom_config[CONFIG_KEY]``; without it, private analyzers have no budget (an error on use).

        Raises:
          InvalidPreprocessingSetting: naming the bad key.
        """
        values = dict((custom_config or {}).get(CONFIG_KEY) or {})
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise InvalidPreprocessingSetting(unknown[0], "unknown setting")
        if not isinstance(values.get("private", True), bool):
            raise InvalidPreprocessingSetting("private", f"must be true or false, got {values['private']!r}")
        if values.get("epsilon") is not None:
            values["epsilon"] = settings.positive(InvalidPreprocessingSetting, "epsilon", values["epsilon"])
        if values.get("delta") is not None:
            values["delta"] = settings.probability(InvalidPreprocessingSetting, "delta", values["delta"])
        else:
            values.pop("delta", None)
        try:
            values["adjacency"] = Adjacency(values.get("adjacency", Adjacency.ADD_REMOVE.value))
        except ValueError:
            raise InvalidPreprocessingSetting(
                "adjacency", f"must be one of {', '.join(a.value for a in Adjacency)}, got {values.get('adjacency')!r}"
            ) from None
        if values.get("noise_seed") is not None:
            values["noise_seed"] = settings.integer(
                InvalidPreprocessingSetting, "noise_seed", values["noise_seed"], minimum=0
            )
        return cls(**values)

    def to_custom_config(self) -> dict[str, Any]:
        """``{CONFIG_KEY: {...}}`` for the Transform's custom_config (JSON values)."""
        values = dataclasses.asdict(self)
        values["adjacency"] = self.adjacency.value
        return {CONFIG_KEY: {k: v for k, v in values.items() if v is not None}}

    def budget(self):
        """The `privacy.preprocessing.PreprocessingBudget` private analyzers draw their noise from.

        Raises:
          InvalidPreprocessingSetting: when ``epsilon`` is not set.
        """
        if self.epsilon is None:
            raise InvalidPreprocessingSetting(
                "epsilon",
                "private analyzers need a preprocessing budget; set "
                f"custom_config[{CONFIG_KEY!r}]['epsilon'] (the pipeline "
                f"sets it from the target epsilon and the preprocessing "
                f"share)",
            )
        from privacy.preprocessing import PreprocessingBudget

        return PreprocessingBudget(self.epsilon, self.delta, self.adjacency)
