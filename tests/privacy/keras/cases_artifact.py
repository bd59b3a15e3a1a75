"""What private training refuses because the released model would carry exact statistics of the training
data: preprocessing layers adapted on it, and callbacks that decide from training metrics."""

import json
import os
import tempfile

import numpy as np
import tensorflow as tf

from privacy import training_state
from privacy.keras import (
    DPConfigurationError,
    PrivacyBudgetCallback,
    compat,
    find_problems,
    make_private,
    monitoring,
    private_training,
)

K = compat.default_keras()
L = K.layers


def _data(n=40):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 4)).astype("float32"), rng.integers(0, 2, size=n)


def _model(first):
    return K.Sequential([K.Input((4,)), first, L.Dense(2)])


def case_an_adapted_normalization_is_refused_and_a_given_one_is_not():
    x, _ = _data()
    adapted = L.Normalization(name="adapted")
    adapted.adapt(x)
    [problem] = find_problems(_model(adapted))
    assert "layer 'adapted' (Normalization)" in problem and "Normalization(mean=..., variance=...)" in problem
    given = L.Normalization(mean=np.zeros(4), variance=np.ones(4), name="given")
    assert find_problems(_model(given)) == []
    try:
        make_private(_model(adapted), l2_norm_clip=1.0, noise_multiplier=1.0)
    except DPConfigurationError as err:
        assert "adapt()" in str(err)
    else:
        raise AssertionError("make_private accepted an adapted Normalization layer")


def _fit(*callbacks, validation=True, state_path=None, wrapped=False):
    """A private fit of two epochs with ``callbacks`` (in a Keras CallbackList where ``wrapped``)."""
    x, y = _data()
    model = make_private(
        _model(L.Dense(3)),
        l2_norm_clip=1.0,
        noise_multiplier=1.0,
        expected_batch_size=10,
        target_delta=1e-3,
        state_path=state_path,
    )
    model.compile(optimizer=K.optimizers.SGD(0.1), loss=K.losses.SparseCategoricalCrossentropy(from_logits=True))
    held_out = (x[:10], y[:10]) if validation else None
    given = K.callbacks.CallbackList(list(callbacks)) if wrapped else list(callbacks)
    return model.fit(x, y, epochs=2, verbose=0, callbacks=given, validation_data=held_out)


def case_callbacks_deciding_from_training_metrics_are_refused():
    for callback, name in (
        (K.callbacks.EarlyStopping(monitor="loss"), "EarlyStopping(monitor='loss')"),
        (K.callbacks.ReduceLROnPlateau(monitor="loss"), "ReduceLROnPlateau(monitor='loss')"),
    ):
        for wrapped in (False, True):  # also inside a CallbackList, which Keras' fit takes as well
            try:
                _fit(callback, wrapped=wrapped)
            except DPConfigurationError as err:
                assert name in str(err) and "'val_loss'" in str(err), str(err)
            else:
                raise AssertionError(f"{name} was accepted")


def case_later_callbacks_see_no_training_metrics():
    """Any callback (a custom one, LambdaCallback, TerminateOnNaN) and History see epsilon and val_* only."""
    seen = []

    class Spy(K.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(set(logs))

        def on_epoch_end(self, epoch, logs=None):
            seen.append(set(logs))

    history = _fit(Spy())
    assert len(seen) == 2 * 4 + 2 and all(keys <= {"epsilon", "val_loss"} for keys in seen), seen
    assert seen[-1] == {"epsilon", "val_loss"} and set(history.history) == {"epsilon", "val_loss"}
    try:  # a callback that would stop on the training loss finds none
        _fit(K.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: logs["loss"]))
    except KeyError as err:
        assert "loss" in str(err)
    else:
        raise AssertionError("a LambdaCallback read the training loss")


def case_callbacks_on_validation_metrics_or_epsilon_are_allowed():
    """Allowed, and those on validation metrics are kept in `validation_decisions` (for the ledger) and the saved
    state; one on epsilon, or a checkpoint of every epoch, decides nothing from data."""
    for callback, decisions in (
        (K.callbacks.EarlyStopping(monitor="val_loss", patience=5), ["EarlyStopping(monitor='val_loss')"]),
        (K.callbacks.ReduceLROnPlateau(monitor="val_loss"), ["ReduceLROnPlateau(monitor='val_loss')"]),
        (K.callbacks.EarlyStopping(monitor="epsilon", mode="max", patience=5), []),
    ):
        history = _fit(callback)
        assert len(history.history["epsilon"]) == 2
        private = private_training(history.model)
        assert private.validation_decisions == decisions and private.state_dict()["validation_decisions"] == decisions
        history.model.fit(*_data(), epochs=1, verbose=0, callbacks=[callback], validation_data=_data())
        assert private.validation_decisions == decisions  # each named once over the fits
        path = os.path.join(tempfile.mkdtemp(), "state.json")
        private.save_state(path)
        resumed = make_private(
            _model(L.Dense(3)), l2_norm_clip=1.0, noise_multiplier=1.0, expected_batch_size=10, state_path=path
        )
        assert private_training(resumed).validation_decisions == decisions  # a resumed run keeps them


def case_callbacks_ppml_does_not_know_are_listed_as_ones_that_may_act_on_validation_metrics():
    """With validation data, a user's callback (here one that stops on val_loss, which Keras' own would have named),
    a subclass of a passive Keras callback, or one running user code (LambdaCallback, LearningRateScheduler) may act
    on val_* metrics or write them out (RemoteMonitor posts them to a server): each is listed, by class, as such.
    The passive Keras callbacks that write no file and ppml's own are not; without validation data there are no val_*
    to act on."""

    class StopOnValLoss(K.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if logs.get("val_loss", float("inf")) < 1e9:
                self.model.stop_training = True

    class MyLogger(K.callbacks.TerminateOnNaN):
        pass

    lambda_callback = K.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: None)
    schedule = K.callbacks.LearningRateScheduler(lambda epoch, lr: lr)  # user code, which may read model.history
    history = _fit(StopOnValLoss(), MyLogger(), lambda_callback, schedule)
    assert len(history.history["epsilon"]) == 1  # it did stop, on a validation metric
    may = "(may act on validation metrics or write them out)"  # RemoteMonitor, not known, would post them
    expected = [f"StopOnValLoss {may}", f"MyLogger {may}", f"LambdaCallback {may}", f"LearningRateScheduler {may}"]
    assert private_training(history.model).validation_decisions == expected
    remote = monitoring.validation_decisions([K.callbacks.RemoteMonitor()], validation=True)  # not fit: no server
    assert remote == [f"RemoteMonitor {may}"]
    passive = (
        K.callbacks.TerminateOnNaN(),
        K.callbacks.ProgbarLogger(),  # prints the logs, writes no file
        K.callbacks.ModelCheckpoint(os.path.join(tempfile.mkdtemp(), "m.weights.h5"), save_weights_only=True),
        PrivacyBudgetCallback(),
    )
    assert private_training(_fit(*passive).model).validation_decisions == []
    patched = K.callbacks.History()  # a passive class whose instance runs user code: may act as StopOnValLoss does
    patched.on_epoch_end = StopOnValLoss.on_epoch_end.__get__(patched)
    decisions = private_training(_fit(patched).model).validation_decisions
    assert decisions == [f"History {may}"]
    wrapped = private_training(_fit(StopOnValLoss(), wrapped=True).model).validation_decisions
    assert wrapped == [f"StopOnValLoss {may}"]  # named from inside a CallbackList too
    assert private_training(_fit(StopOnValLoss(), validation=False).model).validation_decisions == []


def case_callbacks_that_write_validation_metrics_to_disk_are_named():
    """With validation data, TensorBoard, CSVLogger and a ModelCheckpoint whose file names hold a validation metric
    write exact held-out statistics to disk (read back here): each is named for the ledger, a checkpoint that
    also keeps the best on val_loss as both; without validation data they write none and none is named."""
    folder = tempfile.mkdtemp()
    csv, board = os.path.join(folder, "log.csv"), os.path.join(folder, "tb")
    named = os.path.join(folder, "m-{epoch}-{val_loss:.6f}.weights.h5")
    best = os.path.join(folder, "best-{val_loss:.6f}.weights.h5")
    callbacks = (
        K.callbacks.CSVLogger(csv),
        K.callbacks.TensorBoard(board),
        K.callbacks.ModelCheckpoint(named, save_weights_only=True),
        K.callbacks.ModelCheckpoint(best, save_weights_only=True, save_best_only=True, monitor="val_loss"),
    )
    history = _fit(*callbacks)
    writes = "(writes validation metrics to disk"
    assert private_training(history.model).validation_decisions == [
        f"CSVLogger {writes})",
        f"TensorBoard {writes})",
        f"ModelCheckpoint {writes}: val_loss in its file names)",
        "ModelCheckpoint(monitor='val_loss')",
        f"ModelCheckpoint {writes}: val_loss in its file names)",
    ]
    val_loss = history.history["val_loss"]
    with open(csv) as f:
        rows = [line.strip().split(",") for line in f]
    column = rows[0].index("val_loss")
    assert len(rows) == 3 and np.allclose([float(row[column]) for row in rows[1:]], val_loss, rtol=1e-6, atol=0)
    files = sorted(name for name in os.listdir(folder) if name.startswith("m-"))
    assert files == [f"m-{epoch}-{loss:.6f}.weights.h5" for epoch, loss in enumerate(val_loss, 1)]
    events = [name for _, _, names in os.walk(os.path.join(board, "validation")) for name in names]
    assert any(name.startswith("events.out.tfevents") for name in events), events
    quiet = tempfile.mkdtemp()
    unvalidated = (K.callbacks.CSVLogger(os.path.join(quiet, "log.csv")), K.callbacks.TensorBoard(quiet))
    assert private_training(_fit(*unvalidated, validation=False).model).validation_decisions == []


def case_a_checkpoint_file_name_that_is_not_a_format_template_is_refused_before_any_step():
    """A ModelCheckpoint whose file name Keras cannot format (an unclosed field) would fail at its first save, after
    an epoch's private steps; ppml, which reads the template for the validation metrics it writes, refuses it up
    front in one line naming it, and no step runs."""
    x, y = _data()
    model = make_private(
        _model(L.Dense(3)), l2_norm_clip=1.0, noise_multiplier=1.0, expected_batch_size=10, target_delta=1e-3
    )
    model.compile(optimizer=K.optimizers.SGD(0.1), loss=K.losses.SparseCategoricalCrossentropy(from_logits=True))
    path = os.path.join(tempfile.mkdtemp(), "m-{val_loss.weights.h5")
    checkpoint = K.callbacks.ModelCheckpoint(path, save_weights_only=True)
    try:
        model.fit(x, y, epochs=1, verbose=0, callbacks=[checkpoint], validation_data=(x[:10], y[:10]))
    except DPConfigurationError as e:
        message = str(e)
        assert "\n" not in message and f"filepath {path!r} is not a format template" in message, message
    else:
        raise AssertionError("fit accepted a checkpoint file name that is not a format template")
    assert private_training(model).steps == 0


def case_a_state_saved_before_validation_decisions_were_kept_resumes_them_as_unknown():
    """A training state without 'validation_decisions' (saved by an older ppml) cannot say whether its fits ran
    callbacks on validation metrics: it resumes them as None (unknown), which later fits and saves keep."""
    path = os.path.join(tempfile.mkdtemp(), "state.json")
    _fit(state_path=path)
    with open(path) as f:
        state = json.load(f)
    assert state.pop("validation_decisions") == []
    with open(path, "w") as f:
        json.dump(state, f)
    resumed = _fit(K.callbacks.EarlyStopping(monitor="val_loss", patience=5), state_path=path)
    private = private_training(resumed.model)
    assert private.steps > state["steps"] and private.validation_decisions is None
    assert private.state_dict()["validation_decisions"] is None
    again = private_training(_fit(state_path=path).model)
    assert again.validation_decisions is None


def case_a_state_saved_before_the_writers_were_kept_resumes_its_decisions_as_unknown():
    """A state whose 'validation_decisions' predate the writers (no 'validation_writers_kept', an older ppml: its
    fits may have run TensorBoard or CSVLogger on validation data, then not named) resumes them as None (unknown);
    one saved now keeps them."""
    path = os.path.join(tempfile.mkdtemp(), "state.json")
    _fit(K.callbacks.CSVLogger(os.path.join(tempfile.mkdtemp(), "log.csv")), state_path=path)
    with open(path) as f:
        state = json.load(f)
    assert state["validation_decisions"] == ["CSVLogger (writes validation metrics to disk)"]
    assert state.pop("validation_writers_kept") is True
    assert private_training(_fit(state_path=path).model).validation_decisions == state["validation_decisions"]
    state["validation_decisions"] = []  # what an older ppml saved after the same fit
    with open(path, "w") as f:
        json.dump(state, f)
    resumed = private_training(_fit(state_path=path).model)
    assert resumed.validation_decisions is None and resumed.state_dict()["validation_decisions"] is None


def _neighbours():
    """(x, y) and its neighbour: record 0 replaced by a mislabelled outlier (x 50, label flipped)."""
    x, labels = _data()
    y = labels[:, None].astype("float32")
    x2, y2 = x.copy(), y.copy()
    x2[0], y2[0] = 50.0, 1.0 - y2[0]
    return (x, y), (x2, y2)


def _private_classifier(dataset_size: int):
    """The compiled private binary classifier both neighbours train (4 -> 8 -> 1, weights seeded, sampler seed 5)."""
    tf.keras.utils.set_random_seed(0)
    model = make_private(
        K.Sequential([K.Input((4,)), L.Dense(8, activation="relu"), L.Dense(1, activation="sigmoid")]),
        l2_norm_clip=1.0,
        noise_multiplier=1.0,
        expected_batch_size=10,
        dataset_size=dataset_size,
        target_delta=1e-3,
        seed=5,
    )
    model.compile(optimizer=K.optimizers.SGD(0.1), loss=K.losses.BinaryCrossentropy(), metrics=["binary_accuracy"])
    return model


def _metric_state_after_private_fit(x, y) -> dict[str, np.ndarray]:
    """Every metric variable of a model trained privately on (x, y) and saved, as read back: from the tf-keras
    SavedModel's checkpoint (which saves them), or from the model (Keras 3 saves no metric state)."""
    import os
    import tempfile

    model = _private_classifier(len(y))
    model.fit(x, y, steps_per_epoch=20, epochs=1, verbose=0)
    if not compat.is_tf_keras(model):
        return {f"{m.name}/{i}": np.asarray(v) for m in model.metrics for i, v in enumerate(m.variables)}
    path = tempfile.mkdtemp()
    model.save(path, save_format="tf")
    reader = tf.train.load_checkpoint(os.path.join(path, "variables", "variables"))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map() if "/metrics/" in name}


def case_a_saved_private_model_carries_no_training_metric_state():
    """The compiled loss and accuracy sum over the sampled examples: after fit they are zero, so a mislabelled
    outlier replacing one record leaves the saved non-weight state identical (it moved the loss total by ~10x)."""
    (x, y), (x2, y2) = _neighbours()
    on_d, on_d2 = _metric_state_after_private_fit(x, y), _metric_state_after_private_fit(x2, y2)
    assert on_d and set(on_d) == set(on_d2), (on_d, on_d2)
    for name, value in on_d.items():
        assert not np.any(value) and not np.any(on_d2[name]), (name, value, on_d2[name])


def _metric_state_in_files(x, y, folder) -> tuple[list[str], dict[str, np.ndarray], list[str]]:
    """A private fit on (x, y) whose callbacks save the whole model every 2 steps and every epoch (a
    ModelCheckpoint, and a callback of the caller's own after it), then ``evaluate`` on the training records
    and a save. Returns the files' metric-state problems (`privacy.training_state`), the metric variables of
    every tf-keras SavedModel saved, and the names of the entries of the Keras 3 files' weights."""
    import glob
    import os
    import zipfile

    import h5py

    model = _private_classifier(len(y))
    tf_keras = compat.is_tf_keras(model)
    suffix = "" if tf_keras else ".keras"
    saves = K.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: batch % 2 or model.save(f"{folder}/batch_{batch}{suffix}")
    )
    checkpoint = K.callbacks.ModelCheckpoint(f"{folder}/epoch_{{epoch}}{suffix}")
    model.fit(x, y, steps_per_epoch=4, epochs=2, verbose=0, callbacks=[checkpoint, saves])
    assert model.evaluate(x, y, verbose=0)[0] > 0  # the loss on the training records, returned
    model.save(f"{folder}/final{suffix}")
    if not tf_keras:
        assert len(glob.glob(f"{folder}/*.keras")) == 5
        entries = []
        for path in sorted(glob.glob(f"{folder}/*.keras")):
            with zipfile.ZipFile(path) as archive, archive.open("model.weights.h5") as f, h5py.File(f) as h5:
                h5.visit(entries.append)
        return training_state.metric_state_problems(folder), {}, entries
    metrics = {}
    for prefix in training_state.checkpoint_prefixes(folder):
        reader = tf.train.load_checkpoint(prefix)
        for name in reader.get_variable_to_shape_map():
            if training_state.METRIC_SCOPE in name:
                metrics[f"{os.path.relpath(prefix, folder)}:{name}"] = reader.get_tensor(name)
    return training_state.metric_state_problems(folder), metrics, []


def case_no_file_saved_during_or_after_a_private_fit_carries_metric_state():
    """Neighbouring data (a mislabelled outlier replaces record 0): the models a ModelCheckpoint and a callback
    save during fit, and one saved after evaluate on the training records, hold no metric state on either, so
    these files carry no exact statistic of the records (tf-keras: all their metric variables zero; before the
    fix they held the loss total and example count of the steps run; Keras 3 saves no metric variable)."""
    import tempfile

    (x, y), (x2, y2) = _neighbours()
    on_d = _metric_state_in_files(x, y, tempfile.mkdtemp())
    on_d2 = _metric_state_in_files(x2, y2, tempfile.mkdtemp())
    for problems, metrics, entries in (on_d, on_d2):
        assert problems == [], problems
        assert not any("metric" in entry for entry in entries), entries
        assert all(not np.any(value) for value in metrics.values()), metrics
    assert set(on_d[1]) == set(on_d2[1]) and on_d[2] == on_d2[2]
    if K.__name__ == "tf_keras":  # 5 SavedModels (steps 0 and 2, epochs 1 and 2, final) x 4 metric variables
        assert len(on_d[1]) == 5 * 4, sorted(on_d[1])


class _SavesEvenBatches(K.callbacks.Callback):
    """A caller's own checkpointing: saves the whole model after the even-numbered steps of each epoch."""

    def __init__(self, folder: str, suffix: str):
        super().__init__()
        self.folder, self.suffix = folder, suffix

    def on_train_batch_end(self, batch, logs=None):
        if batch % 2 == 0:
            self.model.save(f"{self.folder}/batch_{self.model.optimizer.iterations.numpy()}{self.suffix}")


def _counting_resets(model) -> list[int]:
    """Wraps ``model.reset_metrics`` on the instance (no callback hook involved) to record, at each call, the
    optimizer's steps run so far."""
    resets, reset = [], model.reset_metrics

    def counted():
        resets.append(int(model.optimizer.iterations.numpy()))
        reset()

    object.__setattr__(model, "reset_metrics", counted)
    return resets


def _saved_during_fit(make_callback) -> tuple[list[str], list[str], int, list[int]]:
    """A private fit of 2 epochs x 4 steps whose only callback is ``make_callback(folder, suffix)``. Returns the
    metric-state problems of the files under the folder, their names, the metric variables saved (tf-keras
    SavedModels) and the steps run at each ``reset_metrics`` call."""
    (x, y), _ = _neighbours()
    model = _private_classifier(len(y))
    folder, suffix = tempfile.mkdtemp(), "" if compat.is_tf_keras(model) else ".keras"
    resets = _counting_resets(model)
    model.fit(x, y, steps_per_epoch=4, epochs=2, verbose=0, callbacks=[make_callback(folder, suffix)])
    saved = 0
    for prefix in training_state.checkpoint_prefixes(folder):
        reader = tf.train.load_checkpoint(prefix)
        saved += sum(training_state.METRIC_SCOPE in name for name in reader.get_variable_to_shape_map())
    return training_state.metric_state_problems(folder), sorted(os.listdir(folder)), saved, resets


_KERAS_RESETS = [0, 4, 8]
"""The steps run at each ``reset_metrics`` call of a private fit of 2 epochs x 4 steps that neither Keras 3 nor the
state guard adds to: Keras' at each epoch start, private fit's when it returns."""


def _guard_resets(steps: list[int]) -> list[int]:
    """``steps`` (steps run at which the tf-keras state guard zeroes the metrics), merged into `_KERAS_RESETS`."""
    return sorted(_KERAS_RESETS + (steps if K.__name__ == "tf_keras" else []))


def case_checkpoints_saved_between_steps_hold_no_metric_state():
    """A ModelCheckpoint saving every 2 steps and a caller's callback saving from ``on_train_batch_end``, each the
    fit's only callback: no file saved mid-epoch holds metric state (tf-keras: the state guard zeroes the
    metrics after every step, as these callbacks see the model between steps; a guard zeroing per epoch only
    leaves the sums of the epoch's steps in them). Keras 3 saves no metric variable."""
    per_step = _guard_resets([1, 2, 3, 4, 4, 5, 6, 7, 8, 8])  # after every step, and at each epoch end
    for make_callback, names in (
        (
            lambda folder, suffix: K.callbacks.ModelCheckpoint(f"{folder}/e{{epoch}}b{{batch}}{suffix}", save_freq=2),
            ["e1b2", "e1b4", "e2b2", "e2b4"],
        ),
        (_SavesEvenBatches, ["batch_1", "batch_3", "batch_5", "batch_7"]),
    ):
        problems, files, saved, resets = _saved_during_fit(make_callback)
        suffix = "" if K.__name__ == "tf_keras" else ".keras"
        assert files == [name + suffix for name in names], files
        assert problems == [], problems
        assert saved == (4 * 4 if K.__name__ == "tf_keras" else 0), saved  # loss and accuracy: total, count
        assert resets == per_step, resets


def case_an_epoch_end_checkpoint_holds_no_metric_state_and_the_metrics_run_through_the_epoch():
    """A ModelCheckpoint saving per epoch, the fit's only callback: its files hold no metric state, and the state
    guard zeroes the metrics once per epoch, at its end (tf-keras), not after every step: the accumulators run
    through the epoch as in Keras (nothing but the epoch end sees them)."""
    problems, files, saved, resets = _saved_during_fit(
        lambda folder, suffix: K.callbacks.ModelCheckpoint(f"{folder}/e{{epoch}}{suffix}")
    )
    suffix = "" if K.__name__ == "tf_keras" else ".keras"
    assert files == ["e1" + suffix, "e2" + suffix] and problems == [], (files, problems)
    assert saved == (2 * 4 if K.__name__ == "tf_keras" else 0), saved
    assert resets == _guard_resets([4, 8]), resets


def case_the_state_guard_zeroes_per_step_only_for_callbacks_that_see_the_model_between_steps():
    """`callback.reads_between_steps`, the tf-keras guard's rule: any hook but an epoch-level one counts, whether a
    method of the callback's class or set on it (LambdaCallback), but in ppml's own, History, ProgbarLogger and an
    epoch ModelCheckpoint of exactly those classes. BackupAndRestore counts even per epoch (its batch hook saves
    on preemption), TensorBoard counts (fail closed), and so do a subclass of an exempt class and an exempt one
    with a batch hook set on it."""
    from privacy.keras import callback

    folder = tempfile.mkdtemp()

    class OnTestBegin(K.callbacks.Callback):  # sees the model at the validation before the epoch end
        def on_test_begin(self, logs=None):
            pass

    class OnBatchEnd(K.callbacks.Callback):  # the old alias
        def on_batch_end(self, batch, logs=None):
            pass

    class EpochOnly(K.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            pass

    class Checkpoint(K.callbacks.ModelCheckpoint):
        pass

    hooked = K.callbacks.ModelCheckpoint(f"{folder}/m.keras")
    hooked.on_train_batch_end = lambda batch, logs=None: hooked.model.save(f"{folder}/b{batch}.keras")

    model = _private_classifier(40)
    for cb, reads in (
        (callback.callback_for(model), False),
        (callback.state_guard_for(model, []), False),
        (K.callbacks.History(), False),
        (K.callbacks.ProgbarLogger(), False),
        (K.callbacks.ModelCheckpoint(f"{folder}/m.keras"), False),
        (K.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: None), False),
        (K.callbacks.EarlyStopping(monitor="val_loss"), False),
        (EpochOnly(), False),
        (K.callbacks.ModelCheckpoint(f"{folder}/m.keras", save_freq=3), True),
        (Checkpoint(f"{folder}/m.keras"), True),
        (hooked, True),
        (K.callbacks.BackupAndRestore(folder), True),
        (K.callbacks.TensorBoard(folder), True),
        (K.callbacks.LambdaCallback(on_train_batch_begin=lambda batch, logs: None), True),
        (OnTestBegin(), True),
        (OnBatchEnd(), True),
        (object(), True),
    ):
        assert callback.reads_between_steps(cb, K) is reads, (cb, reads)


class _RunningCentre(L.Layer):
    """Subtracts a running mean of its inputs, updated in training (a hand-written normaliser)."""

    def build(self, shape):
        self.centre = self.add_weight(name="centre", shape=tuple(shape[1:]), initializer="zeros", trainable=False)

    def call(self, x, training=None):
        if training:
            self.centre.assign(0.9 * self.centre + 0.1 * tf.reduce_mean(x, axis=0))
        return x - self.centre


def _fit_private(layer, drop_first=False):
    x, labels = _data()
    if drop_first:
        x, labels = x[1:], labels[1:]
    model = make_private(
        K.Sequential([K.Input((4,)), layer, L.Dense(1, activation="sigmoid")]),
        l2_norm_clip=1.0,
        noise_multiplier=1.0,
        expected_batch_size=10,
        target_delta=1e-3,
    )
    model.compile(optimizer=K.optimizers.SGD(0.1), loss=K.losses.BinaryCrossentropy())
    model.fit(x, labels[:, None].astype("float32"), steps_per_epoch=4, epochs=1, verbose=0)
    return model


def case_training_that_updates_non_trainable_state_is_refused():
    """A running mean assigned in call() is refused by fit with a one-line error naming the variable (the
    saved model would carry a statistic of the training batches); LayerNormalization and Dense pass."""
    try:
        _fit_private(_RunningCentre(name="running_centre"))
    except DPConfigurationError as err:
        message = str(err)
        assert "\n" not in message and "running_centre/centre" in message and "non-trainable" in message, message
    else:
        raise AssertionError("fit accepted a layer whose training updates its non-trainable weights")
    _fit_private(L.LayerNormalization())
    _fit_private(L.Dense(3))


class _RecordCounter(L.Layer):
    """Counts the examples it sees in training (rows with any non-zero feature, so Poisson padding is not
    counted) in an integer non-trainable variable: the saved model would carry a count of the private records."""

    def build(self, shape):
        self.seen = self.add_weight(name="seen", shape=(), initializer="zeros", dtype="int64", trainable=False)

    def call(self, x, training=None):
        if training:
            real = tf.reduce_any(tf.not_equal(x, 0.0), axis=1)
            self.seen.assign_add(tf.reduce_sum(tf.cast(real, "int64")))
        return x


def case_training_that_counts_records_in_integer_state_is_refused():
    """An integer counter of the training records is refused like a float running mean (naming it), on data
    and on its neighbour without record 0 (where it would hold a different count); Dropout and GaussianNoise,
    whose Keras 3 seed generators advance by one draw per step whatever the data, still train."""
    for drop in (False, True):
        try:
            _fit_private(_RecordCounter(name="record_counter"), drop_first=drop)
        except DPConfigurationError as err:
            message = str(err)
            assert "\n" not in message and "record_counter/seen" in message and "counter" in message, message
        else:
            raise AssertionError("fit accepted a layer that counts the training records in an integer variable")
    model = _fit_private(K.Sequential([L.Dropout(0.5), L.GaussianNoise(0.1)]))
    generators = [v for v in model.non_trainable_variables if "seed_generator" in v.name]
    assert len(generators) == (0 if K.__name__ == "tf_keras" else 2), model.non_trainable_variables


def case_a_seed_generator_drawing_a_data_dependent_number_of_times_is_refused():
    """A Keras 3 layer drawing twice in a batch holding a marked record and not at all otherwise: over 4 in-order
    batches (marked records in the first and third) its counter advances 2, 0, 2, 0, a multiple of the steps
    that the end-of-fit check accepts, but a count of the marked batches; refused after the second batch, naming
    it. tf-keras has no seed generators, and no exemption for integer state
    (case_training_that_counts_records_in_integer_state_is_refused)."""
    if K.__name__ == "tf_keras":
        return

    class MarkedNoise(L.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.generator = K.random.SeedGenerator(7)

        def call(self, x, training=None):
            if not training:
                return x

            def draw():
                return K.random.normal(K.ops.shape(x), seed=self.generator) + K.random.normal(
                    K.ops.shape(x), seed=self.generator
                )

            return x + 0.0 * K.ops.cond(K.ops.any(x[:, 0] > 5.0), draw, lambda: K.ops.zeros_like(x))

    x = np.random.default_rng(0).normal(size=(40, 4)).astype("float32")
    x[3, 0] = x[25, 0] = 9.0
    model = make_private(
        K.Sequential([K.Input((4,)), MarkedNoise(name="marked_noise"), L.Dense(1, activation="sigmoid")]),
        l2_norm_clip=1.0,
        noise_multiplier=1.0,
        expected_batch_size=10,
        dataset_size=40,
        target_delta=1e-3,
        sampling="shuffle",
    )
    model.compile(optimizer=K.optimizers.SGD(0.1), loss=K.losses.BinaryCrossentropy())
    try:
        model.fit(x, (x[:, 1:2] > 0).astype("float32"), batch_size=10, epochs=1, shuffle=False, verbose=0)
    except DPConfigurationError as err:
        message = str(err)
        assert "\n" not in message and "seed_generator_state" in message and "different number" in message, message
    else:
        raise AssertionError(f"fit accepted uneven draws; counter {model.layers[0].generator.state.numpy()}")


def case_the_ledger_tells_a_float64_step_from_its_noise_draws():
    """The DP-SGD ledger lists the sum across clipping units in float64 where the run's noise draws were cut at
    float64's radius, else in float32: real fits of a float32 and a float64 model give the draws the ledger keys on."""
    from pipelines import privacy_ledger as pl

    x, y = _data()
    listed = {}
    for dtype in ("float32", "float64"):
        inputs = K.Input((4,), dtype=dtype)
        model = K.Sequential([inputs, L.Dense(3, dtype=dtype), L.Dense(2, dtype=dtype)])
        private = make_private(model, l2_norm_clip=1.0, noise_multiplier=1.0, expected_batch_size=10, target_delta=1e-3)
        private.compile(optimizer=K.optimizers.SGD(0.1), loss=K.losses.SparseCategoricalCrossentropy(from_logits=True))
        private.fit(x.astype(dtype), y, epochs=1, verbose=0)
        listed[dtype] = pl.floating_point({"noise_cutoff": private_training(private).noise.draws.to_dict()})
    for dtype, entries in listed.items():
        assert entries[pl.FLOAT_SUM_NAME] == pl.float_sum(dtype)[pl.FLOAT_SUM_NAME]
    assert all(entries.items() >= pl.FLOATING_POINT_NOISE.items() for entries in listed.values())
