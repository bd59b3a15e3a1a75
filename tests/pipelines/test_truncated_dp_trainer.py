"""Truncated Poisson sampling in the DP Trainer without TFX: its settings, the plan's event and calibration, the
ledger's count of cut batches, the gate's epsilon and `ppml report`; every epsilon recomputed from dp-accounting
directly."""

import json
import math

import dp_accounting as dpa
import pytest

from pipelines import privacy_ledger as pl
from pipelines.components.dp_trainer.spec import DpTrainingConfig, InvalidPrivacySetting
from pipelines.components.private_evaluator import spec as gate_spec
from pipelines.report import PipelineReport

N = 389
GOOD = {
    "private": True,
    "batch_size": 32,
    "epochs": 5,
    "l2_norm_clip": 1.0,
    "noise_multiplier": 1.5,
    "truncated_batch_size": 40,
}
STEPS = math.ceil(5 * N / 32)


def truncated_pld(k, sigma, steps, delta=1e-3):
    """dp-accounting's PLD epsilon of ``steps`` truncated Poisson steps under add-remove: the event's dataset size
    is n + 1, the neighbour that adds an example (dp-accounting counts x's companions as dataset_size - 1)."""
    accountant = dpa.pld.PLDAccountant(dpa.NeighboringRelation.ADD_OR_REMOVE_ONE)
    accountant.compose(dpa.TruncatedSubsampledGaussianDpEvent(N + 1, 32 / N, k, sigma), steps)
    return accountant.get_epsilon(delta)


@pytest.mark.parametrize(
    "change, setting, message",
    [
        ({"truncated_batch_size": 31}, "truncated_batch_size", "must be an integer in [32, dataset_size] or 'default'"),
        ({"truncated_batch_size": "auto"}, "truncated_batch_size", "got 'auto'"),
        ({"truncated_batch_size": 40.0}, "truncated_batch_size", "got 40.0"),
        ({"sampling": "shuffle"}, "truncated_batch_size", "Poisson sampling only"),
        (
            {"sampling": "fixed", "accountant": "pld", "noise_multiplier": None, "target_epsilon": 3.0},
            "truncated_batch_size",
            "Poisson sampling only",
        ),
        ({"num_microbatches": 4}, "truncated_batch_size", "per-example clipping only"),
        ({"private": False, "noise_multiplier": None}, "truncated_batch_size", "private training only"),
        ({"noise_multiplier": None, "target_epsilon": 3.0}, "accountant", "use 'pld'"),  # rdp is the default
    ],
)
def test_bad_truncation_settings_name_the_key(change, setting, message):
    with pytest.raises(InvalidPrivacySetting) as info:
        DpTrainingConfig.from_custom_config({**GOOD, **change})
    assert info.value.setting == setting and message in str(info.value)


def test_a_cap_above_n_is_refused_against_the_data():
    config = DpTrainingConfig.from_custom_config({**GOOD, "truncated_batch_size": N + 1})
    with pytest.raises(InvalidPrivacySetting) as info:
        config.plan(dataset_size=N)
    assert info.value.setting == "truncated_batch_size" and f"[32, {N}]" in str(info.value)


def test_the_plan_accounts_the_truncated_event_and_the_default_cap():
    plan = DpTrainingConfig.from_custom_config({**GOOD, "truncated_batch_size": "default"}).plan(dataset_size=N)
    k = math.ceil(32 + 4 * math.sqrt(32 * (1 - 32 / N)))
    m = plan.mechanism
    assert m.truncated_batch_size == k and m.steps == STEPS
    assert m.unit_event() == dpa.TruncatedSubsampledGaussianDpEvent(N + 1, 32 / N, k, 1.5)
    ledger = plan.ledger(truncated_batches=2)
    assert ledger.epsilons["rdp"] is None
    assert ledger.epsilons["pld"] == pytest.approx(truncated_pld(k, 1.5, STEPS), rel=1e-9)


def test_target_epsilon_is_calibrated_with_pld_on_the_truncated_event():
    plan = DpTrainingConfig.from_custom_config(
        {**GOOD, "noise_multiplier": None, "target_epsilon": 3.0, "accountant": "pld"}
    ).plan(dataset_size=N)
    sigma = plan.mechanism.noise_multiplier
    assert truncated_pld(40, sigma, STEPS) <= 3.0 < truncated_pld(40, sigma * 0.99, STEPS)


def test_the_ledger_records_the_cut_batches_and_the_gate_and_report_use_the_truncated_epsilon():
    plan = DpTrainingConfig.from_custom_config(GOOD).plan(dataset_size=N)
    with pytest.raises(pl.LedgerError, match="truncated_batches must be an integer >= 0"):
        plan.ledger()
    with pytest.raises(pl.LedgerError, match="truncated_batches must be an integer >= 0"):
        plan.ledger(truncated_batches=-1)
    ledger = pl.PrivacyLedger.from_dict(plan.ledger(truncated_batches=7).to_dict())  # as the gate reads it
    exact = truncated_pld(40, 1.5, STEPS)
    assert ledger.parameters["truncated_batches"] == 7 and ledger.parameters["truncated_batch_size"] == 40
    assert ledger.to_dict()["budget"]["ledger"][-1]["event"]["class_name"] == "TruncatedSubsampledGaussianDpEvent"
    epsilon, note = gate_spec.budget_epsilon(ledger, "example")
    assert epsilon == pytest.approx(exact, rel=1e-9) and note.startswith("PLD accountant (RDP: no analysis)")

    dropped = ledger.to_dict()
    del dropped["parameters"]["truncated_batches"]
    with pytest.raises(pl.LedgerError, match="truncated_batches must be an integer >= 0"):
        pl.PrivacyLedger.from_dict(dropped)
    untruncated = DpTrainingConfig.from_custom_config({**GOOD, "truncated_batch_size": None}).plan(dataset_size=N)
    with pytest.raises(pl.LedgerError, match="never cuts"):
        untruncated.ledger(truncated_batches=0)

    report = PipelineReport(
        pipeline_name="p",
        run_id="r",
        stages={"Trainer": "complete"},
        model_uri="m",
        model_id=1,
        model_properties={},
        ledger=ledger,
        evaluation=None,
        evaluation_uri=None,
        pushed_uri=None,
    )
    text = report.format_text()
    assert "batches of more than 40 cut to a random 40 of them" in text
    assert "TruncatedSubsampledGaussianDpEvent" in text and f"  {'batches cut':<18} 7 (truncated Poisson" in text
    pld = [line for line in text.splitlines() if line.strip().startswith("PLD ")]
    assert float(pld[0].split()[1]) == pytest.approx(exact, abs=5e-5)
    data = report.to_dict()["privacy"]
    assert data["truncated_batches"] == 7 and data["truncated_batch_size"] == 40
    assert data["epsilon_pld"] == pytest.approx(exact, rel=1e-9) and data["epsilon_rdp"] is None


def test_the_count_of_cut_batches_is_listed_outside_the_guarantee_and_never_called_accounted():
    """The TruncatedSubsampledGaussianDpEvent's epsilon covers the noisy steps with the cut hidden; the count of
    cut batches, released in the ledger, depends on the batch sizes (under add-remove P(cut) moves by q P(N = K)
    when an example joins), so the ledger (read by the Evaluator's list) and the report put it outside the guarantee."""
    plan = DpTrainingConfig.from_custom_config(GOOD).plan(dataset_size=N)
    ledger = pl.PrivacyLedger.from_dict(plan.ledger(truncated_batches=7).to_dict())
    outside = ledger.parameters["outside_guarantee"]
    listed = {
        pl.CUT_BATCHES_NAME,
        pl.PUBLIC_DATASET_SIZE_NAME,
        pl.FLOAT_SUM_NAME,  # float32 or unknown: the ledger was given no noise draws
        *pl.FLOATING_POINT_NOISE,
        *pl.SEPARATE_RUNS,
        *pl.INFERRED_SPEC,
        *pl.UNKNOWN_NOISE_CUTOFF,  # the ledger was given neither noise draws
        *pl.UNKNOWN_VALIDATION_DECISIONS,  # nor validation decisions
        *pl.padding_left_out(None),  # nor whether steps left their padding out
    }
    assert set(outside) == listed
    assert "no epsilon covers it" in outside[pl.CUT_BATCHES_NAME]
    unlisted = json.loads(json.dumps(ledger.to_dict()))  # to_dict shares the parameters' dicts
    del unlisted["parameters"]["outside_guarantee"][pl.CUT_BATCHES_NAME]
    with pytest.raises(pl.LedgerError, match="must list 'count of cut batches' outside the guarantee"):
        pl.PrivacyLedger.from_dict(unlisted)
    untruncated = DpTrainingConfig.from_custom_config({**GOOD, "truncated_batch_size": None}).plan(dataset_size=N)
    assert pl.CUT_BATCHES_NAME not in untruncated.ledger().parameters["outside_guarantee"]

    text = PipelineReport(
        pipeline_name="p",
        run_id="r",
        stages={"Trainer": "complete"},
        model_uri="m",
        model_id=1,
        model_properties={},
        ledger=ledger,
        evaluation=None,
        evaluation_uri=None,
        pushed_uri=None,
    ).format_text()
    cut = next(line for line in text.splitlines() if line.startswith(f"  {'batches cut':<18} 7"))
    assert "not covered by epsilon" in cut and "accounted" not in cut
    assert f"  outside the guarantee: {pl.CUT_BATCHES_NAME}: " in text
