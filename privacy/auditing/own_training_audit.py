"""One full-batch DP-SGD step through a trainer's OWN model and fit, audited with white-box canaries.

`dp_sgd_audit.audit_mechanism` trains ppml's built-in audit model through `make_private`; `audit_full_batch_step`
trains the model a trainer builds (``build()``: [batch, d] features to [batch, 1] sigmoid probabilities) wrapped in
a Dirac slot (`sigmoid_canaries`), through the trainer's own fit (``fit(model, x, y, mechanism)``: its compile,
optimizer, loss, `make_private` call and step loop), for one step at sampling probability 1 on n zero stand-in rows plus
m canaries (N = n + m rows whatever the inclusion bits: an excluded canary stays as one more zero row). After the
fit it checks what ran: the model must have been made private by `make_private` at exactly the requested mechanism
(N, B = N, the declared sigma, one Poisson step, add/remove) and clip norm, else ValueError naming what ran. The
bound is `f-dp-gaussian` (one step at rate 1 is the Gaussian mechanism); the claims are ppml's accountants' for that
step. As in `audit_mechanism`, a white-box canary's score does not depend on the other rows' values (they give the
slot no gradient; a canary's own gradient is zero elsewhere and clipped alone), so the result is a function of the
settings and fresh CSPRNG randomness only. The trained model is an audit device, discarded.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from privacy.accounting import DpSgdMechanism
from privacy.auditing import canaries as canary_rows
from privacy.auditing import dp_sgd_audit
from privacy.auditing.one_run import DEFAULT_CONFIDENCE, audit_one_run

ESTIMATOR = "f-dp-gaussian"


def audit_full_batch_step(
    build: Callable[[], Any],
    fit: Callable[[Any, np.ndarray, np.ndarray, DpSgdMechanism], Any],
    *,
    rows: int,
    noise_multiplier: float,
    l2_norm_clip: float,
    delta: float,
    num_canaries: int,
    confidence: float = DEFAULT_CONFIDENCE,
) -> dp_sgd_audit.AuditResult:
    """Trains one full-batch step of `build()`'s model with canaries through `fit` (module docstring) and bounds it.

    Args:
      build: returns a fresh Keras model (of the Keras `tf.keras` is) mapping [batch, d] features to [batch, 1]
        probabilities, trained under binary cross-entropy on probabilities.
      fit: trains the model it is given (the wrapped one, on [features | canary id]) on (x [N, d + 1], y [N, 1]
        float labels) with `make_private` at the mechanism it is given and `l2_norm_clip`.
      rows: n, the stand-in rows (the run's training rows).
      noise_multiplier, l2_norm_clip, delta: the run's sigma and C, and the delta of the claim and the bound.
      num_canaries: m.

    Returns:
      An `AuditResult` with one entry; its plan states the audited step (N, B = N, C, sigma, one step; its
      learning_rate and hidden_units are not used: the trainer's own are).

    Raises:
      ValueError: for settings ppml cannot account, a model whose output is not [batch, 1], a fit that did not
        train the requested mechanism and clip norm, or `dp_sgd_audit.DIVERGED`.
    """
    from privacy.auditing import keras_canaries, sigmoid_canaries
    from privacy.keras.private_training import is_private, private_training

    size = rows + num_canaries
    plan = dp_sgd_audit.AuditPlan(
        num_canaries=num_canaries,
        steps=1,
        batch_size=size,
        l2_norm_clip=l2_norm_clip,
        noise_multiplier=noise_multiplier,
        delta=delta,
        confidence=confidence,
        estimator=ESTIMATOR,
    )
    dp_sgd_audit.check_data(plan, np.zeros((rows, 1)), np.arange(rows) % 2, None, fixed_size=True)
    mechanism = DpSgdMechanism(dataset_size=size, batch_size=size, noise_multiplier=noise_multiplier, steps=1)
    base = build()
    features = int(base.input_shape[-1])
    model = sigmoid_canaries.with_sigmoid_slot(base, features, num_canaries)
    canaries = canary_rows.dirac_slot_rows(features, num_canaries, label=int(sigmoid_canaries.CANARY_LABEL))
    excluded = int(num_canaries - canaries.included.sum())  # each stays as a zero row: N = n + m
    x, y = canaries.training_data(
        canary_rows.with_empty_slot(np.zeros((rows + excluded, features), np.float32)),
        np.zeros(rows + excluded, np.int64),
    )
    start = time.perf_counter()
    fit(model, x, y.astype(np.float32)[:, None], mechanism)
    if not is_private(model):
        raise ValueError("the trainer's fit did not make the model it was given private (make_private)")
    training = private_training(model)
    ran = training.mechanism()  # a ValueError where it cannot be accounted
    if ran != mechanism or training.params.l2_norm_clip != l2_norm_clip:
        raise ValueError(
            f"the trainer's fit trained {ran} with clip norm {training.params.l2_norm_clip:g}, not the audited "
            f"{mechanism} with clip norm {l2_norm_clip:g}"
        )
    scores = keras_canaries.white_box_scores(model)
    if not np.isfinite(scores).all() or not all(np.isfinite(w).all() for w in model.get_weights()):
        raise ValueError(dp_sgd_audit.DIVERGED)

    def bound(estimator: str = ESTIMATOR, strategy: str = "bonferroni"):
        return audit_one_run(
            scores, canaries.included, delta=delta, confidence=confidence, strategy=strategy, estimator=estimator
        )

    final = bound()
    return dp_sgd_audit.AuditResult(
        plan=plan,
        claims=(dp_sgd_audit.claimed_epsilons(mechanism, delta),),
        lower_bound=(final.epsilon_lower_bound,),
        final=final.to_dict(),
        final_split=bound(strategy="split").to_dict(),
        compared={
            name: bound(name).epsilon_lower_bound
            for name in dp_sgd_audit.sound_estimators(plan, rows, fixed_size=True)
            if name != "f-dp-claimed"
        },
        dataset_size=size,
        steps=training.steps,
        seconds=time.perf_counter() - start,
    )
