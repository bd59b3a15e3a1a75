"""The privacy ledger: JSON round trip, epsilon recomputed from its events, MLMD properties."""

import json
import math

import dp_accounting
import pytest
from dp_accounting import dp_event
from ml_metadata.proto import metadata_store_pb2
from scipy import stats

from pipelines import privacy_ledger as pl
from privacy.accounting import (
    DpSgdMechanism,
    NoiseCutoff,
    NoiseDraws,
    PrivacyBudget,
    compute_epsilon,
    dp_sgd_report,
    event_from_json,
    noisy_padding,
)
from privacy.preprocessing import (
    CoverageRecord,
    GaussianThresholding,
    MeanVariance,
    MechanismRecord,
    PreprocessingAccount,
    PreprocessingBudget,
    PreprocessingPart,
    to_text,
)

MECHANISM = DpSgdMechanism(dataset_size=389, batch_size=32, noise_multiplier=1.3, steps=122)


def test_ledger_epsilon_is_the_accountants_value_and_survives_json(tmp_path):
    ledger = pl.PrivacyLedger.for_dp_sgd(MECHANISM, l2_norm_clip=1.5, delta=1e-3, trainer={"module": "x"})
    rdp, pld = compute_epsilon(MECHANISM, 1e-3, "rdp"), compute_epsilon(MECHANISM, 1e-3, "pld")
    assert ledger.epsilons == {"rdp": pytest.approx(rdp, rel=1e-12), "pld": pytest.approx(pld, rel=1e-12)}
    assert ledger.epsilon == pytest.approx(min(rdp, pld), rel=1e-12)
    path = pl.write_ledger(str(tmp_path / "Format-Serving"), ledger)
    assert path == str(tmp_path / "Format-Serving" / "assets.extra" / "privacy_ledger.json")
    data = json.loads(open(path).read())
    # The fields the issue asks for.
    assert event_from_json(data["dp_event"]) == MECHANISM.dp_event()  # 122 x PoissonSampled(Gaussian)
    assert data["parameters"]["l2_norm_clip"] == 1.5 and data["parameters"]["noise_multiplier"] == 1.3
    assert data["report"]["sampling"] == "poisson" and data["report"]["adjacency"] == "add-remove"
    assert data["report"]["steps"] == 122 and data["delta"] == 1e-3
    assert data["epsilon"]["rdp"] == pytest.approx(rdp) and data["epsilon"]["pld"] == pytest.approx(pld)
    assert data["accountant_version"].startswith("dp-accounting ")
    again = pl.read_ledger(str(tmp_path / "Format-Serving"))
    assert again.epsilons == ledger.epsilons and again.parameters == ledger.parameters
    assert again.privacy_report().format_text() == ledger.privacy_report().format_text()
    assert pl.read_ledger(str(tmp_path / "elsewhere")) is None


def test_to_dict_shares_no_state_with_the_ledger():
    ledger = pl.PrivacyLedger.for_dp_sgd(
        MECHANISM,
        l2_norm_clip=1.5,
        delta=1e-3,
        trainer={"libs": {"tf": "2"}},
        outside_guarantee={"x": "why"},
        noise_draws=NoiseDraws(9.42, 100),
        validation_decisions=[],
        uncovered_padding=False,
    )
    data = ledger.to_dict()
    data["parameters"]["outside_guarantee"]["x"] = "edited"
    data["trainer"]["libs"]["tf"] = "edited"
    again = ledger.to_dict()
    size = pl.public_dataset_size(MECHANISM.dataset_size, adjacency=MECHANISM.adjacency)
    assert again["parameters"]["outside_guarantee"] == {
        **size,
        **pl.float_sum("float32"),
        **pl.FLOATING_POINT_NOISE,
        "x": "why",
    }
    assert again["trainer"] == {"libs": {"tf": "2"}}


def test_the_noise_cutoffs_delta_is_added_recomputed_and_refused_beyond_one_percent(tmp_path):
    """With the sampler's (cut-off, pairs) the ledger's delta is the accountant's plus the cut-off's (recomputed from
    parameters['noise_cutoff'], the epsilon unchanged); without them the cut-off is listed outside the guarantee;
    a cut-off adding more than 1 % of delta is refused."""
    draws = NoiseDraws(radius=math.sqrt(128 * math.log(2)), pairs=20_000)
    ledger = pl.PrivacyLedger.for_dp_sgd(MECHANISM, l2_norm_clip=1.5, delta=1e-3, noise_draws=draws)
    cutoff = NoiseCutoff(radius=draws.radius, pairs=20_000, steps=122, unit_shift=1 / 1.3, moves=32 / 389)
    added = cutoff.added_delta(1e-3, ledger.epsilon)  # Poisson add-remove: credited q e^eps at the ledger's epsilon
    assert added <= cutoff.added_delta(1e-3)  # q e^eps > 1 here: no credit
    assert 0 < added < 1e-12 and ledger.cutoff_delta == pytest.approx(added, rel=1e-12)
    assert ledger.delta == 1e-3 + ledger.cutoff_delta
    assert ledger.accountant_delta == 1e-3 and ledger.epsilons["rdp"] == pytest.approx(compute_epsilon(MECHANISM, 1e-3))
    assert ledger.parameters["noise_cutoff"] == {"radius": draws.radius, "pairs": 20_000}
    again = pl.read_ledger(pl.write_ledger(str(tmp_path / "m"), ledger).rsplit("/assets.extra", 1)[0])
    assert again.delta == ledger.delta and again.to_dict()["report"]["guarantee_delta"] == 1e-3 + added
    assert "noise cut-off" not in ledger.parameters.get("outside_guarantee", {})
    bare = pl.PrivacyLedger.for_dp_sgd(MECHANISM, l2_norm_clip=1.5, delta=1e-3)
    assert bare.delta == 1e-3 and "noise cut-off" in bare.parameters["outside_guarantee"]
    with pytest.raises(pl.LedgerError, match=r"noise cut-off: .* more than 1% of delta=0.001"):
        pl.PrivacyLedger.for_dp_sgd(MECHANISM, l2_norm_clip=1.5, delta=1e-3, noise_draws=NoiseDraws(4.0, 20_000))


def test_a_ledger_cannot_claim_fewer_steps_than_its_events(tmp_path):
    ledger = pl.PrivacyLedger.for_dp_sgd(MECHANISM, l2_norm_clip=1.0, delta=1e-3)
    data = ledger.to_dict()
    data["parameters"]["steps"] = 10  # hide most of the training
    data["epsilon"] = {"rdp": 0.1, "pld": 0.1}  # and lie about epsilon
    with pytest.raises(pl.LedgerError, match="does not account the run"):
        pl.PrivacyLedger.from_dict(data)
    data = ledger.to_dict()
    data["epsilon"] = {"rdp": 0.1, "pld": 0.1}  # a stale epsilon is ignored: recomputed from the events
    assert pl.PrivacyLedger.from_dict(data).epsilons == ledger.epsilons


def test_budget_from_training_must_match_the_mechanism():
    budget = PrivacyBudget.for_mechanism(MECHANISM, 1e-3).compose(MECHANISM.unit_event(), 121)
    with pytest.raises(pl.LedgerError, match="does not account the run"):
        pl.PrivacyLedger.for_dp_sgd(MECHANISM, l2_norm_clip=1.0, delta=1e-3, budget=budget)
    budget.compose(MECHANISM.unit_event(), 1)
    assert pl.PrivacyLedger.for_dp_sgd(MECHANISM, l2_norm_clip=1.0, delta=1e-3, budget=budget).budget is budget


FEDAVG_CLIENTS = DpSgdMechanism(dataset_size=50, batch_size=5, noise_multiplier=0.9, steps=30, sampling="fixed")
"""30 rounds of 5 clients among 50."""


def _dp_fedavg_ledger(**extra) -> "pl.PrivacyLedger":
    """A DP-FedAvg ledger of `FEDAVG_CLIENTS` (replace-one), its parameters plus ``extra``."""
    budget = PrivacyBudget.for_mechanism(FEDAVG_CLIENTS, 1e-3).compose(FEDAVG_CLIENTS.unit_event(), 30)
    parameters = {
        "unit": "client",
        "dataset_size": 50,
        "batch_size": 5,
        "noise_multiplier": 0.9,
        "steps": 30,
        "sampling": "fixed",
        "adjacency": "replace-one",
        "l2_norm_clip": 0.5,
        "clip": "fixed",
        **extra,
    }
    return pl.PrivacyLedger(budget=budget, mechanism=pl.DP_FEDAVG, parameters=parameters)


def test_a_dp_fedavg_ledger_is_checked_against_its_client_level_mechanism():
    ledger = _dp_fedavg_ledger()
    again = pl.PrivacyLedger.from_dict(json.loads(json.dumps(ledger.to_dict())))
    assert again.accounted_mechanism() == FEDAVG_CLIENTS
    assert again.epsilons["rdp"] == pytest.approx(compute_epsilon(FEDAVG_CLIENTS, 1e-3, "rdp"), rel=1e-12)
    data = ledger.to_dict()
    data["parameters"]["steps"] = 3  # claim 3 rounds where 30 were composed
    with pytest.raises(pl.LedgerError, match="does not account the run"):
        pl.PrivacyLedger.from_dict(data)
    with pytest.raises(pl.LedgerError, match="does not account the run"):
        pl.check_budget(ledger.budget, FEDAVG_CLIENTS.replace(steps=29), 1e-3)
    with pytest.raises(pl.LedgerError, match="not 'dp-sgd'"):
        again.dp_sgd_mechanism()


@pytest.mark.parametrize(
    "text, message",
    [
        ("{", "cannot read privacy ledger"),
        ('{"format": "other"}', "not a ppml privacy ledger"),
        ('{"format": "ppml.privacy_ledger/1"}', "malformed privacy ledger"),
    ],
)
def test_bad_ledger_files_are_reported(tmp_path, text, message):
    (tmp_path / "assets.extra").mkdir()
    (tmp_path / "assets.extra" / "privacy_ledger.json").write_text(text)
    with pytest.raises(pl.LedgerError, match=message):
        pl.read_ledger(str(tmp_path))


class _FakeTfxArtifact:
    """The three setters of tfx.types.Artifact, writing into a real MLMD proto."""

    def __init__(self):
        self.mlmd_artifact = metadata_store_pb2.Artifact()

    def set_int_custom_property(self, key, value):
        self.mlmd_artifact.custom_properties[key].int_value = value

    def set_float_custom_property(self, key, value):
        self.mlmd_artifact.custom_properties[key].double_value = value

    def set_string_custom_property(self, key, value):
        self.mlmd_artifact.custom_properties[key].string_value = value


def test_mlmd_properties_round_trip():
    ledger = pl.PrivacyLedger.for_dp_sgd(MECHANISM, l2_norm_clip=1.0, delta=1e-3)
    artifact = _FakeTfxArtifact()
    pl.record_on_artifact(artifact, ledger, "/m/ledger.json")
    props = pl.model_properties(artifact.mlmd_artifact)
    assert props[pl.PRIVATE] == 1 and props[pl.DP_STEPS] == 122
    assert props[pl.EPSILON] == pl.mlmd_upper_bound(ledger.epsilon) and props[pl.DELTA] == 1e-3
    assert props[pl.EPSILON_RDP] == pl.mlmd_upper_bound(ledger.epsilons["rdp"])
    assert props[pl.EPSILON_PLD] == pl.mlmd_upper_bound(ledger.epsilons["pld"])
    assert props[pl.EPSILON_ACCOUNTANT] == min(ledger.epsilons, key=ledger.epsilons.get)
    assert props[pl.NOISE_MULTIPLIER] == 1.3 and props[pl.L2_NORM_CLIP] == 1.0
    assert props[pl.SAMPLING] == "poisson" and props[pl.PRIVACY_LEDGER_URI] == "/m/ledger.json"
    plain = _FakeTfxArtifact()
    pl.record_on_artifact(plain, None)
    assert pl.model_properties(plain) == {pl.PRIVATE: 0}
    assert math.isfinite(props[pl.EPSILON])
    assert props[pl.PRIVACY_UNIT] == "example"


def test_the_unit_of_privacy_is_recorded_in_the_ledger_and_in_mlmd():
    clients = DpSgdMechanism(dataset_size=50, batch_size=5, noise_multiplier=0.9, steps=3, sampling="fixed")
    budget = PrivacyBudget.for_mechanism(clients, 1e-3).compose(clients.unit_event(), 3)
    parameters = {
        "dataset_size": 50,
        "batch_size": 5,
        "noise_multiplier": 0.9,
        "steps": 3,
        "sampling": "fixed",
        "adjacency": "replace-one",
        "l2_norm_clip": 0.5,
    }
    for unit in ("user", "client"):
        ledger = pl.PrivacyLedger(
            budget=budget, mechanism=pl.DP_FEDAVG, parameters={**parameters, "privacy_unit": unit}
        )
        data = ledger.to_dict()
        assert data["privacy_unit"] == unit and pl.PrivacyLedger.from_dict(data).privacy_unit == unit
        artifact = _FakeTfxArtifact()
        pl.record_on_artifact(artifact, ledger)
        assert pl.model_properties(artifact)[pl.PRIVACY_UNIT] == unit
    grouped = MECHANISM.replace(max_examples_per_user=4)
    assert pl.PrivacyLedger.for_dp_sgd(grouped, l2_norm_clip=1.0, delta=1e-3).privacy_unit == "user"
    data = pl.PrivacyLedger(
        budget=budget, mechanism=pl.DP_FEDAVG, parameters={**parameters, "privacy_unit": "row"}
    ).to_dict()
    with pytest.raises(pl.LedgerError, match="privacy unit must be one of example, user, client, got 'row'"):
        pl.PrivacyLedger.from_dict(data)


def test_fixed_size_batches_give_the_rdp_epsilon_and_say_so():
    """Replace-one, sampled without replacement: only the RDP accountant has an analysis."""
    fixed = MECHANISM.replace(sampling="fixed", adjacency="replace-one")
    ledger = pl.PrivacyLedger.for_dp_sgd(fixed, l2_norm_clip=1.0, delta=1e-3)
    assert ledger.epsilons == {"rdp": pytest.approx(compute_epsilon(fixed, 1e-3, "rdp"), rel=1e-12), "pld": None}
    assert ledger.epsilon == ledger.epsilons["rdp"] and ledger.epsilon_accountant == "rdp"
    assert ledger.describe_epsilon() == "RDP accountant (PLD: no analysis), dp-sgd ledger, delta = 0.001"
    artifact = _FakeTfxArtifact()
    pl.record_on_artifact(artifact, pl.PrivacyLedger.from_dict(json.loads(json.dumps(ledger.to_dict()))))
    props = pl.model_properties(artifact.mlmd_artifact)
    assert props[pl.EPSILON] == props[pl.EPSILON_RDP] == pl.mlmd_upper_bound(ledger.epsilon)
    assert props[pl.EPSILON_ACCOUNTANT] == "rdp" and pl.EPSILON_PLD not in props
    assert props[pl.SAMPLING] == "fixed" and props[pl.ADJACENCY] == "replace-one"


@pytest.mark.parametrize(
    "value, stored",
    [
        (2.9997151488, 2.999716),
        (2.5927545031, 2.592755),
        (1.0, 1.0),
        (9.9999995, 10.0),
        (0.000123456789, 0.000124),
        (1e-5, 1e-5),
        (1e-7, 1e-6),
        (0.0, 0.0),
        (1234567.8912345678, 1234567.891235),
    ],
)
def test_mlmd_values_are_rounded_up_to_six_decimal_places(value, stored):
    rounded = pl.mlmd_upper_bound(value)
    assert rounded == stored and rounded >= value
    assert float(f"{rounded:.6f}") == rounded  # what MLMD's SQLite store keeps (6 decimals) is exactly this number


def test_delta_and_sigma_in_mlmd_are_rounded_to_the_conservative_side():
    """ML Metadata keeps 6 decimal places: delta is stored rounded up, the noise multiplier down."""
    mechanism = MECHANISM.replace(noise_multiplier=1.23456789)
    ledger = pl.PrivacyLedger.for_dp_sgd(mechanism, l2_norm_clip=1.0, delta=1.23456789e-7)
    props = pl.ledger_properties(ledger)
    assert props[pl.DELTA] == 1e-6 >= ledger.delta
    assert props[pl.NOISE_MULTIPLIER] == 1.234567 <= 1.23456789


def test_values_read_back_from_a_real_mlmd_store_stay_on_the_conservative_side(tmp_path):
    """A real SQLite ML Metadata store: what it returns for each rounded value is still an upper bound (delta 1e-7
    used to be stored rounded to 6 significant digits and read back as 0.0)."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(tmp_path / "mlmd.sqlite")
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    store = metadata_store.MetadataStore(config)
    type_id = store.put_artifact_type(metadata_store_pb2.ArtifactType(name="Probe"))
    values = [1e-7, 1.23456789e-7, 4.99e-7, 1.23456789e-5, 0.0123454321, 2.5934564, 2.9997151488, 1234567.8912345]
    artifact = metadata_store_pb2.Artifact(type_id=type_id)
    for i, value in enumerate(values):
        artifact.custom_properties[f"up{i}"].double_value = pl.mlmd_upper_bound(value)
        artifact.custom_properties[f"down{i}"].double_value = -pl.mlmd_upper_bound(-value)
    [artifact_id] = store.put_artifacts([artifact])
    [read] = store.get_artifacts_by_id([artifact_id])
    for i, value in enumerate(values):
        up, down = read.custom_properties[f"up{i}"].double_value, read.custom_properties[f"down{i}"].double_value
        assert value <= up <= value + 1e-6 and value - 1e-6 <= down <= value
        assert up == pl.mlmd_upper_bound(value)  # the store keeps exactly what was rounded


def preprocessing_account(with_vocabulary: bool = False, adjacency: str = "add-remove") -> PreprocessingAccount:
    """Three mean-and-variance releases of a preprocessing budget (epsilon 1 at 1e-3), and optionally a vocabulary."""
    budget = PreprocessingBudget(1.0, 1e-3, adjacency)
    records = [
        MechanismRecord(
            name=f"f{i}/mean_and_var",
            analyzer="mean_and_var",
            mechanism="gaussian-sums",
            adjacency=adjacency,
            components=MeanVariance((-6, 6), budget.noise_multiplier_for(0.25), adjacency).components,
            parameters={"bounds": [-6, 6]},
            noise="CSPRNG-keyed Philox (os.urandom)",
            share=0.25,
        )
        for i in range(3)
    ]
    if with_vocabulary:
        vocabulary = GaussianThresholding(budget.noise_multiplier_for(0.25), 1e-5, 2)
        records.append(
            MechanismRecord(
                name="city/vocabulary",
                analyzer="vocabulary",
                mechanism="gaussian-thresholding",
                adjacency=adjacency,
                components=vocabulary.components,
                parameters=vocabulary.parameters(),
                noise="CSPRNG-keyed Philox (os.urandom)",
                share=0.25,
            )
        )
    coverage = CoverageRecord(analyzer_outputs=3 * len(records), private=tuple(r.name for r in records))
    return PreprocessingAccount.from_texts([to_text(r) for r in records] + [to_text(coverage)])


def _listed_events(ledger_json: dict) -> list:
    """The events the ledger lists, rebuilt here from each record's sensitivities and noise, then the training's."""
    part = ledger_json["preprocessing"]
    events = []
    for record in part["account"]["mechanisms"]:
        multiplier = 1 / math.sqrt(
            sum((c["sensitivity"] / c["noise_std"]) ** 2 for c in record["components"] if c["sensitivity"])
        )
        events.append(dp_event.GaussianDpEvent(multiplier / part["group_size"]))
    return events


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
def test_the_composed_epsilon_is_dp_accountings_over_every_listed_event(accountant):
    part = PreprocessingPart(preprocessing_account(with_vocabulary=True), "add-remove")
    ledger = pl.PrivacyLedger.for_dp_sgd(MECHANISM, l2_norm_clip=1.0, delta=1e-3, preprocessing=part)
    data = json.loads(json.dumps(ledger.to_dict()))
    prior = _listed_events(data)
    assert len(prior) == 4
    # The vocabulary's thresholding adds its bound on releasing a token one record holds to the delta.
    vocabulary = next(m for m in data["preprocessing"]["account"]["mechanisms"] if m["analyzer"] == "vocabulary")
    p = vocabulary["parameters"]
    # Released counts are snapped to the grid g of the noise std: a count passes from threshold - g / 2.
    effective = p["threshold"] - 2.0 ** (math.floor(math.log2(p["noise_std"])) - 10) / 2
    additive = 2 * stats.norm.sf((effective - 1) / p["noise_std"])
    assert data["composition"]["additive_delta"] == pytest.approx(additive, rel=1e-9)
    assert 1e-5 * (1 - 5e-3) < additive <= 1e-5  # threshold_delta, less what the grid-point threshold costs
    assert data["delta"] == pytest.approx(1e-3)
    assert data["composition"]["accountant_delta"] == pytest.approx(1e-3 - additive)
    make = {
        "rdp": dp_accounting.rdp.RdpAccountant,
        "pld": lambda: dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-4),
    }[accountant]
    training = dp_event.SelfComposedDpEvent(MECHANISM.unit_event(), MECHANISM.steps)
    accountant_delta = 1e-3 - additive
    composed = make().compose(dp_event.ComposedDpEvent(prior + [training])).get_epsilon(accountant_delta)
    # The ledger composes equal events as one run (count 3); PLD discretises the two orders slightly differently.
    rel = 1e-9 if accountant == "rdp" else 1e-6
    assert data["epsilon"][accountant] == pytest.approx(composed, rel=rel)
    assert pl.PrivacyLedger.from_dict(data).epsilons[accountant] == pytest.approx(composed, rel=rel)
    parts = data["composition"]["parts"]
    assert parts["preprocessing"][accountant] == pytest.approx(
        make().compose(dp_event.ComposedDpEvent(prior)).get_epsilon(accountant_delta), rel=rel
    )
    assert parts["training"][accountant] == pytest.approx(
        make().compose(training).get_epsilon(accountant_delta), rel=rel
    )
    assert parts["training"][accountant] < composed < parts["training"][accountant] + parts["preprocessing"][accountant]


def test_a_ledger_cannot_hide_or_change_a_preprocessing_release():
    part = PreprocessingPart(preprocessing_account(), "add-remove")
    ledger = pl.PrivacyLedger.for_dp_sgd(MECHANISM, l2_norm_clip=1.0, delta=1e-3, preprocessing=part)
    dropped = ledger.to_dict()
    dropped["preprocessing"]["account"]["mechanisms"].pop()  # hide a release whose event is in the budget
    with pytest.raises(pl.LedgerError, match="does not account the run"):
        pl.PrivacyLedger.from_dict(dropped)
    noisier = ledger.to_dict()
    noisier["preprocessing"]["account"]["mechanisms"][0]["components"][1]["noise_std"] *= 10  # claim more noise
    with pytest.raises(pl.LedgerError, match="does not account the run"):
        pl.PrivacyLedger.from_dict(noisier)
    mismatched = PreprocessingPart(preprocessing_account(adjacency="replace-one"), "replace-one")
    with pytest.raises(pl.LedgerError, match="one guarantee needs one relation"):
        pl.PrivacyLedger.for_dp_sgd(MECHANISM, l2_norm_clip=1.0, delta=1e-3, preprocessing=mismatched)


def test_mlmd_holds_the_whole_artifacts_epsilon_and_each_part_alone():
    part = PreprocessingPart(preprocessing_account(), "add-remove")
    ledger = pl.PrivacyLedger.for_dp_sgd(MECHANISM, l2_norm_clip=1.0, delta=1e-3, preprocessing=part)
    props = pl.ledger_properties(ledger)
    assert props[pl.EPSILON] == pl.mlmd_upper_bound(ledger.epsilon)
    assert props[pl.EPSILON_PREPROCESSING] == pl.mlmd_upper_bound(min(ledger.parts["preprocessing"].values()))
    assert props[pl.EPSILON_TRAINING] == pl.mlmd_upper_bound(min(ledger.parts["training"].values()))
    assert props[pl.EPSILON_TRAINING] < props[pl.EPSILON]
    assert "preprocessing and training composed" in ledger.describe_epsilon()


def test_exact_preprocessing_makes_the_artifacts_epsilon_infinite():
    exact = MechanismRecord(
        name="x/mean_and_var",
        analyzer="mean_and_var",
        mechanism="exact",
        adjacency="add-remove",
        components=(),
        parameters={},
        noise="none (exact statistics)",
    )
    part = PreprocessingPart(PreprocessingAccount(mechanisms=(exact,)), "add-remove")
    ledger = pl.PrivacyLedger.for_dp_sgd(MECHANISM, l2_norm_clip=1.0, delta=1e-3, preprocessing=part)
    assert ledger.epsilons == {"rdp": math.inf, "pld": math.inf}
    assert pl.EPSILON not in pl.ledger_properties(ledger)  # MLMD keeps no infinite epsilon
    assert json.loads(json.dumps(ledger.to_dict(), allow_nan=False))["epsilon"] == {"rdp": None, "pld": None}


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
def test_the_push_decision_is_reserved_and_composed_between_preprocessing_and_training(accountant):
    """The DP Trainer's plan reserves the noisy accuracy of decision_epsilon: sigma is calibrated so that the
    preprocessing, the decision and the training together meet the target; the ledger's epsilon is dp-accounting's
    over the listed events, recomputed here, and a ledger cannot claim more decision noise than it composed."""
    from pipelines.components.dp_trainer.spec import DpTrainingConfig
    from privacy.decision import NoisyAccuracy

    config = DpTrainingConfig.from_custom_config(
        {"batch_size": 32, "epochs": 5, "target_epsilon": 3.0, "decision_epsilon": 0.3, "accountant": accountant}
    )
    account = preprocessing_account()
    plan = config.plan(dataset_size=389, preprocessing=account)
    assert plan.decision == NoisyAccuracy.calibrate(0.3, plan.delta)
    without = DpTrainingConfig.from_custom_config(
        {"batch_size": 32, "epochs": 5, "target_epsilon": 3.0, "accountant": accountant}
    ).plan(dataset_size=389, preprocessing=account)
    assert plan.noise_multiplier > without.noise_multiplier  # the reservation costs the training some noise
    data = json.loads(json.dumps(plan.ledger().to_dict()))
    assert data["decision"]["std"] == plan.decision.std and data["decision"]["group_size"] == 1
    decision = dp_event.GaussianDpEvent(data["decision"]["std"] / math.sqrt(2))
    training = dp_event.SelfComposedDpEvent(plan.mechanism.unit_event(), plan.steps)
    make = {
        "rdp": dp_accounting.rdp.RdpAccountant,
        "pld": lambda: dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-4),
    }[accountant]
    composed = (
        make().compose(dp_event.ComposedDpEvent(_listed_events(data) + [decision, training])).get_epsilon(plan.delta)
    )
    rel = 1e-9 if accountant == "rdp" else 1e-6
    assert data["epsilon"][accountant] == pytest.approx(composed, rel=rel)
    assert composed <= 3.0 * (1 + 1e-3)
    assert data["composition"]["parts"]["decision"][accountant] == pytest.approx(
        make().compose(decision).get_epsilon(plan.delta), rel=rel
    )
    noisier = json.loads(json.dumps(data))
    noisier["decision"]["std"] *= 10
    with pytest.raises(pl.LedgerError, match="does not account the run"):
        pl.PrivacyLedger.from_dict(noisier)
    hidden = json.loads(json.dumps(data))
    del hidden["decision"]
    with pytest.raises(pl.LedgerError, match="does not account the run"):
        pl.PrivacyLedger.from_dict(hidden)


def test_a_ledger_written_before_the_cutoff_was_accounted_lists_it_outside_the_guarantee():
    """A DP-SGD ledger without parameters['noise_cutoff'] or a 'noise cut-off' entry (written before the cut-off was
    accounted) reads back with the cut-off listed outside the guarantee, not as a full (epsilon, delta)."""
    data = pl.PrivacyLedger.for_dp_sgd(MECHANISM, l2_norm_clip=1.5, delta=1e-3).to_dict()
    data["parameters"]["outside_guarantee"].pop("noise cut-off")
    data["parameters"].pop("outside_guarantee")
    old = pl.PrivacyLedger.from_dict(data)
    size = pl.public_dataset_size(
        MECHANISM.dataset_size, adjacency=MECHANISM.adjacency
    )  # listed, as the validation decisions, on read as well
    unknown_dtype = pl.float_sum("float32", told=False)
    listed = {**size, **unknown_dtype, **pl.FLOATING_POINT_NOISE, **pl.UNKNOWN_VALIDATION_DECISIONS}
    listed.update({**pl.padding_left_out(None), **pl.UNKNOWN_NOISE_CUTOFF})
    assert old.delta == 1e-3 and old.parameters["outside_guarantee"] == listed


def test_a_dp_sgd_ledger_that_does_not_record_its_validation_decisions_reads_back_with_them_unknown():
    """A DP-SGD ledger records which callbacks acted on validation metrics (parameters['validation_decisions']): one
    without it (written before they were reported, or by a caller that did not give them) reads back with them
    listed as unknown, and with n listed as public, never as 'none'; one that reports none lists nothing of the
    kind, and a malformed record is refused."""
    name = pl.VALIDATION_DECISIONS_NAME
    data = pl.PrivacyLedger.for_dp_sgd(
        MECHANISM, l2_norm_clip=1.5, delta=1e-3, noise_draws=NoiseDraws(9.42, 100), uncovered_padding=False
    )
    data = data.to_dict()
    data["parameters"].pop("validation_decisions", None)  # as an older ledger file
    for old_absent in (name, pl.PUBLIC_DATASET_SIZE_NAME):
        data["parameters"]["outside_guarantee"].pop(old_absent, None)
    old = pl.PrivacyLedger.from_dict(json.loads(json.dumps(data))).parameters["outside_guarantee"]
    size = pl.public_dataset_size(MECHANISM.dataset_size, adjacency=MECHANISM.adjacency)
    assert old == {**size, **pl.float_sum("float32"), **pl.FLOATING_POINT_NOISE, **pl.UNKNOWN_VALIDATION_DECISIONS}
    assert "or a ledger file written before ppml recorded them" in old[name]  # what it names as the cause
    none = pl.PrivacyLedger.for_dp_sgd(
        MECHANISM, l2_norm_clip=1.5, delta=1e-3, noise_draws=NoiseDraws(9.42, 100), validation_decisions=[]
    ).to_dict()
    assert none["parameters"]["validation_decisions"] == []
    assert name not in pl.PrivacyLedger.from_dict(none).parameters["outside_guarantee"]
    decided = pl.PrivacyLedger.for_dp_sgd(
        MECHANISM, l2_norm_clip=1.5, delta=1e-3, validation_decisions=["EarlyStopping(monitor='val_loss')"]
    ).to_dict()
    decided["parameters"]["outside_guarantee"].pop(name)  # an edited file: the record still lists it
    again = pl.PrivacyLedger.from_dict(decided).parameters["outside_guarantee"]
    assert again[name] == pl.validation_decided(["EarlyStopping(monitor='val_loss')"])[name]
    none["parameters"]["validation_decisions"] = "EarlyStopping"
    with pytest.raises(pl.LedgerError, match="validation_decisions"):
        pl.PrivacyLedger.from_dict(none)
    with pytest.raises(pl.LedgerError, match="validation_decisions must be a list"):  # not its letters, listed
        pl.PrivacyLedger.for_dp_sgd(MECHANISM, l2_norm_clip=1.5, delta=1e-3, validation_decisions="EarlyStopping")
    for malformed in (["x"], "x", {"x": 1}):  # a LedgerError naming it, never a traceback
        none["parameters"].update(validation_decisions=[], outside_guarantee=malformed)
        with pytest.raises(pl.LedgerError, match="outside_guarantee must map names to reasons"):
            pl.PrivacyLedger.from_dict(none)


def test_a_ledger_written_with_the_cutoff_as_a_plain_dict_reads_back_the_same():
    """Ledgers already written hold parameters['noise_cutoff'] = {"radius": R, "pairs": P} (JSON numbers): they read
    back with the cut-off's delta recomputed from those draws, and a ledger written now stores the same dict."""
    written = {"radius": 9.420721365679129, "pairs": 100}  # as json.loads reads an older ledger's
    data = pl.PrivacyLedger.for_dp_sgd(MECHANISM, l2_norm_clip=1.5, delta=1e-3).to_dict()
    data["parameters"]["outside_guarantee"].pop("noise cut-off")
    data["parameters"]["noise_cutoff"] = written
    old = pl.PrivacyLedger.from_dict(json.loads(json.dumps(data)))
    draws = NoiseDraws(radius=written["radius"], pairs=100)
    expected = NoiseCutoff.for_mechanism(MECHANISM, draws).added_delta(1e-3, old.epsilon)
    assert old.cutoff_delta == expected > 0 and old.delta == 1e-3 + expected
    new = pl.PrivacyLedger.for_dp_sgd(MECHANISM, l2_norm_clip=1.5, delta=1e-3, noise_draws=draws)
    assert new.to_dict()["parameters"]["noise_cutoff"] == written and new.delta == old.delta


@pytest.mark.parametrize(
    "stored, message",
    [
        ({"radius": "9.42", "pairs": 100}, "radius must be in"),
        ({"radius": 1e9, "pairs": 100}, r"radius must be in \(1, 12\.00727336061225\]"),  # no ppml sampler cuts there
        ({"radius": 9.42, "pairs": 0}, "pairs must be an integer >= 1"),
        ({"radius": 9.42}, "'pairs'"),
    ],
)
def test_a_malformed_noise_cutoff_is_refused_on_read(stored, message):
    """The cut-off is recomputed when a ledger is read, so a malformed one (or a radius beyond every ppml sampler's,
    which would credit noise no sampler drew) is a one-line LedgerError there, not later or a traceback."""
    data = pl.PrivacyLedger.for_dp_sgd(
        MECHANISM, l2_norm_clip=1.5, delta=1e-3, noise_draws=NoiseDraws(9.42, 100)
    ).to_dict()
    data["parameters"]["noise_cutoff"] = stored
    with pytest.raises(pl.LedgerError, match=f"noise cut-off: .*{message}"):
        pl.PrivacyLedger.from_dict(data)


def test_every_dp_sgd_ledger_lists_n_as_public_outside_the_guarantee():
    """n is in the ledger and sets q = B/n: the ledger file itself says epsilon does not cover it (its value named),
    whatever else the trainer lists."""
    for listed in (None, {"x": "why"}):
        ledger = pl.PrivacyLedger.for_dp_sgd(
            MECHANISM, l2_norm_clip=1.5, delta=1e-3, outside_guarantee=listed, noise_draws=NoiseDraws(9.42, 100)
        )
        why = ledger.to_dict()["parameters"]["outside_guarantee"][pl.PUBLIC_DATASET_SIZE_NAME]
        assert why.startswith(f"n = {MECHANISM.dataset_size} training examples is treated as public")
        assert "epsilon does not cover it" in why


def test_the_public_size_entry_names_the_ledgers_own_adjacency_and_an_old_wording_is_recomputed():
    """Add-remove neighbours differ in n, replace-one neighbours share it: each ledger's size entry says which, and a
    replace-one file written with the add-remove wording reads back with its own."""
    name = pl.PUBLIC_DATASET_SIZE_NAME
    draws = NoiseDraws(9.42, 100)
    add_remove = pl.PrivacyLedger.for_dp_sgd(MECHANISM, l2_norm_clip=1.0, delta=1e-3, noise_draws=draws)
    fixed = MECHANISM.replace(sampling="fixed", adjacency="replace-one")
    replace_one = pl.PrivacyLedger.for_dp_sgd(fixed, l2_norm_clip=1.0, delta=1e-3, noise_draws=draws)
    texts = {
        kind: ledger.parameters["outside_guarantee"][name]
        for kind, ledger in (("add-remove", add_remove), ("replace-one", replace_one))
    }
    assert texts["add-remove"].endswith("(add-remove neighbours differ in it)")
    assert texts["replace-one"].endswith("(replace-one neighbours share it: the guarantee takes it as known)")
    assert all(text.startswith("n = 389 training examples is treated as public") for text in texts.values())
    old = replace_one.to_dict()
    old["parameters"]["outside_guarantee"][name] = texts["add-remove"]  # the wording before the relation was named
    again = pl.PrivacyLedger.from_dict(json.loads(json.dumps(old))).parameters["outside_guarantee"]
    assert again[name] == texts["replace-one"] and list(again)[0] == name
    assert pl.PrivacyLedger.from_dict(add_remove.to_dict()).parameters["outside_guarantee"][name] == texts["add-remove"]


def test_floating_point_caveats_are_listed_with_the_float_sum_in_the_steps_dtype():
    """Every DP-SGD ledger lists the floating-point noise (Mironov 2012) outside the guarantee and the rounding of the
    sum across clipping units, which nothing bounds in either dtype: in float64 where the noise draws (cut at
    float64's radius) show a float64 step (of order 2^-53 T U^2 C, beyond the 2^-10 slack once T U^2 exceeds 2^43),
    else in float32, said to be assumed where the ledger cannot tell; a ledger file written before they were listed
    reads back with them."""
    from fractions import Fraction

    from privacy.accounting import SLACK, SLACK_TEXT
    from privacy.accounting.noise_cutoff import sampler_radius

    def outside(draws):
        return pl.PrivacyLedger.for_dp_sgd(
            MECHANISM, l2_norm_clip=1.0, delta=1e-3, noise_draws=draws, validation_decisions=[]
        ).to_dict()

    f32, f64 = outside(NoiseDraws(sampler_radius("float32"), 100)), outside(NoiseDraws(sampler_radius("float64"), 100))
    unknown = outside(None)
    noise = pl.FLOATING_POINT_NOISE
    listed = {
        name: data["parameters"]["outside_guarantee"] for name, data in (("32", f32), ("64", f64), ("?", unknown))
    }
    assert listed["32"].items() >= {**noise, **pl.float_sum("float32")}.items()
    assert listed["64"].items() >= noise.items() and pl.FLOAT_SUM_NAME in listed["64"]
    float64 = listed["64"][pl.FLOAT_SUM_NAME]
    assert float64.startswith("the step sums the clipping units' clipped gradients in float64, each addition")
    assert "2^-53 T U^2 C" in float64 and "once T U^2 exceeds 2^43)" in float64 and "measured" not in float64
    assert float(Fraction(2) ** -53 * 2**43) == float(SLACK)  # the stated threshold: where 2^-53 T U^2 reaches SLACK
    assert listed["?"][pl.FLOAT_SUM_NAME].startswith("the step sums the clipping units' clipped gradients in float32 (")
    assert "this ledger records no noise draws to tell" in listed["?"][pl.FLOAT_SUM_NAME]
    text = listed["32"][pl.FLOAT_SUM_NAME]
    assert f"C (1 + {SLACK_TEXT})" in text and "2^-24 T U^2 C" in text and "C (1 + 1.1e-5)" in text
    assert "once T U^2 exceeds 2^14;" in text and float(Fraction(2) ** -24 * 2**14) == float(SLACK)
    assert "Mironov 2012" in noise["floating-point noise"] and "not hardened" in noise["floating-point noise"]
    for data, expected in ((f32, listed["32"]), (f64, listed["64"]), (unknown, listed["?"])):
        old = json.loads(json.dumps(data))
        for name in (pl.FLOAT_SUM_NAME, "floating-point noise"):
            old["parameters"]["outside_guarantee"].pop(name, None)  # a file written before they were listed
        again = pl.PrivacyLedger.from_dict(old).parameters["outside_guarantee"]
        assert again == expected


def test_callbacks_that_wrote_validation_metrics_to_disk_are_listed_with_the_files_as_uncovered():
    """The names `privacy.keras.monitoring.validation_decisions` gives a writer (TensorBoard, CSVLogger, a checkpoint
    with val_loss in its file names) are listed with the files they wrote as not covered, beside a decision."""
    names = [
        "CSVLogger (writes validation metrics to disk)",
        "ModelCheckpoint (writes validation metrics to disk: val_loss in its file names)",
        "EarlyStopping(monitor='val_loss')",
    ]
    ledger = pl.PrivacyLedger.for_dp_sgd(
        MECHANISM, l2_norm_clip=1.0, delta=1e-3, noise_draws=NoiseDraws(9.42, 100), validation_decisions=names
    )
    reason = pl.PrivacyLedger.from_dict(ledger.to_dict()).parameters["outside_guarantee"][pl.VALIDATION_DECISIONS_NAME]
    assert f"({', '.join(names)}; each name says which)" in reason
    assert "or wrote, or may have written, them out" in reason and "or what was written, depend" in reason
    assert reason.endswith("exact statistics of held-out records, which epsilon does not cover")


def test_every_dp_fedavg_ledger_lists_its_floating_point_noise_also_on_read_of_an_older_file():
    """DP-FedAvg's server draws its Gaussian noise in floating point as DP-SGD does (float64 Box-Muller on Philox
    words; numpy's under seeded noise), not hardened (Mironov 2012): its ledger lists that, a file written before it
    was listed reads back with it, and the entry names the server's sampler, not DP-SGD's."""
    # a file written before the floating-point noise was listed
    old = _dp_fedavg_ledger(outside_guarantee=dict(pl.SEPARATE_RUNS))
    outside = pl.PrivacyLedger.from_dict(json.loads(json.dumps(old.to_dict()))).parameters["outside_guarantee"]
    [why] = [why for name, why in outside.items() if name == "floating-point noise"]
    assert why == pl.FEDAVG_FLOATING_POINT_NOISE["floating-point noise"] and "Mironov 2012" in why
    assert "float64 Box-Muller" in why and "numpy's generator under seeded noise" in why and "not hardened" in why
    assert pl.FLOAT_SUM_NAME not in outside  # its clipped updates sum exactly (README): not a DP-FedAvg entry


def test_a_ledger_file_whose_validation_decisions_predate_the_writers_lists_them_as_unknown():
    """Before ppml named the callbacks that write validation metrics to disk, a run with TensorBoard on validation data
    recorded validation_decisions []: such a file (no validation_writers_recorded) reads back listing the writers as
    unknown, beside its own names; a ledger written now records that it names them and lists nothing more."""
    now = pl.PrivacyLedger.for_dp_sgd(
        MECHANISM, l2_norm_clip=1.0, delta=1e-3, noise_draws=NoiseDraws(9.42, 100), validation_decisions=[]
    ).to_dict()
    assert now["parameters"][pl.VALIDATION_WRITERS] is True
    again = pl.PrivacyLedger.from_dict(json.loads(json.dumps(now))).parameters["outside_guarantee"]
    assert not any("validation" in name for name in again)
    for names in ([], ["EarlyStopping(monitor='val_loss')"]):
        old = json.loads(json.dumps(now))
        del old["parameters"][pl.VALIDATION_WRITERS]
        old["parameters"][pl.VALIDATION_DECISIONS] = names
        outside = pl.PrivacyLedger.from_dict(old).parameters["outside_guarantee"]
        assert outside.items() >= pl.UNKNOWN_VALIDATION_WRITERS.items()
        assert (pl.VALIDATION_DECISIONS_NAME in outside) == bool(names)
        assert "TensorBoard, CSVLogger" in outside["validation metrics written to disk"]
    unreported = json.loads(json.dumps(now))
    del unreported["parameters"][pl.VALIDATION_WRITERS]
    unreported["parameters"][pl.VALIDATION_DECISIONS] = None  # unknown already, writers included
    outside = pl.PrivacyLedger.from_dict(unreported).parameters["outside_guarantee"]
    assert "validation metrics written to disk" not in outside
    assert "or wrote them out" in outside[pl.VALIDATION_DECISIONS_NAME]


NOISY = DpSgdMechanism(
    dataset_size=389, batch_size=32, noise_multiplier=1.3, steps=122, batch_size_noise_multiplier=4.0
)


def test_a_noisy_padding_ledger_adds_every_part_of_the_reports_delta():
    """Noisy padding's ledger: epsilon is dp-accounting's for the joint Gaussian (m / sigma_c, sum / (sigma C')) per
    Poisson step, and its delta the accountant's plus the noise cut-off's plus the clamp's T p (1 + e^eps), as the
    training's report has them (one source); the row count is described as covered, and reads back the same."""
    draws = NoiseDraws(9.42, 100)
    ledger = pl.PrivacyLedger.for_dp_sgd(
        NOISY, l2_norm_clip=1.0, delta=1e-3, noise_draws=draws, validation_decisions=[], uncovered_padding=False
    )
    joint = (1.3**-2 + 4.0**-2) ** -0.5
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(32 / 389, dp_accounting.GaussianDpEvent(joint)), 122
    )
    rdp = dp_accounting.rdp.RdpAccountant().compose(event).get_epsilon(1e-3)
    pld = dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-4).compose(event).get_epsilon(1e-3)
    assert ledger.epsilons == {"rdp": pytest.approx(rdp, rel=1e-12), "pld": pytest.approx(pld, rel=1e-9)}
    clamp = 122 * 2.0**-50 * (1 + 2.0**-40) * (1 + math.exp(ledger.epsilon))
    cutoff = NoiseCutoff(radius=9.42, pairs=100, steps=122, unit_shift=1 / joint, moves=32 / 389)
    assert ledger.clamp_delta == pytest.approx(clamp, rel=1e-12) and clamp > 0
    assert ledger.cutoff_delta == pytest.approx(cutoff.added_delta(1e-3, ledger.epsilon), rel=1e-12)
    assert ledger.delta == pytest.approx(1e-3 + clamp + ledger.cutoff_delta, rel=1e-15)
    report = dp_sgd_report(NOISY, delta=1e-3, noise_draws=draws)
    assert (ledger.epsilon, ledger.delta) == (report.guarantee_epsilon, report.guarantee_delta)
    data = json.loads(json.dumps(ledger.to_dict()))
    assert data["delta"] == report.guarantee_delta and data["report"]["guarantee_delta"] == report.guarantee_delta
    again = pl.PrivacyLedger.from_dict(data)
    assert (again.epsilon, again.delta, again.clamp_delta) == (ledger.epsilon, ledger.delta, ledger.clamp_delta)
    assert pl.UNCOVERED_PADDING_NAME not in again.parameters["outside_guarantee"]
    (covered,) = [note for note in data["report"]["notes"] if note.startswith("noisy padding:")]
    assert "the row count is covered by epsilon" in covered and f"{joint:.4g}" in covered
    with pytest.raises(pl.LedgerError, match=r"noisy padding's clamp adds delta .* more than 0.01 of delta 1e-14"):
        pl.PrivacyLedger.for_dp_sgd(NOISY, l2_norm_clip=1.0, delta=1e-14)
    data["parameters"]["batch_size_noise_multiplier"] = None  # an edited file hiding it: its events tell
    with pytest.raises(pl.LedgerError):
        pl.PrivacyLedger.from_dict(data)


def test_a_ledger_lists_steps_whose_durations_follow_the_batch_sizes_drawn():
    """Steps that left their padding out without noisy padding (skip_padding) are listed outside the guarantee with
    the training report's reason; a run that did not say lists it as unknown, and so does a ledger file written
    before ppml recorded it (which otherwise reads back as before); a malformed record is refused."""

    def outside(**given):
        return pl.PrivacyLedger.for_dp_sgd(MECHANISM, l2_norm_clip=1.0, delta=1e-3, **given).parameters[
            "outside_guarantee"
        ]

    assert outside(uncovered_padding=True)[pl.UNCOVERED_PADDING_NAME] == noisy_padding.UNCOVERED_PADDING
    assert pl.UNCOVERED_PADDING_NAME not in outside(uncovered_padding=False)
    assert outside()[pl.UNCOVERED_PADDING_NAME].startswith("unknown: the run did not report")
    draws = NoiseDraws(9.42, 100)
    written = pl.PrivacyLedger.for_dp_sgd(
        MECHANISM, l2_norm_clip=1.0, delta=1e-3, noise_draws=draws, uncovered_padding=False
    )
    data = written.to_dict()
    del data["parameters"]["uncovered_padding"]  # as a file written before it was recorded
    old = pl.PrivacyLedger.from_dict(json.loads(json.dumps(data)))
    assert (
        old.parameters["outside_guarantee"][pl.UNCOVERED_PADDING_NAME]
        == pl.padding_left_out(None)[pl.UNCOVERED_PADDING_NAME]
    )
    assert old.delta == 1e-3 + old.cutoff_delta and old.clamp_delta == 0.0
    assert old.epsilons == written.epsilons and old.delta == written.delta
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(32 / 389, dp_accounting.GaussianDpEvent(1.3)), 122
    )
    assert old.epsilons["rdp"] == pytest.approx(dp_accounting.rdp.RdpAccountant().compose(event).get_epsilon(1e-3))
    for malformed in ("yes", 1):
        data["parameters"]["uncovered_padding"] = malformed
        with pytest.raises(pl.LedgerError, match="uncovered_padding must be true, false or null"):
            pl.PrivacyLedger.from_dict(data)
        with pytest.raises(pl.LedgerError, match="uncovered_padding must be true, false or null"):
            outside(uncovered_padding=malformed)


def test_an_older_ledgers_unknown_writers_entry_names_the_callbacks_fit_names_as_writers(tmp_path):
    """One list: the callbacks private fit names as writing validation metrics to disk are those the entry of a
    ledger file written before they were recorded names (`privacy.validation_metrics.WRITERS`)."""
    from privacy.keras import compat, monitoring

    keras = compat.default_keras()
    callbacks = [keras.callbacks.TensorBoard(log_dir=str(tmp_path)), keras.callbacks.CSVLogger(str(tmp_path / "c"))]
    named = monitoring.validation_decisions(callbacks, validation=True)
    writers = [name.split(" ")[0] for name in named if monitoring.WRITES in name]
    assert writers == ["TensorBoard", "CSVLogger"]
    (reason,) = pl.UNKNOWN_VALIDATION_WRITERS.values()
    assert f"to disk ({', '.join(writers)}, a ModelCheckpoint" in reason
