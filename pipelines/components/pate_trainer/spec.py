"""PATE Trainer settings: the one source of the ``--trainer pate`` defaults (no TensorFlow, no TFX).

A pipeline author puts these keys in the Trainer's ``custom_config``; `pipelines.plan.resolve_plan` fills the
bundled data's ``label_key``, ``num_classes`` and ``feature_keys`` (public facts of the data set).

======================  ==================  ===============================================================
key                     default             meaning
======================  ==================  ===============================================================
label_key               (required)          integer class label column
num_classes             (required)          the labels' classes, public (>= 2, at most ``teachers``)
feature_keys            (required)          numeric feature columns, one float each: the declared, public spec
                                            each record is read against (no record decides the features)
holder_key              none                a column naming each record's data holder: all of a holder's
                                            records go to one teacher and the privacy unit is a user;
                                            without it each record is placed by its content alone
private_split           train               the split the teachers train on (private)
public_split            public              the unlabeled query split the student learns from (assumed
                                            public; its labels are never read)
teachers                20                  teachers, over disjoint partitions of the private split
aggregator              confident_gnmax     confident_gnmax | gnmax (`privacy.pate.aggregators`)
threshold               15                  Confident-GNMax: answer iff max vote + N(0, sigma1^2) >= this
sigma1                  3                   Confident-GNMax selection noise std, in votes
sigma                   3                   GNMax noise std, in votes (Confident-GNMax's sigma2)
max_answered            40                  Confident-GNMax: answers stop here; the guarantee charges it
delta                   1e-5                delta of the guarantee
epochs                  30                  epochs of each teacher and of the student
hidden_units            32                  one ReLU layer of the teachers' and the student's MLP
seed                    0                   partition and models' initialisation (never the privacy noise)
private                 true                PATE is private; false is refused
decision_epsilon        none                the push decision's budget (`privacy.decision`), composed
                                            into the ledger (the pipeline reserves it)
smoothed_release        false               also release the data-dependent RDP through smooth sensitivity
                                            (`privacy.pate.smooth_sensitivity`): labelled as such in the
                                            ledger; the guarantee then composes the release's own cost
smooth_order            20                  that release's RDP order (fixed before the votes are seen)
smooth_beta             0.4 / smooth_order  its smoothness beta
sigma_ss                10                  its noise multiplier on the smooth sensitivity
semi_supervised         false               self-train the student on the unanswered public queries it
                                            labels itself (`privacy.pate.student`): post-processing of the
                                            released labels, the same epsilon; the ledger names it
confidence              0.9                 the predicted probability a pseudo-label needs, in (0, 1]
self_training_rounds    2                   pseudo-label and refit rounds
======================  ==================  ===============================================================

`PateTrainingConfig.from_custom_config` raises `InvalidPateSetting` naming the key, before TFX is imported.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from pipelines.components import settings
from privacy.pate import ConfidentGNMax, GNMax, PateConfigurationError, SmoothSensitivityRelease
from privacy.pate.student import DEFAULT_CONFIDENCE, DEFAULT_ROUNDS, SelfTraining
from privacy.pate.votes import check_teachers

AGGREGATORS = ("confident_gnmax", "gnmax")
"""`privacy.pate.ConfidentGNMax` (selective answering, the default) or `privacy.pate.GNMax` (every query)."""
CONFIDENT_ONLY = ("threshold", "sigma1", "max_answered")
"""Settings of Confident-GNMax only: refused, not ignored, with ``aggregator: gnmax``."""
SMOOTHING = ("smooth_order", "smooth_beta", "sigma_ss")
"""Settings of the smoothed release only: refused, not ignored, without ``smoothed_release``."""
SELF_TRAINING = ("confidence", "self_training_rounds")
"""Settings of the student's self-training only: refused, not ignored, without ``semi_supervised``."""
EVAL_SPLIT = "eval"
"""The Evaluator's held-out split: neither the private nor the public split may be it."""
MAX_SEED = 2**32 - 1


class InvalidPateSetting(settings.InvalidSetting):
    """A PATE Trainer setting is invalid; ``setting`` names the key."""


@dataclasses.dataclass(frozen=True)
class PateTrainingConfig:
    """PATE settings (see the module docstring for each key and its default)."""

    label_key: str
    num_classes: int
    feature_keys: tuple[str, ...]
    holder_key: str | None = None
    private_split: str = "train"
    public_split: str = "public"
    teachers: int = 20
    aggregator: str = "confident_gnmax"
    threshold: float = 15.0
    sigma1: float = 3.0
    sigma: float = 3.0
    max_answered: int | None = 40
    delta: float = 1e-5
    epochs: int = 30
    hidden_units: int = 32
    seed: int = 0
    private: bool = True
    decision_epsilon: float | None = None
    smoothed_release: bool = False
    smooth_order: float = 20.0
    smooth_beta: float | None = None
    sigma_ss: float = 10.0
    semi_supervised: bool = False
    confidence: float = DEFAULT_CONFIDENCE
    self_training_rounds: int = DEFAULT_ROUNDS

    @classmethod
    def from_custom_config(cls, custom_config: Mapping[str, Any] | None) -> "PateTrainingConfig":
        """Reads and checks the settings.

        Raises:
          InvalidPateSetting: naming the first bad or unknown key.
        """
        values = dict(custom_config or {})
        settings.refuse_unknown(InvalidPateSetting, values, [f.name for f in dataclasses.fields(cls)])
        for key in ("label_key", "num_classes", "feature_keys"):
            if values.get(key) is None:
                raise InvalidPateSetting(key, "is required (public facts of the data, fixed before it is read)")
        for key in ("label_key", "holder_key", "private_split", "public_split"):
            if values.get(key) is not None and (not isinstance(values[key], str) or not values[key]):
                raise InvalidPateSetting(key, f"must be a non-empty string, got {values[key]!r}")
        keys = values["feature_keys"]
        if (
            isinstance(keys, (str, bytes))
            or not hasattr(keys, "__iter__")
            or not keys
            or not all(isinstance(k, str) and k for k in keys)
            or len(set(keys)) != len(list(keys))
        ):
            raise InvalidPateSetting("feature_keys", f"must be a non-empty list of distinct column names, got {keys!r}")
        values["feature_keys"] = tuple(keys)
        for key in ("private", "smoothed_release", "semi_supervised"):
            if key in values and not isinstance(values[key], bool):
                raise InvalidPateSetting(key, f"must be true or false, got {values[key]!r}")
        if values.get("private") is False:
            raise InvalidPateSetting(
                "private", "PATE is a private trainer; for ordinary training use trainer dp with private false"
            )
        values["num_classes"] = settings.integer(InvalidPateSetting, "num_classes", values["num_classes"], minimum=2)
        for key in ("teachers", "epochs", "hidden_units", "self_training_rounds"):
            if key in values:
                values[key] = settings.integer(InvalidPateSetting, key, values[key])
        if values.get("max_answered") is not None:
            values["max_answered"] = settings.integer(InvalidPateSetting, "max_answered", values["max_answered"])
        if "seed" in values:
            values["seed"] = settings.integer(InvalidPateSetting, "seed", values["seed"], minimum=0, maximum=MAX_SEED)
        if "delta" in values:
            values["delta"] = settings.probability(InvalidPateSetting, "delta", values["delta"])
        if values.get("decision_epsilon") is not None:
            values["decision_epsilon"] = settings.positive(
                InvalidPateSetting, "decision_epsilon", values["decision_epsilon"]
            )
        if not values.get("smoothed_release"):
            given = [k for k in SMOOTHING if k in values]
            if given:
                raise InvalidPateSetting(given[0], "sets the smoothed release, but smoothed_release is false")
        if not values.get("semi_supervised"):
            given = [k for k in SELF_TRAINING if k in values]
            if given:
                raise InvalidPateSetting(given[0], "sets the student's self-training, but semi_supervised is false")
        settings.choice(InvalidPateSetting, "aggregator", values.get("aggregator", AGGREGATORS[0]), AGGREGATORS)
        if values.get("aggregator") == "gnmax":
            given = [k for k in CONFIDENT_ONLY if k in values]
            if given:
                raise InvalidPateSetting(given[0], "is a Confident-GNMax setting, but aggregator is gnmax")
        config = cls(**values)
        config._check()
        return config

    def _check(self) -> None:
        try:
            check_teachers(self.teachers, self.num_classes)
        except PateConfigurationError as err:
            raise InvalidPateSetting("teachers", str(err)) from None
        self.make_aggregator()
        self.smoothing()
        self.self_training()
        splits = {"private_split": self.private_split, "public_split": self.public_split}
        for key, name in splits.items():
            if name == EVAL_SPLIT:
                raise InvalidPateSetting(key, f"{name!r} is the Evaluator's held-out split")
        if self.private_split == self.public_split:
            raise InvalidPateSetting(
                "public_split", f"the public split must not be the private one ({self.private_split!r})"
            )
        if self.holder_key and self.decision_epsilon is not None:
            raise InvalidPateSetting(
                "decision_epsilon",
                "the push decision is accounted per held-out record, but with "
                "a holder_key a holder's held-out records are not bounded",
            )
        used = {self.label_key, *([self.holder_key] if self.holder_key else [])}
        if used & set(self.feature_keys):
            raise InvalidPateSetting(
                "feature_keys", f"must not hold the label or holder column ({sorted(used & set(self.feature_keys))})"
            )

    def make_aggregator(self) -> GNMax | ConfidentGNMax:
        """The aggregator these settings describe (its noise from the OS CSPRNG when it runs).

        Raises:
          InvalidPateSetting: naming the noise setting out of range.
        """
        try:
            if self.aggregator == "gnmax":
                return GNMax(self.sigma)
            return ConfidentGNMax(self.threshold, self.sigma1, self.sigma, self.max_answered)
        except PateConfigurationError as err:
            name = str(err).split()[0]
            raise InvalidPateSetting("sigma" if name == "sigma2" else name, str(err)) from None

    def smoothing(self) -> SmoothSensitivityRelease:
        """The smoothed release's settings (checked whether or not it is made).

        Raises:
          InvalidPateSetting: naming the setting out of range.
        """
        try:
            return SmoothSensitivityRelease(order=self.smooth_order, beta=self.smooth_beta, sigma_ss=self.sigma_ss)
        except PateConfigurationError as err:
            name = {"order": "smooth_order", "beta": "smooth_beta", "sigma_ss": "sigma_ss"}.get(
                str(err).split()[1], "smooth_order"
            )
            raise InvalidPateSetting(name, str(err)) from None

    def self_training(self) -> SelfTraining | None:
        """The student's self-training settings, or None when ``semi_supervised`` is false.

        Raises:
          InvalidPateSetting: naming the setting out of range.
        """
        if not self.semi_supervised:
            return None
        try:
            return SelfTraining(self.confidence, self.self_training_rounds)
        except PateConfigurationError as err:
            name = "confidence" if str(err).startswith("confidence") else "self_training_rounds"
            raise InvalidPateSetting(name, str(err)) from None

    @property
    def privacy_unit(self) -> str:
        """'user' with a ``holder_key`` (a holder's records are one teacher's), else 'example'."""
        return "user" if self.holder_key else "example"

    @property
    def target_epsilon(self) -> None:
        """None: PATE's noise is set, not calibrated to a target (the plan's decision share then uses ppml's
        default target, as for a Trainer given a noise multiplier)."""
        return None
