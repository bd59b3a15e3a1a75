"""The Private Evaluator's optional privacy audits: canary-augmented DP-SGD runs at the settings of the model's
ledger, each checked against the epsilon ppml claims for that run.

Two checks run together (`audit_checks`), each failing the gate on its own:

* `NAME` ("privacy_audit", `audit_check`): a copy of the Trainer's run (its n rows, sampling probability, C, sigma and T
  Poisson steps) with M white-box canaries, bounded by the f-DP bound (`dp_sgd_audit.estimator_for`: the
  (eps, delta) trade-off curve, or the mu-GDP curve for a Trainer run at sampling probability 1). It tests
  the claim of the run as the Trainer ran it, but at the bundled pipeline's q 0.08 over about 183 steps a one-run
  audit has too little power to catch a clip at 2C.
* `IMPLEMENTATION_NAME` ("implementation_audit", `implementation_check`): ONE full-batch step (sampling probability
  1) at the Trainer's C and sigma with `IMPLEMENTATION_CANARIES` white-box canaries, bounded by the mu-GDP f-DP bound
  (sound there: one step at rate 1 is the Gaussian mechanism, mu = 1 / sigma). It tests ppml's clipping and noise at
  those settings against the epsilon ppml's accountants claim for that one-step mechanism, where the bound has the
  power to see a 2C clip (README, "The privacy audit", for the power measured at each sigma). Where the trainer module
  its ledger names exports the audit `HOOKS` (the bundled one does), the step trains the module's own model through
  its own fit (optimizer, loss, `make_private` call: `privacy.auditing.own_training_audit`), which then must have
  trained exactly the audited mechanism and clip norm; otherwise ppml's audit model (the figures' ``trained_by``).

Both train through `privacy.keras.make_private` (`privacy.auditing.dp_sgd_audit.audit_mechanism` or the module's
fit; noise CSPRNG-seeded; each canary included with probability 1/2 by OS CSPRNG bits), bound epsilon from below at
the ledger's accountant delta (the delta its training part's epsilon is stated at: the artifact's delta less the
preprocessing's additive delta and the noise cut-off's; one run, 95 %), recompute the epsilons ppml's accountants
claim for the canary-augmented run (N = n + m rows: an excluded canary stays as a stand-in row, so no row's sampling
probability depends on the bits) and pass when the bound is at most the smallest of them; a bound above it is
"accounting inconsistent" and the gate blesses nothing. A run it cannot reproduce or account fails closed. The
audited models are trained in memory and discarded: the canaries never reach the pushed model.

What they publish (bounds, guess counts, N) is a function of the ledger's settings and fresh CSPRNG randomness,
never of a record's values (n zero stand-in rows: see `audit_mechanism`); N does not depend on the bits. So they
reveal nothing about the training data beyond n, which the ledger publishes. They test the training part only (the
preprocessing and push-decision releases the ledger composes are not re-run); neither re-runs the module's run_fn
itself (its data loading and export; README, "The privacy audit", says why).
"""

from __future__ import annotations

import importlib
import math
from typing import Any, Callable

from pipelines import privacy_ledger
from privacy.accounting import DpSgdMechanism, Sampling
from privacy.auditing import dp_sgd_audit
from privacy.auditing.canaries import MAX_SLOT_GRADIENTS
from privacy.auditing.one_run import DEFAULT_CONFIDENCE, MIN_CANARIES, largest_bound
from privacy.compared import compared

NAME = "privacy_audit"
"""The subsampled audit's check name in the evaluation summary, and the summary's key of its figures."""
IMPLEMENTATION_NAME = "implementation_audit"
"""The full-batch implementation check's name in the evaluation summary, and the key of its figures."""
IMPLEMENTATION_CANARIES = 10_000
"""Canaries of the implementation check. In idealised one-step audits (the exact scores the slot sees, 200 seeds,
delta 1e-5) 10,000 catch a 2C clip in 185 of 200 at sigma 3.02, 193 at 2.5 and 100 of 100 at 2; measured through
`make_private` (385 stand-in rows, sigma 3.02, on the shared 2-core AMD EPYC at load 3 to 6): 7 s and 2.2 GB peak
memory, against 41 s and 6.6 GB for 20,000 (the step holds N x m per-example slot gradients). Fewer above about
5,000 training rows: `implementation_canaries`."""


def implementation_canaries(rows: int) -> int:
    """The implementation check's canaries for a run of ``rows`` training rows: `IMPLEMENTATION_CANARIES`, or the
    most canaries m whose one step of rows + m rows holds at most `MAX_SLOT_GRADIENTS` slot gradients ((rows + m) m;
    fewer canaries above about 5,000 rows, so less power; fewer than an audit takes, above 4,687,468 rows, fail the
    check closed, `implementation_check`)."""
    fits = (math.isqrt(rows * rows + 4 * MAX_SLOT_GRADIENTS) - rows) // 2
    return min(IMPLEMENTATION_CANARIES, fits)


HOOKS = ("build_model", "fit_private")
"""The audit hooks a DP Trainer module may export for the implementation check: ``build_model(hp)``, a fresh model of
[batch, d] transformed features to [batch, 1] sigmoid probabilities, and ``fit_private(model, x, y, plan, hp)``, its
own DP-SGD fit of a model on arrays at a `DpTrainingPlan` (`pipelines.trainers.breast_cancer` exports both). hp is
the ``hyperparameters`` its ledger's trainer record holds."""
PPML_MODEL = "ppml's audit model (privacy.auditing.dp_sgd_audit.audit_mechanism)"

Figures = dict[str, Any]
Runner = Callable[..., dp_sgd_audit.AuditResult]


def audit_checks(
    ledger: privacy_ledger.PrivacyLedger | None, num_canaries: int
) -> tuple[list[dict[str, Any]], dict[str, Figures]]:
    """Both audits: (their gate checks, {check name: its figures} for each that ran)."""
    results = {NAME: audit_check(ledger, num_canaries), IMPLEMENTATION_NAME: implementation_check(ledger)}
    return [check for check, _ in results.values()], {
        name: figures for name, (_, figures) in results.items() if figures is not None
    }


def audit_check(
    ledger: privacy_ledger.PrivacyLedger | None, num_canaries: int
) -> tuple[dict[str, Any], Figures | None]:
    """The audit of a canary-augmented copy of the Trainer's run: (the gate's check, its figures or None when it
    could not run)."""
    return _audit(
        NAME,
        ledger,
        lambda mechanism: mechanism,
        num_canaries,
        _ppml_model,
        PPML_MODEL,
        what="the same training run with its canaries",
        refutes="ppml's epsilon for this DP-SGD run, the training part the ledger composes, is false",
    )


def implementation_check(ledger: privacy_ledger.PrivacyLedger | None) -> tuple[dict[str, Any], Figures | None]:
    """The implementation check: one full-batch step at the Trainer's C and sigma with `IMPLEMENTATION_CANARIES`
    canaries, through the trainer module's own model and fit where it exports the audit `HOOKS` (else through
    ppml's audit model, which the figures' ``trained_by`` says): (the gate's check, its figures or None when it could
    not run)."""
    try:
        hooks = trainer_hooks(ledger)
        rows = ledger.dp_sgd_mechanism().dataset_size if _is_dp_sgd(ledger) else 0
    except (ValueError, privacy_ledger.LedgerError) as err:
        return _cannot_reproduce(IMPLEMENTATION_NAME, err), None
    canaries = implementation_canaries(rows)
    if _is_dp_sgd(ledger) and canaries < MIN_CANARIES:  # the Evaluator's user sets neither n nor these canaries
        most = MAX_SLOT_GRADIENTS // MIN_CANARIES - MIN_CANARIES
        return _failed(
            IMPLEMENTATION_NAME,
            f"the check runs on at most {most:,} training rows (its one full-batch step with the fewest canaries "
            f"an audit takes, {MIN_CANARIES}, holds (n + {MIN_CANARIES}) x {MIN_CANARIES} slot gradients, at most "
            f"{MAX_SLOT_GRADIENTS:,}), and this run has {rows:,}; what cannot be checked is not blessed: gate "
            f"this model without the audits (no --audit-canaries, audit_canaries=None) or train it on fewer rows",
        ), None
    return _audit(
        IMPLEMENTATION_NAME,
        ledger,
        full_batch_step,
        canaries,
        _ppml_model if hooks is None else _own_training(*hooks),
        PPML_MODEL if hooks is None else f"{hooks[0].__name__} ({', '.join(HOOKS)}), the trainer module's own",
        what="one full-batch step (sampling probability 1) at the Trainer's C and sigma with its canaries",
        refutes="DP-SGD as trained at the Trainer's C and sigma does not give the epsilon ppml's accountant claims "
        "for that step, so the training part's epsilon is not to be trusted",
    )


def _is_dp_sgd(ledger: privacy_ledger.PrivacyLedger | None) -> bool:
    return ledger is not None and ledger.mechanism == privacy_ledger.DP_SGD


def full_batch_step(mechanism: DpSgdMechanism) -> DpSgdMechanism:
    """The implementation check's mechanism: every one of the run's n rows in one step, its sigma (and sampling,
    adjacency and clipping settings, which either runner refuses as for the run itself where it cannot reproduce
    them)."""
    return mechanism.replace(batch_size=mechanism.dataset_size, steps=1)


def trainer_hooks(ledger: privacy_ledger.PrivacyLedger | None) -> tuple[Any, dict[str, Any]] | None:
    """(the trainer module, its hyperparameters) when a DP-SGD ledger's trainer record names a ``run_fn`` whose module
    exports the audit `HOOKS`; None otherwise (no module named, no hooks). ValueError for a module it names that
    cannot be imported (what the Trainer ran, so not replaced by ppml's audit model) or one with hooks whose record
    holds no ``hyperparameters`` dict for them."""
    if not _is_dp_sgd(ledger):
        return None
    run_fn, hp = ledger.trainer.get("run_fn"), ledger.trainer.get("hyperparameters")
    if not isinstance(run_fn, str) or "." not in run_fn:
        return None
    name = run_fn.rpartition(".")[0]
    try:
        module = importlib.import_module(name)
    except Exception as err:  # user code runs at import
        raise ValueError(f"the trainer module {name!r} its ledger names cannot be imported: {_one_line(err)}") from None
    if not all(callable(getattr(module, hook, None)) for hook in HOOKS):
        return None
    if not isinstance(hp, dict):
        raise ValueError(
            f"the trainer module {name!r} exports the audit hooks but its ledger's trainer record holds no "
            f"hyperparameters for them"
        )
    return module, dict(hp)


def _ppml_model(mechanism: DpSgdMechanism, **settings) -> dp_sgd_audit.AuditResult:
    return dp_sgd_audit.audit_mechanism(mechanism, **settings)  # looked up at each call (tests set a fault there)


def _own_training(module, hp: dict[str, Any]) -> Runner:
    """A runner of `full_batch_step`'s mechanism through the module's `HOOKS` (`own_training_audit`)."""
    from pipelines.components.dp_trainer.spec import DpTrainingConfig, DpTrainingPlan
    from privacy.auditing import own_training_audit

    def run(mechanism: DpSgdMechanism, *, l2_norm_clip: float, delta: float, num_canaries: int):
        if (
            mechanism.sampling is not Sampling.POISSON
            or mechanism.num_microbatches is not None
            or mechanism.truncated_batch_size is not None
            or mechanism.max_examples_per_user is not None
        ):
            raise ValueError(
                f"the implementation check reproduces per-example clipping of whole Poisson batches of single "
                f"examples, got {mechanism}"
            )

        def fit(model, x, y, audited: DpSgdMechanism) -> None:
            config = DpTrainingConfig(
                batch_size=int(audited.batch_size),
                l2_norm_clip=l2_norm_clip,
                noise_multiplier=audited.noise_multiplier,
                delta=delta,
            )
            plan = DpTrainingPlan(
                config=config, dataset_size=audited.dataset_size, steps=audited.steps, mechanism=audited, delta=delta
            )
            _user_code("fit_private failed", module.fit_private, model, x, y, plan, hp)

        return _user_code(
            "model could not be audited",
            own_training_audit.audit_full_batch_step,
            lambda: _user_code("build_model failed", module.build_model, hp),
            fit,
            ppml_refusals=True,
            rows=mechanism.dataset_size,
            noise_multiplier=mechanism.noise_multiplier,
            l2_norm_clip=l2_norm_clip,
            delta=delta,
            num_canaries=num_canaries,
        )

    return run


def _user_code(what: str, call: Callable, *args, ppml_refusals: bool = False, **kwargs):
    """``call(*args, **kwargs)``, code that runs the trainer module's (user code): an error becomes one ValueError
    "the trainer module's <what>: <error>", so that the check fails closed with a reason; memory errors pass (the
    caller reports them), and with ``ppml_refusals`` so do ValueErrors (ppml's own refusals, each with its reason;
    the hooks' own are wrapped where they are called)."""
    import tensorflow as tf

    passing = (MemoryError, tf.errors.ResourceExhaustedError) + ((ValueError,) if ppml_refusals else ())
    try:
        return call(*args, **kwargs)
    except passing:
        raise
    except Exception as err:
        raise ValueError(f"the trainer module's {what}: {_one_line(err)}") from None


def _one_line(err: BaseException) -> str:
    return " ".join(f"{type(err).__name__}: {err}".split())


def _audit(
    name: str,
    ledger: privacy_ledger.PrivacyLedger | None,
    audited: Callable[[DpSgdMechanism], DpSgdMechanism],
    num_canaries: int,
    runner: Runner,
    trained_by: str,
    *,
    what: str,
    refutes: str,
) -> tuple[dict[str, Any], Figures | None]:
    """Runs `audit_mechanism` on `audited(the ledger's mechanism)`: (check, figures or None when it could not)."""
    import tensorflow as tf

    if not _is_dp_sgd(ledger):
        return _failed(name, "nothing to audit: the model has no DP-SGD privacy ledger"), None
    delta = ledger.accountant_delta
    try:
        mechanism = audited(ledger.dp_sgd_mechanism())
        result = runner(
            mechanism, l2_norm_clip=ledger.parameters.get("l2_norm_clip"), delta=delta, num_canaries=num_canaries
        )
    except (ValueError, privacy_ledger.LedgerError) as err:
        return _cannot_reproduce(name, err), None
    except (MemoryError, tf.errors.ResourceExhaustedError):
        fewer = "fewer need less: --audit-canaries" if name == NAME else "its one step holds N x canaries floats"
        return _failed(
            name,
            f"the audit ran out of memory with {num_canaries} canaries ({fewer}); what cannot be checked is not "
            f"blessed",
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
        "noise_multiplier": mechanism.noise_multiplier,
        "l2_norm_clip": result.plan.l2_norm_clip,
        "steps": result.steps,
        "trained_by": trained_by,
        "largest_possible_bound": ceiling,
        "final": result.final,
        "seconds": round(result.seconds, 1),
        "violated": result.violated,
    }
    context = (
        f"one-run {estimator} lower bound at {DEFAULT_CONFIDENCE:.0%} confidence from {num_canaries} white-box "
        f"canaries vs the {accountant.upper()} epsilon of {what} (N = {result.dataset_size}, expected batch "
        f"{result.plan.batch_size}, {result.steps} step{'s' if result.steps != 1 else ''}, delta {delta:g}; "
        f"trained by {trained_by}); "
        f"with these canaries no bound can exceed {ceiling:g}"
    )
    shown, claim_shown = compared(bound, claim, digits=6, bound_digits=4)
    if result.violated:
        reason = (
            f"{name}: accounting inconsistent: lower bound {shown} > claimed epsilon {claim_shown} ({context}): "
            f"{refutes} at that confidence"
        )
    else:
        reason = f"{name}: lower bound {shown} <= claimed epsilon {claim_shown} ({context}; evidence, not proof)"
    return {"name": name, "value": bound, "bound": claim, "passed": not result.violated, "reason": reason}, figures


def _cannot_reproduce(name: str, err: Exception) -> dict[str, Any]:
    why = " ".join(str(err).split())  # one line
    return _failed(name, f"the audit cannot reproduce this run ({why}); what cannot be checked is not blessed")


def _failed(name: str, why: str) -> dict[str, Any]:
    return {"name": name, "value": None, "bound": None, "passed": False, "reason": f"{name}: {why}"}
