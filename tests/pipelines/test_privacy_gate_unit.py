"""The privacy gate compares the ledger's unit of privacy with the budget's (no TFX needed)."""

import dataclasses
import json
import math

import pytest

from pipelines import privacy_ledger as pl
from pipelines.components.private_evaluator import spec
from pipelines.plan import resolve_plan
from privacy.accounting import DpSgdMechanism, PrivacyBudget, compute_epsilon

from .shared_interpreter import Snippets, snippet_output

CLIENTS = DpSgdMechanism(dataset_size=50, batch_size=5, noise_multiplier=0.9, steps=3, sampling="fixed")

SNIPPETS = Snippets()
"""The snippets of the tests that need TFMA or TFX (with tf-keras): they share one fresh interpreter."""
tfx_snippets = SNIPPETS.module_fixture(legacy_keras=True)


@pytest.fixture
def snippet_stdout(tfx_snippets, request):
    """The stdout of this test's snippet (registered with ``@SNIPPETS.of``), run by `tfx_snippets`."""
    return snippet_output(tfx_snippets, request.node.originalname)


def _fedavg_ledger(**parameters):
    budget = PrivacyBudget.for_mechanism(CLIENTS, 1e-3).compose(CLIENTS.unit_event(), 3)
    return pl.PrivacyLedger(
        budget=budget,
        mechanism=pl.DP_FEDAVG,
        parameters={
            "dataset_size": 50,
            "batch_size": 5,
            "noise_multiplier": 0.9,
            "steps": 3,
            "sampling": "fixed",
            "adjacency": "replace-one",
            "l2_norm_clip": 0.5,
            **parameters,
        },
    )


def _keyed_clients(**settings) -> dict:
    """A private Federated Trainer's config: 20 clients of 2 classes (label 'y'), half of them sampled in each of 8
    rounds, with ``settings``."""
    return {
        "label_key": "y",
        "num_clients": 20,
        "rounds": 8,
        "fraction": 0.5,
        "private": True,
        "num_classes": 2,
        **settings,
    }


def test_a_ledger_meets_only_a_budget_in_its_own_unit():
    ledger = _fedavg_ledger(privacy_unit="client", noise="csprng")
    epsilon, note = spec.budget_epsilon(ledger, "client")
    assert epsilon == pytest.approx(compute_epsilon(CLIENTS, 1e-3, "rdp"), rel=1e-12)
    assert note.startswith("RDP accountant") and note.endswith(", client-level")
    epsilon, note = spec.budget_epsilon(ledger, "user")
    assert math.isinf(epsilon) and "the ledger's epsilon is client-level, the budget is user" in note
    epsilon, note = spec.budget_epsilon(ledger, "example")  # no record-level figure in this ledger
    assert math.isinf(epsilon) and "no record-level figure" in note
    dp_sgd = pl.PrivacyLedger.for_dp_sgd(
        DpSgdMechanism(dataset_size=389, batch_size=32, noise_multiplier=1.3, steps=122), l2_norm_clip=1.0, delta=1e-3
    )
    assert spec.budget_epsilon(dp_sgd, "example")[0] == dp_sgd.epsilon
    assert math.isinf(spec.budget_epsilon(dp_sgd, "client")[0])
    assert math.isinf(spec.budget_epsilon(None, "example")[0])


def test_seeded_noise_is_no_guarantee_for_the_gate():
    epsilon, note = spec.budget_epsilon(_fedavg_ledger(privacy_unit="client", noise="seeded"), "client")
    assert math.isinf(epsilon) and "recorded seed" in note


@SNIPPETS.of("""
from pipelines.components.private_evaluator import spec
from pipelines.pipeline import eval_config
config = lambda **kw: eval_config(spec.GateSettings(min_accuracy=0.5, max_membership_auc=0.6, epsilon_budget=2.0, **kw))
print(spec.gate_settings(config(privacy_unit="user")).privacy_unit, spec.gate_settings(config()).privacy_unit)
print(spec.gate_settings(config(budget_adjacency="replace-one")).budget_adjacency,
      spec.gate_settings(config()).budget_adjacency)
try:
    spec.privacy_metrics(epsilon_budget=2.0, privacy_unit="row")
except ValueError as err:
    print(err)
""")
def test_the_budgets_unit_travels_in_the_eval_config(snippet_stdout):
    lines = snippet_stdout.strip().splitlines()
    assert lines[-3:] == [
        "user example",
        "replace-one None",
        "privacy_unit must be one of example, user, client, got 'row'",
    ]


def test_a_budget_per_example_meets_a_keyed_poisson_ledger_at_its_record_level_figure():
    """Poisson sampling over keyed clients is accounted add/remove per client, but one record replaces a client's
    data (N fixed): a budget per example is compared with the replace-one figure, recomputed here (PLD)."""
    import dp_accounting
    from dp_accounting import dp_event

    from pipelines.components.federated_trainer.spec import FederatedTrainingConfig

    plan = FederatedTrainingConfig.for_trainer(
        _keyed_clients(sampling="poisson", target_epsilon=3.0, max_examples_per_client=30)
    ).plan(20)
    m = plan.mechanism
    ledger = plan.ledger(
        PrivacyBudget.for_mechanism(m, plan.delta).compose(m.unit_event(), m.units()), rounds=8, trainer={}
    )
    event = dp_event.PoissonSampledDpEvent(0.5, dp_event.GaussianDpEvent(m.noise_multiplier))
    client_level = dp_accounting.rdp.RdpAccountant().compose(event, 8).get_epsilon(plan.delta)
    replaced = (
        dp_accounting.pld.PLDAccountant(
            dp_accounting.NeighboringRelation.REPLACE_ONE, value_discretization_interval=1e-4
        )
        .compose(dp_event.SelfComposedDpEvent(event, 8))
        .get_epsilon(plan.delta)
    )
    assert ledger.epsilon <= client_level * (1 + 1e-9) <= 3.0 < replaced
    per_client, note = spec.budget_epsilon(ledger, "client")
    assert per_client == ledger.epsilon and note.endswith("client-level")
    per_example, note = spec.budget_epsilon(ledger, "example")
    assert per_example == pytest.approx(replaced, rel=1e-9)
    assert note.startswith("record-level") and "replace-one" in note
    assert math.isinf(spec.budget_epsilon(ledger, "user")[0])
    assert pl.ledger_properties(ledger)[pl.EPSILON_RECORD_LEVEL] == pl.mlmd_upper_bound(per_example)
    # Uniform sampling is accounted replace-one: the client-level figure is the record-level one.
    uniform = FederatedTrainingConfig.for_trainer(
        _keyed_clients(noise_multiplier=1.0, max_examples_per_client=30)
    ).plan(20)
    u = uniform.mechanism
    ledger = uniform.ledger(
        PrivacyBudget.for_mechanism(u, uniform.delta).compose(u.unit_event(), u.units()), rounds=8, trainer={}
    )
    assert spec.budget_epsilon(ledger, "example")[0] == ledger.epsilon
    # A ledger without the figure (older) meets no budget per example; seeded noise meets none at all.
    older = pl.PrivacyLedger.from_dict({**ledger.to_dict(), "parameters": {**ledger.parameters, "record_level": None}})
    assert math.isinf(spec.budget_epsilon(older, "example")[0])
    seeded = pl.PrivacyLedger.from_dict({**ledger.to_dict(), "parameters": {**ledger.parameters, "noise": "seeded"}})
    assert math.isinf(spec.budget_epsilon(seeded, "example")[0])


@SNIPPETS.of("""
import json, math
import numpy as np
import tensorflow_model_analysis as tfma
from pipelines import privacy_ledger as pl
from pipelines.components.private_evaluator import audit, executor, spec
from pipelines.pipeline import eval_config
from privacy.accounting import DpSgdMechanism
from privacy.decision import NoisyAccuracy
gate = spec.GateSettings(min_accuracy=0.8, max_membership_auc=0.6, epsilon_budget=2.0)
settings = spec.gate_settings(eval_config(gate))
out = {"min_accuracy": settings.min_accuracy}
exact = tfma.MetricConfig(class_name="BinaryAccuracy", threshold=tfma.MetricThreshold(
    value_threshold=tfma.GenericValueThreshold(lower_bound={"value": 0.8})))
try:
    spec.gate_settings(tfma.EvalConfig(metrics_specs=[tfma.MetricsSpec(
        metrics=[exact, *spec.privacy_metrics(epsilon_budget=2.0)])]))
except ValueError as err:
    out["exact"] = str(err)
audit.correct_predictions = lambda *args, **kwargs: (150, 190)
class ModelSpec:
    label_key, prediction_key, signature_name = "y", "p", ""
mechanism = DpSgdMechanism(dataset_size=389, batch_size=32, noise_multiplier=1.3, steps=122)
reserved = pl.PrivacyLedger.for_dp_sgd(mechanism, l2_norm_clip=1.0, delta=1e-3, decision=NoisyAccuracy(std=5.0))
draws = [executor._push_decision("model", reserved, settings, [], ModelSpec) for _ in range(3000)]
accuracy = np.array([d["noisy_accuracy"] for d in draws])
out.update(mean=float(accuracy.mean()), std=float(accuracy.std()), counts=draws[0]["noisy_correct"] is not None,
           none=executor._push_decision("model", pl.PrivacyLedger.for_dp_sgd(mechanism, l2_norm_clip=1.0,
                                                                             delta=1e-3), settings, [],
                                        ModelSpec)["noisy_accuracy"],
           check=executor._check("noisy_accuracy", -math.inf, 0.8, "", at_least=True)["passed"])
print(json.dumps(out))
""")
def test_the_push_decision_is_the_noisy_accuracy_and_exact_thresholds_are_refused(snippet_stdout):
    """The pipeline's EvalConfig thresholds only the noisy accuracy; a threshold on an exact TFMA metric is refused;
    the Evaluator draws the noisy accuracy with the noise the ledger reserved (here 150 of 190 correct), and a
    ledger that reserved none gets -inf, which no min_accuracy admits."""
    out = json.loads(snippet_stdout.strip().splitlines()[-1])
    assert out["min_accuracy"] == 0.8
    assert "a threshold on BinaryAccuracy would decide the push from an exact metric" in out["exact"]
    # c~/m~ with N(0, 25) on each count: delta method around 150/190
    expected_std = 5.0 * math.sqrt(1 + (150 / 190) ** 2) / 190
    assert out["mean"] == pytest.approx(150 / 190, abs=4 * expected_std / math.sqrt(3000) + 1e-3)
    assert out["std"] == pytest.approx(expected_std, rel=0.1)
    assert out["counts"] and out["none"] == -math.inf and out["check"] is False


def test_a_budget_per_example_calibrates_a_keyed_poisson_run_for_the_record_level_figure():
    """The pipeline asks for the gate's figure: with budget_unit 'example' the noise is calibrated so that one
    replaced record (PLD, replace-one, recomputed here) spends the target, and the gate meets it."""
    import dp_accounting
    from dp_accounting import dp_event

    from pipelines.components.federated_trainer.spec import FederatedTrainingConfig

    settings = _keyed_clients(sampling="poisson", target_epsilon=3.0, max_examples_per_client=30)
    assert (
        resolve_plan(trainer="federated", trainer_config=settings, min_accuracy=0).trainer_config["budget_unit"]
        == "example"
    )
    plan = FederatedTrainingConfig.for_trainer({**settings, "budget_unit": "example"}).plan(20)
    m = plan.mechanism
    ledger = plan.ledger(
        PrivacyBudget.for_mechanism(m, plan.delta).compose(m.unit_event(), m.units()), rounds=8, trainer={}
    )

    def replaced(z):
        event = dp_event.PoissonSampledDpEvent(0.5, dp_event.GaussianDpEvent(z))
        return (
            dp_accounting.pld.PLDAccountant(
                dp_accounting.NeighboringRelation.REPLACE_ONE, value_discretization_interval=1e-4
            )
            .compose(dp_event.SelfComposedDpEvent(event, 8))
            .get_epsilon(plan.delta)
        )

    assert replaced(m.noise_multiplier) <= 3.0 < replaced(m.noise_multiplier * 0.99)
    per_example, note = spec.budget_epsilon(ledger, "example")
    assert per_example == pytest.approx(replaced(m.noise_multiplier), rel=1e-9) and per_example <= 3.0
    with pytest.raises(ValueError, match="budget_unit"):
        FederatedTrainingConfig.for_trainer({**settings, "budget_unit": "row"})


@SNIPPETS.of("""
import json, os, stat
from pipelines import privacy_ledger as pl
from pipelines.components.private_evaluator import audit, executor, spec
from pipelines.pipeline import eval_config
from privacy.accounting import DpSgdMechanism
from privacy.decision import NoisyAccuracy
gate = spec.GateSettings(min_accuracy=0.8, max_membership_auc=0.6, epsilon_budget=2.0)
settings = spec.gate_settings(eval_config(gate))
calls = []
audit.correct_predictions = lambda *args, **kwargs: calls.append(1) or (150, 190)
class ModelSpec:
    label_key, prediction_key, signature_name = "y", "p", ""
ledger = pl.PrivacyLedger.for_dp_sgd(DpSgdMechanism(dataset_size=389, batch_size=32, noise_multiplier=1.3, steps=122),
                                     l2_norm_clip=1.0, delta=1e-3, decision=NoisyAccuracy(std=5.0))
root = tmp_dir
for name, data in (("eval", b"records"), ("other", b"other records")):
    open(os.path.join(root, name), "wb").write(data)
kept = os.path.join(root, executor.DECISION_RELEASE_FILE)
draws = [executor._push_decision("model", ledger, settings, [os.path.join(root, "eval")], ModelSpec,
                                 release_path=kept) for _ in range(5)]
other = executor._push_decision("model", ledger, settings, [os.path.join(root, "other")], ModelSpec,
                                release_path=kept)
print(json.dumps({"draws": [[d["noisy_correct"], d["noisy_rows"], d["reused"]] for d in draws], "calls": len(calls),
                  "mode": stat.S_IMODE(os.stat(kept).st_mode), "other": str(other["noisy_accuracy"]),
                  "note": other["note"]}))
""")
def test_re_evaluating_the_same_model_returns_the_kept_release_and_other_records_are_refused(snippet_stdout):
    """The ledger accounts one push-decision release: the first draw is kept (0600) in the Model artifact, a second
    evaluation on the same held-out records returns it without counting or drawing again, and one on other records
    gets -inf (no second draw)."""
    out = json.loads(snippet_stdout.strip().splitlines()[-1])
    first = out["draws"][0]
    assert first[2] is False and all(d == [first[0], first[1], True] for d in out["draws"][1:])
    assert out["calls"] == 1 and out["mode"] == 0o600
    assert out["other"] == "-inf" and "already drawn on other held-out records" in out["note"]


@SNIPPETS.of("""
import dataclasses, json
from pipelines import privacy_ledger as pl
from pipelines.components.private_evaluator import executor, spec
from pipelines.pipeline import eval_config
from privacy.accounting import DpSgdMechanism
ledger = pl.PrivacyLedger.for_dp_sgd(DpSgdMechanism(dataset_size=389, batch_size=32, noise_multiplier=1.3, steps=122),
                                     l2_norm_clip=1.0, delta=1e-3)
gate = spec.GateSettings(min_accuracy=0.8, max_membership_auc=0.6, epsilon_budget=2.0)
closed = spec.gate_settings(eval_config(gate))
skipped = spec.gate_settings(eval_config(dataclasses.replace(
    gate, lineage_unchecked="Vertex: the gate cannot read its ML Metadata")))
try:
    spec.privacy_metrics(epsilon_budget=2.0, lineage_unchecked=" ")
    refused = None
except ValueError as err:
    refused = str(err)
print(json.dumps({"closed": executor._lineage(closed, 7, ledger), "skipped": executor._lineage(skipped, 7, ledger),
                  "reason": skipped.lineage_unchecked, "refused": refused,
                  "outside": executor.outside_the_guarantee(ledger)}))
""")
def test_without_a_metadata_path_the_lineage_check_fails_closed_unless_declared_skipped(snippet_stdout):
    """Also: the exact statistics that decide the push are labelled outside the guarantee."""
    out = json.loads(snippet_stdout.strip().splitlines()[-1])
    [problem], warnings = out["closed"]
    assert "no ML Metadata path" in problem and warnings == []
    assert out["skipped"] == [
        [],
        [
            "lineage not checked, as declared (Vertex: the gate cannot read its ML Metadata): "
            "a Transform output upstream of the model that its ledger does not account would "
            "go unseen"
        ],
    ]
    assert out["reason"] == "Vertex: the gate cannot read its ML Metadata"
    assert "lineage_unchecked must be a non-empty reason, got ' '" in out["refused"]
    # What decides the push from exact statistics is labelled where the user reads the decision (summary, report).
    [membership] = [item for item in out["outside"] if item.startswith("membership-inference audit")]
    # n once: the ledger's own entry for it is not repeated as "listed by the trainer"
    [n_item] = [item for item in out["outside"] if "treated as public" in item]
    assert n_item.startswith("n, the number of training privacy units")
    [encrypted] = [item for item in out["outside"] if item.startswith("encrypted-inference gate")]
    assert "DECIDES THE PUSH" in membership and "DECIDE THE PUSH" in encrypted


def _group_of_two(accountant, delta):
    """min over delta' (a grid) of 2 eps(delta') with delta' (1 + e^eps(delta')) <= delta: group privacy of 2."""
    pairs = ((d, accountant.get_epsilon(d)) for d in (10.0 ** (-k / 8) for k in range(16, 2400)))
    return min(2 * e for d, e in pairs if d * (1 + math.exp(min(e, 700))) <= delta)


@pytest.mark.parametrize("sampling", ["poisson", "uniform"])
def test_a_replaced_record_changes_two_clients_and_meets_a_replace_one_budget_only_at_group_two(sampling):
    """A label flip moves a record to another client of the keyed partition: two clients' data change. The
    record-level figure covers one record added or removed (one client) and is labelled so; a budget per example
    stated replace-one is met only by the group-of-2-clients figure, recomputed here from dp-accounting."""
    import dp_accounting
    import numpy as np
    from dp_accounting import dp_event

    from federated.partitioners import KeyedPartitioner
    from federated.partitioners.keyed import content_keys

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(400, 3)).astype(np.float32), rng.integers(0, 2, 400)
    partitioner = KeyedPartitioner(num_clients=20, rule="iid", seed=0)
    flipped = y.copy()
    flipped[7] = 1 - y[7]
    before, after = (partitioner.partition(labels, keys=content_keys(x, labels)) for labels in (y, flipped))
    changed = [k for k in range(20) if not np.array_equal(np.sort(before.indices[k]), np.sort(after.indices[k]))]
    assert len(changed) == 2

    plan, ledger = _composed_plan(sampling, decision=False, delta=1e-3)
    record = ledger.parameters["record_level"]
    assert (record["record_adjacency"], record["client_adjacency"]) == ("add-remove", "replace-one")
    per_example, note = spec.budget_epsilon(ledger, "example")
    assert "one record added or removed" in note and "replaced record changes two clients: not covered" in note
    if sampling == "poisson":
        event = dp_event.PoissonSampledDpEvent(0.5, dp_event.GaussianDpEvent(1.5))
        accountant = dp_accounting.pld.PLDAccountant(
            dp_accounting.NeighboringRelation.REPLACE_ONE, value_discretization_interval=1e-4
        )
    else:
        event = dp_event.SampledWithoutReplacementDpEvent(20, 10, dp_event.GaussianDpEvent(1.5 / 2))
        accountant = dp_accounting.rdp.RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
    accountant.compose(dp_event.SelfComposedDpEvent(event, 8))
    assert per_example == pytest.approx(accountant.get_epsilon(1e-3), rel=1e-6)
    grid = _group_of_two(accountant, 1e-3)
    replaced, note = spec.budget_epsilon(ledger, "example", "replace-one")
    assert per_example < grid * 0.95 <= replaced <= grid * (1 + 1e-6)
    assert note.startswith("one record replaced (replace-one): two clients' data change")
    assert spec.budget_epsilon(ledger, "example", "add-remove") == (
        per_example,
        spec.budget_epsilon(ledger, "example")[1],
    )
    props = pl.ledger_properties(ledger)
    assert props[pl.RECORD_ADJACENCY] == "add-remove"
    assert props[pl.EPSILON_RECORD_REPLACED] == pl.mlmd_upper_bound(replaced)
    # A DP-SGD ledger accounted add/remove does not meet a budget stated replace-one.
    dp_sgd = pl.PrivacyLedger.for_dp_sgd(
        DpSgdMechanism(dataset_size=389, batch_size=32, noise_multiplier=1.3, steps=122), l2_norm_clip=1.0, delta=1e-3
    )
    assert math.isinf(spec.budget_epsilon(dp_sgd, "example", "replace-one")[0])
    assert spec.budget_epsilon(dp_sgd, "example", "add-remove")[0] == dp_sgd.epsilon


def test_the_record_level_figures_delta_is_judged_against_a_public_bound_on_the_records():
    """The record-level figure's unit is a record: its delta is judged against N x K records (K the public
    max_examples_per_client), not against the N clients; without K it meets no budget per example. The CLI's
    defaults (N = 100 clients, delta = 1/(2N) rounded down = 1e-3, no K) and digits' 1,347 training records: delta
    x records = 1.35, a mechanism publishing each record in the clear with probability delta would meet it."""
    from pipelines.components.federated_trainer.spec import FederatedTrainingConfig, InvalidFederatedSetting
    from pipelines.components.private_evaluator import coverage

    def ledger_of(plan):
        m = plan.mechanism
        return plan.ledger(
            PrivacyBudget.for_mechanism(m, plan.delta).compose(m.unit_event(), m.units()), rounds=m.steps, trainer={}
        )

    cli = {
        "label_key": "y",
        "private": True,
        "num_classes": 2,
        "sampling": "poisson",
        "noise_multiplier": 1.0,
        "rounds": 2,
    }
    plan = FederatedTrainingConfig.for_trainer(cli).plan(100)
    assert plan.delta == 1e-3 and plan.delta * 1347 >= 1
    ledger = ledger_of(plan)
    epsilon, note = spec.budget_epsilon(ledger, "example")
    assert math.isinf(epsilon) and "no public bound on the number of records" in note
    assert spec.budget_epsilon(ledger, "client")[0] == ledger.epsilon < math.inf
    # With K = 20: the same delta against 100 x 20 records is a problem for a budget per example (not per client).
    bounded = ledger_of(FederatedTrainingConfig.for_trainer({**cli, "max_examples_per_client": 20}).plan(100))
    assert bounded.parameters["record_level"]["records"] == 2000
    [problem], _ = coverage.delta_findings(bounded, "example")
    assert "delta=0.001 is not below 1/n=0.0005" in problem and "record" in problem
    assert coverage.delta_findings(bounded, "client") == ([], [])
    # A budget per example plans delta per record: the largest power of ten at most 1/(2 N K) = 1/4000.
    per_example = FederatedTrainingConfig.for_trainer(
        {
            **cli,
            "max_examples_per_client": 20,
            "budget_unit": "example",
            "noise_multiplier": None,
            "target_epsilon": 3.0,
        }
    ).plan(100)
    assert per_example.delta == 1e-4 and per_example.delta_warning is None
    assert coverage.delta_findings(ledger_of(per_example), "example") == ([], [])
    with pytest.raises(
        InvalidFederatedSetting,
        match=r"delta.*must be below 1/n = 0.0005 for n = N x "
        r"max_examples_per_client = 2000 records",
    ):
        FederatedTrainingConfig.for_trainer(
            {**cli, "max_examples_per_client": 20, "budget_unit": "example", "noise_multiplier": None, "delta": 1e-3}
        ).plan(100)
    with pytest.raises(InvalidFederatedSetting, match="max_examples_per_client"):
        FederatedTrainingConfig.for_trainer({**cli, "budget_unit": "example", "noise_multiplier": None})


def _release(adjacency="add-remove", vocabulary=False, noise_multiplier=40.0):
    """One preprocessing release (a mean and variance over [-6, 6], or a private vocabulary) as its record."""
    from privacy.preprocessing import GaussianThresholding, MeanVariance, MechanismRecord

    mechanism = (
        GaussianThresholding(20.0, 1e-5, 2) if vocabulary else MeanVariance((-6, 6), noise_multiplier, adjacency)
    )
    return MechanismRecord(
        name="city/vocabulary" if vocabulary else "x/mean_and_var",
        analyzer="vocabulary" if vocabulary else "mean_and_var",
        mechanism="gaussian-thresholding" if vocabulary else "gaussian-sums",
        adjacency=adjacency,
        components=mechanism.components,
        parameters=mechanism.parameters() if vocabulary else {"bounds": [-6, 6]},
        noise="CSPRNG-keyed Philox (os.urandom)",
        share=1.0,
    )


def _composed_plan(sampling, releases=(), decision=True, k=5, delta=1e-4):
    """(plan, ledger) of 8 rounds of 20 keyed clients (half sampled, z 1.5, K = ``k``), with ``releases`` and a push
    decision (epsilon 2) composed before the rounds when asked."""
    from pipelines.components.federated_trainer.spec import FederatedTrainingConfig
    from privacy.preprocessing import CoverageRecord, PreprocessingAccount, to_text

    settings = _keyed_clients(
        sampling=sampling,
        noise_multiplier=1.5,
        delta=delta,
        max_examples_per_client=k,
        **({"decision_epsilon": 2.0} if decision else {}),
    )
    coverage = CoverageRecord(analyzer_outputs=3 * len(releases), private=tuple(r.name for r in releases))
    account = (
        PreprocessingAccount.from_texts([to_text(r) for r in releases] + [to_text(coverage)]) if releases else None
    )
    plan = FederatedTrainingConfig.for_trainer(settings).plan(20, preprocessing=account)
    m = plan.mechanism
    budget = PrivacyBudget.for_mechanism(m, plan.delta).compose(m.unit_event(), m.units())
    return plan, plan.ledger(budget, rounds=8, trainer={})


@pytest.mark.parametrize("sampling", ["poisson", "uniform"])
def test_a_replaced_record_is_accounted_for_the_composed_artifact_by_group_privacy_of_two(sampling):
    """With preprocessing releases and a push decision composed before the rounds, a replaced record (two clients'
    data change, N fixed) is a chain of two neighbours each adding or removing one record: one client's data
    replaced for the rounds, one record for the releases and the decision. The ledger's figure is group privacy of
    2 over their composition, recomputed here from dp-accounting with the events built from public parameters (PLD
    under replace-one for Poisson sampling, RDP for uniform sampling), and the replace-one budget per example meets
    it; it exceeds the rounds' figure alone."""
    import dp_accounting
    from dp_accounting import dp_event

    release = _release()
    plan, ledger = _composed_plan(sampling, releases=(release,))
    replaced = ledger.parameters["record_level"]["replaced_record"]
    assert replaced["epsilon"] is not None and "the artifact" in replaced["covers"]
    # The release's noise multiplier for one record added or removed, from its components (sensitivity, std).
    multiplier = 1 / math.sqrt(sum((c.sensitivity / c.noise_std) ** 2 for c in release.components if c.sensitivity))
    prior = [
        dp_event.GaussianDpEvent(multiplier),
        dp_event.GaussianDpEvent(plan.decision.std / math.sqrt(2)),  # (correct, rows) move by (1, 1) per record
    ]
    relation = dp_accounting.NeighboringRelation.REPLACE_ONE
    if sampling == "poisson":
        rounds = dp_event.PoissonSampledDpEvent(0.5, dp_event.GaussianDpEvent(plan.mechanism.noise_multiplier))
        accountant = dp_accounting.pld.PLDAccountant(relation, value_discretization_interval=1e-4)
    else:
        rounds = dp_event.SampledWithoutReplacementDpEvent(
            20, 10, dp_event.GaussianDpEvent(plan.mechanism.noise_multiplier / 2)
        )
        accountant = dp_accounting.rdp.RdpAccountant(neighboring_relation=relation)
    accountant.compose(dp_event.ComposedDpEvent([*prior, dp_event.SelfComposedDpEvent(rounds, 8)]))
    grid = _group_of_two(accountant, 1e-4)
    assert grid * 0.95 <= replaced["epsilon"] <= grid * (1 + 1e-6)
    alone = _composed_plan(sampling, decision=False)[1].parameters["record_level"]["replaced_record"]
    assert replaced["epsilon"] > alone["epsilon"] and "covers" not in alone  # the releases and decision add to it
    # Each part counts (the grid's 5% tolerance alone would miss one left out): without the decision, or without the
    # release, the figure is smaller.
    for releases, decision in (((release,), False), ((), True)):
        part = _composed_plan(sampling, releases=releases, decision=decision)[1]
        assert part.parameters["record_level"]["replaced_record"]["epsilon"] < replaced["epsilon"], (releases, decision)
    epsilon, note = spec.budget_epsilon(ledger, "example", "replace-one")
    assert epsilon == replaced["epsilon"] and "covering the artifact" in note
    assert pl.ledger_properties(ledger)[pl.EPSILON_RECORD_REPLACED] == pl.mlmd_upper_bound(epsilon)


def test_a_replaced_record_the_composition_cannot_bound_is_labelled_and_meets_no_replace_one_budget():
    """A private vocabulary's additive delta does not pass through group privacy, and a release analysed replace-one
    (its count exact) has no bound for a record added or removed: the figure is None with the reason, and a
    replace-one budget per example gets infinity, never a figure that leaves them out."""
    for sampling, releases, k, reason in (
        ("poisson", (_release(), _release(vocabulary=True)), 5, "additive delta is not carried through group privacy"),
        ("uniform", (_release("replace-one"),), 1, "analysed under replace-one adjacency"),
    ):
        plan, ledger = _composed_plan(sampling, releases=releases, decision=False, k=k)
        replaced = ledger.parameters["record_level"]["replaced_record"]
        assert replaced["epsilon"] is None and reason in replaced["accountant"], replaced
        epsilon, note = spec.budget_epsilon(ledger, "example", "replace-one")
        assert math.isinf(epsilon) and reason in note


def test_a_release_whose_pld_grid_no_machine_holds_leaves_the_composed_figures_out_naming_the_grid():
    """A release of noise multiplier 1e-6 composed before Poisson rounds: PLD's grid for it would hold about 1e16
    values (numpy raises MemoryError on any machine). The one-record and replaced-record figures, composed by PLD,
    are None with the guard's reason, refused before composing (never a MemoryError); the ledger's PLD figure is
    None and RDP bounds it."""
    plan, ledger = _composed_plan("poisson", releases=(_release(noise_multiplier=1e-6),), decision=False)
    record = ledger.parameters["record_level"]
    assert record["epsilon"] is None and "privacy-loss grid would hold about" in record["accountant"], record
    replaced = record["replaced_record"]
    assert replaced["epsilon"] is None and "privacy-loss grid would hold about" in replaced["accountant"], replaced
    assert ledger.epsilons["pld"] is None and ledger.epsilon_accountant == "rdp"
    assert math.isinf(spec.budget_epsilon(ledger, "example", "replace-one")[0])


def test_a_per_example_replace_one_budget_calibrates_z_for_the_replaced_record_figure():
    """With budget_unit example and budget_adjacency replace-one the Trainer's z is the least whose replaced-record
    figure (recomputed here from dp-accounting: RDP group privacy of 2 over the uniform rounds) meets the target, so
    the gate's figure for such a budget is within it; the relation alone, without a budget per example, is refused."""
    import dp_accounting
    from dp_accounting import dp_event

    from pipelines.components.federated_trainer.spec import FederatedTrainingConfig, InvalidFederatedSetting

    settings = _keyed_clients(delta=1e-4, max_examples_per_client=5, target_epsilon=3.0, budget_unit="example")
    plan = FederatedTrainingConfig.for_trainer({**settings, "budget_adjacency": "replace-one"}).plan(20)
    z = plan.mechanism.noise_multiplier
    m = plan.mechanism
    ledger = plan.ledger(
        PrivacyBudget.for_mechanism(m, plan.delta).compose(m.unit_event(), m.units()), rounds=8, trainer={}
    )
    epsilon, note = spec.budget_epsilon(ledger, "example", "replace-one")
    relation = dp_accounting.NeighboringRelation.REPLACE_ONE
    accountant = dp_accounting.rdp.RdpAccountant(neighboring_relation=relation).compose(
        dp_event.SelfComposedDpEvent(
            dp_event.SampledWithoutReplacementDpEvent(20, 10, dp_event.GaussianDpEvent(z / 2)), 8
        )
    )
    grid = _group_of_two(accountant, 1e-4)
    assert 0.95 * grid <= epsilon <= min(grid * (1 + 1e-6), 3.0) and "two clients' data change" in note
    # The client-level figure (what uniform sampling alone would calibrate) is met with less noise.
    client_level = FederatedTrainingConfig.for_trainer({**settings, "budget_unit": None}).plan(20)
    assert client_level.mechanism.noise_multiplier < z
    with pytest.raises(InvalidFederatedSetting, match="budget_adjacency"):
        FederatedTrainingConfig.for_trainer({**settings, "budget_unit": None, "budget_adjacency": "replace-one"})


def test_a_per_example_replace_one_budget_calibrates_z_under_poisson_sampling_too():
    """Under Poisson sampling of clients the replaced-record figure is PLD group privacy of 2 over replace-one client
    neighbours: the calibrated z meets the target by that figure, recomputed here from dp-accounting, and a z 1%
    smaller would not (the least z, within the calibration's 0.1%)."""
    import dp_accounting
    from dp_accounting import dp_event

    from pipelines.components.federated_trainer.spec import FederatedTrainingConfig

    settings = _keyed_clients(
        sampling="poisson",
        delta=1e-4,
        max_examples_per_client=5,
        target_epsilon=3.0,
        budget_unit="example",
        budget_adjacency="replace-one",
    )
    z = FederatedTrainingConfig.for_trainer(settings).plan(20).mechanism.noise_multiplier

    def replaced(noise_multiplier):
        rounds = dp_event.PoissonSampledDpEvent(0.5, dp_event.GaussianDpEvent(noise_multiplier))
        accountant = dp_accounting.pld.PLDAccountant(
            dp_accounting.NeighboringRelation.REPLACE_ONE, value_discretization_interval=1e-4
        )
        return _group_of_two(accountant.compose(dp_event.SelfComposedDpEvent(rounds, 8)), 1e-4)

    assert replaced(z) <= 3.0 * 1.05 and replaced(0.99 * z) > 3.0


def test_bad_gate_settings_are_refused_in_one_line_before_tfma_or_tfx_is_imported(python_subprocess):
    code = """
import dataclasses, json, sys
from pipelines.components.private_evaluator import spec
from pipelines.plan import resolve_plan
calls = [
    lambda: spec.privacy_metrics(epsilon_budget=-1.0),
    lambda: spec.privacy_metrics(epsilon_budget=2.0, max_membership_auc=float("nan")),
    lambda: spec.privacy_metrics(epsilon_budget=2.0, privacy_unit="row"),
    lambda: spec.privacy_metrics(epsilon_budget=2.0, max_audit_examples=0),
    lambda: spec.privacy_metrics(epsilon_budget=2.0, member_split=""),
    lambda: spec.privacy_metrics(epsilon_budget=2.0, audit_canaries=True),
    lambda: spec.GateSettings(epsilon_budget=2.0, metadata_path=""),
    lambda: dataclasses.replace(spec.GateSettings(epsilon_budget=2.0), lineage_unchecked=" "),
    lambda: resolve_plan(min_accuracy=1.5),
    lambda: resolve_plan(min_accuracy=False),
    lambda: resolve_plan(delta_budget=1.0),
    lambda: resolve_plan(budget_adjacency="swap"),
]
refused = []
for call in calls:
    try:
        call()
        refused.append(None)
    except ValueError as err:
        refused.append(str(err))
loaded = sorted(m for m in ("tensorflow_model_analysis", "tfx") if m in sys.modules)
print(json.dumps({"refused": refused, "loaded": loaded}))
"""
    result = json.loads(python_subprocess(code).stdout.strip().splitlines()[-1])
    assert result["loaded"] == []
    assert result["refused"] == [
        "epsilon_budget must be a finite number > 0, got -1.0",
        "max_membership_auc must be in [0, 1], got nan",
        "privacy_unit must be one of example, user, client, got 'row'",
        "max_audit_examples must be an integer >= 1, got 0",
        "member_split must be a split name, got ''",
        "audit_canaries must be an integer in [32, 100000], got True",
        "metadata_path must be a file path, got ''",
        "lineage_unchecked must be a non-empty reason, got ' '",
        "min_accuracy must be in [0, 1], got 1.5",
        "min_accuracy must be in [0, 1], got False",
        "delta_budget must be in (0, 1), got 1.0",
        "budget_adjacency must be one of add-remove, replace-one, got 'swap'",
    ]


def test_a_plans_membership_audit_attacks_the_split_its_trainer_fits_the_model_on():
    """The PATE student is fitted on its public split, every other Trainer on 'train': a plan whose gate names other
    members (replaced, or built by hand) would audit records the model never saw and is refused."""
    from pipelines.components.pate_trainer.spec import PateTrainingConfig

    pate = resolve_plan(trainer="pate")
    assert pate.gate.member_split == PateTrainingConfig.from_custom_config(pate.trainer_config).public_split
    assert resolve_plan().gate.member_split == "train"
    with pytest.raises(ValueError, match=r"^gate.member_split 'public': the pate Trainer fits the model on 'query'"):
        dataclasses.replace(pate, trainer_config={**pate.trainer_config, "public_split": "query"})
    with pytest.raises(ValueError, match=r"^gate.member_split 'train': the pate Trainer fits the model on 'public'"):
        dataclasses.replace(pate, gate=spec.GateSettings(epsilon_budget=3.0))
    with pytest.raises(ValueError, match=r"^gate.member_split 'eval': the dp Trainer fits the model on 'train'"):
        dataclasses.replace(resolve_plan(), gate=spec.GateSettings(epsilon_budget=3.0, member_split="eval"))
    with pytest.raises(ValueError, match=r"^gate must be a GateSettings, got dict$"):
        dataclasses.replace(resolve_plan(), gate={"epsilon_budget": 3.0})


@SNIPPETS.of("""
import json
import tensorflow_model_analysis as tfma
from tfx import v1 as tfx
from pipelines.components.private_evaluator import spec
from pipelines.components.private_evaluator.component import PrivateEvaluator
epsilon, auc = spec.privacy_metrics(epsilon_budget=1.0)
unbounded = tfma.MetricConfig()
unbounded.CopyFrom(epsilon)
unbounded.threshold.value_threshold.upper_bound.value = float("inf")
client_level = spec.privacy_metrics(epsilon_budget=1.0, privacy_unit="client")[0]
model = tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model)
examples = tfx.dsl.Channel(type=tfx.types.standard_artifacts.Examples)
out = []
for metrics in ([unbounded, auc], [epsilon, auc, client_level], [epsilon, auc]):
    config = tfma.EvalConfig(metrics_specs=[tfma.MetricsSpec(metrics=metrics)])
    for build in (spec.gate_settings, lambda c: PrivateEvaluator(examples=examples, model=model, eval_config=c)):
        try:
            build(config)
            out.append(None)
        except ValueError as err:
            out.append(str(err))
print(json.dumps(out))
""")
def test_a_hand_built_eval_config_that_would_bless_more_is_refused_when_the_evaluator_is_built(snippet_stdout):
    """An infinite epsilon budget (a model without a ledger has epsilon inf, and inf <= inf), and a second DpEpsilon
    metric whose budget unit is laxer (the gate read the last one's settings), are refused by `spec.gate_settings`
    and so by PrivateEvaluator at construction, in one line each."""
    out = json.loads(snippet_stdout.strip().splitlines()[-1])
    unbounded, twice = (
        "epsilon_budget must be a finite number > 0, got inf",
        (
            "the EvalConfig has two DpEpsilon metrics (dp_epsilon): the gate would read one's settings while TFMA "
            "checks both thresholds; give one"
        ),
    )
    assert out == [unbounded, unbounded, twice, twice, None, None]


def test_the_gate_settings_default_once_and_the_command_line_takes_the_same_defaults():
    from pipelines.cli.pipeline import run

    flags = {p.name: p.default for p in run.params}
    gate = resolve_plan().gate
    assert gate == spec.GateSettings(epsilon_budget=3.0, max_membership_auc=0.6, min_accuracy=0.85)
    assert [flags[k] for k in ("epsilon_budget", "max_membership_auc", "min_accuracy", "privacy_unit")] == [
        gate.epsilon_budget,
        gate.max_membership_auc,
        gate.min_accuracy,
        gate.privacy_unit,
    ]
    assert resolve_plan(min_accuracy=0).gate.min_accuracy is None  # a threshold of 0 decides nothing
    with pytest.raises(dataclasses.FrozenInstanceError):
        gate.epsilon_budget = 100.0


@SNIPPETS.of("""
import dataclasses, json
import tensorflow_model_analysis as tfma
from google.protobuf import json_format
from pipelines.components.private_evaluator import spec
from pipelines.pipeline import create_pipeline
from pipelines.plan import resolve_plan
plan = resolve_plan(epsilon_budget=2.5, max_membership_auc=0.7, min_accuracy=0.8, delta_budget=1e-4,
                    audit_canaries=500, budget_adjacency="add-remove", compare_non_private=True, encrypted_check=True)
pipeline = create_pipeline(pipeline_root="/tmp/unused", data_root="/tmp/unused", serving_model_dir="/tmp/unused",
                           metadata_path="/tmp/unused/metadata.sqlite", plan=plan)
read = {c.id: spec.gate_settings(json_format.Parse(c.exec_properties["eval_config"], tfma.EvalConfig()))
        for c in pipeline.components if c.id.startswith("Evaluator")}
print(json.dumps({"plan": dataclasses.asdict(plan.gate), **{k: dataclasses.asdict(v) for k, v in read.items()}}))
""")
def test_the_plans_gate_reaches_each_evaluator_whole(snippet_stdout):
    """The EvalConfig of each Evaluator reads back as the plan's `GateSettings`, with the pipeline's ML Metadata path
    added; the non-private twin's without the audit (it has no ledger to audit); with the encrypted check too."""
    out = json.loads(snippet_stdout.strip().splitlines()[-1])
    expected = {
        "epsilon_budget": 2.5,
        "max_membership_auc": 0.7,
        "member_split": "train",
        "max_audit_examples": None,
        "delta_budget": 1e-4,
        "privacy_unit": "example",
        "min_accuracy": 0.8,
        "metadata_path": None,
        "lineage_unchecked": None,
        "audit_canaries": 500,
        "budget_adjacency": "add-remove",
    }
    assert out["plan"] == expected
    assert out["Evaluator"] == {**expected, "metadata_path": "/tmp/unused/metadata.sqlite"}
    assert out["Evaluator_non_private"] == {**out["Evaluator"], "audit_canaries": None}


@SNIPPETS.of("""
import json
from tensorflow_model_analysis.proto import config_pb2, metrics_for_slice_pb2, validation_result_pb2
from pipelines.components.private_evaluator import executor
def message(value, lower=None, upper=None):
    bounds = {k: {"value": v} for k, v in (("lower_bound", lower), ("upper_bound", upper)) if v is not None}
    return executor._failure_message(validation_result_pb2.ValidationFailure(
        metric_key=metrics_for_slice_pb2.MetricKey(name="m"),
        metric_threshold=config_pb2.MetricThreshold(value_threshold=config_pb2.GenericValueThreshold(**bounds)),
        metric_value=metrics_for_slice_pb2.MetricValue(**({} if value is None else {"double_value": {"value": value}})),
    ))
print(json.dumps([message(0.0166238438608439, 0.016623843590135228, 0.01662384786565881),
                  message(0.81, 0.85), message(0.81, 0.85, 0.99), message(1.0000001, 0.5, 1.0), message(None, 0.85)]))
""")
def test_tfma_failure_messages_show_each_bound_beside_a_value_text_that_orders_as_the_numbers_do(snippet_stdout):
    """F8: the message showed one value text (the longest of the per-bound ones) against every bound; for
    0.0166238438608439 in [0.016623843590135228, 0.01662384786565881] it read '0.016624 does not meet >= 0.01662384
    and <= 0.0166238', the value printed above an upper bound it is below. Each bound now has its pair's own text
    where the widths differ; one bound, or bounds that need the same width, read as before."""
    inside, lower, both, above, missing = json.loads(snippet_stdout.splitlines()[-1])
    assert inside == "m does not meet 0.016624 >= 0.01662384 and 0.01662 <= 0.0166238"
    pairs = [clause.split(" ") for clause in inside.removeprefix("m does not meet ").split(" and ")]
    assert [(float(v) > float(b), float(v) < float(b)) for v, _, b in pairs] == [(True, False), (False, True)]
    assert (lower, both) == ("m 0.81 does not meet >= 0.85", "m 0.81 does not meet >= 0.85 and <= 0.99")
    assert above == "m does not meet 1 >= 0.5 and 1.0000001 <= 1", above  # fewest digits per pair
    assert missing == "m n/a does not meet >= 0.85"


@SNIPPETS.of("""
import json
from tensorflow_model_analysis.proto import config_pb2, metrics_for_slice_pb2, validation_result_pb2
from pipelines import privacy_ledger as pl
from pipelines.components.private_evaluator import executor
from privacy.accounting import DpSgdMechanism
from privacy.accounting.noise_cutoff import NoiseDraws, sampler_radius
mechanism = DpSgdMechanism(dataset_size=100000, batch_size=256, noise_multiplier=1.1, steps=1000)
ledger = pl.PrivacyLedger.for_dp_sgd(mechanism, l2_norm_clip=1.0, delta=1e-5,
                                     noise_draws=NoiseDraws(sampler_radius("float32"), 5000))
failure = validation_result_pb2.ValidationFailure(
    metric_key=metrics_for_slice_pb2.MetricKey(name="dp_delta"),
    metric_threshold=config_pb2.MetricThreshold(value_threshold=config_pb2.GenericValueThreshold(
        upper_bound={"value": 1e-5})),
    metric_value=metrics_for_slice_pb2.MetricValue(double_value={"value": ledger.delta}))
print(json.dumps({"delta": ledger.delta, "cutoff": ledger.cutoff_delta,
                  "equal": executor._check("delta", ledger.delta, 1e-5, "c"),
                  "above": executor._check("delta", ledger.delta, 1.01e-5, "c"),
                  "tfma": executor._failure_message(failure)}))
""")
def test_a_delta_budget_equal_to_the_target_delta_refuses_with_distinct_numbers(snippet_stdout):
    """A ledger written with float32 noise's cut-off has delta 1e-5 plus ~1.3e-15 (the cut-off's at the ledger's
    epsilon, crediting Poisson sampling): the Evaluator's delta check at a budget of 1e-5 fails and prints the value
    above the bound (not '1e-05 > 1e-05'), as does TFMA's failure message; at 1.01 x the target delta (README's
    advice) it passes."""
    out = json.loads(snippet_stdout.strip().splitlines()[-1])
    assert 1e-15 < out["cutoff"] < 2e-15 and out["delta"] == 1e-5 + out["cutoff"] and f"{out['delta']:.4g}" == "1e-05"
    shown = f"{out['delta']:.11g}"  # the fewest digits that print it above 1e-05 (~1e-5 + 1.3e-15)
    assert float(shown) > 1e-5 and f"{out['delta']:.10g}" == "1e-05"
    assert out["equal"]["passed"] is False and out["equal"]["reason"] == f"delta {shown} > 1e-05 (c)"
    assert out["above"]["passed"] is True and out["above"]["reason"] == "delta 1e-05 <= 1.01e-05 (c)"
    assert out["tfma"] == f"dp_delta {shown} does not meet <= 1e-05"
