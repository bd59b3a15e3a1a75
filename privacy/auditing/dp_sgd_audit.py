"""One-run audit of Keras DP-SGD (`privacy.keras.make_private`): train once with canaries, bound epsilon from below.

`run_dp_sgd_audit(plan, x, y, x_pool, y_pool)` adds canaries (`AuditPlan.kind`: "white-box" Dirac gradient canaries
or "black-box" mislabelled inputs from `x_pool`, which must be disjoint from the training data) to a copy of the
data, trains a small private model on it, scores the canaries after every epoch and returns, per epoch, the
epsilons ppml's accountants (RDP, PLD) report for the run and the one-run lower bound (`privacy.auditing.one_run`,
by the estimator `estimator_for` picks: f-DP, or the one against the claimed mechanism's own curve where asked);
the verdict tests the smallest of those epsilons. The audited model is an audit device and is discarded; the
inclusion bits stay in memory and are never logged or returned.

`audit_mechanism(mechanism, ...)` audits the run a DP-SGD ledger describes (the Private Evaluator's audit): its n
training rows plus white-box canaries, at its sampling probability, C, sigma and T Poisson steps. A white-box canary's
score does not depend on the values of the other rows (real rows give its slot weight no gradient, its own gradient is
zero elsewhere and is clipped alone), so n rows of zeros stand in for them: the bound is a function of the
mechanism's settings and fresh CSPRNG randomness only, and reveals nothing about any record.

`AuditPlan.fault` injects a known bug for sanity checks: "clip-2x" ("clip-4x") clips to 2C (4C) while the noise
and the claimed epsilon are those of clip C with `noise_multiplier` (the run's true noise multiplier is half (a
quarter of) the declared one); "no-noise" adds no noise while claiming the declared one. Where the one-run bound
is strong enough to see it (the configuration in the README), a working audit reports a bound above the claim.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable

import numpy as np

from privacy import validation
from privacy.accounting import NOISE_MULTIPLIER_RANGE, Adjacency, DpSgdMechanism, Sampling, compute_epsilon
from privacy.auditing import canaries as canary_rows
from privacy.auditing.claimed_curve import SampledGaussianClaim
from privacy.auditing.one_run import DEFAULT_CONFIDENCE, ESTIMATORS, MIN_CANARIES, audit_one_run

KINDS = ("white-box", "black-box")
FAULT_CLIP_FACTORS = {"none": 1.0, "clip-2x": 2.0, "clip-4x": 4.0, "no-noise": 1.0}
"""Deliberate bugs for sanity checks: the factor the gradients are really clipped to, times C."""
FAULTS = tuple(FAULT_CLIP_FACTORS)
CLAIM_ACCOUNTANTS = ("rdp", "pld")
"""The accountants whose epsilons ppml reports for a run; the claim audited is the smallest of them."""
DIVERGED = "training diverged (non-finite weights or canary scores): lower learning_rate"
"""The one error of a diverged run: it names no canary and no count, which could reflect the secret bits."""


@dataclasses.dataclass(frozen=True)
class AuditPlan:
    """Everything one audit run needs, validated once. The defaults are `ppml audit`'s (README, "`ppml audit`"):
    white-box, 10,000 canaries, every row in every step (sampling probability 1: on digits N = 1,347 + 10,000 rows),
    sigma 2, 4 steps, so mu = sqrt(4) / 2 = 1 as accounted (claimed epsilon about 4.38 by PLD at delta 1e-5), bounded
    with "f-dp-gaussian": "clip-2x" (mu 2) is refuted there. The former Poisson defaults (2,000 canaries,
    batch_size 1,200 of about 2,350 rows, sigma 6.5, 5 epochs: claim about 0.96) catch "no-noise" and "clip-4x"
    only.

    Attributes:
      kind: "white-box" (Dirac gradient canaries, score = slot weight) or "black-box" (mislabelled inputs,
        score = minus loss).
      num_canaries: m, canaries drawn (each included with probability 1/2).
      epochs: training epochs (Poisson-sampled steps of expected size `batch_size`).
      batch_size: expected batch size B of Poisson sampling; None: every row in every step (sampling probability 1),
        white-box only: the run is then fixed-size (an excluded canary stays as a row of zeros, `run_dp_sgd_audit`'s
        fixed_size) and B = N = n + m whatever the bits.
      l2_norm_clip: C.
      noise_multiplier: sigma as declared (and as accounted).
      learning_rate: SGD step size.
      delta: the delta of the claimed epsilon and of the bound.
      confidence: confidence of the lower bound.
      fault: a deliberate bug to inject (`FAULTS`), "none" for an honest run.
      hidden_units: width of the model's hidden layer.
      steps: instead of `epochs` Keras epochs of about N / B steps each, exactly this many Poisson steps in one
        (a DP Trainer's run, whose T comes from its plan); the result then has one entry.
      estimator: the bound (`privacy.auditing.one_run.ESTIMATORS`); None picks the tightest sound one for the run
        (`estimator_for`): "f-dp-gaussian" at sampling probability 1 (the run is then mu-GDP), else "f-dp";
        "f-dp-claimed" (the claimed mechanism's own trade-off curve: about 10 PLDs a bound) only when named, and
        only for a fixed-size run (`audit_mechanism`; `estimator_for` refuses it otherwise).
    """

    kind: str = "white-box"
    num_canaries: int = 10_000
    epochs: int = 4
    batch_size: int | None = None
    l2_norm_clip: float = 1.0
    noise_multiplier: float = 2.0
    learning_rate: float = 0.5
    delta: float = 1e-5
    confidence: float = DEFAULT_CONFIDENCE
    fault: str = "none"
    hidden_units: int = 32
    steps: int | None = None
    estimator: str | None = None

    def __post_init__(self):
        if self.estimator is not None:
            validation.choice("estimator", self.estimator, ESTIMATORS, note="or None")
        validation.choice("kind", self.kind, KINDS)
        validation.choice("fault", self.fault, FAULTS)
        for name in ("num_canaries", "epochs", "hidden_units"):
            object.__setattr__(self, name, validation.integer(name, getattr(self, name), minimum=1))
        for name in ("batch_size", "steps"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, validation.integer(name, getattr(self, name), minimum=1))
        if self.batch_size is None and self.kind != "white-box":
            raise ValueError(
                "batch_size: black-box canaries need Poisson sampling with an expected batch size (an excluded one "
                "leaves the data, so a full batch would change size with the bits), got none"
            )
        object.__setattr__(
            self,
            "num_canaries",
            validation.integer(
                "num_canaries",
                self.num_canaries,
                minimum=MIN_CANARIES,
                maximum=canary_rows.MAX_CANARIES,
                note="fewer give the bound too few guesses; more take too much memory",
            ),
        )
        for name in ("l2_norm_clip", "noise_multiplier", "learning_rate"):
            object.__setattr__(self, name, validation.positive(name, getattr(self, name)))
        factor = FAULT_CLIP_FACTORS[self.fault]
        low, high = NOISE_MULTIPLIER_RANGE
        validation.number(
            "noise_multiplier",
            self.noise_multiplier,
            low=low * factor,
            high=high,
            note=f"with fault {self.fault}" if factor > 1 else "",
        )
        if self.kind == "white-box":
            validation.positive(
                "l2_norm_clip",
                self.l2_norm_clip,
                maximum=canary_rows.MAX_DIRAC_CLIP / factor,
                note="for white-box canaries, whose gradient must exceed the clip norm",
            )
        object.__setattr__(self, "delta", validation.probability("delta", self.delta))
        object.__setattr__(self, "confidence", validation.probability("confidence", self.confidence))


@dataclasses.dataclass(frozen=True)
class AuditResult:
    """Per-epoch claimed epsilons and lower bounds of one audit run (the bits are not part of it).

    Attributes:
      plan: the plan that ran.
      claims: per epoch, the epsilon each accountant ppml reports for the run reported ("rdp", and "pld" where
        ppml asks PLD), at plan.delta.
      claimed_epsilon: per epoch, the smallest of `claims` (the claim the verdict tests).
      lower_bound: the one-run lower bound after each epoch, at plan.delta and plan.confidence.
      final: the `OneRunAudit` of the last epoch, as a dict (Bonferroni over the guess counts).
      final_split: the same scores bounded with ``strategy="split"`` instead (for comparison; the verdict uses
        `final`, chosen before the run).
      compared: the last epoch's bound (Bonferroni) under each estimator sound for this run (`sound_estimators`;
        "f-dp-claimed" only where it is the plan's), the one of `final` included: the same scores, for comparison.
      dataset_size: training rows N including the included canaries (the accounted q is B / N). It tells how
        many canaries are included, never which (with fixed_size it is n + m, whatever the bits); the bound does
        not use it (README, "What the audit reveals").
      steps: private steps run.
      seconds: wall time of training and scoring.
    """

    plan: AuditPlan
    claims: tuple[dict[str, float], ...]
    lower_bound: tuple[float, ...]
    final: dict[str, Any]
    final_split: dict[str, Any]
    compared: dict[str, float]
    dataset_size: int
    steps: int
    seconds: float

    @property
    def claimed_epsilon(self) -> tuple[float, ...]:
        return tuple(min(claim.values()) for claim in self.claims)

    @property
    def claimed_curve(self) -> SampledGaussianClaim:
        """The final claim as the mechanism whose trade-off curve "f-dp-claimed" tests (the declared sigma)."""
        return SampledGaussianClaim.of(
            DpSgdMechanism(
                dataset_size=self.dataset_size,
                batch_size=self.plan.batch_size,
                noise_multiplier=self.plan.noise_multiplier,
                steps=max(1, self.steps),
            )
        )

    @property
    def claim_accountant(self) -> str:
        """The accountant whose epsilon is the final claim (the smallest ppml reports)."""
        return min(self.claims[-1], key=self.claims[-1].get)

    @property
    def violated(self) -> bool:
        """True when the final lower bound exceeds the smallest final epsilon ppml reports: that report is false
        (at the plan's confidence)."""
        return self.lower_bound[-1] > self.claimed_epsilon[-1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan": dataclasses.asdict(self.plan),
            "claims": list(self.claims),
            "claimed_epsilon": list(self.claimed_epsilon),
            "claim_accountant": self.claim_accountant,
            "lower_bound": list(self.lower_bound),
            "final": self.final,
            "final_split": self.final_split,
            "compared": self.compared,
            "dataset_size": self.dataset_size,
            "steps": self.steps,
            "seconds": self.seconds,
            "violated": self.violated,
        }


def run_dp_sgd_audit(
    plan: AuditPlan,
    x: np.ndarray,
    y: np.ndarray,
    x_pool: np.ndarray | None = None,
    y_pool: np.ndarray | None = None,
    *,
    build_model: Callable[[int, int], Any] | None = None,
    fixed_size: bool = False,
) -> AuditResult:
    """Trains once with canaries as `plan` says and returns the claimed epsilons and lower bounds per epoch.

    Args:
      plan: the audit's settings.
      x, y: training features [n, d] (float) and integer labels [n].
      x_pool, y_pool: inputs outside the training data for black-box canaries (at least num_canaries rows).
      build_model: the model under audit, yours: called once as build_model(d, num_classes), it returns a fresh,
        uncompiled Keras model (of the Keras `tf.keras` is) mapping [batch, d] features to [batch, num_classes]
        logits; this run compiles it with SGD(plan.learning_rate) and trains it with `make_private`. White-box
        canaries go through `keras_canaries.with_dirac_slot` around it. Default: one hidden ReLU layer of
        plan.hidden_units.
      fixed_size: white-box only: an excluded canary's row stays in the data as a row of zeros without canary id
        (it touches no slot weight), so the run has n + m rows whatever the bits: every row's sampling probability
        B / (n + m), and so the claim, is the same for every draw of the bits (a canary's bit then swaps its row for a
        zero row: its own slot's gradient, and that zero row's gradient on the wrapped model, which no score reads;
        the audit tests the slots, not the rest of the model). The zero rows join the training of the model under audit
        (as `audit_mechanism`'s stand-ins do) but touch no slot weight, so each canary's score is its own sampled,
        clipped contribution plus the noise whatever the other rows are. Only then is "f-dp-claimed" allowed: its
        claimed curve must not depend on the bits (`claimed_curve`). A plan without batch_size (every row in every
        step) always runs fixed-size (`full_batch_resolved`).

    Raises:
      ValueError: before training, for data or settings the run cannot use or account (`check_data`), or a
        model whose output is not [batch, num_classes]; after training, `DIVERGED` when the weights or scores
        are not finite.
    """
    import tensorflow as tf

    from privacy.auditing import keras_canaries
    from privacy.keras import make_private, private_training

    plan, fixed_size = full_batch_resolved(plan, len(y), fixed_size=fixed_size)
    if fixed_size and plan.kind != "white-box":
        raise ValueError("fixed_size needs white-box canaries (an excluded one stays as a row without canary id)")
    check_data(plan, x, y, x_pool, fixed_size=fixed_size)
    estimator = estimator_for(plan, len(y), fixed_size=fixed_size)
    x, y = np.asarray(x, np.float32), np.asarray(y).astype(np.int64).reshape(-1)
    num_classes = int(y.max()) + 1
    if plan.kind == "black-box":
        canaries = canary_rows.mislabelled_canaries(
            np.asarray(x_pool, np.float32), y_pool, plan.num_canaries, num_classes
        )
        x_train, y_train = canaries.training_data(x, y)
    else:
        canaries = canary_rows.dirac_slot_rows(x.shape[1], plan.num_canaries)
        excluded = int(plan.num_canaries - canaries.included.sum()) if fixed_size else 0  # n + m rows in all
        x_train, y_train = canaries.training_data(
            canary_rows.with_empty_slot(np.concatenate([x, np.zeros((excluded, x.shape[1]), np.float32)])),
            np.concatenate([y, np.zeros(excluded, np.int64)]),
        )

    clip, sigma = _run_clip_and_noise(plan)
    if build_model is None:
        base = tf.keras.Sequential(
            [
                tf.keras.Input(shape=(x.shape[1],)),
                tf.keras.layers.Dense(plan.hidden_units, activation="relu"),
                tf.keras.layers.Dense(num_classes),
            ]
        )
    else:
        base = build_model(x.shape[1], num_classes)
        shape = tuple(base(np.zeros((1, x.shape[1]), np.float32)).shape)
        if shape != (1, num_classes):
            raise ValueError(
                f"build_model: the model must map [batch, {x.shape[1]}] features to [batch, "
                f"{num_classes}] logits, got output shape {shape} for one row"
            )
    model = (
        base
        if plan.kind == "black-box"
        else keras_canaries.with_dirac_slot(base, x.shape[1], plan.num_canaries, num_classes)
    )
    make_private(
        model,
        l2_norm_clip=clip,
        noise_multiplier=sigma,
        expected_batch_size=plan.batch_size,
        dataset_size=len(y_train),
        target_delta=plan.delta,
        secure_noise=True,
    )
    model.compile(
        optimizer=tf.keras.optimizers.SGD(plan.learning_rate),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )

    def scores() -> np.ndarray:
        if not all(np.isfinite(weights).all() for weights in model.get_weights()):
            raise ValueError(DIVERGED)
        try:
            values = (
                keras_canaries.white_box_scores(model)
                if plan.kind == "white-box"
                else keras_canaries.black_box_scores(model, canaries.x, canaries.y)
            )
        except FloatingPointError:
            raise ValueError(DIVERGED) from None
        if not np.isfinite(values).all():
            raise ValueError(DIVERGED)
        return values

    claims, bounds, audits, last_scores = [], [], [], None
    start = time.perf_counter()
    for _ in range(plan.epochs if plan.steps is None else 1):
        model.fit(x_train, y_train, epochs=1, steps_per_epoch=plan.steps, verbose=0)
        last_scores = scores()
        training = private_training(model)
        claimed = DpSgdMechanism(
            dataset_size=training.dataset_size,
            batch_size=training.expected_batch_size,
            noise_multiplier=plan.noise_multiplier,
            steps=max(1, training.steps),
            sampling=training.sampling,
            adjacency=training.adjacency,
        )  # the declared sigma: what a faulty run still claims
        claims.append(claimed_epsilons(claimed, plan.delta))
        curve = SampledGaussianClaim.of(claimed) if estimator == "f-dp-claimed" else None
        audit = functools.partial(
            audit_one_run, last_scores, canaries.included, delta=plan.delta, confidence=plan.confidence, claim=curve
        )  # this epoch's scores, bits and claim; the estimator and strategy vary
        audits.append(audit(estimator=estimator))
        bounds.append(audits[-1].epsilon_lower_bound)
    return AuditResult(
        plan=plan,
        claims=tuple(claims),
        lower_bound=tuple(bounds),
        final=audits[-1].to_dict(),
        final_split=audit(strategy="split", estimator=estimator).to_dict(),
        compared={
            name: audit(estimator=name).epsilon_lower_bound
            for name in sound_estimators(plan, len(y), fixed_size=fixed_size)
            if name != "f-dp-claimed" or name == estimator  # its PLDs only where it was asked for
        },
        dataset_size=len(y_train),
        steps=private_training(model).steps,
        seconds=time.perf_counter() - start,
    )


def audit_mechanism(
    mechanism: DpSgdMechanism,
    *,
    l2_norm_clip: float,
    delta: float,
    num_canaries: int,
    confidence: float = DEFAULT_CONFIDENCE,
    fault: str = "none",
    estimator: str | None = None,
) -> AuditResult:
    """White-box one-run audit of the DP-SGD run `mechanism` describes, with `num_canaries` canaries added (see the
    module docstring). An excluded canary's row stays as one more stand-in row (`run_dp_sgd_audit`'s fixed_size), so
    the audited run has N = n + m rows whatever the bits, and the expected batch is B' = round(B N / n): every row is
    sampled at q' = B' / N, the run's rate q = B / n up to rounding, the same for every draw of the bits (the rate,
    sigma and T fix its epsilon); the claims are recomputed for the audited run itself (q'). `estimator` is
    `AuditPlan.estimator`'s: None bounds a full-batch run (B = n, so q' = 1) with "f-dp-gaussian", others with
    "f-dp".

    Raises:
      ValueError: naming the setting, for a run this audit cannot reproduce (not Poisson-sampled with add/remove
        adjacency, clipped per microbatch, truncated batches) or account, or whose claim is user-level
        (`max_examples_per_user`: a canary is one example).
    """
    if mechanism.sampling is not Sampling.POISSON or mechanism.adjacency is not Adjacency.ADD_REMOVE:
        raise ValueError(
            f"sampling: the one-run audit includes or leaves out each canary, so it needs Poisson "
            f"sampling with add/remove adjacency, got {mechanism.sampling.value} with "
            f"{mechanism.adjacency.value}"
        )
    if mechanism.num_microbatches is not None or mechanism.truncated_batch_size is not None:
        raise ValueError(
            "num_microbatches: the audit reproduces per-example clipping of whole Poisson batches only "
            "(a canary clipped with other rows, or a cut batch, would depend on their values)"
        )
    if mechanism.max_examples_per_user is not None:
        raise ValueError(
            f"max_examples_per_user: the audit's canaries are single examples, so it tests an "
            f"example-level claim, not this user-level one (group privacy over "
            f"{mechanism.max_examples_per_user} examples)"
        )
    rows = mechanism.dataset_size
    batch_size = max(1, round(mechanism.batch_size * (rows + num_canaries) / rows))  # q kept, N = n + m rows
    plan = AuditPlan(
        kind="white-box",
        num_canaries=num_canaries,
        steps=mechanism.steps,
        batch_size=batch_size,
        l2_norm_clip=l2_norm_clip,
        noise_multiplier=mechanism.noise_multiplier,
        delta=delta,
        confidence=confidence,
        fault=fault,
        hidden_units=1,
        estimator=estimator,
    )
    return run_dp_sgd_audit(
        plan,
        np.zeros((rows, 1), np.float32),
        np.arange(rows) % 2,  # stand-ins: two classes
        fixed_size=True,
    )


def check_data(
    plan: AuditPlan, x: np.ndarray, y: np.ndarray, x_pool: np.ndarray | None, *, fixed_size: bool = False
) -> None:
    """Refuses data the plan cannot run on, and a run ppml could not account, before any training (ValueError
    naming the setting). Accounting is checked for the fewest (n) and the most (n + m) training rows the canary
    bits can give (n + m only with `run_dp_sgd_audit`'s fixed_size), so the answer does not depend on the bits."""
    plan, fixed_size = full_batch_resolved(plan, len(y), fixed_size=fixed_size)
    if len(x) != len(y) or len(y) < 2:
        raise ValueError(f"need at least 2 training rows with one label each, got {len(x)} rows, {len(y)} labels")
    fewest = len(y) + plan.num_canaries if fixed_size else len(y)
    validation.integer("batch_size", plan.batch_size, maximum=fewest, note="the training rows")
    if plan.kind == "white-box" and plan.batch_size * plan.num_canaries > canary_rows.MAX_SLOT_GRADIENTS:
        raise ValueError(
            f"num_canaries: a step of {plan.batch_size} rows holds {plan.batch_size * plan.num_canaries:,} per-example "
            f"canary-slot gradients ({plan.batch_size} x {plan.num_canaries}), more than "
            f"{canary_rows.MAX_SLOT_GRADIENTS:,}: give fewer canaries or a smaller batch_size"
        )
    if plan.kind == "black-box" and (x_pool is None or len(x_pool) < plan.num_canaries):
        raise ValueError(
            f"black-box canaries come from the {0 if x_pool is None else len(x_pool)} held-out "
            f"inputs, got num_canaries={plan.num_canaries}"
        )
    estimator_for(plan, len(y), fixed_size=fixed_size)
    noises = {plan.noise_multiplier, _run_clip_and_noise(plan)[1]} - {0.0}  # the claim's and the run's own
    for rows in sorted({fewest, len(y) + plan.num_canaries}):
        steps = plan.steps or plan.epochs * max(1, round(rows / plan.batch_size))  # Poisson batches, as fit runs them
        for noise in sorted(noises):
            try:
                compute_epsilon(
                    DpSgdMechanism(dataset_size=rows, batch_size=plan.batch_size, noise_multiplier=noise, steps=steps),
                    plan.delta,
                )
            except ValueError as err:
                raise ValueError(
                    f"cannot account this run (noise_multiplier {noise:g}, batch_size "
                    f"{plan.batch_size}, {steps} steps): {err}"
                ) from None


def full_batch_resolved(plan: AuditPlan, rows: int, *, fixed_size: bool) -> tuple[AuditPlan, bool]:
    """The plan and fixed_size a run on `rows` training rows uses: a plan without batch_size (every row in every
    step) gets batch_size = rows + num_canaries and a fixed-size run; any other plan is returned as it is."""
    if plan.batch_size is not None:
        return plan, fixed_size
    return dataclasses.replace(plan, batch_size=rows + plan.num_canaries), True


def sound_estimators(plan: AuditPlan, rows: int, *, fixed_size: bool) -> tuple[str, ...]:
    """The estimators whose bound is sound for the run (see `estimator_for`), in `ESTIMATORS` order."""
    plan, fixed_size = full_batch_resolved(plan, rows, fixed_size=fixed_size)
    full_batch = fixed_size and plan.batch_size == rows + plan.num_canaries
    return tuple(
        name
        for name in ESTIMATORS
        if (full_batch or name != "f-dp-gaussian") and (fixed_size or name != "f-dp-claimed")
    )


def estimator_for(plan: AuditPlan, rows: int, *, fixed_size: bool) -> str:
    """The estimator the run's bound uses: plan.estimator, or where None "f-dp-gaussian" when every row is in every
    step (fixed_size and batch_size = rows + canaries: sampling probability 1, so the run is mu-GDP with mu = sqrt(T) /
    sigma per canary) and "f-dp" otherwise (sound for any (eps, delta) claim; "f-dp-claimed", the claimed
    Poisson-sampled Gaussian's own curve, costs about 10 PLDs a bound and is used only when named). Refuses
    "f-dp-gaussian" for a subsampled run, which is not mu-GDP at its epsilon's mu, and "f-dp-claimed" without
    fixed_size, whose q = B / N and T vary with the bits (`claimed_curve`, "Which claim"): ValueError naming it."""
    sound = sound_estimators(plan, rows, fixed_size=fixed_size)
    if plan.estimator is None:
        return "f-dp-gaussian" if "f-dp-gaussian" in sound else "f-dp"
    if plan.estimator == "f-dp-claimed" and plan.estimator not in sound:
        raise ValueError(
            "estimator f-dp-claimed tests one fixed claimed curve: it needs a data size that does not depend on the "
            "canary bits (a fixed-size audit: no batch_size, i.e. every row in every step, or Python's "
            "audit_mechanism), got N = the training rows + the included "
            "canaries, so q = B / N and the steps vary with the bits"
        )
    if plan.estimator not in sound:
        raise ValueError(
            "estimator f-dp-gaussian bounds a mu-GDP run: it needs sampling probability 1 (every row in every step: no "
            f"batch_size, or all {rows + plan.num_canaries} rows with a fixed-size audit), got batch_size "
            f"{plan.batch_size}{'' if fixed_size else ' with a data size that depends on the canary bits'}"
        )
    return plan.estimator


def _run_clip_and_noise(plan: AuditPlan) -> tuple[float, float]:
    """The clip norm and noise multiplier the run really uses: a fault clips at factor x C with noise
    sigma / factor x (factor x C) (1 + 2^-10) = sigma C (1 + 2^-10) as declared (`privacy.keras.params.SLACK`);
    "no-noise" adds none."""
    factor = FAULT_CLIP_FACTORS[plan.fault]
    return plan.l2_norm_clip * factor, 0.0 if plan.fault == "no-noise" else plan.noise_multiplier / factor


def claimed_epsilons(mechanism, delta: float) -> dict[str, float]:
    """The epsilon of each accountant in `CLAIM_ACCOUNTANTS` that ppml asks for this mechanism (PLD is skipped
    where `cost_reason` or `unsupported_reason` says ppml does not ask it)."""
    return {
        kind: float(compute_epsilon(mechanism, delta, kind))
        for kind in CLAIM_ACCOUNTANTS
        if not (mechanism.unsupported_reason(kind) or mechanism.cost_reason(kind, delta))
    }
