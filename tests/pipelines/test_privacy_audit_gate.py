"""The Private Evaluator's privacy audits (`canary_audit`): a canary-augmented copy of the ledger's DP-SGD run, and
one full-batch step at its C and sigma, pass when honest; a run whose claim is deliberately broken (no noise, or a clip
at 2C, the declared sigma still accounted) is refused as "accounting inconsistent"; every claim is recomputed here
from dp-accounting. The pipeline run with the audit:
tests/pipelines/test_pipeline_e2e.py."""

import dataclasses
import functools

import dp_accounting as dpa
import pytest
from click.testing import CliRunner

from pipelines import privacy_ledger
from pipelines.cli.main import cli
from pipelines.components.private_evaluator import canary_audit
from pipelines.plan import DEFAULT_TRAINER_CONFIG, resolve_plan
from pipelines.trainers import breast_cancer
from privacy.accounting import DpSgdMechanism
from privacy.auditing import dp_sgd_audit
from privacy.auditing.one_run import largest_bound
from privacy.compared import compared
from privacy.preprocessing import PreprocessingPart
from tests.pipelines.test_privacy_ledger import preprocessing_account

RUN = DpSgdMechanism(dataset_size=389, batch_size=32, noise_multiplier=3.0, steps=183)
"""The bundled pipeline's training run (389 rows, B 32, 15 epochs) at a sigma whose claim a noiseless run refutes."""
DELTA = 1e-5
CANARIES = 1000


def _claims(figures: dict, delta: float = DELTA) -> dict[str, float]:
    """RDP and PLD epsilons of the canary-augmented run, from dp-accounting directly."""
    event = dpa.SelfComposedDpEvent(
        dpa.PoissonSampledDpEvent(
            figures["batch_size"] / figures["dataset_size"], dpa.GaussianDpEvent(RUN.noise_multiplier)
        ),
        RUN.steps,
    )
    return {
        "rdp": dpa.rdp.RdpAccountant().compose(event).get_epsilon(delta),
        "pld": dpa.pld.PLDAccountant(value_discretization_interval=1e-4).compose(event).get_epsilon(delta),
    }


def _ledger(mechanism: DpSgdMechanism = RUN) -> privacy_ledger.PrivacyLedger:
    return privacy_ledger.PrivacyLedger.for_dp_sgd(mechanism, l2_norm_clip=1.0, delta=DELTA)


def _read_back_without_clip() -> privacy_ledger.PrivacyLedger:
    """A ledger read back from JSON that does not state C (the reader accepts it: C is not part of the events)."""
    data = _ledger().to_dict()
    del data["parameters"]["l2_norm_clip"]
    return privacy_ledger.PrivacyLedger.from_dict(data)


def test_an_honest_run_passes_and_its_claim_is_the_augmented_runs():
    check, figures = canary_audit.audit_check(_ledger(), CANARIES)
    claims = _claims(figures)
    assert figures["claims"] == pytest.approx(claims, rel=1e-6)
    assert figures["claimed_epsilon"] == pytest.approx(min(claims.values()), rel=1e-6)
    # An excluded canary stays as a stand-in row: N = n + m and q' = B' / N = B / n up to rounding, whatever the bits.
    assert figures["dataset_size"] == 389 + CANARIES and figures["training_rows"] == 389
    assert figures["steps"] == RUN.steps and figures["num_canaries"] == CANARIES
    assert figures["batch_size"] == round(32 * (389 + CANARIES) / 389) == 114
    assert check["passed"] and figures["lower_bound"] <= figures["claimed_epsilon"] < figures["largest_possible_bound"]
    shown, claim = compared(figures["lower_bound"], figures["claimed_epsilon"], digits=6, bound_digits=4)
    assert check["reason"].startswith(f"privacy_audit: lower bound {shown} <= claimed epsilon {claim} (")
    assert _scalars(figures) and "included" not in repr(figures)  # the secret bits never leave the audit


def _scalars(value) -> bool:
    """True when `value` is a scalar or a dict of them (nested): no list or array that could carry per-canary
    bits, scores or guesses."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _scalars(v) for k, v in value.items())
    return value is None or isinstance(value, (str, int, float, bool))


def _one_step_claims(figures: dict, sigma: float) -> dict[str, float]:
    """RDP and PLD epsilons of one step of the Gaussian mechanism at sampling rate 1, from dp-accounting directly."""
    assert figures["batch_size"] == figures["dataset_size"] and figures["steps"] == 1  # q = 1, one step
    event = dpa.PoissonSampledDpEvent(1.0, dpa.GaussianDpEvent(sigma))
    return {
        "rdp": dpa.rdp.RdpAccountant().compose(event).get_epsilon(DELTA),
        "pld": dpa.pld.PLDAccountant(value_discretization_interval=1e-4).compose(event).get_epsilon(DELTA),
    }


def test_the_gate_runs_both_audits_and_an_honest_implementation_check_passes():
    """With the audit on, the gate also trains one full-batch step at the Trainer's C and sigma with 10,000
    canaries and bounds it with the mu-GDP f-DP bound (sound at sampling rate 1); its claim is the one-step
    mechanism's, recomputed here. Honest: bound <= claim, both checks pass."""
    checks, figures = canary_audit.audit_checks(_ledger(), CANARIES)
    assert [check["name"] for check in checks] == ["privacy_audit", "implementation_audit"]
    assert all(check["passed"] for check in checks) and set(figures) == {"privacy_audit", "implementation_audit"}
    step = figures["implementation_audit"]
    claims = _one_step_claims(step, RUN.noise_multiplier)
    assert step["claims"] == pytest.approx(claims, rel=1e-6)
    assert step["claimed_epsilon"] == pytest.approx(claims["pld"], rel=1e-6) and step["claim_accountant"] == "pld"
    assert step["num_canaries"] == canary_audit.IMPLEMENTATION_CANARIES == 10_000
    assert step["dataset_size"] == step["batch_size"] == 389 + 10_000 and step["training_rows"] == 389
    assert step["noise_multiplier"] == RUN.noise_multiplier and step["l2_norm_clip"] == 1.0
    assert step["final"]["estimator"] == "f-dp-gaussian" and step["final"]["num_canaries"] == 10_000
    assert step["largest_possible_bound"] == largest_bound(10_000, delta=DELTA, estimator="f-dp-gaussian")
    assert step["lower_bound"] <= step["claimed_epsilon"] < step["largest_possible_bound"]
    shown, claim = compared(step["lower_bound"], step["claimed_epsilon"], digits=6, bound_digits=4)
    assert checks[1]["reason"].startswith(
        f"implementation_audit: lower bound {shown} <= claimed epsilon {claim}"
        f" (one-run f-dp-gaussian lower bound at 95% confidence from 10000 white-box canaries vs the PLD epsilon of "
        f"one full-batch step (sampling probability 1) at the Trainer's C and sigma with its canaries (N = 10389, "
        f"expected batch 10389, 1 step, delta 1e-05; trained by {canary_audit.PPML_MODEL})"
    )
    assert _scalars(step) and "included" not in repr(step)  # the secret bits never leave the audit


def test_a_clip_at_2c_is_caught_by_the_implementation_check(monkeypatch):
    """The fault hook of `ppml audit --fault clip-2x`, set here only: gradients clipped at 2C, noise and claim those
    of C (the true sigma is half the declared one). At sigma 2 one step is 0.5-GDP as claimed (PLD epsilon 1.99 at
    1e-5) but 1-GDP as run; 10,000 canaries caught that in 100 of 100 idealised audits (smallest bound 2.17). The
    implementation check is NOT BLESSED, so the gate is (it blesses only when every check passes)."""
    monkeypatch.setattr(
        dp_sgd_audit, "audit_mechanism", functools.partial(dp_sgd_audit.audit_mechanism, fault="clip-2x")
    )
    ledger = _ledger(RUN.replace(noise_multiplier=2.0))
    check, step = canary_audit.implementation_check(ledger)
    claims = _one_step_claims(step, 2.0)
    assert step["claims"] == pytest.approx(claims, rel=1e-6)
    assert not check["passed"] and step["violated"] and step["lower_bound"] > min(claims.values())
    assert check["reason"].startswith(
        f"implementation_audit: accounting inconsistent: lower bound {step['lower_bound']:g}"
        f" > claimed epsilon {step['claimed_epsilon']:.4g}"
    )
    assert check["reason"].endswith(
        "DP-SGD as trained at the Trainer's C and sigma does not give the epsilon ppml's accountant claims for that "
        "step, so the training part's epsilon is not to be trusted at that confidence"
    )


def _module_ledger(module: str, **hp) -> privacy_ledger.PrivacyLedger:
    """The ledger of a run whose trainer record names `module`'s run_fn and its hyperparameters (as run_fn writes)."""
    trainer = {"run_fn": f"{module}.run_fn", "hyperparameters": {**breast_cancer.HYPERPARAMETERS, **hp}}
    return privacy_ledger.PrivacyLedger.for_dp_sgd(RUN, l2_norm_clip=1.0, delta=DELTA, trainer=trainer)


def test_the_implementation_check_trains_the_trainer_modules_own_model_and_fit():
    """A module that exports the audit hooks (the bundled one) is checked through its own model, optimizer, loss and
    make_private call: one full-batch step with 10,000 canaries on zero stand-in rows, honest: bound <= claim. A
    ledger without them (`_ledger`) is checked through ppml's audit model and says so."""
    check, step = canary_audit.implementation_check(_module_ledger("pipelines.trainers.breast_cancer"))
    assert step["trained_by"] == "pipelines.trainers.breast_cancer (build_model, fit_private), the trainer module's own"
    assert step["claims"] == pytest.approx(_one_step_claims(step, RUN.noise_multiplier), rel=1e-6)
    assert step["dataset_size"] == 389 + 10_000 and step["final"]["estimator"] == "f-dp-gaussian"
    assert check["passed"] and step["lower_bound"] <= step["claimed_epsilon"]
    assert f"trained by {step['trained_by']}" in check["reason"]
    assert canary_audit.trainer_hooks(_ledger()) is None
    assert canary_audit.trainer_hooks(_module_ledger("pipelines.trainers.pate")) is None  # no hooks there


def test_a_trainer_module_that_takes_a_non_private_step_is_accounting_inconsistent():
    """A bug in the module's own fit that ppml's audit model cannot see (it does not run the module): one ordinary
    full-batch step before the private one gives every included canary its unclipped, unnoised gradient."""
    check, step = canary_audit.implementation_check(
        _module_ledger("tests.pipelines.faulty_trainer_module", fault="warm-up")
    )
    assert step["trained_by"].startswith("tests.pipelines.faulty_trainer_module (build_model, fit_private)")
    assert step["claims"] == pytest.approx(_one_step_claims(step, RUN.noise_multiplier), rel=1e-6)
    assert not check["passed"] and step["lower_bound"] > step["claimed_epsilon"]
    assert check["reason"].startswith(
        f"implementation_audit: accounting inconsistent: lower bound {step['lower_bound']:g}"
    )


def test_a_trainer_module_that_transforms_its_inputs_fails_closed():
    """A fit that standardises every column also rescales the canary-id column the audit appends: the canaries
    would leave their slots and the warm-up bug above pass with a bound of 0, so the slot refuses such ids."""
    check, step = canary_audit.implementation_check(
        _module_ledger("tests.pipelines.faulty_trainer_module", fault="standardised-warm-up")
    )
    assert step is None and not check["passed"] and "\n" not in check["reason"]
    assert check["reason"].startswith(
        "implementation_audit: the audit cannot reproduce this run (the trainer module's fit_private failed: "
        "InvalidArgumentError: "
    )
    assert (
        "the canary id column (the last input) must hold the integers 0 to 10000 the audit appended" in check["reason"]
    )


def test_a_trainer_module_that_clips_elsewhere_than_its_ledger_fails_closed():
    """The module passes make_private 2C while its ledger states C: what ran is read back from the model after the
    fit, so the check refuses it before any bound."""
    check, step = canary_audit.implementation_check(
        _module_ledger("tests.pipelines.faulty_trainer_module", fault="clip-2x")
    )
    assert step is None and not check["passed"]
    assert check["reason"].startswith(
        "implementation_audit: the audit cannot reproduce this run (the trainer's fit trained"
    )
    assert "with clip norm 2, not the audited" in check["reason"] and "with clip norm 1)" in check["reason"]


def test_a_trainer_module_that_crashes_fails_closed_in_one_line():
    check, step = canary_audit.implementation_check(
        _module_ledger("tests.pipelines.faulty_trainer_module", fault="crash")
    )
    assert step is None and not check["passed"] and "\n" not in check["reason"]
    assert check["reason"] == (
        "implementation_audit: the audit cannot reproduce this run (the trainer module's fit_private failed: "
        "TypeError: fit_private() got an unexpected keyword); what cannot be checked is not blessed"
    )


@pytest.mark.parametrize(
    ("run_fn", "why"),
    [
        (
            "tests.pipelines.faulty_trainer_module.run_fn",
            "the trainer module's build_model failed: ValueError: line one line two",
        ),
        (
            "tests.pipelines.unimportable_trainer_module.run_fn",
            "the trainer module 'tests.pipelines.unimportable_trainer_module' its ledger names cannot be imported: "
            "RuntimeError: this trainer module fails at import",
        ),
        (
            "tests.pipelines.no_such_trainer_module.run_fn",
            "the trainer module 'tests.pipelines.no_such_trainer_module' its ledger names cannot be imported: "
            "ModuleNotFoundError: No module named 'tests.pipelines.no_such_trainer_module'",
        ),
        (".run_fn", "the trainer module '' its ledger names cannot be imported: ValueError: Empty module name"),
    ],
    ids=["two-line error", "fails at import", "not importable", "empty module name"],
)
def test_a_trainer_module_that_cannot_be_run_fails_the_check_closed_in_one_line(run_fn, why):
    """User code, or a ledger naming a module the Evaluator cannot import: the check fails closed with one line
    (a module that cannot be imported is never silently replaced by ppml's audit model, whose pass would not be its)."""
    ledger = _module_ledger("tests.pipelines.faulty_trainer_module", fault="two-lines")
    ledger = dataclasses.replace(ledger, trainer={**ledger.trainer, "run_fn": run_fn})
    check, step = canary_audit.implementation_check(ledger)
    assert step is None and not check["passed"] and "\n" not in check["reason"]
    assert check["reason"] == (
        f"implementation_audit: the audit cannot reproduce this run ({why}); what cannot be checked is not blessed"
    )


def test_a_module_with_hooks_whose_ledger_records_no_hyperparameters_fails_closed():
    """A module exporting the hooks opted into being trained by the check: a ledger without the hyperparameters its
    hooks take is refused, never silently audited through ppml's audit model (whose pass is not the module's)."""
    ledger = _module_ledger("pipelines.trainers.breast_cancer")
    ledger = dataclasses.replace(ledger, trainer={"run_fn": ledger.trainer["run_fn"]})
    check, step = canary_audit.implementation_check(ledger)
    assert step is None and not check["passed"]
    assert check["reason"] == (
        "implementation_audit: the audit cannot reproduce this run (the trainer module "
        "'pipelines.trainers.breast_cancer' exports the audit hooks but its ledger's trainer record holds no "
        "hyperparameters for them); what cannot be checked is not blessed"
    )


def test_a_trainer_module_whose_build_model_returns_no_model_fails_closed():
    check, step = canary_audit.implementation_check(
        _module_ledger("tests.pipelines.faulty_trainer_module", fault="not-a-model")
    )
    assert step is None and not check["passed"]
    assert check["reason"] == (
        "implementation_audit: the audit cannot reproduce this run (the trainer module's model could not be audited: "
        "AttributeError: 'NoneType' object has no attribute 'input_shape'); what cannot be checked is not blessed"
    )


def test_the_trainer_refuses_a_ledger_that_names_another_modules_run_fn():
    """The implementation check trains through the hooks of the module the ledger's run_fn names, so the DP
    Trainer's executor refuses a record naming a run_fn other than the one it called (here a module claiming the
    bundled module's run_fn); a re-exported run_fn (the same function) and a record naming none pass."""
    from pipelines.components.dp_trainer import fn_args_utils
    from pipelines.trainers import pate

    ledger = _module_ledger("pipelines.trainers.breast_cancer")
    fn_args_utils.check_trainer_record(ledger, breast_cancer.run_fn)
    fn_args_utils.check_trainer_record(dataclasses.replace(ledger, trainer={}), pate.run_fn)
    with pytest.raises(RuntimeError) as err:
        fn_args_utils.check_trainer_record(ledger, pate.run_fn)
    assert str(err.value) == (
        "the ledger's trainer record names run_fn 'pipelines.trainers.breast_cancer.run_fn', but the Trainer called "
        "'pipelines.trainers.pate.run_fn' (the Evaluator's implementation check trains through the hooks of the "
        "module the record names)"
    )


def test_the_audit_is_at_the_delta_the_training_part_is_stated_at():
    """A vocabulary's partition selection adds at most 1e-5 to the artifact's delta 1e-3: the training part's epsilon
    (the ledger's `parts`) is at the accountant's 1e-3 less that, so the bound, the claim and the ceiling are too."""
    part = PreprocessingPart(preprocessing_account(with_vocabulary=True), "add-remove")
    ledger = privacy_ledger.PrivacyLedger.for_dp_sgd(RUN, l2_norm_clip=1.0, delta=1e-3, preprocessing=part)
    assert 1e-5 * (1 - 5e-3) < part.additive_delta() <= 1e-5
    accountant_delta = 1e-3 - part.additive_delta()
    assert ledger.delta == pytest.approx(1e-3) and ledger.accountant_delta == pytest.approx(accountant_delta)
    check, figures = canary_audit.audit_check(ledger, CANARIES)
    assert figures["delta"] == pytest.approx(accountant_delta, rel=1e-9)
    assert figures["claims"] == pytest.approx(_claims(figures, accountant_delta), rel=1e-6)
    assert figures["claims"]["pld"] != pytest.approx(_claims(figures, 1e-3)["pld"], rel=1e-6)
    # A subsampled run: the f-DP bound with the (eps, delta) trade-off, whose ceiling the delta term does not sink
    # (the counting bound's would be 0.26 at this delta).
    assert figures["final"]["estimator"] == "f-dp"
    assert figures["largest_possible_bound"] == largest_bound(CANARIES, delta=figures["delta"], estimator="f-dp") > 5
    assert largest_bound(CANARIES, delta=figures["delta"], estimator="counting") < 0.3
    assert check["passed"] and f"delta {figures['delta']:g};" in check["reason"]


def test_a_run_without_its_declared_noise_is_accounting_inconsistent(monkeypatch):
    """The fault hook of `ppml audit --fault no-noise`, set here only: the run adds no noise, the claim stays."""
    monkeypatch.setattr(
        dp_sgd_audit, "audit_mechanism", functools.partial(dp_sgd_audit.audit_mechanism, fault="no-noise")
    )
    check, figures = canary_audit.audit_check(_ledger(), CANARIES)
    claim = min(_claims(figures).values())
    assert figures["claimed_epsilon"] == pytest.approx(claim, rel=1e-6)
    assert not check["passed"] and figures["violated"] and figures["lower_bound"] > claim
    assert check["reason"].startswith(
        f"privacy_audit: accounting inconsistent: lower bound {figures['lower_bound']:g}"
        f" > claimed epsilon {figures['claimed_epsilon']:.4g}"
    )
    # What a bound on the training run refutes: the training part, not the composed epsilon (which is larger).
    assert check["reason"].endswith(
        "ppml's epsilon for this DP-SGD run, the training part the ledger composes, is false at that confidence"
    )


@pytest.mark.parametrize(
    "ledger, why",
    [
        (None, "nothing to audit: the model has no DP-SGD privacy ledger"),
        (
            _ledger(RUN.replace(sampling="fixed", adjacency="replace-one")),
            "the audit cannot reproduce this run (sampling: the one-run audit includes or leaves out each canary",
        ),
        (_ledger(RUN.replace(num_microbatches=4)), "the audit cannot reproduce this run (num_microbatches"),
        (
            _read_back_without_clip(),
            "the audit cannot reproduce this run (l2_norm_clip must be a finite number > 0, got None)",
        ),
        (
            _ledger(RUN.replace(max_examples_per_user=2)),
            "the audit cannot reproduce this run (max_examples_per_user: the audit's canaries are single examples",
        ),
    ],
    ids=["no ledger", "fixed batches", "microbatches", "no clip norm", "user level"],
)
def test_an_audit_that_cannot_run_fails_closed(ledger, why):
    check, figures = canary_audit.audit_check(ledger, CANARIES)
    assert figures is None and check["passed"] is False and check["reason"].startswith(f"privacy_audit: {why}")
    check, figures = canary_audit.implementation_check(ledger)
    assert figures is None and check["passed"] is False
    assert check["reason"].startswith(f"implementation_audit: {why}")


@pytest.mark.parametrize("error", [MemoryError, "tf"], ids=["MemoryError", "ResourceExhaustedError"])
def test_an_audit_that_runs_out_of_memory_fails_closed_in_one_line(monkeypatch, error):
    import tensorflow as tf

    def exhausted(*args, **kwargs):
        raise MemoryError() if error is MemoryError else tf.errors.ResourceExhaustedError(None, None, "OOM")

    monkeypatch.setattr(dp_sgd_audit, "audit_mechanism", exhausted)
    check, figures = canary_audit.audit_check(_ledger(), CANARIES)
    assert figures is None and check["passed"] is False and "\n" not in check["reason"]
    assert check["reason"].startswith(f"privacy_audit: the audit ran out of memory with {CANARIES} canaries")


def test_the_audit_setting_is_checked_before_tfx_and_travels_in_the_eval_config():
    plan = resolve_plan(audit_canaries=500)
    assert plan.gate.audit_canaries == 500 and resolve_plan().gate.audit_canaries is None
    for kwargs, message in (
        (dict(audit_canaries=10), "--audit-canaries: audit_canaries must be an integer in [32, 100000], got 10"),
        (
            dict(audit_canaries=500, trainer_config={**DEFAULT_TRAINER_CONFIG, "private": False}),
            "audits a private DP Trainer's DP-SGD run",
        ),
        (dict(audit_canaries=500, trainer="federated"), "audits a private DP Trainer's DP-SGD run"),
        (
            dict(audit_canaries=500, trainer_config={**DEFAULT_TRAINER_CONFIG, "sampling": "shuffle"}),
            "needs --sampling poisson without --num-microbatches, got --sampling shuffle",
        ),
    ):
        with pytest.raises(ValueError) as err:
            resolve_plan(**kwargs)
        assert message in str(err.value)
    result = CliRunner().invoke(
        cli,
        [
            "pipeline",
            "run",
            "--sampling",
            "fixed",
            "--audit-canaries",
            "500",
            "--pipeline-root",
            "/nonexistent/never-written",
        ],
    )
    assert result.exit_code == 2 and "--sampling poisson without --num-microbatches" in result.output
    assert "Traceback" not in result.output


def test_the_gate_settings_carry_the_canary_count(python_subprocess):
    code = """
from pipelines.components.private_evaluator import spec
from pipelines.pipeline import eval_config
print(spec.gate_settings(eval_config(spec.GateSettings(epsilon_budget=2.0, audit_canaries=700))).audit_canaries,
      spec.gate_settings(eval_config(spec.GateSettings(epsilon_budget=2.0))).audit_canaries)
"""
    assert python_subprocess(code, legacy_keras=True).stdout.split()[-2:] == ["700", "None"]


def test_above_about_5000_rows_the_implementation_check_takes_the_most_canaries_its_step_may_hold():
    """10,000 canaries up to about 5,000 training rows; above, the most m with (n + m) m slot gradients within
    `MAX_SLOT_GRADIENTS` (so `check_data` runs the step instead of refusing every large run)."""
    from privacy.auditing.canaries import MAX_SLOT_GRADIENTS

    assert canary_audit.implementation_canaries(389) == canary_audit.IMPLEMENTATION_CANARIES == 10_000
    assert canary_audit.implementation_canaries(5_000) == 10_000
    for rows in (5_001, 60_000, 1_000_000):
        m = canary_audit.implementation_canaries(rows)
        assert m < 10_000 and (rows + m) * m <= MAX_SLOT_GRADIENTS < (rows + m + 1) * (m + 1), rows


def test_above_the_rows_the_fewest_canaries_allow_the_implementation_check_says_what_its_user_can_do():
    """At n = 150,000,000 / 32 - 32 = 4,687,468 rows one step holds 32 canaries (the fewest an audit takes); one row
    more and the check fails closed before any training, naming the limit and what the Evaluator's user can change
    (not the canary count, which is not theirs to give)."""
    from privacy.auditing.one_run import MIN_CANARIES

    assert MIN_CANARIES == 32 and canary_audit.implementation_canaries(4_687_468) == 32
    assert canary_audit.implementation_canaries(4_687_469) == 31
    mechanism = DpSgdMechanism(dataset_size=4_687_469, batch_size=4_096, noise_multiplier=1.0, steps=10)
    check, figures = canary_audit.implementation_check(_ledger(mechanism))
    assert figures is None and check["passed"] is False and "\n" not in check["reason"]
    assert check["reason"] == (
        "implementation_audit: the check runs on at most 4,687,468 training rows (its one full-batch step with the "
        "fewest canaries an audit takes, 32, holds (n + 32) x 32 slot gradients, at most 150,000,000), and this run "
        "has 4,687,469; what cannot be checked is not blessed: gate this model without the audits (no "
        "--audit-canaries, audit_canaries=None) or train it on fewer rows"
    )
    assert "fewer canaries" not in check["reason"]
