"""The Private Evaluator's optional privacy audit: a canary-augmented copy of the Trainer's DP-SGD run, checked
against the epsilon ppml claims for that run.

`audit_check` re-runs the training mechanism of the model's DP-SGD ledger (its n rows, sampling probability, C, sigma
and T Poisson steps, through `privacy.keras.make_private`: `privacy.auditing.dp_sgd_audit.audit_mechanism`) with
white-box canaries, each included with probability 1/2 by OS CSPRNG bits, the noise CSPRNG-seeded. It bounds epsilon
from below (the f-DP bound, `dp_sgd_audit.estimator_for`: with the (eps, delta) trade-off curve, or the mu-GDP curve at
sampling probability 1) at the ledger's accountant delta (the delta its training
part's epsilon is stated at: the artifact's delta less the preprocessing's additive delta; one run, 95 %),
recomputes the epsilons ppml's accountants claim for that canary-augmented run (N = n + m rows: an excluded canary
stays as a stand-in row, so no row's sampling probability depends on the bits) and passes when the bound is at most the
smallest of them; a bound above it is "accounting inconsistent" and the gate blesses nothing. A run it cannot
reproduce or account fails closed. The audited model is trained in memory and discarded: the canaries never reach
the pushed model.

What it publishes (the bound, its guess counts, N) is a function of the ledger's settings and fresh CSPRNG
randomness, never of a record's values (stand-in rows: see `audit_mechanism`); N does not depend on the bits. So it
reveals nothing about the training data beyond n, which the ledger publishes.
It tests the training part only; the preprocessing and push-decision releases the ledger composes are not re-run.
"""

from __future__ import annotations

from typing import Any

from pipelines import privacy_ledger
from privacy.auditing import dp_sgd_audit
from privacy.auditing.one_run import DEFAULT_CONFIDENCE, largest_bound

NAME = "privacy_audit"
"""The check's name in the evaluation summary, and the summary's key of the audit's figures."""


def audit_check(
    ledger: privacy_ledger.PrivacyLedger | None, num_canaries: int
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(the gate's check, the audit's figures for the summary or None when it could not run)."""
    import tensorflow as tf

    if ledger is None or ledger.mechanism != privacy_ledger.DP_SGD:
        return _failed("nothing to audit: the model has no DP-SGD privacy ledger"), None
    delta = ledger.accountant_delta
    try:
        mechanism = ledger.dp_sgd_mechanism()
        result = dp_sgd_audit.audit_mechanism(
            mechanism, l2_norm_clip=ledger.parameters.get("l2_norm_clip"), delta=delta, num_canaries=num_canaries
        )
    except (ValueError, privacy_ledger.LedgerError) as err:
        return _failed(f"the audit cannot reproduce this run ({err}); what cannot be checked is not blessed"), None
    except (MemoryError, tf.errors.ResourceExhaustedError):
        return _failed(
            f"the audit ran out of memory with {num_canaries} canaries (fewer need less: --audit-canaries); what "
            f"cannot be checked is not blessed"
        ), None
    bound, claim, accountant = result.lower_bound[-1], result.claimed_epsilon[-1], result.claim_accountant
    estimator = result.final["estimator"]
    ceiling = largest_bound(
        num_canaries, delta=delta, confidence=DEFAULT_CONFIDENCE, estimator=estimator, claim=result.claimed_curve
    )
    figures = {
        "lower_bound": bound,
        "claimed_epsilon": claim,
        "claim_accountant": accountant,
        "claims": result.claims[-1],
        "delta": delta,
        "confidence": DEFAULT_CONFIDENCE,
        "num_canaries": num_canaries,
        "dataset_size": result.dataset_size,
        "training_rows": mechanism.dataset_size,
        "batch_size": result.plan.batch_size,
        "steps": result.steps,
        "largest_possible_bound": ceiling,
        "final": result.final,
        "seconds": round(result.seconds, 1),
        "violated": result.violated,
    }
    context = (
        f"one-run {estimator} lower bound at {DEFAULT_CONFIDENCE:.0%} confidence from {num_canaries} white-box "
        f"canaries vs "
        f"the {accountant.upper()} epsilon of the same training run with its canaries (N = "
        f"{result.dataset_size}, expected batch {result.plan.batch_size} to keep q, delta {delta:g}); "
        f"with these canaries no bound can exceed {ceiling:g}"
    )
    if result.violated:
        reason = (
            f"{NAME}: accounting inconsistent: lower bound {bound:g} > claimed epsilon {claim:.4g} ({context}): "
            f"ppml's epsilon for this DP-SGD run, the training part the ledger composes, is false at that "
            f"confidence"
        )
    else:
        reason = f"{NAME}: lower bound {bound:g} <= claimed epsilon {claim:.4g} ({context}; evidence, not proof)"
    return {"name": NAME, "value": bound, "bound": claim, "passed": not result.violated, "reason": reason}, figures


def _failed(why: str) -> dict[str, Any]:
    return {"name": NAME, "value": None, "bound": None, "passed": False, "reason": f"{NAME}: {why}"}
