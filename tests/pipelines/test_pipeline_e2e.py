"""The full private pipeline, end to end: stages, epsilon in ML Metadata, ledger, gate, push, report.

The checks read ML Metadata and the files directly (not through `pipelines.report`) and recompute
epsilon from first principles: n counted in the TFRecords, the preprocessing releases' Gaussian noise
multipliers from the sensitivities and noise their records (found in the Transform graph) state, sigma
calibrated for the requested target after them, T = ceil(epochs * n / B), and the composition by
dp-accounting's accountants directly.
"""

import glob
import gzip
import json
import math
import os
import struct

import dp_accounting
import pytest
from click.testing import CliRunner
from dp_accounting import dp_event
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from pipelines import privacy_ledger
from pipelines.cli.accounting import epsilon as epsilon_command
from pipelines.transform.artifact import NO_COVERAGE_RECORD, records_in_saved_model
from privacy.accounting import DpSgdMechanism, calibrate_noise_multiplier, default_delta, noise_cutoff
from privacy.compared import compared
from privacy.preprocessing import MechanismRecord, from_text

from .conftest import assert_carries_only_released_statistics, carried_statistics

STAGES = [
    "CsvExampleGen",
    "StatisticsGen",
    "SchemaGen",
    "ExampleValidator",
    "Transform",
    "Trainer",
    "Evaluator",
    "Pusher",
]
LOG_NOISE = ("WARNING", "I0000", "E0000", "Instructions for updating", "cudart_stub")
"""What TFX, absl, Beam and TensorFlow print, which the terminal must not show without --verbose."""


def _store(root):
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = os.path.join(root, "metadata.sqlite")
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def _props(artifact):
    return {k: getattr(v, v.WhichOneof("value")) for k, v in artifact.custom_properties.items()}


def _count_records(directory):
    """Counts TFRecords in the GZIP files of ``directory`` by their framing (length, crc, data, crc)."""
    count = 0
    for name in os.listdir(directory):
        with gzip.open(os.path.join(directory, name), "rb") as f:
            while header := f.read(12):
                (length,) = struct.unpack("<Q", header[:8])
                f.seek(length + 4, 1)
                count += 1
    return count


def _artifact(store, artifact_id):
    [artifact] = store.get_artifacts_by_id([artifact_id])
    return artifact


def _preprocessing_events(store):
    """GaussianDpEvents of the private releases recorded in the (first) Transform graph, from each record's
    blocks: noise multiplier 1 / sqrt(sum (sensitivity / noise std)^2)."""
    [graph] = sorted(store.get_artifacts_by_type("TransformGraph"), key=lambda a: a.id)[:1]  # the first run's
    records = [from_text(t) for t in records_in_saved_model(os.path.join(graph.uri, "transform_fn"))]
    events = []
    for record in sorted((r for r in records if isinstance(r, MechanismRecord)), key=lambda r: r.name):
        assert record.mechanism == "gaussian-sums" and record.adjacency == "add-remove"
        events.append(
            dp_event.GaussianDpEvent(
                1 / math.sqrt(sum((c.sensitivity / c.noise_std) ** 2 for c in record.components if c.sensitivity))
            )
        )
    return events


def _composed_epsilons(events, delta):
    """(RDP, PLD) epsilon of ``events`` composed, from dp-accounting's accountants directly."""
    rdp = dp_accounting.rdp.RdpAccountant().compose(dp_event.ComposedDpEvent(events)).get_epsilon(delta)
    pld = (
        dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-4)
        .compose(dp_event.ComposedDpEvent(events))
        .get_epsilon(delta)
    )
    return rdp, pld


def test_all_eight_stages_and_the_comparison_branch_complete(private_run):
    stages = private_run.report["stages"]
    assert set(stages) == set(STAGES) | {"Trainer_non_private", "Evaluator_non_private"}
    assert set(stages.values()) == {"complete"}
    for stage in STAGES:  # progress is shown per stage, as it starts and as it ends
        assert any(line.endswith(f"{stage} ...") for line in private_run.progress)
        assert any(f"] {stage} complete (" in line for line in private_run.progress)


def test_epsilon_in_mlmd_equals_the_accountants_value_for_the_run(private_run):
    store = _store(private_run.root)
    model = _artifact(store, private_run.report["model"]["mlmd_id"])
    assert model.type == "Model"
    props = _props(model)
    # The run, recomputed independently: n from the transformed training records, the 30 preprocessing
    # releases from their records, sigma calibrated for epsilon 3 at the default delta after them, and
    # T = ceil(15 * n / 32) Poisson steps; the whole artifact composed by dp-accounting's accountants.
    [transformed] = sorted(
        (a for a in store.get_artifacts_by_type("Examples") if "/Transform/" in a.uri), key=lambda a: a.id
    )[:1]
    n = _count_records(os.path.join(transformed.uri, "Split-train"))
    assert 300 < n < 450  # about 2/3 of 569
    delta = default_delta(n)
    steps = math.ceil(15 * n / 32)
    prior = _preprocessing_events(store)
    assert len(prior) == 30
    # Then the push decision the Trainer reserved: a noisy accuracy, L2 sensitivity sqrt(2), 0.2 x 3 alone.
    with open(props["privacy_ledger_uri"]) as f:
        decision = dp_event.GaussianDpEvent(json.load(f)["decision"]["std"] / math.sqrt(2))
    assert 0.59 < min(_composed_epsilons([decision], delta)) <= 0.6
    sigma = calibrate_noise_multiplier(
        DpSgdMechanism(dataset_size=n, batch_size=32, noise_multiplier=1.0, steps=steps),
        target_epsilon=3.0,
        target_delta=delta,
        prior_events=prior + [decision],
    )
    training = dp_event.SelfComposedDpEvent(
        dp_event.PoissonSampledDpEvent(32 / n, dp_event.GaussianDpEvent(sigma)), steps
    )
    rdp, pld = _composed_epsilons(prior + [decision, training], delta)
    alone = {
        "preprocessing": _composed_epsilons(prior, delta),
        "decision": _composed_epsilons([decision], delta),
        "training": _composed_epsilons([training], delta),
    }
    assert props["private"] == 1 and props["dp_steps"] == steps
    assert props["sampling"] == "poisson" and props["l2_norm_clip"] == 1.0
    # MLMD's SQLite store keeps 6 decimal places; epsilons are stored rounded up (still upper bounds).
    assert props["noise_multiplier"] == pytest.approx(sigma, rel=1e-5)
    for stored, exact in (
        (props["epsilon_rdp"], rdp),
        (props["epsilon_pld"], pld),
        (props["epsilon"], min(rdp, pld)),
        (props["epsilon_preprocessing"], min(alone["preprocessing"])),
        (props["epsilon_decision"], min(alone["decision"])),
        (props["epsilon_training"], min(alone["training"])),
    ):
        assert exact <= stored <= exact + 1e-6
    assert 2.99 <= rdp <= 3.0  # preprocessing, decision and training together calibrated with RDP to the target
    assert min(alone["training"]) < min(rdp, pld) < sum(min(e) for e in alone.values())
    # The ledger the properties point to holds the exact values, and lists every release.
    with open(props["privacy_ledger_uri"]) as f:
        ledger = json.load(f)
    assert ledger["epsilon"]["rdp"] == pytest.approx(rdp, rel=1e-9)
    assert ledger["epsilon"]["pld"] == pytest.approx(pld, rel=1e-6)  # PLD: 30 equal events composed as one run
    assert ledger["parameters"]["noise_multiplier"] == pytest.approx(sigma, rel=1e-12)
    composition = ledger["composition"]
    for part, (part_rdp, part_pld) in alone.items():
        assert composition["parts"][part] == {
            "rdp": pytest.approx(part_rdp, rel=1e-9),
            "pld": pytest.approx(part_pld, rel=1e-6),
        }
    # The artifact's delta: the accountant's plus the noise cut-off's (under 1 % of it). MLMD's SQLite store keeps 6
    # decimal places of a double, so the property is the ledger's delta rounded up to them (mlmd_upper_bound).
    assert composition["accountant_delta"] == delta and composition["additive_delta"] == 0
    assert 0 < composition["cutoff_delta"] < 0.01 * delta
    assert composition["delta"] == delta + composition["cutoff_delta"]
    assert composition["delta"] <= props["delta"] <= composition["delta"] + 1e-6
    mechanisms = ledger["preprocessing"]["account"]["mechanisms"]
    assert len(mechanisms) == 30 and {m["analyzer"] for m in mechanisms} == {"mean_and_var"}
    assert ledger["preprocessing"]["account"]["coverage"]["uncovered"] == []


def test_ledger_travels_with_the_model_and_matches_mlmd(private_run):
    store = _store(private_run.root)
    props = _props(_artifact(store, private_run.report["model"]["mlmd_id"]))
    with open(props["privacy_ledger_uri"]) as f:
        ledger = json.load(f)
    assert props["privacy_ledger_uri"].endswith("Format-Serving/assets.extra/privacy_ledger.json")
    # The pushed model carries the preprocessing records its ledger accounts, and nothing else.
    carried = [from_text(t) for t in records_in_saved_model(private_run.report["pushed"]["uri"])]
    assert sorted(r.name for r in carried if isinstance(r, MechanismRecord)) == sorted(
        m["name"] for m in ledger["preprocessing"]["account"]["mechanisms"]
    )
    assert ledger["epsilon"]["rdp"] <= props["epsilon_rdp"] <= ledger["epsilon"]["rdp"] * (1 + 1e-5)
    # The preprocessing's 30 releases (equal events, one run), the push decision, then the training's steps.
    [releases, decision, steps] = ledger["dp_event"]["events"]
    assert ledger["dp_event"]["class_name"] == "ComposedDpEvent" and releases["count"] == 30
    assert releases["event"]["class_name"] == "GaussianDpEvent" and steps["count"] == props["dp_steps"]
    assert decision["count"] == 1 and decision["event"]["noise_multiplier"] == pytest.approx(
        ledger["decision"]["std"] / math.sqrt(2), rel=1e-12
    )
    assert ledger["report"]["sampling"] == "poisson" and ledger["report"]["adjacency"] == "add-remove"
    assert ledger["accountant_version"].startswith("dp-accounting")
    pushed = private_run.report["pushed"]
    assert pushed["pushed"] and os.path.exists(os.path.join(pushed["uri"], "saved_model.pb"))
    with open(os.path.join(pushed["uri"], "assets.extra", "privacy_ledger.json")) as f:
        assert json.load(f) == ledger


def test_the_pushed_model_carries_its_released_statistics_not_the_exact_ones(private_run):
    """Read back through the pushed model's own Transform layer, each feature's mean and variance are the
    ledger's noisy release, which differs from the training split's exact sums by the recorded noise."""
    [train] = glob.glob(os.path.join(private_run.root, "CsvExampleGen", "examples", "*", "Split-train"))
    assert_carries_only_released_statistics(carried_statistics(private_run.report["pushed"]["uri"], train))


def test_private_model_is_blessed_useful_and_audited(private_run):
    report = private_run.report
    gate = report["gate"]
    assert gate["blessed"] is True and gate["failures"] == []
    assert [(c["name"], c["passed"]) for c in gate["privacy_checks"]] == [
        ("epsilon", True),
        ("coverage", True),
        ("membership_inference_auc", True),
        ("noisy_accuracy", True),
    ]
    decision = gate["push_decision"]  # noise std ~5.6 on ~190 rows: the noisy accuracy is near the exact one
    assert decision["noisy_accuracy"] >= 0.75 and abs(decision["noisy_rows"] - report["utility"]["example_count"]) < 30
    # The blessing is random: with exact accuracy a on m rows and noise std s on each count, the noisy accuracy has
    # sd ~ s sqrt(1 + a^2) / m (delta method), so it misses min accuracy 0.75 with probability Phi((0.75 - a) / sd),
    # which must be < 1e-4 for this test to be stable (a >= 0.9 gives about 1e-4 at most: 3.8 sd).
    a, m = report["utility"]["binary_accuracy"], report["utility"]["example_count"]
    sd = decision["noise_std"] * math.sqrt(1 + a * a) / m
    assert 0.5 * math.erfc((a - 0.75) / (sd * math.sqrt(2))) < 1e-4
    # n = 385 with the default delta 0.001 = 0.385/n: below 1/(2n), no warning (privacy.accounting.delta_warning).
    assert gate["warnings"] == []
    assert any(
        "membership-inference audit" in item and "not covered by epsilon" in item
        for item in report["outside_the_guarantee"]
    )
    assert report["utility"]["binary_accuracy"] >= 0.85
    assert report["utility"]["example_count"] == report["membership_audit"]["num_nonmembers"]
    audit = report["membership_audit"]
    assert audit["num_members"] + audit["num_nonmembers"] == 569
    assert 0.3 < audit["auc"] < 0.6  # epsilon 3: the loss-threshold attack is near chance
    store = _store(private_run.root)
    [blessing] = [
        a
        for a in store.get_artifacts_by_type("ModelBlessing")
        if _props(a).get("current_model_id") == report["model"]["mlmd_id"]
    ]
    props = _props(blessing)
    assert props["blessed"] == 1 and props["privacy_gate_passed"] == 1
    # MLMD keeps 6 decimal places, rounded to nearest.
    assert props["membership_inference_auc"] == pytest.approx(float(f"{audit['auc']:.6f}"), rel=1e-12)


def test_a_model_without_ledger_is_refused_and_the_gate_says_why(private_run):
    report = private_run.non_private_report
    assert report["model"]["properties"] == {"private": 0}
    assert report["privacy"] is None
    assert report["model"]["uri"] != private_run.report["model"]["uri"]  # its own model, no shared ledger
    assert not os.path.exists(os.path.join(report["model"]["uri"], "Format-Serving", "assets.extra"))
    gate = report["gate"]
    assert gate["blessed"] is False
    [epsilon_check] = [c for c in gate["privacy_checks"] if c["name"] == "epsilon"]
    assert not epsilon_check["passed"] and "no privacy ledger" in epsilon_check["reason"]
    assert report["utility"]["binary_accuracy"] >= 0.85  # useful, but not private: refused anyway
    assert report["pushed"]["pushed"] is False


def test_compare_shows_both_branches_of_the_run_side_by_side(private_run):
    private, non_private = private_run.report, private_run.non_private_report
    lines = {line.split("  ")[1].strip(): line.split() for line in private_run.comparison_text.splitlines()[3:]}
    assert private_run.comparison_text.startswith(f"Side by side: ppml-breast-cancer, run {private['run_id']}")
    assert lines["epsilon"][1] == f"{min(private['privacy']['artifact']['epsilon'].values()):.4f}"
    assert lines["epsilon"][-3:] == ["none", "(no", "ledger)"]
    assert lines["binary_accuracy"][1:] == [
        f"{private['utility']['binary_accuracy']:.4f}",
        f"{non_private['utility']['binary_accuracy']:.4f}",
    ]
    assert lines["membership-inference AUC"][2:] == [
        f"{private['membership_audit']['auc']:.4f}",
        f"{non_private['membership_audit']['auc']:.4f}",
    ]
    assert lines["blessed"][1:] == ["True", "False"] and lines["pushed"][1:] == ["True", "False"]


def test_report_command_prints_the_ppml_epsilon_report_plus_utility_and_audit(private_run):
    text, as_json = private_run.report_text, private_run.report_json
    assert as_json == private_run.report
    privacy = as_json["privacy"]
    # The privacy section is exactly what `ppml epsilon` prints for the same run.
    args = [
        "--n",
        str(privacy["dataset_size"]),
        "--batch-size",
        "32",
        "--noise-multiplier",
        repr(privacy["noise_multiplier"]),
        "--steps",
        str(privacy["steps"]),
        "--weights",  # one noise pair per weight: given the run's pairs, the same noise cut-off as the ledger's
        str(privacy["noise_cutoff"]["pairs"]),
    ]
    assert privacy["noise_cutoff"]["radius"] == noise_cutoff.sampler_radius()  # float32, as `--weights` assumes
    result = CliRunner().invoke(epsilon_command, args)
    assert result.exit_code == 0, result.output
    expected = result.output.rstrip("\n")
    assert expected.startswith("DP-SGD privacy report"), expected
    assert expected in text  # the training part alone, after the whole artifact's epsilon
    artifact = privacy["artifact"]
    assert text.startswith("Privacy of the model as a whole: what it carries and what decided its push, composed")
    assert (
        f"  epsilon            RDP {artifact['epsilon']['rdp']:.4f}, PLD {artifact['epsilon']['pld']:.4f} "
        f"at delta {artifact['delta']:g}"
    ) in text
    assert "30 private release(s) (mean_and_var x30); calibrated to epsilon 2.25 alone" in text
    for needle in (
        "clipping norm C",
        "Utility (TFMA",
        "binary_accuracy",
        "Membership-inference audit",
        "attack AUC",
        "Evaluator: BLESSED",
        "pass  epsilon",
        "pass  coverage",
        "Pusher: pushed to",
        "Outside the guarantee (published, but not covered by epsilon):",
        "n, the number of training privacy units (records, users or clients): treated as public",
    ):
        assert needle in text


def test_tfma_holds_the_privacy_metrics_and_their_thresholds(private_run, python_subprocess):
    """Where TFX users look: TFMA's own metrics and validation result of the ModelEvaluation."""
    uri = private_run.report["gate"]["evaluation_uri"]
    code = f"""
import json, tensorflow_model_analysis as tfma
[overall] = [m for m in tfma.load_metrics({uri!r}) if not m.slice_key.single_slice_keys]
values = {{e.key.name: e.value.double_value.value for e in overall.metric_keys_and_values}}
print(json.dumps({{"values": values, "ok": tfma.load_validation_result({uri!r}).validation_ok}}))
"""
    result = json.loads(python_subprocess(code, legacy_keras=True).stdout.strip().splitlines()[-1])
    assert result["ok"] is True
    artifact = private_run.report["privacy"]["artifact"]
    assert result["values"]["dp_epsilon"] == pytest.approx(min(artifact["epsilon"].values()), rel=1e-12)
    assert result["values"]["membership_inference_auc"] == pytest.approx(private_run.report["membership_audit"]["auc"])
    assert result["values"]["binary_accuracy"] == pytest.approx(private_run.report["utility"]["binary_accuracy"])
    noisy = private_run.report["gate"]["push_decision"]["noisy_accuracy"]
    assert result["values"]["noisy_accuracy"] == pytest.approx(noisy)


def test_too_small_budget_blocks_the_push_reusing_cached_stages(private_run, tight_budget_run):
    stages = tight_budget_run.report["stages"]
    assert [stages[s] for s in STAGES[:6]] == ["cached"] * 6
    assert stages["Evaluator"] == "complete" and stages["Pusher"] == "complete"
    assert any("] Trainer cached (" in line for line in tight_budget_run.progress)
    # The same model and ledger as the first run: nothing retrained, nothing mixed.
    assert tight_budget_run.report["model"] == private_run.report["model"]
    assert tight_budget_run.report["privacy"] == private_run.report["privacy"]
    gate = tight_budget_run.report["gate"]
    assert gate["blessed"] is False and gate["epsilon_budget"] == 0.5
    [epsilon_check] = [c for c in gate["privacy_checks"] if c["name"] == "epsilon"]
    assert not epsilon_check["passed"] and epsilon_check["value"] > 0.5
    [failure] = gate["failures"]  # TFMA's own validation failed on the privacy metric, and only on it
    assert failure["metric"] == "dp_epsilon"
    assert failure["message"] == f"dp_epsilon {epsilon_check['value']:.4g} does not meet <= 0.5"
    assert tight_budget_run.report["pushed"] == {"pushed": False, "uri": None}
    # The Evaluator re-ran on the same model and held-out records: the push decision's one release is returned
    # as kept, not drawn again (the ledger accounts one).
    first, again = private_run.report["gate"]["push_decision"], gate["push_decision"]
    assert first["reused"] is False and again["reused"] is True
    assert (again["noisy_correct"], again["noisy_rows"]) == (first["noisy_correct"], first["noisy_rows"])


def test_report_follows_the_latest_run_of_each_branch(private_run, strict_audit_run):
    # Read right after the strict-audit run, when it was the latest.
    assert strict_audit_run.report_json == strict_audit_run.report
    assert strict_audit_run.report["run_id"] != private_run.report["run_id"]
    # The re-runs had no non-private branch: its report is still the first run's.
    assert strict_audit_run.non_private_report == private_run.non_private_report


def test_audit_auc_over_the_threshold_blocks_the_push_on_the_beam_runner(private_run, strict_audit_run):
    report = strict_audit_run.report
    assert report["stages"]["Trainer"] == "cached" and report["model"] == private_run.report["model"]
    gate = report["gate"]
    assert gate["blessed"] is False
    checks = {c["name"]: c for c in gate["privacy_checks"]}
    assert checks["epsilon"]["passed"] and not checks["membership_inference_auc"]["passed"]
    assert checks["membership_inference_auc"]["value"] > gate["max_membership_auc"]
    assert [f["metric"] for f in gate["failures"]] == ["membership_inference_auc"]
    assert report["pushed"]["pushed"] is False
    # This re-run went through BeamDagRunner: same stages, same cache, progress shown alike.
    assert any("] Evaluator complete (" in line for line in strict_audit_run.progress)
    assert any("] Transform cached (" in line for line in strict_audit_run.progress)


def test_library_logs_go_to_a_log_file_under_the_root_not_the_terminal(private_run):
    lines = private_run.stderr.splitlines()
    first, rest = lines[0], lines[1:]
    assert first.startswith("Logs of TFX, TensorFlow and Beam: ")  # no --verbose hint: refused under --dp
    path = first[len("Logs of TFX, TensorFlow and Beam: ") :]
    assert os.path.dirname(path) == os.path.join(private_run.root, "logs") and path.endswith(".log")
    assert rest == private_run.progress  # the terminal shows the per-stage progress, and only that
    assert not any(noise in private_run.stderr for noise in LOG_NOISE)
    with open(path) as f:
        log = f.read()
    # What used to flood the terminal is in the file: absl/TFX warnings, the Trainer's Keras progress, and
    # the INFO records of our own executors.
    assert "WARNING:absl:" in log and "Privacy ledger " in log and "DP Trainer plan: DP-SGD" in log
    assert "after 30 preprocessing releases" in log


def test_fixed_size_batches_end_to_end_and_a_utility_failure_blocks_the_push(private_run, fixed_batches_run):
    """The utility threshold is the noisy accuracy, checked like the privacy values: min accuracy 0.999 (which the
    exact accuracy does not reach) leaves the model NOT BLESSED and unpushed although epsilon and the audit pass,
    unless the noise lifted the noisy accuracy over it, and `ppml report` says which."""
    report = fixed_batches_run.report
    stages = report["stages"]
    # Replace-one adjacency: the Transform runs again, its private analyzers analysed under replace-one.
    assert [stages[s] for s in STAGES[:4]] == ["cached"] * 4
    assert stages["Transform"] == "complete" and stages["Trainer"] == "complete"
    assert report["model"]["uri"] != private_run.report["model"]["uri"]
    privacy = report["privacy"]
    assert privacy["sampling"] == "fixed" and privacy["adjacency"] == "replace-one"
    assert privacy["epsilon_pld"] is None and privacy["epsilon_rdp"] <= 3.0
    artifact = privacy["artifact"]
    assert artifact["epsilon"]["pld"] is None and 2.99 <= artifact["epsilon"]["rdp"] <= 3.0
    assert report["model"]["properties"]["epsilon_accountant"] == "rdp"
    gate = report["gate"]
    checks = {c["name"]: c for c in gate["privacy_checks"]}
    assert checks["epsilon"]["passed"] and checks["membership_inference_auc"]["passed"]
    assert checks["epsilon"]["value"] == pytest.approx(artifact["epsilon"]["rdp"], rel=1e-12)
    assert (
        "(RDP accountant (PLD: no analysis), dp-sgd ledger, preprocessing, push decision and training composed, "
        "delta = " in checks["epsilon"]["reason"]
    )
    assert report["utility"]["binary_accuracy"] < 0.999
    # The push decision is the noisy accuracy (noise std ~5.6 on ~190 rows: about one run in ten lifts it to 0.999):
    # the blessing follows it, and TFMA's validation fails on it alone.
    decision = gate["push_decision"]
    assert checks["noisy_accuracy"]["value"] == decision["noisy_accuracy"]
    assert gate["blessed"] is (decision["noisy_accuracy"] >= 0.999)
    assert [f["metric"] for f in gate["failures"]] == ([] if gate["blessed"] else ["noisy_accuracy"])
    assert report["pushed"]["pushed"] is gate["blessed"]
    store = _store(private_run.root)
    [blessing] = [
        a
        for a in store.get_artifacts_by_type("ModelBlessing")
        if _props(a).get("current_model_id") == report["model"]["mlmd_id"]
    ]
    assert _props(blessing)["blessed"] == int(gate["blessed"]) and _props(blessing)["privacy_gate_passed"] == int(
        gate["blessed"]
    )
    noisy = decision["noisy_accuracy"]
    text = fixed_batches_run.report_text
    for needle in (
        f"{'sampling':<18} fixed",
        f"{'PLD':<11} {'n/a':>9}",
        f"  epsilon            RDP {artifact['epsilon']['rdp']:.4f} at delta",
        f"  {'pass' if gate['blessed'] else 'FAIL'}  noisy_accuracy {noisy:.4g} "
        f"{'>=' if gate['blessed'] else '<'} 0.999 (the push decision: ",
        "Evaluator: BLESSED" if gate["blessed"] else "Evaluator: NOT BLESSED",
        "  pass  epsilon",
        "Pusher: pushed to" if gate["blessed"] else "Pusher: not pushed (only blessed models are pushed)",
    ):
        assert needle in text


def test_truncated_poisson_end_to_end_the_gate_checks_the_truncated_epsilon(private_run, truncated_run):
    """--truncated-batch-size default: the Trainer pads Poisson batches to K = B + 4 sd and cuts larger draws, its
    sigma calibrated by PLD on TruncatedSubsampledGaussianDpEvent (RDP has no analysis); the Evaluator checks that
    epsilon against the budget, and `ppml report` shows the cap and the batches cut."""
    report = truncated_run.report
    stages = report["stages"]
    assert [stages[s] for s in STAGES[:5]] == ["cached"] * 5 and stages["Trainer"] == "complete"
    n = report["privacy"]["dataset_size"]
    k = math.ceil(32 + 4 * math.sqrt(32 * (1 - 32 / n)))
    privacy, artifact = report["privacy"], report["privacy"]["artifact"]
    assert privacy["truncated_batch_size"] == k and isinstance(privacy["truncated_batches"], int)
    assert privacy["epsilon_rdp"] is None and artifact["epsilon"]["rdp"] is None
    assert 2.99 <= artifact["epsilon"]["pld"] <= 3.0  # preprocessing, push decision and training, by PLD
    # The training part alone, from first principles: T = ceil(15 n / 32) truncated steps at the ledger's sigma.
    steps = math.ceil(15 * n / 32)
    event = dp_event.SelfComposedDpEvent(
        dp_event.TruncatedSubsampledGaussianDpEvent(n + 1, 32 / n, k, privacy["noise_multiplier"]), steps
    )
    alone = (
        dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-4).compose(event).get_epsilon(privacy["delta"])
    )
    assert privacy["steps"] == steps and artifact["parts"]["training"]["pld"] == pytest.approx(alone, rel=1e-9)
    checks = {c["name"]: c for c in report["gate"]["privacy_checks"]}
    assert checks["epsilon"]["passed"] and checks["epsilon"]["value"] == pytest.approx(
        artifact["epsilon"]["pld"], rel=1e-12
    )
    shown, budget = compared(artifact["epsilon"]["pld"], 3.0)  # as many digits as order them (2.9999 <= 3)
    assert checks["epsilon"]["reason"].startswith(f"epsilon {shown} <= {budget} (")
    assert (
        "(PLD accountant (RDP: no analysis), dp-sgd ledger, preprocessing, push decision and training"
        in (checks["epsilon"]["reason"])
    )
    text = truncated_run.report_text
    for needle in (
        f"batches of more than {k} cut to a random {k} of them",
        "accounted as dp-accounting's TruncatedSubsampledGaussianDpEvent",
        f"  {'batches cut':<18} {privacy['truncated_batches']} (truncated Poisson sampling",
        "  pass  epsilon",
    ):
        assert needle in text


def test_encrypted_check_runs_after_the_evaluator_and_gates_the_push(private_run, encrypted_check_run):
    report = encrypted_check_run.report
    stages = report["stages"]
    assert list(stages) == STAGES[:7] + ["EncryptedInferenceGate", "Pusher"]
    assert [stages[s] for s in STAGES[:7]] == ["cached"] * 7  # same model, same Evaluator result
    assert stages["EncryptedInferenceGate"] == "complete" and stages["Pusher"] == "complete"
    assert any(line.startswith("[8/9] EncryptedInferenceGate complete (") for line in encrypted_check_run.progress)
    assert report["model"] == private_run.report["model"] and report["gate"]["blessed"] is True
    check = report["encrypted_check"]
    figures = check["report"]
    assert check["blessed"] is True and check["settings"]["num_examples"] == 100
    assert figures["examples"] == 100 and figures["decision_agreement"] >= 0.995
    assert figures["accuracy_difference_points"] <= 0.5 and figures["max_abs_error"] < 1e-2
    assert figures["bytes_per_batch"] > 0 and figures["rounds_per_batch"] > 0 and figures["latency_ms_per_batch"] > 0
    # Pushed because both blessings hold: the Pusher read the gate's blessing, which requires the Evaluator's.
    store = _store(private_run.root)
    [gate_blessing] = [a for a in store.get_artifacts_by_type("ModelBlessing") if "EncryptedInferenceGate" in a.uri]
    props = _props(gate_blessing)
    assert props["blessed"] == 1 and props["current_model_id"] == report["model"]["mlmd_id"]
    assert props["encrypted_decision_agreement"] == figures["decision_agreement"]
    push = max(
        (
            e
            for t in store.get_execution_types()
            if t.name.endswith("Pusher")
            for e in store.get_executions_by_type(t.name)
        ),
        key=lambda e: e.id,
    )
    inputs = [
        ev.artifact_id
        for ev in store.get_events_by_execution_ids([push.id])
        if ev.type == metadata_store_pb2.Event.INPUT and ev.path.steps[0].key == "model_blessing"
    ]
    assert inputs == [gate_blessing.id]
    assert report["pushed"]["pushed"] and report["pushed"]["uri"] != private_run.report["pushed"]["uri"]
    text = encrypted_check_run.report_text
    for needle in (
        "Encrypted inference gate: BLESSED (3-party secret sharing, 16 fractional bits, up to 100 eval",
        f"  {'decision agreement':<19}  {100 * figures['decision_agreement']:.2f} %",
        f"  {'accuracy difference':<19}  {figures['accuracy_difference_points']:.2f} points",
        "latency per batch",
        "bytes per batch",
        "  pass  decision agreement",
        "Pusher: pushed to",
    ):
        assert needle in text


def test_plain_tft_analyzers_are_refused_by_the_trainer_and_nothing_is_pushed(plain_tft_run):
    """A preprocessing_fn with tft.scale_to_z_score (exact training statistics in the model): the DP Trainer
    refuses the Transform graph, which has no coverage record, naming the analyzer and its private
    replacement. Nothing is pushed."""
    assert plain_tft_run["report"] is None and plain_tft_run["pushed"] == 0
    refused = plain_tft_run["refused"]
    assert refused.startswith("InvalidPrivacySetting: custom_config['private']: ")
    assert "60 constant(s) of the transform graph used by scale_to_z_score" in refused
    assert "use PrivateAnalyzers.scale_to_z_score(x, bounds=..., share=...)" in refused
    assert refused.endswith(NO_COVERAGE_RECORD)


def test_the_privacy_audit_blesses_an_honest_run_and_refuses_a_broken_claim(audited_run, broken_audit_run):
    """The Evaluator audits a canary-augmented copy of the Trainer's run (and one full-batch step at its C and
    sigma through the module's own model and fit): honest, bound <= claim, blessed and pushed; the same run without
    its noise (the claim unchanged: a fault set only in the test process), NOT BLESSED as "accounting inconsistent",
    not pushed. Each claim is recomputed from dp-accounting for the audited run (q' = B' / N with N the rows plus all
    canaries: an excluded one stays as a stand-in row), and `ppml report` prints bound and claim."""
    for run, canaries, honest in ((audited_run, 1000, True), (broken_audit_run, 1001, False)):
        report, figures = run.report, run.report["gate"]["privacy_audit"]
        trained = report["privacy"]  # the ledger's training run
        assert trained["sampling"] == "poisson" and trained["delta"] == 1e-5
        assert figures["training_rows"] == trained["dataset_size"] and figures["steps"] == trained["steps"]
        assert figures["dataset_size"] == trained["dataset_size"] + canaries  # whatever the bits
        assert figures["batch_size"] == round(
            trained["batch_size"] * (trained["dataset_size"] + canaries) / trained["dataset_size"]
        )  # the run's q = B / n, kept
        event = dp_event.SelfComposedDpEvent(
            dp_event.PoissonSampledDpEvent(
                figures["batch_size"] / figures["dataset_size"], dp_event.GaussianDpEvent(trained["noise_multiplier"])
            ),
            trained["steps"],
        )
        claims = {
            "rdp": dp_accounting.rdp.RdpAccountant().compose(event).get_epsilon(1e-5),
            "pld": dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-4).compose(event).get_epsilon(1e-5),
        }
        assert figures["claims"] == pytest.approx(claims, rel=1e-6) and figures["num_canaries"] == canaries
        assert figures["claimed_epsilon"] == pytest.approx(min(claims.values()), rel=1e-6)
        [check] = [c for c in report["gate"]["privacy_checks"] if c["name"] == "privacy_audit"]
        assert check["passed"] is honest and (figures["lower_bound"] <= figures["claimed_epsilon"]) is honest
        assert report["gate"]["blessed"] is honest and report["pushed"]["pushed"] is honest
        shown = (
            f"lower bound {figures['lower_bound']:g} {'<=' if honest else '>'} claimed epsilon "
            f"{figures['claimed_epsilon']:.4g}"
        )
        assert shown in run.report_text and ("accounting inconsistent" in run.report_text) is not honest
        # The implementation check: one full-batch step at the Trainer's C and sigma, its one-step claim.
        step = report["gate"]["implementation_audit"]
        assert step["dataset_size"] == step["batch_size"] == trained["dataset_size"] + 10_000 and step["steps"] == 1
        assert step["noise_multiplier"] == trained["noise_multiplier"] and step["final"]["estimator"] == "f-dp-gaussian"
        one_step = dp_event.PoissonSampledDpEvent(1.0, dp_event.GaussianDpEvent(trained["noise_multiplier"]))
        assert step["claims"] == pytest.approx(
            {
                "rdp": dp_accounting.rdp.RdpAccountant().compose(one_step).get_epsilon(1e-5),
                "pld": dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-4)
                .compose(one_step)
                .get_epsilon(1e-5),
            },
            rel=1e-6,
        )
        [check] = [c for c in report["gate"]["privacy_checks"] if c["name"] == "implementation_audit"]
        # Through the bundled module's own build_model and fit_private (its audit hooks), where the test's no-noise
        # fault (in ppml's audit model) does not reach: it passes in both runs.
        assert (
            step["trained_by"]
            == "pipelines.trainers.breast_cancer (build_model, fit_private), the trainer module's own"
        )
        assert check["passed"] and step["lower_bound"] <= step["claimed_epsilon"] and check["reason"] in run.report_text
    assert "Evaluator: NOT BLESSED" in broken_audit_run.report_text


def test_the_pushed_model_holds_no_training_metric_state_and_the_root_is_owner_only(private_run):
    """Read back from the pushed SavedModel's checkpoint: Keras' loss and accuracy accumulators are zero (the
    exact training-loss sum and example count were there before); its ledger lists the inferred feature spec, the
    composition of separate runs and the float32 step's floating-point caveats outside the guarantee; nothing under
    the root is open to group or others."""
    import numpy as np
    import tensorflow as tf

    pushed = private_run.report["pushed"]["uri"]
    reader = tf.train.load_checkpoint(os.path.join(pushed, "variables", "variables"))
    metrics = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map() if "/metrics/" in name}
    assert len(metrics) == 4 and not any(np.any(value) for value in metrics.values()), metrics
    with open(os.path.join(pushed, "assets.extra", "privacy_ledger.json")) as f:
        outside = json.load(f)["parameters"]["outside_guarantee"]
    listed = {"feature spec inferred from the data", "separate runs on the same data", "dataset size n"}
    assert set(outside) == {*listed, privacy_ledger.FLOAT_SUM_NAME, *privacy_ledger.FLOATING_POINT_NOISE}  # float32
    root = str(private_run.root)
    assert os.stat(root).st_mode & 0o777 == 0o700
    open_to_others = [
        os.path.join(d, n)
        for d, dirs, files in os.walk(root)
        for n in dirs + files
        if not os.path.islink(os.path.join(d, n)) and os.stat(os.path.join(d, n)).st_mode & 0o077
    ]
    assert open_to_others == [], open_to_others[:5]
