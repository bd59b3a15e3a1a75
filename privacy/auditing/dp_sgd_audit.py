"""One-run audit of Keras DP-SGD (`privacy.keras.make_private`): train once with canaries, bound epsilon from below.

`run_dp_sgd_audit(plan, x, y, x_pool, y_pool)` adds canaries (`AuditPlan.kind`: "white-box" Dirac gradient canaries
or "black-box" mislabelled inputs from `x_pool`, which must be disjoint from the training data) to a copy of the
data, trains a small private model on it, scores the canaries after every epoch and returns, per epoch, the
epsilon that the run's accounting claims and the one-run lower bound (`privacy.auditing.one_run`). The audited
model is an audit device and is discarded; the inclusion bits stay in memory and are never logged or returned.

`AuditPlan.fault` injects a known bug for sanity checks: "clip-2x" ("clip-4x") clips to 2C (4C) while the noise
and the claimed epsilon are those of clip C with `noise_multiplier` (the run's true noise multiplier is half (a
quarter of) the declared one); "no-noise" adds no noise while claiming the declared one. Where the one-run bound
is strong enough to see it (the configuration in the README), a working audit reports a bound above the claim.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from privacy.accounting import NOISE_MULTIPLIER_RANGE
from privacy.auditing import canaries as canary_rows
from privacy.auditing.one_run import DEFAULT_CONFIDENCE, audit_one_run

KINDS = ("white-box", "black-box")
FAULT_CLIP_FACTORS = {"none": 1.0, "clip-2x": 2.0, "clip-4x": 4.0, "no-noise": 1.0}
"""Deliberate bugs for sanity checks: the factor the gradients are really clipped to, times C."""
FAULTS = tuple(FAULT_CLIP_FACTORS)


@dataclasses.dataclass(frozen=True)
class AuditPlan:
    """Everything one audit run needs, validated once. The defaults are the README's configuration on digits
    (1,347 training images, about 2,350 rows with the canaries: 2 steps per epoch, far from the rounding edges
    of n / B): a claimed epsilon of about 1.06 at delta 1e-5, where "no-noise" and "clip-4x" are caught.

    Attributes:
      kind: "white-box" (Dirac gradient canaries, score = slot weight) or "black-box" (mislabelled inputs,
        score = minus loss).
      num_canaries: m, canaries drawn (each included with probability 1/2).
      epochs: training epochs (Poisson-sampled steps of expected size `batch_size`).
      batch_size: expected batch size B.
      l2_norm_clip: C.
      noise_multiplier: sigma as declared (and as accounted).
      learning_rate: SGD step size.
      delta: the delta of the claimed epsilon and of the bound.
      confidence: confidence of the lower bound.
      fault: a deliberate bug to inject (`FAULTS`), "none" for an honest run.
      hidden_units: width of the model's hidden layer.
    """

    kind: str = "white-box"
    num_canaries: int = 2000
    epochs: int = 5
    batch_size: int = 1200
    l2_norm_clip: float = 1.0
    noise_multiplier: float = 6.5
    learning_rate: float = 0.5
    delta: float = 1e-5
    confidence: float = DEFAULT_CONFIDENCE
    fault: str = "none"
    hidden_units: int = 32

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.fault not in FAULTS:
            raise ValueError(f"fault must be one of {', '.join(FAULTS)}, got {self.fault!r}")
        for name in ("num_canaries", "epochs", "batch_size", "hidden_units"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("l2_norm_clip", "noise_multiplier", "learning_rate"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        factor = FAULT_CLIP_FACTORS[self.fault]
        low, high = NOISE_MULTIPLIER_RANGE
        if not low * factor <= self.noise_multiplier <= high:
            raise ValueError(f"noise_multiplier must be in [{low * factor:g}, {high:g}]"
                             f"{f' with fault {self.fault}' if factor > 1 else ''}, got {self.noise_multiplier!r}")
        if self.kind == "white-box" and self.l2_norm_clip * factor > canary_rows.MAX_DIRAC_CLIP:
            raise ValueError(f"l2_norm_clip must be at most {canary_rows.MAX_DIRAC_CLIP / factor:g} for white-box "
                             f"canaries (their gradient must exceed the clip norm), got {self.l2_norm_clip!r}")
        if not 0 < self.delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {self.delta!r}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence!r}")


@dataclasses.dataclass(frozen=True)
class AuditResult:
    """Per-epoch claimed epsilons and lower bounds of one audit run (the bits are not part of it).

    Attributes:
      plan: the plan that ran.
      claimed_epsilon: the accounted epsilon after each epoch, at plan.delta.
      lower_bound: the one-run lower bound after each epoch, at plan.delta and plan.confidence.
      final: the `OneRunAudit` of the last epoch, as a dict (Bonferroni over the guess counts).
      final_split: the same scores bounded with ``strategy="split"`` instead (for comparison; the verdict uses
        `final`, chosen before the run).
      dataset_size: training rows including the included canaries.
      steps: private steps run.
      seconds: wall time of training and scoring.
    """

    plan: AuditPlan
    claimed_epsilon: tuple[float, ...]
    lower_bound: tuple[float, ...]
    final: dict[str, Any]
    final_split: dict[str, Any]
    dataset_size: int
    steps: int
    seconds: float

    @property
    def violated(self) -> bool:
        """True when the final lower bound exceeds the final claimed epsilon: the claim is false (at confidence)."""
        return self.lower_bound[-1] > self.claimed_epsilon[-1]

    def to_dict(self) -> dict[str, Any]:
        return {"plan": dataclasses.asdict(self.plan), "claimed_epsilon": list(self.claimed_epsilon),
                "lower_bound": list(self.lower_bound), "final": self.final,
                "final_split": self.final_split, "dataset_size": self.dataset_size,
                "steps": self.steps, "seconds": self.seconds, "violated": self.violated}


def run_dp_sgd_audit(plan: AuditPlan, x: np.ndarray, y: np.ndarray, x_pool: np.ndarray | None = None,
                     y_pool: np.ndarray | None = None) -> AuditResult:
    """Trains once with canaries as `plan` says and returns the claimed epsilons and lower bounds per epoch.

    Args:
      plan: the audit's settings.
      x, y: training features [n, d] (float) and integer labels [n].
      x_pool, y_pool: inputs outside the training data for black-box canaries (at least num_canaries rows).
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from privacy.auditing import keras_canaries  # pylint: disable=import-outside-toplevel
    from privacy.keras import make_private, private_training  # pylint: disable=import-outside-toplevel

    check_data(plan, x, y, x_pool)
    x, y = np.asarray(x, np.float32), np.asarray(y).astype(np.int64).reshape(-1)
    num_classes = int(y.max()) + 1
    if plan.kind == "black-box":
        canaries = canary_rows.mislabelled_canaries(np.asarray(x_pool, np.float32), y_pool, plan.num_canaries,
                                                    num_classes)
        x_train, y_train = canaries.training_data(x, y)
    else:
        canaries = canary_rows.dirac_slot_rows(x.shape[1], plan.num_canaries)
        x_train, y_train = canaries.training_data(canary_rows.with_empty_slot(x, plan.num_canaries), y)

    clip, sigma = plan.l2_norm_clip, plan.noise_multiplier
    factor = FAULT_CLIP_FACTORS[plan.fault]
    clip, sigma = clip * factor, sigma / factor     # noise std sigma * C as declared; clipped at factor * C
    if plan.fault == "no-noise":
        sigma = 0.0
    base = tf.keras.Sequential([tf.keras.Input(shape=(x.shape[1],)),
                                tf.keras.layers.Dense(plan.hidden_units, activation="relu"),
                                tf.keras.layers.Dense(num_classes)])
    model = base if plan.kind == "black-box" else \
        keras_canaries.with_dirac_slot(base, x.shape[1], plan.num_canaries, num_classes)
    make_private(model, l2_norm_clip=clip, noise_multiplier=sigma, expected_batch_size=plan.batch_size,
                 dataset_size=len(y_train), target_delta=plan.delta, secure_noise=True)
    model.compile(optimizer=tf.keras.optimizers.SGD(plan.learning_rate),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    def scores() -> np.ndarray:
        if plan.kind == "white-box":
            return keras_canaries.white_box_scores(model)
        return keras_canaries.black_box_scores(model, canaries.x, canaries.y)

    claimed, bounds, audits, last_scores = [], [], [], None
    start = time.perf_counter()
    for _ in range(plan.epochs):
        model.fit(x_train, y_train, epochs=1, verbose=0)
        claimed.append(_claimed_epsilon(private_training(model), plan))
        last_scores = scores()
        audits.append(audit_one_run(last_scores, canaries.included, delta=plan.delta, confidence=plan.confidence))
        bounds.append(audits[-1].epsilon_lower_bound)
    return AuditResult(plan=plan, claimed_epsilon=tuple(claimed), lower_bound=tuple(bounds),
                       final=audits[-1].to_dict(),
                       final_split=audit_one_run(last_scores, canaries.included, delta=plan.delta,
                                                 confidence=plan.confidence, strategy="split").to_dict(),
                       dataset_size=len(y_train), steps=private_training(model).steps,
                       seconds=time.perf_counter() - start)


def check_data(plan: AuditPlan, x: np.ndarray, y: np.ndarray, x_pool: np.ndarray | None) -> None:
    """Refuses data the plan cannot run on, before any training (ValueError naming the setting)."""
    if len(x) != len(y) or len(y) < 2:
        raise ValueError(f"need at least 2 training rows with one label each, got {len(x)} rows, {len(y)} labels")
    if plan.batch_size > len(y):
        raise ValueError(f"batch_size must be at most the {len(y)} training rows, got {plan.batch_size}")
    if plan.kind == "black-box" and (x_pool is None or len(x_pool) < plan.num_canaries):
        raise ValueError(f"black-box canaries come from the {0 if x_pool is None else len(x_pool)} held-out "
                         f"inputs, got num_canaries={plan.num_canaries}")


def _claimed_epsilon(training, plan: AuditPlan) -> float:
    """Epsilon of the steps, sampling and data size that ran, with the declared noise multiplier (which is what
    a run with an injected fault still claims)."""
    from privacy.accounting import DpSgdMechanism, compute_epsilon  # pylint: disable=import-outside-toplevel

    mechanism = DpSgdMechanism(dataset_size=training.dataset_size, batch_size=training.expected_batch_size,
                               noise_multiplier=plan.noise_multiplier, steps=max(1, training.steps),
                               sampling=training.sampling, adjacency=training.adjacency)
    return float(compute_epsilon(mechanism, plan.delta))
