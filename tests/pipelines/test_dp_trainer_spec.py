"""DP Trainer settings: every bad value is rejected with the key named, before any training."""

import math
import re
import types

import dp_accounting
import numpy as np
import pytest
from dp_accounting import dp_event

from pipelines.components.dp_trainer.spec import DpTrainingConfig, InvalidPrivacySetting
from privacy.accounting import NoiseDraws, calibrate_noise_multiplier, compute_epsilon
from tests.privacy.accounting.test_noise_cutoff import largest_clip_recomputed

GOOD = {"private": True, "batch_size": 32, "epochs": 5, "l2_norm_clip": 1.0, "target_epsilon": 3.0}


@pytest.mark.parametrize(
    "change, setting",
    [
        ({"l2_norm_clip": -1.0}, "l2_norm_clip"),
        ({"l2_norm_clip": float("nan")}, "l2_norm_clip"),
        ({"noise_multiplier": 0.0, "target_epsilon": None}, "noise_multiplier"),
        ({"noise_multiplier": 1.1}, "noise_multiplier"),  # both given
        ({"target_epsilon": None}, "noise_multiplier"),  # neither given
        ({"target_epsilon": "3"}, "target_epsilon"),
        ({"delta": 1.5}, "delta"),
        ({"sampling": "random"}, "sampling"),
        ({"num_microbatches": 0}, "num_microbatches"),
        ({"num_microbatches": 64, "sampling": "shuffle"}, "num_microbatches"),  # does not divide B = 32
        ({"num_microbatches": 5, "sampling": "fixed"}, "num_microbatches"),
        ({"sampling": "fixed", "accountant": "pld"}, "accountant"),  # PLD has no analysis of fixed-size batches
        ({"batch_size": 2.5}, "batch_size"),
        ({"batch_size": 2**23 + 1}, "batch_size"),  # more rows than max_l2_norm_clip's bound covers (2^23 accepted)
        ({"epochs": 0}, "epochs"),
        ({"accountant": "prv"}, "accountant"),
        ({"private": "yes"}, "private"),
        ({"noise_multipler": 1.0}, "noise_multipler"),  # typo: never silently ignored
    ],
)
def test_bad_settings_name_the_key(change, setting):
    with pytest.raises(InvalidPrivacySetting) as info:
        DpTrainingConfig.from_custom_config({**GOOD, **change})
    assert info.value.setting == setting
    assert str(info.value).startswith(f"custom_config[{setting!r}]")


def test_the_largest_batch_the_clip_bound_covers_is_accepted():
    assert DpTrainingConfig.from_custom_config({**GOOD, "batch_size": 2**23}).batch_size == 2**23


def test_a_clip_whose_noise_float32_cannot_draw_is_refused_before_any_data():
    """sigma C (1 + 2^-10) / B below float32's range [2^-103, max / (R' (1 + eps)^2)] (recomputed here from numpy's
    float32 and R = sqrt(128 ln 2)), at the noise_multiplier given or at any a target_epsilon may calibrate to (0.05
    to 1e6): refused naming l2_norm_clip by from_custom_config, and by plan for a config built directly. Above the
    range a clip is beyond the largest accepted (about 2.476e27, at which sigma 1e6 gives 2.5e33 at most) first: its
    own refusal, naming l2_norm_clip too (`test_the_largest_clip_passes_and_the_next_float_is_refused`)."""
    info = np.finfo(np.float32)
    radius = np.nextafter(np.float32(math.sqrt(128 * math.log(2))), np.float32(np.inf))
    low, high = float(info.tiny / info.eps), float(info.max) / (float(radius) * (1 + float(info.eps)) ** 2)
    assert low == 2.0**-103

    def stddev(sigma, clip, denominator):
        return sigma * clip * (1 + 2**-10) / denominator

    given = {**GOOD, "target_epsilon": None}
    cases = [  # (change, why it is refused: "noise", "clip" (beyond the largest) or None), B = 32 unless set
        ({**given, "noise_multiplier": 1.1, "l2_norm_clip": 1e-33}, stddev(1.1, 1e-33, 32) < low and "noise"),
        ({**given, "noise_multiplier": 1e3, "l2_norm_clip": 1e36, "batch_size": 8}, "clip"),  # noise above, too
        ({**given, "noise_multiplier": 1e3, "l2_norm_clip": 1e36, "num_microbatches": 8}, "clip"),
        ({**given, "noise_multiplier": 1e3, "l2_norm_clip": 1e36}, stddev(1e3, 1e36, 32) < high and "clip"),  # drawable
        ({**given, "noise_multiplier": 1e6, "l2_norm_clip": 2.4e27}, None),
        ({**GOOD, "l2_norm_clip": 5e-29}, stddev(0.05, 5e-29, 32) < low and "noise"),  # calibration returns >= 0.05
        ({**GOOD, "l2_norm_clip": 1e-28}, stddev(0.05, 1e-28, 32) < low and "noise"),  # (not 1e-3: the range's)
        ({**GOOD, "l2_norm_clip": 1e33}, "clip"),
        ({**GOOD, "l2_norm_clip": 1e-33, "private": False}, None),
    ]
    assert [why for _, why in cases] == ["noise", "clip", "clip", "clip", None, "noise", False, "clip", None]
    assert stddev(1e3, 1e36, 8) > high and stddev(1e6, 2.4e27, 32) < high
    for config, why in cases:
        if not why:
            DpTrainingConfig.from_custom_config(config)
            continue
        with pytest.raises(InvalidPrivacySetting) as info_:
            DpTrainingConfig.from_custom_config(config)
        message = str(info_.value)
        assert info_.value.setting == "l2_norm_clip" and len(message.splitlines()) == 1, message
        if why == "clip":
            assert f"l2_norm_clip={config['l2_norm_clip']!r} must be at most 2.47" in message, message
            continue
        assert f"l2_norm_clip={config['l2_norm_clip']!r}" in message and "in float32" in message, message
        assert f"[{low!r}, {high!r}]" in message, message
        assert ("target_epsilon calibrates" in message) == (
            "target_epsilon" in config and config["target_epsilon"] is not None
        )
    direct = DpTrainingConfig(l2_norm_clip=1e-33, target_epsilon=3.0)
    with pytest.raises(InvalidPrivacySetting, match="l2_norm_clip=1e-33"):
        direct.plan(dataset_size=1000)


def test_the_largest_clip_passes_and_the_next_float_is_refused():
    """The DP Trainer refuses, before TFX, an l2_norm_clip beyond the largest a float32 step's noisy sum stays finite
    at (recomputed from numpy's float32 and Fractions), naming l2_norm_clip, with a target_epsilon or a
    noise_multiplier, for plan too."""
    largest = largest_clip_recomputed()
    assert 2.475e27 < largest < 2.476e27
    above = math.nextafter(largest, math.inf)
    for given in (GOOD, {**GOOD, "target_epsilon": None, "noise_multiplier": 1e6}):
        DpTrainingConfig.from_custom_config({**given, "l2_norm_clip": largest})
        with pytest.raises(InvalidPrivacySetting) as info_:
            DpTrainingConfig.from_custom_config({**given, "l2_norm_clip": above})
        assert info_.value.setting == "l2_norm_clip", str(info_.value)
        assert f"l2_norm_clip={above!r} must be at most {largest!r}" in str(info_.value)
    with pytest.raises(InvalidPrivacySetting, match="must be at most"):
        DpTrainingConfig(l2_norm_clip=above, target_epsilon=3.0).plan(dataset_size=1000)


def test_a_sigma_c_at_or_below_plds_step_floor_names_batch_size_noise_multiplier():
    """With accountant pld, noisy padding of sigma_c 0.1 (below PLD's floor 0.2 per step) leaves every step's noise
    multiplier below the floor: calibration cannot ask PLD, and the setting to change is sigma_c, not the target."""
    padded = {**GOOD, "accountant": "pld", "skip_padding": True}
    config = DpTrainingConfig.from_custom_config({**padded, "batch_size_noise_multiplier": 0.1})
    with pytest.raises(InvalidPrivacySetting) as info_:
        config.plan(dataset_size=2000)
    assert info_.value.setting == "batch_size_noise_multiplier" and "batch_size_noise_multiplier 0.1" in str(
        info_.value
    )


def test_unrelated_keys_are_left_to_the_module():
    config = DpTrainingConfig.from_custom_config({**GOOD, "learning_rate": 0.1, "hidden_units": 16})
    assert config.target_epsilon == 3.0 and config.batch_size == 32


@pytest.mark.parametrize(
    "key, spelled",
    [
        ("target_delta", "'delta'"),
        ("sampling_probability", "'batch_size' (q = batch_size / n)"),
        ("sampling_rate", "'batch_size' (q = batch_size / n)"),
        ("local_epochs", "'epochs' (total passes over the data)"),
        ("dp", "'private'"),
    ],
)
def test_the_glossarys_names_of_dp_settings_are_refused_not_passed_to_the_module(key, spelled):
    """--target-delta is 'delta' here, q is set through 'batch_size': such a key, passed on to the module, would
    leave the setting at its default without a word (e.g. target_delta 1e-7 ignored, the default delta accounted)."""
    with pytest.raises(InvalidPrivacySetting) as info:
        DpTrainingConfig.from_custom_config({**GOOD, key: 1e-7})
    assert info.value.setting == key
    assert str(info.value) == f"custom_config[{key!r}]: not a DP Trainer setting: this config spells it {spelled}"


def test_a_delta_at_one_over_n_prints_no_lower_than_the_bound():
    """1/60 to 3 digits is 0.0167, above 1/60: before, the refusal of delta = 1 / 60 read 'must be below 1/n =
    0.0167 ..., got 0.016666666666666666'. privacy.compared prints the two equal (they are)."""
    with pytest.raises(InvalidPrivacySetting) as info:
        DpTrainingConfig.from_custom_config({**GOOD, "delta": 1 / 60}).plan(dataset_size=60)
    bound, shown = re.search(r"below 1/n = (\S+) for n = 60 .*, got (\S+)$", str(info.value)).groups()
    assert float(bound) == float(shown) == 1 / 60, str(info.value)


@pytest.mark.parametrize(
    "change, n, setting",
    [
        ({"batch_size": 500}, 389, "batch_size"),
        ({"delta": 0.01}, 389, "delta"),  # not below 1/n
        ({"target_epsilon": 1e5}, 389, "target_epsilon"),  # too loose to calibrate
        ({"num_microbatches": 8, "sampling": "shuffle"}, 389, "num_microbatches"),  # last batch: 389 % 32 = 5
    ],
)
def test_settings_checked_against_the_data(change, n, setting):
    config = DpTrainingConfig.from_custom_config({**GOOD, **change})
    with pytest.raises(InvalidPrivacySetting) as info:
        config.plan(dataset_size=n)
    assert info.value.setting == setting


def test_plan_calibrates_sigma_to_the_target_with_the_accountant():
    plan = DpTrainingConfig.from_custom_config(GOOD).plan(dataset_size=389)
    assert plan.steps == 61 and plan.delta == 1e-3  # ceil(5 * 389 / 32); largest power of ten below 1/389
    m = plan.mechanism
    assert (m.dataset_size, m.batch_size, m.steps, m.sampling.value) == (389, 32, 61, "poisson")
    expected = calibrate_noise_multiplier(m.replace(noise_multiplier=1.0), target_epsilon=3.0, target_delta=1e-3)
    assert m.noise_multiplier == pytest.approx(expected, rel=1e-9)
    assert compute_epsilon(m, 1e-3, "rdp") <= 3.0
    ledger = plan.ledger()
    assert ledger.epsilon <= 3.0 and ledger.parameters["delta_is_default"] is True


def test_non_private_plan_has_no_mechanism():
    plan = DpTrainingConfig.from_custom_config({"private": False, "batch_size": 16, "epochs": 2}).plan(dataset_size=100)
    assert not plan.private and plan.steps == 13 and plan.mechanism is None
    with pytest.raises(ValueError, match="no privacy ledger"):
        plan.ledger()


def test_train_args_steps_override_epochs():
    plan = DpTrainingConfig.from_custom_config({**GOOD, "target_epsilon": None, "noise_multiplier": 1.0}).plan(
        dataset_size=389, steps=7
    )
    assert plan.steps == 7 and plan.mechanism.steps == 7 and plan.noise_multiplier == 1.0


def test_shuffled_training_runs_whole_epochs_under_replace_one():
    config = DpTrainingConfig.from_custom_config({**GOOD, "sampling": "shuffle", "epochs": 3})
    plan = config.plan(dataset_size=389)
    m = plan.mechanism
    assert plan.steps == 3 * 13 and m.steps_per_epoch == 13 and m.units() == 3
    # Shuffled batches have no add/remove analysis: replace-one, 3 Gaussians of sensitivity 2C (independently,
    # RDP with the noise multiplier relative to 2C; PLD by dp-accounting's own replace-one analysis).
    assert (m.adjacency.value, m.sensitivity) == ("replace-one", 2.0)
    rdp = dp_accounting.rdp.RdpAccountant().compose(
        dp_event.SelfComposedDpEvent(dp_event.GaussianDpEvent(m.noise_multiplier / 2), 3)
    )
    pld = dp_accounting.pld.PLDAccountant(dp_accounting.NeighboringRelation.REPLACE_ONE).compose(
        dp_event.SelfComposedDpEvent(dp_event.GaussianDpEvent(m.noise_multiplier), 3)
    )
    ledger = plan.ledger()
    assert ledger.epsilons["rdp"] == pytest.approx(rdp.get_epsilon(1e-3), rel=1e-9)
    assert ledger.epsilons["pld"] == pytest.approx(pld.get_epsilon(1e-3), rel=1e-4)
    assert 2.9 < ledger.epsilons["rdp"] <= 3.0  # calibrated to the target with RDP
    with pytest.raises(InvalidPrivacySetting, match="whole epochs") as info:
        DpTrainingConfig.from_custom_config({**GOOD, "sampling": "shuffle", "epochs": 2.5}).plan(dataset_size=389)
    assert info.value.setting == "epochs"


def test_fixed_size_batches_are_replace_one_and_calibrated_with_rdp():
    plan = DpTrainingConfig.from_custom_config({**GOOD, "sampling": "fixed", "num_microbatches": 8}).plan(
        dataset_size=389
    )
    m = plan.mechanism
    assert (m.sampling.value, m.adjacency.value, m.steps, m.sensitivity) == ("fixed", "replace-one", 61, 2.0)
    # Independently: 61 x sampling 32 of 389 without replacement, Gaussian at sigma / 2 (sensitivity 2C), by
    # dp-accounting's RDP accountant under replace-one.
    event = dp_event.SelfComposedDpEvent(
        dp_event.SampledWithoutReplacementDpEvent(389, 32, dp_event.GaussianDpEvent(m.noise_multiplier / 2)), 61
    )
    rdp = dp_accounting.rdp.RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
    expected = rdp.compose(event).get_epsilon(1e-3)
    ledger = plan.ledger()
    assert ledger.epsilons == {"rdp": pytest.approx(expected, rel=1e-9), "pld": None}
    assert 2.9 < ledger.epsilon <= 3.0 and ledger.epsilon_accountant == "rdp"
    assert ledger.describe_epsilon() == "RDP accountant (PLD: no analysis), dp-sgd ledger, delta = 0.001"


def test_poisson_microbatches_double_the_sensitivity():
    plan = DpTrainingConfig.from_custom_config(
        {**GOOD, "num_microbatches": 8, "target_epsilon": None, "noise_multiplier": 1.2}
    ).plan(dataset_size=389)
    m = plan.mechanism
    assert m.sensitivity == 2.0 and m.unit_event() == dp_event.PoissonSampledDpEvent(
        32 / 389, dp_event.GaussianDpEvent(0.6)
    )
    assert plan.ledger().epsilons["rdp"] == pytest.approx(compute_epsilon(m, 1e-3, "rdp"), rel=1e-12)


def _preprocessing(epsilon: float, adjacency: str = "add-remove", releases: int = 30):
    """The account of ``releases`` mean-and-variance releases spending ``epsilon`` (alone, at 1e-3) together."""
    from privacy.preprocessing import (
        CoverageRecord,
        MeanVariance,
        MechanismRecord,
        PreprocessingAccount,
        PreprocessingBudget,
        to_text,
    )

    budget = PreprocessingBudget(epsilon, 1e-3, adjacency)
    records = [
        MechanismRecord(
            name=f"f{i}/mean_and_var",
            analyzer="mean_and_var",
            mechanism="gaussian-sums",
            adjacency=adjacency,
            components=MeanVariance((-6, 6), budget.noise_multiplier_for(1 / releases), adjacency).components,
            parameters={},
            noise="CSPRNG-keyed Philox (os.urandom)",
            share=1 / releases,
        )
        for i in range(releases)
    ]
    coverage = CoverageRecord(analyzer_outputs=3 * releases, private=tuple(r.name for r in records))
    return PreprocessingAccount.from_texts([to_text(r) for r in records] + [to_text(coverage)])


def test_sigma_is_calibrated_so_that_preprocessing_and_training_together_meet_the_target():
    config = DpTrainingConfig.from_custom_config(GOOD)
    alone = config.plan(dataset_size=385)
    plan = config.plan(dataset_size=385, preprocessing=_preprocessing(1.5))
    assert plan.noise_multiplier > alone.noise_multiplier  # training gets what preprocessing leaves
    # Independently: the 30 releases (Gaussians) and T Poisson-sampled Gaussians, composed by dp-accounting.
    prior = plan.preprocessing.events()
    assert len(prior) == 30 and all(isinstance(e, dp_event.GaussianDpEvent) for e in prior)
    training = plan.mechanism.dp_event()
    epsilon = dp_accounting.rdp.RdpAccountant().compose(dp_event.ComposedDpEvent(prior + [training])).get_epsilon(1e-3)
    assert 3.0 - 1e-3 <= epsilon <= 3.0
    assert plan.ledger().epsilons["rdp"] == pytest.approx(epsilon, rel=1e-9)


def test_preprocessing_that_spends_the_whole_target_or_another_adjacency_is_refused():
    config = DpTrainingConfig.from_custom_config(GOOD)
    with pytest.raises(InvalidPrivacySetting, match="target_epsilon.*prior events alone spend"):
        config.plan(dataset_size=385, preprocessing=_preprocessing(3.5))
    with pytest.raises(InvalidPrivacySetting, match="sampling.*cannot be accounted for add-remove"):
        config.plan(dataset_size=385, preprocessing=_preprocessing(1.0, adjacency="replace-one"))
    # Shuffled batches are accounted under replace-one: add-remove releases count twice (remove, then add).
    shuffled = DpTrainingConfig.from_custom_config({**GOOD, "sampling": "shuffle"})
    plan = shuffled.plan(dataset_size=385, preprocessing=_preprocessing(1.0))
    record = plan.preprocessing.account.mechanisms[0]
    assert plan.preprocessing.events()[0] == dp_event.GaussianDpEvent(record.noise_multiplier / 2)


def test_private_training_on_transformed_examples_without_their_transform_graph_is_refused(tmp_path):
    import tensorflow as tf

    from pipelines.components.dp_trainer import fn_args_utils

    split = tmp_path / "Split-train"
    split.mkdir()
    with tf.io.TFRecordWriter(str(split / "transformed_examples-00000-of-00001.gz"), options="GZIP") as writer:
        for _ in range(100):
            writer.write(tf.train.Example().SerializeToString())
    fn_args = types.SimpleNamespace(
        custom_config={"batch_size": 10, "epochs": 1, "noise_multiplier": 1.0},
        train_files=[str(split / "*")],
        train_steps=None,
        transform_output=None,
    )
    with pytest.raises(InvalidPrivacySetting, match="transformed_examples but no transform_graph is given"):
        fn_args_utils.plan_from_fn_args(fn_args)
    fn_args.custom_config = {**fn_args.custom_config, "private": False}  # nothing to account: trained as given
    assert fn_args_utils.plan_from_fn_args(fn_args).mechanism is None


def test_the_ledger_lists_the_inferred_spec_and_separate_runs_outside_the_guarantee(tmp_path):
    """A DP Trainer run's ledger (in the pushed model, so the report and the gate's summary) lists what its
    epsilon does not cover: the data-inferred feature spec of the serving signature unless the schema is
    declared public (a pipeline with a schema_file declares it), that separate runs compose, and the noise
    sampler's cut-off where the run_fn did not say which pairs it drew."""
    from pipelines import privacy_ledger
    from pipelines.plan import resolve_plan
    from pipelines.report import PipelineReport

    def outside(**changes):
        plan = DpTrainingConfig.from_custom_config({**GOOD, **changes}).plan(dataset_size=400)
        folder = str(tmp_path / str(len(changes)))
        ledger = plan.ledger(noise_draws=NoiseDraws(9.42, 100), validation_decisions=[], uncovered_padding=False)
        privacy_ledger.write_ledger(folder, ledger)
        return privacy_ledger.read_ledger(folder).parameters["outside_guarantee"]

    inferred, runs = "feature spec inferred from the data", "separate runs on the same data"
    n = privacy_ledger.PUBLIC_DATASET_SIZE_NAME  # every DP-SGD ledger's
    floating = {privacy_ledger.FLOAT_SUM_NAME, *privacy_ledger.FLOATING_POINT_NOISE}  # every DP-SGD ledger's
    assert set(outside()) == {inferred, runs, n, *floating} and "serving signature" in outside()[inferred]
    assert "epsilons add up" in outside()[runs] and outside()[n].startswith("n = 400 training examples")
    assert set(outside(public_schema=True)) == {runs, n, *floating}
    with pytest.raises(InvalidPrivacySetting, match="public_schema"):
        DpTrainingConfig.from_custom_config({**GOOD, "public_schema": "yes"})
    schema = tmp_path / "schema.pbtxt"
    schema.write_text('feature { name: "diagnosis" type: INT }\n')
    assert resolve_plan(schema_file=str(schema)).trainer_config["public_schema"] is True
    assert "public_schema" not in resolve_plan().trainer_config
    for trainer, config in (("dp", {**GOOD, "public_schema": True}), ("federated", {"public_schema": True})):
        with pytest.raises(ValueError, match=r"public_schema: true .* without schema_file .* infers it"):
            resolve_plan(trainer=trainer, trainer_config=config)  # SchemaGen would infer what the ledger calls fixed
    ledger = DpTrainingConfig.from_custom_config(GOOD).plan(dataset_size=400).ledger()  # no noise pairs given
    report = PipelineReport("p", "r", {}, "uri", 1, {}, ledger, None, None, None)
    decisions = privacy_ledger.VALIDATION_DECISIONS_NAME  # nor its validation decisions
    padding = privacy_ledger.UNCOVERED_PADDING_NAME  # nor whether its steps left their padding out
    assert set(report.to_dict()["privacy"]["outside_guarantee"]) == {
        inferred,
        runs,
        "noise cut-off",
        n,
        decisions,
        padding,
        *floating,
    }
    assert any(line.startswith(f"  outside the guarantee: {inferred}: ") for line in report.format_text().splitlines())


def test_a_run_that_stopped_early_lists_the_stop_outside_the_guarantee():
    """Fewer noisy steps than planned (EarlyStopping on a validation metric, say): the ledger accounts the steps
    taken, and its outside-the-guarantee list says the stop itself (decided by exact statistics of held-out
    records) is not covered, in the ledger and in the report; a run of all its steps lists nothing of the kind."""
    from pipelines import privacy_ledger
    from pipelines.report import PipelineReport

    plan = DpTrainingConfig.from_custom_config(GOOD).plan(dataset_size=400)
    full = plan.ledger(noise_draws=NoiseDraws(9.42, 100))
    stopped = plan.ledger(steps_taken=plan.steps - 7, noise_draws=NoiseDraws(9.42, 100))
    assert privacy_ledger.STOPPED_EARLY_NAME not in full.parameters["outside_guarantee"]
    reason = stopped.parameters["outside_guarantee"][privacy_ledger.STOPPED_EARLY_NAME]
    assert f"took {plan.steps - 7} of its {plan.steps} planned noisy steps" in reason and "held-out" in reason
    m = plan.mechanism  # the steps taken, composed by dp-accounting itself
    sampled = dp_event.PoissonSampledDpEvent(m.sampling_probability, dp_event.GaussianDpEvent(m.noise_multiplier))
    taken = dp_event.SelfComposedDpEvent(sampled, plan.steps - 7)
    epsilon = dp_accounting.rdp.RdpAccountant().compose(taken).get_epsilon(stopped.accountant_delta)
    assert stopped.epsilons["rdp"] == pytest.approx(epsilon, rel=1e-9) and epsilon < full.epsilons["rdp"]
    report = PipelineReport("p", "r", {}, "uri", 1, {}, stopped, None, None, None)
    assert f"  outside the guarantee: {privacy_ledger.STOPPED_EARLY_NAME}: the run took" in report.format_text()


def test_callbacks_that_acted_on_validation_metrics_are_listed_outside_the_guarantee():
    """A run of all its planned steps whose callbacks acted on validation metrics (ReduceLROnPlateau: the learning
    rate; a best-only checkpoint: the weights kept) lists them by name; a run with none lists nothing of the kind."""
    from pipelines import privacy_ledger
    from pipelines.report import PipelineReport

    plan = DpTrainingConfig.from_custom_config(GOOD).plan(dataset_size=400)
    names = ["ReduceLROnPlateau(monitor='val_loss')", "ModelCheckpoint(monitor='val_accuracy')"]
    decided = plan.ledger(noise_draws=NoiseDraws(9.42, 100), validation_decisions=names)
    plain = plan.ledger(noise_draws=NoiseDraws(9.42, 100), validation_decisions=[])
    assert privacy_ledger.VALIDATION_DECISIONS_NAME not in plain.parameters["outside_guarantee"]
    reason = decided.parameters["outside_guarantee"][privacy_ledger.VALIDATION_DECISIONS_NAME]
    assert all(name in reason for name in names) and "held-out records" in reason
    assert privacy_ledger.STOPPED_EARLY_NAME not in decided.parameters["outside_guarantee"]  # all steps taken
    assert decided.epsilons == plain.epsilons
    report = PipelineReport("p", "r", {}, "uri", 1, {}, decided, None, None, None)
    assert f"  outside the guarantee: {privacy_ledger.VALIDATION_DECISIONS_NAME}: callbacks" in report.format_text()


def test_a_run_that_did_not_report_its_validation_decisions_lists_them_as_unknown(tmp_path):
    """A run_fn that does not pass validation_decisions (or resumed a state saved before they were kept: None)
    cannot show that no callback acted on validation metrics: its ledger says so, in the file and the report; a
    run that reports none lists nothing of the kind."""
    from pipelines import privacy_ledger
    from pipelines.components.dp_trainer import fn_args_utils
    from pipelines.report import PipelineReport

    plan = DpTrainingConfig.from_custom_config(GOOD).plan(dataset_size=400)
    name = privacy_ledger.VALIDATION_DECISIONS_NAME
    for unreported in (plan.ledger(noise_draws=NoiseDraws(9.42, 100)), plan.ledger(validation_decisions=None)):
        reason = unreported.parameters["outside_guarantee"][name]
        assert reason.startswith("unknown: the run did not report whether its callbacks acted on validation")
    fn_args = types.SimpleNamespace(serving_model_dir=str(tmp_path))
    fn_args_utils.write_run_ledger(fn_args, plan, noise_draws=NoiseDraws(9.42, 100))  # a custom run_fn's call
    written = privacy_ledger.read_ledger(str(tmp_path))
    assert written.parameters["outside_guarantee"][name] == privacy_ledger.UNKNOWN_VALIDATION_DECISIONS[name]
    report = PipelineReport("p", "r", {}, "uri", 1, {}, written, None, None, None)
    assert f"  outside the guarantee: {name}: unknown: the run did not report" in report.format_text()
    reported = plan.ledger(noise_draws=NoiseDraws(9.42, 100), validation_decisions=[])
    assert name not in reported.parameters["outside_guarantee"]
