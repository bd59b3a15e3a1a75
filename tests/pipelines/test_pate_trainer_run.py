"""The PATE Trainer's ``run_fn`` on small TFRecord splits (no TFX): a private record equal to a public one, keying by
raw content (one record changes one teacher), records it cannot read, a holder key, and the exported student."""

import json
import os
import types

import numpy as np
import pytest

from pipelines import privacy_ledger
from privacy.pate import partition_by_key

SETTINGS = {
    "label_key": "y",
    "num_classes": 2,
    "feature_keys": ["a", "b"],
    "teachers": 3,
    "threshold": 2,
    "sigma1": 1.0,
    "sigma": 1.0,
    "max_answered": 5,
    "epochs": 2,
    "hidden_units": 4,
}


def example(**features):
    import tensorflow as tf

    lists = {
        float: lambda v: tf.train.Feature(float_list=tf.train.FloatList(value=v)),
        int: lambda v: tf.train.Feature(int64_list=tf.train.Int64List(value=v)),
        bytes: lambda v: tf.train.Feature(bytes_list=tf.train.BytesList(value=v)),
    }
    return tf.train.Example(
        features=tf.train.Features(feature={k: lists[type(v[0])](v) for k, v in features.items()})
    ).SerializeToString()


def records(n, seed, holders=4):
    rng = np.random.default_rng(seed)
    return [
        example(a=[float(a)], b=[float(b)], y=[int(a > 0)], site=[b"s%d" % (i % holders)])
        for i, (a, b) in enumerate(rng.normal(size=(n, 2)))
    ]


def write(folder, rows):
    import tensorflow as tf

    os.makedirs(folder, exist_ok=True)
    with tf.io.TFRecordWriter(os.path.join(folder, "data")) as writer:
        for row in rows:
            writer.write(row)
    return [os.path.join(folder, "*")]


def fn_args(tmp_path, private, public, **settings):
    return types.SimpleNamespace(
        custom_config={**SETTINGS, **settings},
        train_files=write(tmp_path / "private", private),
        eval_files=write(tmp_path / "public", public),
        serving_model_dir=str(tmp_path / "model"),
        model_run_dir=str(tmp_path / "run"),
    )


class TeachersReached(Exception):
    """Raised in place of teacher training: the run got past every check on the data."""


@pytest.mark.parametrize(
    "case",
    [
        "a private record equal to a public one",
        "two different unreadable records",
        "two different text values",
        "equal on the declared columns only",
    ],
)
def test_no_private_record_decides_whether_the_run_happens_and_one_equal_to_a_public_record_teaches_nothing(
    tmp_path, monkeypatch, case
):
    """The public/private overlap is judged on serialized records and never refuses: a private record whose bytes
    equal a public record's is left out of its teacher alone; distinct records (unreadable ones, ones differing in
    a non-conforming or undeclared value) are never taken for equal."""
    from pipelines.trainers import pate
    from privacy.pate import keras_training

    taught = {}

    def teacher_votes(x, y, partitions, *args, **kwargs):
        taught["rows"] = sorted(int(r) for p in partitions for r in p)
        raise TeachersReached

    monkeypatch.setattr(keras_training, "teacher_votes", teacher_votes)
    private, public = records(30, 0), records(10, 1)
    public_extra, private_extra = {
        "a private record equal to a public one": ([private[7]], []),
        "two different unreadable records": ([b"\xff garbage one"], [b"\xff garbage two"]),
        "two different text values": ([example(a=[b"n/a"], b=[0.5], y=[1])], [example(a=[b"missing"], b=[0.5], y=[1])]),
        "equal on the declared columns only": (
            [example(a=[1.0], b=[2.0], y=[1], site=[b"public"])],
            [example(a=[1.0], b=[2.0], y=[1], site=[b"private"])],
        ),
    }[case]
    with pytest.raises(TeachersReached):
        pate.run_fn(fn_args(tmp_path, private + private_extra, public + public_extra))
    trainable_rows = [i for i in range(30) if not (case.startswith("a private") and i == 7)]
    if case == "equal on the declared columns only":
        trainable_rows.append(30)  # distinct from the public record: it teaches
    assert taught["rows"] == trainable_rows


def test_one_record_removed_changes_one_teachers_partition_and_unreadable_records_stay_in_place(tmp_path):
    """Partitions are keyed by the declared columns' raw content: removing one record, or adding a record that is
    not a tf.Example (no usable features; every such record has the same all-NaN key), moves no other record
    between teachers."""
    from pipelines.components.pate_trainer.spec import PateTrainingConfig
    from pipelines.trainers.pate import read_split

    config = PateTrainingConfig.from_custom_config(SETTINGS)
    rows = records(40, 2)
    teachers = {}
    for name, split in (
        ("all", rows),
        ("one removed", rows[:13] + rows[14:]),
        ("garbage first", [b"\xff\xff not a proto"] + rows),
    ):
        _, keys, _ = read_split(write(tmp_path / name.replace(" ", "_"), split), config)
        parts = partition_by_key(keys, config.teachers, seed=config.seed)
        teachers[name] = [sorted(keys[i] for i in p) for p in parts]
    changed = [t for t in range(config.teachers) if teachers["all"][t] != teachers["one removed"][t]]
    assert len(changed) == 1 and len(teachers["all"][changed[0]]) == len(teachers["one removed"][changed[0]]) + 1
    garbage = [t for t in range(config.teachers) if teachers["all"][t] != teachers["garbage first"][t]]
    assert len(garbage) == 1


def test_with_a_holder_key_the_ledger_is_user_level_and_the_student_serves_raw_examples(tmp_path):
    import tensorflow as tf

    from pipelines.trainers import pate

    private = records(60, 3, holders=5) + [b"not a tf.Example", example(a=[1e30], b=[0.0], y=[1], site=[b"s9"])]
    public = records(20, 4) + [example(a=[0.5], y=[1])]  # a public row without b is left out of the queries
    args = fn_args(tmp_path, private, public, holder_key="site", sigma=5.0, smoothed_release=True, smooth_order=5)
    pate.run_fn(args)
    ledger = privacy_ledger.read_ledger(args.serving_model_dir)
    smoothed = ledger.smoothed_release()  # asked for, and made once: labelled, its cost in the guarantee
    assert smoothed is not None and "smooth sensitivity" in ledger.parameters["smoothed_release"]["analysis"]
    assert ledger.epsilons["pld"] is None and ledger.epsilon > min(ledger.parts["training"].values())
    assert ledger.privacy_unit == "user" and "dataset_size" not in ledger.parameters  # the holder count is private
    assert ledger.parameters["queries"] == 20 and ledger.parameters["answered"] <= 5
    assert ledger.parameters["partition"] == "by holder key" and ledger.decision is None
    with open(os.path.join(args.model_run_dir, "pate.json")) as f:
        written = json.load(f)
    assert "votes" not in written and "dataset_size" not in written
    serve = tf.saved_model.load(args.serving_model_dir).signatures["serving_default"]
    probabilities = serve(examples=tf.constant(records(7, 5)))["probabilities"].numpy()
    assert probabilities.shape == (7, 1) and np.all((probabilities >= 0) & (probabilities <= 1))


def test_a_self_trained_student_leaves_the_ledgers_epsilon_unchanged_and_the_ledger_and_report_name_it(tmp_path):
    import math

    from dp_accounting import dp_event, pld, rdp

    from pipelines import report
    from pipelines.trainers import pate
    from privacy.accounting import NeighboringRelation

    ledgers = {}
    for semi in (False, True):
        extra = {"semi_supervised": True, "confidence": 0.6, "self_training_rounds": 2} if semi else {}
        args = fn_args(tmp_path / str(semi), records(60, 3), records(30, 4), **extra)
        pate.run_fn(args)
        ledgers[semi] = privacy_ledger.read_ledger(args.serving_model_dir)
    direct = []
    for accountant in (
        rdp.RdpAccountant(neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE),
        pld.PLDAccountant(neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE),
    ):
        accountant.compose(dp_event.GaussianDpEvent(1.0), 30)  # every query's selection step, sigma1 = 1
        accountant.compose(dp_event.GaussianDpEvent(1.0 / math.sqrt(2)), 5)  # max_answered GNMax answers
        direct.append(accountant.get_epsilon(1e-5))
    for ledger in ledgers.values():
        assert ledger.epsilons["rdp"] == pytest.approx(direct[0], rel=1e-9)
        assert ledger.epsilons["pld"] == pytest.approx(direct[1], rel=1e-6)
    assert ledgers[True].epsilons == ledgers[False].epsilons and ledgers[True].epsilon == ledgers[False].epsilon
    plain, semi = ledgers[False].parameters["student_training"], ledgers[True].parameters["student_training"]
    assert plain["method"] == "supervised" and plain["pseudo_labels"] == 0
    assert semi["method"] == "self-training" and semi["confidence"] == 0.6 and semi["rounds"] == 2
    answered = ledgers[True].parameters["answered"]
    assert semi["answered_labels"] == answered and 0 <= semi["pseudo_labels"] <= 30 - answered
    lines = "\n".join(report.pate_lines(ledgers[True]))
    assert f"self-training (confidence 0.6, 2 rounds): {answered} answered + {semi['pseudo_labels']} pseudo" in lines
    assert report.pate_aggregation(ledgers[True])["student_training"] == semi


def test_each_feature_value_is_read_alone_so_one_text_cell_is_nan_in_its_own_record_only(tmp_path):
    """CsvExampleGen may type a column as text (one non-numeric cell anywhere): the Trainer still reads every other
    record's value, whether a float, an int or text that parses as a number; the ledger lists the inferred kinds."""
    from pipelines.components.pate_trainer.spec import PateTrainingConfig
    from pipelines.trainers import pate

    config = PateTrainingConfig.from_custom_config(SETTINGS)
    rows = [
        example(a=[b"abc"], b=[b"2.5"], y=[1]),
        example(a=[b" -1.25 "], b=[3], y=[0]),
        example(a=[0.5], b=[b"1e3"], y=[1]),
    ]
    columns, _, _ = pate.read_split(write(tmp_path / "typed", rows), config)
    np.testing.assert_array_equal(columns["a"], [np.nan, -1.25, 0.5])
    np.testing.assert_array_equal(columns["b"], [2.5, 3.0, 1000.0])
    public = [example(a=[str(v).encode()], b=[b"0.5"], y=[0]) for v in np.linspace(-1, 1, 10)]  # all text, numbers
    args = fn_args(tmp_path, records(30, 0) + [rows[0]], public)
    pate.run_fn(args)
    ledger = privacy_ledger.read_ledger(args.serving_model_dir)
    assert ledger.parameters["queries"] == 10
    assert ledger.parameters["outside_guarantee"].items() >= privacy_ledger.SEPARATE_RUNS.items()  # every ledger's
    assert (
        "CsvExampleGen types each CSV column"
        in ledger.parameters["outside_guarantee"]["feature kinds inferred from the data"]
    )


def test_the_membership_audit_of_the_pate_student_takes_the_public_split_it_was_fitted_on_as_members(
    python_subprocess,
):
    code = """
import tensorflow_model_analysis as tfma
from google.protobuf import json_format
from pipelines.components.private_evaluator import spec
from pipelines.pipeline import create_pipeline
config = {"teachers": 10, "threshold": 7, "sigma1": 3, "sigma": 3, "max_answered": 20, "private_split": "priv",
          "public_split": "pub"}
pipeline = create_pipeline(pipeline_root="/tmp/unused", data_root="/tmp/unused", serving_model_dir="/tmp/unused",
                           trainer="pate", trainer_config=config, epsilon_budget=40.0)
[evaluator] = [c for c in pipeline.components if c.id == "Evaluator"]
config = json_format.Parse(evaluator.exec_properties["eval_config"], tfma.EvalConfig())
print("MEMBERS", spec.gate_settings(config).member_split)
"""
    lines = python_subprocess(code, legacy_keras=True).stdout.strip().splitlines()
    assert lines[-1] == "MEMBERS pub"


def test_given_the_released_labels_the_exported_student_does_not_depend_on_the_private_split(tmp_path, monkeypatch):
    """With the aggregator's output fixed, the student is a function of the public split, the released labels and
    the seed: its SavedModel variables are bit-identical whatever one private record does (removed, huge, NaN,
    unreadable and first, a text cell, equal to a public record) and with no private record at all."""
    import tensorflow as tf

    from pipelines.trainers import pate
    from privacy.pate import aggregators

    def fixed(self, votes, *, seed=None):
        answered = np.arange(len(votes)) < 5
        labels = np.where(answered, np.arange(len(votes)) % 2, aggregators.UNANSWERED).astype(np.int64)
        return aggregators.VoteHistory(self, votes, answered, labels, "fixed for the test")

    monkeypatch.setattr(aggregators.ConfidentGNMax, "aggregate", fixed)
    public, base = records(20, 1), records(30, 0)

    def variables(name, private):
        args = fn_args(tmp_path / name, private, public)
        pate.run_fn(args)
        reader = tf.train.load_checkpoint(os.path.join(args.serving_model_dir, "variables", "variables"))
        names = sorted(k for k in reader.get_variable_to_shape_map() if k != "_CHECKPOINTABLE_OBJECT_GRAPH")
        return [reader.get_tensor(k) for k in names]

    reference = variables("reference", base)
    assert len(reference) == 6  # mean, std and the student's 4 weight tensors: nothing else
    for name, private in (
        ("removed", base[1:]),
        ("huge", base + [example(a=[1e38], b=[-1e38], y=[1])]),
        ("nan", base + [example(a=[float("nan")], b=[0.0], y=[0])]),
        ("unreadable_first", [b"junk"] + base),
        ("text_cell", base + [example(a=[b"abc"], b=[0.0], y=[1])]),
        ("equal_to_public", base + [public[3]]),
        ("empty", []),
    ):
        assert all(np.array_equal(r, o) for r, o in zip(reference, variables(name, private), strict=True)), name
