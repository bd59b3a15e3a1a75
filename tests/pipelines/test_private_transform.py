"""The private analyzers inside tf.Transform, run on the bundled breast-cancer data with the bundled
pipeline's preprocessing_fn: neighbouring data sets with the noise fixed, the noise against the recorded
standard deviations, refusals of non-private analyzers and of bad settings, vocabularies."""

import csv
import dataclasses
import functools
import json
import math
import os

import numpy as np
import pytest
from scipy import stats

os.environ.setdefault("TF_USE_LEGACY_KERAS", "0")
import apache_beam as beam
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam

from pipelines.components.dp_trainer.spec import DpTrainingConfig, InvalidPrivacySetting
from pipelines.components.private_evaluator import coverage
from pipelines.datasets import breast_cancer
from pipelines.trainers import breast_cancer as module
from pipelines.transform import artifact
from pipelines.transform.analyzers import private_preprocessing_fn
from pipelines.transform.spec import PreprocessingConfig
from privacy.preprocessing import MeanVariance, PreprocessingAccount, PreprocessingPart, noise, noise_multiplier_of

EPSILON = 1.5


def _config(seed: int | None = 0, **changes) -> dict:
    return PreprocessingConfig(epsilon=EPSILON, delta=1e-3, noise_seed=seed, **changes).to_custom_config()


def _rows(tmp_path_factory) -> list[dict]:
    path = breast_cancer.write_csv(tmp_path_factory.mktemp("data"))
    with open(path) as f:
        return [
            {k: (int(v) if k == breast_cancer.LABEL_KEY else float(v)) for k, v in row.items()}
            for row in csv.DictReader(f)
        ][:385]


def _dtype(value):
    return tf.int64 if isinstance(value, int) else tf.string if isinstance(value, str) else tf.float32


def _spec(rows) -> dict:
    return {k: tf.io.FixedLenFeature([], _dtype(v)) for k, v in rows[0].items()}


def _trace(preprocessing_fn, rows, custom_config):
    """Traces the function as tf.Transform does before any analysis (no Beam), with the rows' types."""
    specs = {k: tf.TensorSpec([None], _dtype(v)) for k, v in rows[0].items()}
    return tft.get_analyze_input_columns(functools.partial(preprocessing_fn, custom_config=custom_config), specs)


def _analyze(
    tmp_path_factory, rows, custom_config, preprocessing_fn=module.preprocessing_fn, tf1=False, spec=None
) -> str:
    """tf.Transform's analysis of ``rows`` (a tf.compat.v1 graph with ``tf1``; ``spec``: the feature spec, by
    default scalars of the first row's types); returns the transform graph's folder."""
    out = str(tmp_path_factory.mktemp("transform"))
    metadata = tft.DatasetMetadata.from_feature_spec(spec or _spec(rows))
    with tft_beam.Context(temp_dir=str(tmp_path_factory.mktemp("tmp")), force_tf_compat_v1=tf1):
        with beam.Pipeline(runner="FnApiRunner") as pipeline:  # as `pipelines.runners.LOCAL_BEAM_ARGS` names it
            transform_fn = (pipeline | beam.Create(rows, reshuffle=False), metadata) | tft_beam.AnalyzeDataset(
                functools.partial(preprocessing_fn, custom_config=custom_config)
            )
            _ = transform_fn | tft_beam.WriteTransformFn(out)
    return out


def _account(out) -> PreprocessingAccount:
    return artifact.transform_graph_account(out)


def _centred_sums(rows) -> dict[str, np.ndarray]:
    """[count, sum, sum of squares] of each feature's clipped, centred log10 value, computed here from the rows."""
    lo, hi = module.LOG10_BOUNDS
    out = {}
    for key in module.FEATURE_KEYS:
        x = np.array([r[key] for r in rows], dtype=np.float64)
        logs = np.log10(np.maximum(np.nan_to_num(x, nan=np.inf), module.LOG10_FLOOR))
        logs = np.where(np.isnan(x), (lo + hi) / 2, logs)
        c = np.clip(logs, lo, hi) - (lo + hi) / 2
        out[f"{key}/mean_and_var"] = np.array([len(rows), c.sum(), np.square(c).sum()])
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return _rows(tmp_path_factory)


@pytest.fixture(scope="module")
def base(tmp_path_factory, data):
    return _analyze(tmp_path_factory, data, _config(seed=0))


def test_neighbouring_data_sets_move_the_releases_by_at_most_the_stated_sensitivity(tmp_path_factory, data, base):
    """D, D minus its first record, D plus an adversarial record: with the noise fixed (same seed, same
    stream), each feature's noisy sums differ by the record's own clipped contribution, at most the
    sensitivity its mechanism record states."""
    adversarial = dict(data[0])
    adversarial.update(
        {key: value for key, value in zip(module.FEATURE_KEYS[:4], [1e30, float("nan"), 0.0, -7.0], strict=True)}
    )
    account = _account(base)
    released = account.releases
    assert len(released) == len(module.FEATURE_KEYS) == len(account.mechanisms)
    for neighbour in (data[1:], data + [adversarial]):
        other = _account(_analyze(tmp_path_factory, neighbour, _config(seed=0))).releases
        exact_change = {k: _centred_sums(neighbour)[k] - v for k, v in _centred_sums(data).items()}
        for record in account.mechanisms:
            change = np.array(other[record.name]) - np.array(released[record.name])
            sensitivity = np.array([c.sensitivity for c in record.components])
            step = noise.grid([c.noise_std for c in record.components])  # each release is snapped to its grid
            assert np.all(np.abs(change) <= sensitivity + step + 1e-6), (record.name, change, sensitivity)
            assert np.all(np.abs(change - exact_change[record.name]) <= step + 1e-4)  # log10 in float32
    # The adversarial record reaches the bound on the features it pushes to the clipping range's ends.
    assert sensitivity[1] == 6.0 and sensitivity[2] == 36.0


@private_preprocessing_fn
def _quantile_analyzers(inputs, analyzers):
    return {
        "bucket": analyzers.bucketize(inputs["mean_radius"], 4, bounds=(0.0, 40.0), share=0.5),
        "scaled": analyzers.scale_by_min_max(inputs["mean_area"], bounds=(0.0, 3000.0), share=0.5, bins=64, tail=0.05),
    }


def test_neighbouring_data_sets_move_the_quantile_trees_by_their_stated_sensitivity(tmp_path_factory, data):
    """bucketize and scale_by_min_max on D, D minus its first record and D plus an adversarial record (huge,
    NaN), noise fixed: every tree node's noisy count moves by the record's one count per level, an L2 change
    of exactly the sensitivity their records state, sqrt(levels)."""
    adversarial = {**data[0], "mean_radius": 1e30, "mean_area": float("nan")}
    account = _account(_analyze(tmp_path_factory, data, _config(seed=0), _quantile_analyzers))
    assert sorted(m.analyzer for m in account.mechanisms) == ["quantiles", "quantiles"]
    for neighbour in (data[1:], data + [adversarial]):
        other = _account(_analyze(tmp_path_factory, neighbour, _config(seed=0), _quantile_analyzers)).releases
        for record in account.mechanisms:
            change = np.array(other[record.name]) - np.array(account.releases[record.name])
            [component] = record.components
            levels = round(math.log(record.parameters["bins"], record.parameters["branching"])) + 1
            step = float(noise.grid(component.noise_std))  # each noisy count is snapped to its grid
            np.testing.assert_allclose(np.abs(change[np.abs(change) > 0.5]), 1.0, atol=step + 1e-6)
            assert np.all(np.abs(change[np.abs(change) <= 0.5]) == 0)  # same count, same noise: same release
            assert component.sensitivity == pytest.approx(math.sqrt(levels))
            assert np.linalg.norm(change) == pytest.approx(math.sqrt(levels), abs=levels * step)


def test_the_noise_matches_the_recorded_mechanisms(tmp_path_factory, data, base):
    """Across seeds, noisy minus exact sums, standardised by each block's recorded noise, are N(0, 1); the
    records' noise multipliers are the budget's, split in equal shares."""
    exact = _centred_sums(data)
    standardised = []
    for out in [base] + [_analyze(tmp_path_factory, data, _config(seed=s)) for s in (1, 2)]:
        account = _account(out)
        for record in account.mechanisms:
            stds = np.array([c.noise_std for c in record.components])
            standardised += list((np.array(account.releases[record.name]) - exact[record.name]) / stds)
    assert len(standardised) == 3 * 3 * len(module.FEATURE_KEYS)
    assert stats.kstest(standardised, "norm").pvalue > 1e-6
    assert np.std(standardised) == pytest.approx(1.0, abs=0.15)
    account = _account(base)
    budget = PreprocessingConfig.from_custom_config(_config()).budget()
    for record in account.mechanisms:
        assert record.share == pytest.approx(1 / 30) and "seeded" in record.noise
        assert noise_multiplier_of(record.components) == pytest.approx(
            budget.noise_multiplier / math.sqrt(1 / 30), rel=1e-9
        )
    assert account.coverage.analyzer_outputs == 30 * 3 and not account.coverage.uncovered


def test_the_transform_graph_z_scores_with_the_released_statistics(base):
    """The constants the graph applies are post-processing of the release (mean = c + S1/N, ...)."""
    account = _account(base)
    key = module.FEATURE_KEYS[0]
    [record] = [m for m in account.mechanisms if m.name == f"{key}/mean_and_var"]
    estimates = MeanVariance(tuple(record.parameters["bounds"]), 1.0).estimates(np.array(account.releases[record.name]))
    mean, variance = estimates["mean"], estimates["variance"]
    output = tft.TFTransformOutput(base).transform_raw_features(
        {k: tf.constant([10.0, 100.0]) for k in module.FEATURE_KEYS}
        | {breast_cancer.LABEL_KEY: tf.constant([0, 1], tf.int64)}
    )
    z = output[module.transformed_name(key)].numpy()
    np.testing.assert_allclose(z, (np.array([1.0, 2.0]) - mean) / math.sqrt(variance), rtol=1e-4)


def test_plain_tft_analyzers_are_refused_under_a_private_config(tmp_path_factory, data):
    @private_preprocessing_fn
    def plain(inputs, analyzers):
        return {"x": tft.scale_to_z_score(inputs["mean_radius"]), "y": tft.bucketize(inputs["mean_area"], 3)}

    with pytest.raises(ValueError) as err:
        _trace(plain, data, _config())
    message = str(err.value)
    assert "tft.scale_to_z_score (name scope 'scale_to_z_score'): use PrivateAnalyzers.scale_to_z_score" in message
    assert "tft.bucketize" in message and "PrivateAnalyzers.bucketize" in message


@pytest.mark.parametrize(
    "analyzer, replacement",
    [
        (lambda x: tft.mean(x), "(instead: PrivateAnalyzers.mean_and_var"),
        (lambda x: tft.size(x), "(instead: no private count yet"),
    ],
)
def test_declare_public_refuses_analyzers_and_records_constants(tmp_path_factory, data, analyzer, replacement):
    # Inside a preprocessing_fn a tft analyzer runs over the training split: its output is never public.
    @private_preprocessing_fn
    def laundered(inputs, analyzers):
        n = analyzers.declare_public(lambda: analyzer(inputs["mean_radius"]), reason="public", name="n")
        return {"x": inputs["mean_radius"] / tf.cast(n, tf.float32)}

    with pytest.raises(ValueError) as err:
        _trace(laundered, data, _config())
    assert "declare_public('n') takes constant values only" in str(err.value) and replacement in str(err.value)

    # Constants the author gives pass, and the declaration is recorded with its value.
    @private_preprocessing_fn
    def declared(inputs, analyzers):
        n = analyzers.declare_public(569.0, reason="n is published", name="n")
        return {"x": inputs["mean_radius"] / tf.cast(n, tf.float32)}

    account = _account(_analyze(tmp_path_factory, data[:50], _config(), declared))
    [declaration] = account.declarations
    assert (declaration.name, declaration.reason, declaration.value, declaration.analyzers) == (
        "n",
        "n is published",
        569.0,
        (),
    )
    assert account.problems() == [] and account.mechanisms == ()


def _unwrapped(inputs, custom_config=None):
    return {"x": tft.scale_to_z_score(inputs["mean_radius"])}


def test_an_unwrapped_preprocessing_fn_leaves_unaccounted_statistics(tmp_path_factory, data):
    problems = _account(_analyze(tmp_path_factory, data[:50], {}, _unwrapped)).problems()
    assert any("used by scale_to_z_score" in p and "PrivateAnalyzers.scale_to_z_score" in p for p in problems)
    assert problems[-1] == artifact.NO_COVERAGE_RECORD


SERVE_TRANSFORM = """
import json, sys
import tensorflow as tf, tensorflow_transform as tft
from pipelines import privacy_ledger as pl
from pipelines.components.private_evaluator import coverage
from privacy.accounting import DpSgdMechanism
module = tf.Module()
module.layer = tft.TFTransformOutput(sys.argv[1]).transform_features_layer()
module.serve = tf.function(lambda x: module.layer({"mean_radius": x})["x"], input_signature=[tf.TensorSpec([None])])
tf.saved_model.save(module, sys.argv[2])
ledger = pl.PrivacyLedger.for_dp_sgd(DpSgdMechanism(dataset_size=50, batch_size=10, noise_multiplier=1.0, steps=5),
                                     l2_norm_clip=1.0, delta=1e-3)
print("PROBLEMS " + json.dumps(coverage.artifact_problems(sys.argv[2], ledger)), flush=True)
"""


def test_a_tf1_graph_without_coverage_record_is_refused_by_the_trainer_and_the_gate(
    tmp_path_factory, data, python_subprocess
):
    # A tf.compat.v1 graph keeps its analyzer outputs as Const nodes, where no search for constants looks:
    # the missing coverage record alone must make it a problem (fail closed).
    out = _analyze(tmp_path_factory, data[:50], {}, _unwrapped, tf1=True)
    account = _account(out)
    assert account.problems() == [artifact.NO_COVERAGE_RECORD]
    with tf.Graph().as_default():  # the exact z-score constants are there and applied
        z = tft.TFTransformOutput(out).transform_raw_features({"mean_radius": tf.constant([1.0, 2.0])})["x"]
        with tf.compat.v1.Session() as session:
            assert np.ptp(session.run(z)) > 0
    config = DpTrainingConfig(batch_size=10, epochs=1, noise_multiplier=1.0, delta=1e-3)
    with pytest.raises(InvalidPrivacySetting, match="private.*no ppml coverage record"):
        config.plan(dataset_size=50, preprocessing=account)
    ledger = config.plan(dataset_size=50).ledger()
    part = PreprocessingPart(account, ledger.accounted_mechanism().adjacency)
    ledger = dataclasses.replace(ledger, preprocessing=part)
    assert coverage.artifact_problems(os.path.join(out, artifact.TRANSFORM_FN_DIR), ledger) == [
        artifact.NO_COVERAGE_RECORD
    ]
    # A model serving the graph, whatever its ledger says, is a problem at the gate. (The check is not
    # made on the exit status: saving a tft layer's model can crash the interpreter at exit.)
    argv = [out, str(tmp_path_factory.mktemp("served") / "model")]
    proc = python_subprocess(
        f"import sys; sys.argv[1:] = {argv!r}\n" + SERVE_TRANSFORM, legacy_keras=False, check=False
    )
    [line] = [line for line in proc.stdout.splitlines() if line.startswith("PROBLEMS ")] or [proc.stderr[-3000:]]
    assert json.loads(line[len("PROBLEMS ") :]) == [
        f"the model embeds a tf.Transform graph without ppml's "
        f"coverage record (fail closed): {artifact.NO_COVERAGE_RECORD}"
    ]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda a, x: a.scale_to_z_score(x, bounds=None, share=0.5), "needs public bounds"),
        (lambda a, x: a.scale_to_z_score(x, bounds=(3, 1), share=0.5), "lower must be below upper"),
        (
            lambda a, x: a.scale_to_z_score(x, bounds=(0, 1), share=0),
            "share must be in \\(0, 1\\] \\(a fraction of the",
        ),
        (
            lambda a, x: [a.mean_and_var(x, bounds=(0, 1), share=0.6), a.quantiles(x, [0.5], bounds=(0, 1), share=0.6)],
            "share 0.6 would take the analyzers' shares to 1.2 > 1",
        ),
        (  # past 1 + 1e-9: ':g' printed '1 > 1'
            lambda a, x: [
                a.mean_and_var(x, bounds=(0, 1), share=0.5),
                a.quantiles(x, [0.5], bounds=(0, 1), share=0.500000002),
            ],
            "share 0.5 would take the analyzers' shares to 1.000000002 > 1 ",
        ),
        (lambda a, x: a.quantiles(x, [1.5], bounds=(0, 1), share=0.5), "probabilities must be"),
    ],
)
def test_bad_settings_fail_when_the_function_is_traced_before_any_analysis(data, call, message):
    @private_preprocessing_fn
    def bad(inputs, analyzers):
        call(analyzers, inputs["mean_radius"])
        return {"x": inputs["mean_radius"]}

    with pytest.raises(ValueError, match=message):
        _trace(bad, data, _config())


def test_a_missing_budget_is_refused_naming_the_setting(data):
    @private_preprocessing_fn
    def fn(inputs, analyzers):
        return {"x": analyzers.scale_to_z_score(inputs["mean_radius"], bounds=(0, 50), share=1.0)}

    with pytest.raises(ValueError, match="ppml_preprocessing.epsilon"):
        _trace(fn, data, {})


def test_a_private_vocabulary_never_holds_a_token_only_one_record_has(tmp_path_factory):
    rows = [{"city": c} for c in ["paris"] * 300 + ["oslo"] * 200 + [f"unique{i}" for i in range(50)]]

    @private_preprocessing_fn
    def vocab(inputs, analyzers):
        return {"id": analyzers.compute_and_apply_vocabulary(inputs["city"], share=1.0)}

    for seed in (0, 1):
        config = PreprocessingConfig(epsilon=2.0, delta=1e-5, noise_seed=seed).to_custom_config()
        out = _analyze(tmp_path_factory, rows, config, vocab)
        files = tf.io.gfile.listdir(os.path.join(out, "transform_fn", "assets"))
        [name] = [f for f in files if f.startswith("ppml_vocabulary")]
        with open(os.path.join(out, "transform_fn", "assets", name)) as f:
            assert f.read().split() == ["paris", "oslo"]
        [record] = _account(out).mechanisms
        assert record.mechanism == "gaussian-thresholding" and record.additive_delta("add-remove") <= 1e-6 + 1e-18


def test_a_non_private_config_records_exact_statistics_that_no_epsilon_covers(tmp_path_factory, data):
    out = _analyze(tmp_path_factory, data[:50], PreprocessingConfig(private=False).to_custom_config())
    account = _account(out)
    assert {m.mechanism for m in account.mechanisms} == {"exact"}
    assert all(m.noise == "none (exact statistics)" for m in account.mechanisms)
    assert len([p for p in account.problems() if "exact statistics" in p]) == 30


def test_neighbouring_data_sets_change_a_private_vocabulary_within_the_accounted_epsilon(tmp_path_factory):
    """Transform-level: 40 tokens held by exactly c records for each c = 1..24 (one token per record). Adding or
    removing a record moves one token's count by one, so a token's release probability at counts c and c + 1 is what
    neighbours see. The vocabulary the Transform wrote follows the recorded mechanism (release rate per count against
    Phi((c - tau) / s), chi-square), no token of one record appears, and the recorded mechanism's probabilities at
    c and c + 1 stay within e^epsilon (+ delta), epsilon recomputed by dp-accounting from the record's event."""
    import dp_accounting

    per_count, counts = 40, range(1, 25)
    rows = [{"city": f"t{c}_{i}"} for c in counts for i in range(per_count) for _ in range(c)]

    @private_preprocessing_fn
    def vocab(inputs, analyzers):
        return {"id": analyzers.compute_and_apply_vocabulary(inputs["city"], share=1.0)}

    config = PreprocessingConfig(epsilon=2.0, delta=1e-5, noise_seed=3).to_custom_config()
    out = _analyze(tmp_path_factory, rows, config, vocab)
    [name] = [
        f for f in tf.io.gfile.listdir(os.path.join(out, "transform_fn", "assets")) if f.startswith("ppml_vocabulary")
    ]
    with open(os.path.join(out, "transform_fn", "assets", name)) as f:
        released = set(f.read().split())
    [record] = _account(out).mechanisms
    tau, std = record.parameters["threshold"], record.parameters["noise_std"]
    p = {c: stats.norm.sf((tau - c) / std) for c in counts}
    observed = {c: sum(f"t{c}_{i}" in released for i in range(per_count)) for c in counts}
    assert observed[1] == 0
    moderate = [c for c in counts if 0.02 < p[c] < 0.98]
    assert len(moderate) >= 4  # the counts straddle the threshold
    chi2 = sum((observed[c] - per_count * p[c]) ** 2 / (per_count * p[c] * (1 - p[c])) for c in moderate)
    assert stats.chi2.sf(chi2, len(moderate)) > 1e-4, (tau, std, observed)
    delta = 1e-3
    [event] = _account(out).events("add-remove")
    assert event.noise_multiplier == pytest.approx(std)  # one record moves one count by 1 (l0 = 1)
    epsilon = dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-4).compose(event).get_epsilon(delta)
    for c in counts[:-1]:
        assert p[c + 1] <= math.exp(epsilon) * p[c] + delta and p[c] <= math.exp(epsilon) * p[c + 1] + delta
    # A token one record holds (count 1 vs 0: released with probability at most threshold_delta).
    assert p[1] <= record.parameters["threshold_delta"]


def test_non_utf8_tokens_stay_distinct_and_are_written_as_their_bytes():
    """Review item 8: decoding with errors='replace' merged distinct invalid byte tokens into U+FFFD, which never
    matches the raw bytes in tft.apply_vocabulary."""
    from pipelines.transform import beam_analyzers

    tokens = [b"\xff", b"\xfe", "café".encode()]
    decoded = [beam_analyzers._token(t) for t in tokens]
    assert len(set(decoded)) == 3 and decoded[2] == "café"
    assert [beam_analyzers.token_bytes(t) for t in decoded] == tokens


MULTI = 5
MULTI_SPEC = {"v": tf.io.FixedLenFeature([MULTI], tf.float32), "text": tf.io.FixedLenFeature([], tf.string)}


def _multi_valued_rows(n=300):
    """n records of 5 values in [0.4, 0.6] and 3 common words; the victim: 5 ones and 16 times a unique word."""
    rng = np.random.default_rng(0)
    rows = [
        {
            "v": [float(a) for a in rng.uniform(0.4, 0.6, MULTI)],
            "text": " ".join(rng.choice(["alpha", "beta", "gamma", "delta"], 3)),
        }
        for _ in range(n)
    ]
    return rows, {"v": [1.0] * MULTI, "text": " ".join(["SECRETNAME"] * 16)}


def _multi_valued_fn(flatten_values: bool, flatten_tokens: bool):
    @private_preprocessing_fn
    def fn(inputs, analyzers):
        values = tf.reshape(inputs["v"], [-1]) if flatten_values else inputs["v"]
        tokens = tf.strings.split(inputs["text"])
        tokens = tokens.flat_values if flatten_tokens else tokens
        mean, _ = analyzers.mean_and_var(values, bounds=(0.0, 1.0), share=0.5, name="v")
        return {
            "v_xf": inputs["v"] - mean,
            "text_id": tft.apply_vocabulary(inputs["text"], analyzers.vocabulary(tokens, share=0.5, name="words")),
        }

    return fn


@pytest.mark.parametrize("flatten_values, flatten_tokens, analyzer", [(True, False, "v"), (False, True, "words")])
def test_an_analyzer_input_flattened_across_records_fails_the_analysis(
    tmp_path_factory, flatten_values, flatten_tokens, analyzer
):
    """tf.reshape(x, [-1]) or .flat_values feeds one record as several rows: the analysis stops, naming the
    analyzer, instead of accounting each row as a record (which under-stated the sensitivity k-fold); the error
    quotes no value of the data."""
    rows, _ = _multi_valued_rows(20)
    with pytest.raises(
        Exception, match=rf"ppml analyzer \W+{analyzer}\W+: its input must hold one row per record"
    ) as info:
        _analyze(
            tmp_path_factory,
            rows,
            PreprocessingConfig(epsilon=2.0, delta=1e-5, noise_seed=0).to_custom_config(),
            _multi_valued_fn(flatten_values, flatten_tokens),
            spec=MULTI_SPEC,
        )
    quoted = str(info.value).lower()
    assert not any(word in quoted for word in ("alpha", "beta", "gamma", "delta", "616c706861")), quoted


def test_per_record_multi_valued_and_ragged_inputs_stay_within_the_recorded_sensitivity(tmp_path_factory):
    """The review's neighbours (D, D + a record of 5 extreme values and 16 copies of a unique word) with the
    [records, 5] values and the split text's RaggedTensor: with the noise fixed the mean-and-variance release
    moves by at most its recorded sensitivity (d = 5), and the unique word (one record: count 1) is never
    released."""
    rows, victim = _multi_valued_rows()
    fn = _multi_valued_fn(False, False)
    for seed in (0, 1, 2):
        config = PreprocessingConfig(epsilon=2.0, delta=1e-5, noise_seed=seed).to_custom_config()
        outs = [_analyze(tmp_path_factory, data, config, fn, spec=MULTI_SPEC) for data in (rows, rows + [victim])]
        on_d, on_d2 = (_account(out) for out in outs)
        [mv] = [m for m in on_d.mechanisms if m.analyzer == "mean_and_var"]
        [voc] = [m for m in on_d.mechanisms if m.analyzer == "vocabulary"]
        assert mv.parameters["values_per_record"] == MULTI and voc.parameters["max_tokens_per_record"] == 1
        change = np.array(on_d2.releases[mv.name]) - np.array(on_d.releases[mv.name])
        sensitivity = np.array([c.sensitivity for c in mv.components])
        step = noise.grid([c.noise_std for c in mv.components])
        assert np.all(np.abs(change) <= sensitivity + step + 1e-6), (change, sensitivity)
        assert abs(change[1]) > sensitivity[1] / 2  # the victim's values do move the sum (the check is not void)
        for out in outs:
            assets = os.path.join(out, "transform_fn", "assets")
            [name] = [f for f in os.listdir(assets) if f.startswith("ppml_vocabulary")]
            with open(os.path.join(assets, name), "rb") as f:
                vocabulary = f.read().split()
            assert b"SECRETNAME" not in vocabulary and b"alpha" in vocabulary, vocabulary
