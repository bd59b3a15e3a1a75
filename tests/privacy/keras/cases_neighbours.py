"""Neighbouring data sets for every supported combination, run on both Keras flavours.

Combinations: sampling (poisson, fixed, shuffle) x adjacency (add-remove with Poisson sampling, replace-one
with all three) x microbatches (per example, or 2 microbatches) x user-level grouping (a user's repeated
examples, accounted by group privacy) x input kind (arrays, datasets, several fit calls, a resumed run).

* Sensitivity: the noiseless change of one step's clipped sum between adversarial neighbours (an example
  whose huge gradient opposes the rest of its microbatch, its replacement pointing the other way, a
  non-finite example, a user's repeated examples), measured through the step's own clipping code on a
  batch drawn by ppml's sampler, against the distance the accounted dp-accounting event assumes, read
  here from the event itself.
* Steps and epochs: the batches that ran (recorded inside the step) against the units the budget composed.

Every epsilon asserted is recomputed here from dp-accounting events written out by hand.
"""

import json
import math
import os
import tempfile

import dp_accounting
import numpy as np
import tensorflow as tf

from privacy.accounting import DpSgdMechanism, compute_epsilon
from privacy.keras import (
    DPConfigurationError,
    DPKerasSGDOptimizer,
    DPSequential,
    PrivacyBudgetExceeded,
    compat,
    fixed_size_batches,
    make_private,
    poisson_batches,
    private_training,
    recording,
)
from privacy.keras.layer_rules import rule_for
from privacy.keras.params import DPParams
from privacy.keras.private_training import is_private
from privacy.keras.sampling import shuffled_batches
from privacy.keras.train_step import clipped_gradient_sum

K = compat.default_keras()
L = K.layers
R = dp_accounting.NeighboringRelation
SIGMA, DELTA = 1.0, 1e-3

# sampling, adjacency, microbatches: every combination make_private accepts.
COMBINATIONS = [
    (sampling, adjacency, microbatches)
    for sampling, adjacency in (
        ("poisson", "add-remove"),
        ("poisson", "replace-one"),
        ("fixed", "replace-one"),
        ("shuffle", "replace-one"),
    )
    for microbatches in (None, 2)
]


def _expected(sampling, adjacency, microbatches, n, batch, sigma=SIGMA):
    """(unit event, relation) each combination must be accounted with, written out by hand."""
    if sampling == "poisson":  # a clipped microbatch of several examples moves by 2C
        step = dp_accounting.GaussianDpEvent(sigma / (2 if microbatches else 1))
        relation = R.REPLACE_ONE if adjacency == "replace-one" else R.ADD_OR_REMOVE_ONE
        return dp_accounting.PoissonSampledDpEvent(batch / n, step), relation
    if sampling == "fixed":  # x' in x's slot: 2C
        return dp_accounting.SampledWithoutReplacementDpEvent(
            n, batch, dp_accounting.GaussianDpEvent(sigma / 2)
        ), R.REPLACE_ONE
    return dp_accounting.GaussianDpEvent(sigma / 2), R.ADD_OR_REMOVE_ONE  # one Gaussian per epoch, 2C


def _epsilon(unit, relation, count, accountant="rdp"):
    accountant = (
        dp_accounting.rdp.RdpAccountant(neighboring_relation=relation)
        if accountant == "rdp"
        else dp_accounting.pld.PLDAccountant(neighboring_relation=relation)
    )
    return accountant.compose(dp_accounting.SelfComposedDpEvent(unit, count)).get_epsilon(DELTA)


def _assumed_distance(unit, relation):
    """(d, kind): how far apart, in units of C, the event lets one step's sums on neighbours be.

    Read from the event: the Gaussian's noise multiplier is relative to the distance it covers, and the
    noise added is SIGMA C. kind "per side" for dp-accounting's REPLACE_ONE analysis of Poisson sampling
    (the sums with x and with x' each at most d from the sum without them), else "between" (the sums
    with and without x under add/remove, with x and with x' under replace-one).
    """
    if isinstance(unit, dp_accounting.PoissonSampledDpEvent):
        return SIGMA / unit.event.noise_multiplier, "per side" if relation == R.REPLACE_ONE else "between"
    if isinstance(unit, dp_accounting.SampledWithoutReplacementDpEvent):
        return SIGMA / unit.event.noise_multiplier, "between"
    return SIGMA / unit.noise_multiplier, "between"


# --- sensitivity ---------------------------------------------------------------------------------------
# A linear model w . x with squared loss and w = 0: an example's gradient is -2 y x. Every example has
# x = e1; the others have y = -1 (gradient +2 e1, clipped to +C e1); the adversary (example 0, y = 1000)
# pushes -2000 e1, its replacement (y = -1000) +2000 e1. In a microbatch the others' clipped mean points
# to +e1 and the adversary flips it to -e1: the largest change a microbatch allows.
N, BATCH, MAX_BATCH = 8, 6, 8
ADVERSARY, REPLACEMENT = 1000.0, -1000.0


def _linear(loss="mse"):
    model = K.Sequential([K.Input((2,)), L.Dense(1, use_bias=False, kernel_initializer="zeros")])
    model.compile(optimizer=K.optimizers.SGD(1.0), loss=loss)
    return model


def _examples():
    x = np.tile(np.array([[1.0, 0.0]], "float32"), (N, 1))
    y = np.full((N, 1), -1.0, "float32")
    y[0] = ADVERSARY
    return x, y


def _batch_with_adversary(sampling, microbatches):
    """A batch from ppml's sampler (the one fit would run) holding the adversary with at least two other real
    examples in its microbatch, whose mean without it still clips to norm C: removing it then moves the clipped
    mean by the full 2C (with one mate here only by 5/3 C; which batch comes first depends on TensorFlow's global
    seed, which other tests set); returns (x, y, weight, the adversary's slot)."""
    examples = _examples()
    if sampling == "poisson":
        batches = poisson_batches(
            examples,
            dataset_size=N,
            expected_batch_size=BATCH,
            max_batch_size=MAX_BATCH,
            seed=3,
            random_slots=microbatches is not None,
        )
    elif sampling == "fixed":
        batches = fixed_size_batches(examples, dataset_size=N, batch_size=BATCH, seed=3)
    else:
        batches = shuffled_batches(examples, dataset_size=N, batch_size=BATCH, seed=3)
    for x, y, w in batches.take(50):
        x, y, w = x.numpy(), y.numpy(), w.numpy()
        slots = np.flatnonzero((y[:, 0] == ADVERSARY) & (w > 0))
        if not slots.size or len(w) % (microbatches or 1):
            continue
        size = len(w) // microbatches if microbatches else 1
        mates = w[slots[0] // size * size : (slots[0] // size + 1) * size]
        if np.count_nonzero(mates) >= 3 or not microbatches:
            return x, y, w, int(slots[0])
    raise AssertionError(f"no {sampling} batch held the adversary with two microbatch mates")


def _clipped_sum(model, private, x, y, w):
    """One step's noiseless sum of clipped gradients, by the training step's own code."""
    units = recording.find_units(model, rule_for)
    params = DPParams(1.0, 0.0, private.params.num_microbatches)
    total = clipped_gradient_sum(
        model,
        units,
        tf.constant(x),
        tf.constant(y),
        tf.constant(w),
        params,
        expected_batch_size=private.expected_batch_size,
    ).sums
    return np.concatenate([t.numpy().ravel() for t in total])


def _neighbour(batch, slot, y_value=None, x_value=None, remove=False):
    x, y, w = (a.copy() for a in batch)
    if remove:
        x[slot], y[slot], w[slot] = 0.0, 0.0, 0.0  # what the sampler's padding looks like
    if y_value is not None:
        y[slot] = y_value
    if x_value is not None:
        x[slot] = x_value
    return x, y, w


def case_one_step_moves_no_further_than_the_accounted_event_assumes():
    """For every combination: the distance between neighbouring sums (C = 1) is at most what the event
    accounted by make_private assumes, and the adversarial pair reaches it (so a smaller assumption, such as
    Gaussian(sigma) for microbatches under Poisson replace-one, fails here). A non-finite example moves
    nothing; a user's two examples move up to twice the example-level distance (group privacy's job)."""
    for sampling, adjacency, microbatches in COMBINATIONS:
        model = make_private(
            _linear(),
            l2_norm_clip=1.0,
            noise_multiplier=SIGMA,
            num_microbatches=microbatches,
            expected_batch_size=BATCH,
            dataset_size=N,
            sampling=sampling,
            adjacency=adjacency,
            target_delta=DELTA,
        )
        private = private_training(model)
        mechanism = private.mechanism()
        unit = mechanism.unit_event()
        assert (unit, mechanism.neighboring_relation) == _expected(sampling, adjacency, microbatches, N, BATCH)
        allowed, kind = _assumed_distance(unit, mechanism.neighboring_relation)
        x, y, w, slot = _batch_with_adversary(sampling, microbatches)
        batch = (x, y, w)
        with_x = _clipped_sum(model, private, *batch)
        without_x = _clipped_sum(model, private, *_neighbour(batch, slot, remove=True))
        with_replacement = _clipped_sum(model, private, *_neighbour(batch, slot, y_value=REPLACEMENT))
        if kind == "per side":
            moves = [np.linalg.norm(with_x - without_x), np.linalg.norm(with_replacement - without_x)]
        elif adjacency == "add-remove":
            moves = [np.linalg.norm(with_x - without_x)]
        else:
            moves = [np.linalg.norm(with_x - with_replacement)]
        label = (sampling, adjacency, microbatches, moves, allowed)
        assert max(moves) <= allowed + 1e-5, label
        assert max(moves) >= allowed - 1e-5, label  # the adversarial pair reaches the assumed distance
        # A non-finite example is dropped: as if absent, or with its whole microbatch (the mates' C).
        poisoned = _clipped_sum(model, private, *_neighbour(batch, slot, x_value=[np.inf, 0.0]))
        if microbatches is None:
            np.testing.assert_allclose(poisoned, without_x, atol=1e-6, err_msg=str(label))
        assert np.all(np.isfinite(poisoned)) and np.linalg.norm(poisoned - without_x) <= allowed + 1e-5, label
        # A user with two examples (the adversary and a second one like it), removed or both replaced: up to
        # twice as far as one example, under either adjacency.
        second = int(np.flatnonzero((w > 0) & (np.arange(len(w)) != slot))[0])
        user = _neighbour(batch, second, y_value=ADVERSARY)
        with_user = _clipped_sum(model, private, *user)
        without_user = _clipped_sum(
            model, private, *_neighbour(_neighbour(user, slot, remove=True), second, remove=True)
        )
        replaced_user = _clipped_sum(
            model, private, *_neighbour(_neighbour(user, slot, y_value=REPLACEMENT), second, y_value=REPLACEMENT)
        )
        if kind == "per side":
            user_moves = max(np.linalg.norm(with_user - without_user), np.linalg.norm(replaced_user - without_user))
        elif adjacency == "add-remove":
            user_moves = np.linalg.norm(with_user - without_user)
        else:
            user_moves = np.linalg.norm(with_user - replaced_user)
        assert user_moves <= 2 * allowed + 1e-5, (label, user_moves)
        if microbatches is None:  # beyond what one example may move: only group privacy covers it
            assert user_moves >= 2 * allowed - 1e-5, (label, user_moves)


def case_an_example_with_a_non_finite_loss_contributes_nothing():
    """Under MAE an inf label has an inf loss but a finite gradient (-x): it was counted as dropped yet trained
    (in a fit of 8 such examples the kernel moved to -0.75, not -0.875). For every combination its clipping unit
    now contributes nothing: the sum equals the sum without it (per example) or without its microbatch; and fit
    counts the one example it left out."""
    for sampling, adjacency, microbatches in COMBINATIONS:
        model = make_private(
            _linear("mae"),
            l2_norm_clip=1.0,
            noise_multiplier=SIGMA,
            num_microbatches=microbatches,
            expected_batch_size=BATCH,
            dataset_size=N,
            sampling=sampling,
            adjacency=adjacency,
            target_delta=DELTA,
        )
        private = private_training(model)
        x, y, w, slot = _batch_with_adversary(sampling, microbatches)
        poisoned = _clipped_sum(model, private, *_neighbour((x, y, w), slot, y_value=np.inf))
        size = len(w) // microbatches if microbatches else 1
        without = (x, y, w.copy())
        without[2][slot // size * size : (slot // size + 1) * size] = 0.0  # the example, or its microbatch
        np.testing.assert_allclose(
            poisoned,
            _clipped_sum(model, private, *without),
            atol=1e-6,
            err_msg=str((sampling, adjacency, microbatches)),
        )
    x, y = _examples()
    y[0] = np.inf
    model = make_private(
        _linear("mae"),
        l2_norm_clip=1.0,
        noise_multiplier=0.0,
        expected_batch_size=N,
        dataset_size=N,
        sampling="shuffle",
    )
    model.fit(x, y, epochs=1, batch_size=N, shuffle=False, verbose=0)
    np.testing.assert_allclose(model.get_weights()[0][:, 0], [-7 / 8, 0.0], atol=1e-6)  # 7 examples at +e1 / 8
    assert private_training(model).dropped_examples == 1


def case_user_level_epsilon_is_group_privacy_of_the_example_level_events():
    """max_examples_per_user = K: epsilon is K epsilon'(delta') for an example-level delta' whose group delta
    delta' (e^(K eps') - 1) / (e^eps' - 1) is within delta. Checked here with dp-accounting alone: delta' is
    solved from the reported epsilon, and the result lies between K epsilon(delta / K) and a grid search."""
    n, batch, steps, k, sigma = 1000, 50, 200, 3, 3.0
    for sampling, adjacency, microbatches in (
        ("poisson", "add-remove", None),
        ("poisson", "add-remove", 5),
        ("fixed", "replace-one", 5),
        ("shuffle", "replace-one", None),
    ):
        mechanism = DpSgdMechanism(
            dataset_size=n,
            batch_size=batch,
            noise_multiplier=sigma,
            steps=steps,
            sampling=sampling,
            adjacency=adjacency,
            num_microbatches=microbatches,
            max_examples_per_user=k,
        )
        unit, relation = _expected(sampling, adjacency, microbatches, n, batch, sigma)
        count = steps if sampling != "shuffle" else math.ceil(steps / math.floor(n / batch))  # epochs started
        accountant = dp_accounting.rdp.RdpAccountant(neighboring_relation=relation).compose(
            dp_accounting.SelfComposedDpEvent(unit, count)
        )
        reported = compute_epsilon(mechanism, DELTA, "rdp")
        per_example = reported / k
        lo, hi = math.log(1e-300), math.log(DELTA)  # eps(delta') decreases in delta': solve eps(delta') = per_example
        for _ in range(200):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if accountant.get_epsilon(math.exp(mid)) > per_example else (lo, mid)
        delta_prime = math.exp(hi)
        group = delta_prime * math.expm1(k * per_example) / math.expm1(per_example)
        assert group <= DELTA * (1 + 1e-6), (reported, delta_prime, group)
        assert reported >= k * accountant.get_epsilon(DELTA / k) - 1e-9
        grid = [
            k * accountant.get_epsilon(d)
            for d in np.geomspace(DELTA / k, 1e-300, 600)
            if d * math.expm1(k * accountant.get_epsilon(d)) / math.expm1(accountant.get_epsilon(d)) <= DELTA
        ]
        assert reported <= min(grid) + 1e-6, (reported, min(grid))


# --- steps and epochs ----------------------------------------------------------------------------------
class _Uses:
    """The example ids each private step saw (column 0 of x; 0 marks padding)."""

    def __init__(self):
        self.batches = []

    def counts(self, n):
        ids = np.concatenate(self.batches) if self.batches else np.zeros(0)
        return np.bincount(ids[ids > 0].astype(int), minlength=n + 1)[1:]


class _Recorder(L.Layer):
    """Passes x through and notes column 0 of every batch the step runs on."""

    def __init__(self, uses, **kwargs):
        super().__init__(**kwargs)
        self.uses = uses

    def call(self, x):
        def note(ids):
            self.uses.batches.append(ids.copy())
            return np.int32(0)

        token = tf.numpy_function(note, [x[:, 0]], tf.int32, stateful=True)
        with tf.control_dependencies([token]):
            return tf.identity(x)


def _id_data(n, inputs=4, classes=3, seed=0):
    """Features whose column 0 is the example's id 1..n (so a recorder can tell the examples apart)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, inputs)).astype("float32")
    x[:, 0] = np.arange(1, n + 1)
    return x, rng.integers(0, classes, size=n)


def _recording_mlp(uses, inputs=4, outputs=3, seed=0):
    K.utils.set_random_seed(seed)
    return K.Sequential([K.Input((inputs,)), _Recorder(uses), L.Dense(8, activation="tanh"), L.Dense(outputs)])


def _compiled(model, loss=None):
    model.compile(
        optimizer=K.optimizers.SGD(0.1), loss=loss or K.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    return model


def case_steps_that_ran_are_the_steps_accounted():
    """Poisson and fixed-size batches from arrays, from a dataset in a second fit, and in a resumed run: every
    step that ran (recorded inside the step) is one unit of the budget, and its epsilon is dp-accounting's."""
    n, batch = 40, 8  # 5 steps per epoch
    x, y = _id_data(n)
    for sampling, adjacency, microbatches in COMBINATIONS:
        if sampling == "shuffle":
            continue  # epochs, not steps: the cases below
        uses = _Uses()
        builder = {"sampling": "fixed"} if sampling == "fixed" else {"random_slots": microbatches is not None}
        with tempfile.TemporaryDirectory() as tmp:
            options = dict(
                l2_norm_clip=1.0,
                noise_multiplier=SIGMA,
                num_microbatches=microbatches,
                expected_batch_size=batch,
                sampling=sampling,
                adjacency=adjacency,
                target_delta=DELTA,
                state_path=os.path.join(tmp, "state.json"),
                seed=1,
            )
            model = _compiled(make_private(_recording_mlp(uses), **options))
            model.fit(x, y, epochs=1, verbose=0)
            if sampling == "fixed":
                dataset = fixed_size_batches((x, y), dataset_size=n, batch_size=batch, seed=2)
            else:
                dataset = poisson_batches(
                    (x, y), dataset_size=n, expected_batch_size=batch, max_batch_size=n, seed=2, **builder
                )
            model.fit(dataset, epochs=1, steps_per_epoch=3, verbose=0)
            resumed = _compiled(make_private(_recording_mlp(uses), **options))  # a new process, same state
            resumed.fit(x, y, epochs=1, verbose=0)
        private = private_training(resumed)
        unit, relation = _expected(sampling, adjacency, microbatches, n, batch)
        label = (sampling, adjacency, microbatches)
        assert len(uses.batches) == private.steps == private.budget.units == 13, (label, len(uses.batches))
        assert private.budget.ledger == ((unit, 13),), label
        accountant = private.accountant_kind().value
        assert abs(private.epsilon() - _epsilon(unit, relation, 13, accountant)) < 1e-9, label


def case_train_on_batch_and_train_step_are_refused():
    """train_on_batch and direct train_step calls ran the private step on the caller's batch and accounted it as
    if ppml had sampled it: 8 train_on_batch calls on the same 10 of 100 rows reported epsilon 1.96 (Poisson
    q = 0.1), while for those rows, in every step, it is 13.3 (dp-accounting, below). ppml cannot check how the
    caller's batch was drawn, so every such step is refused, for each sampling, before and after a fit (whose
    traced train function ppml holds out of the model's reach between fits: Keras' own train_on_batch traces
    anew and is refused), eagerly, in a tf.function and under XLA, and counts nothing."""
    n, batch = 100, 10
    x, y = _id_data(n)
    sampled = _epsilon(
        dp_accounting.PoissonSampledDpEvent(batch / n, dp_accounting.GaussianDpEvent(SIGMA)), R.ADD_OR_REMOVE_ONE, 8
    )
    unamplified = _epsilon(dp_accounting.GaussianDpEvent(SIGMA), R.ADD_OR_REMOVE_ONE, 8)
    assert sampled < 2 < 13 < unamplified, (sampled, unamplified)
    data = (tf.constant(x[:batch]), tf.constant(y[:batch]))
    why = ("cannot check how the caller's batch was sampled", "train with fit")
    for sampling in ("poisson", "fixed", "shuffle"):
        model = _compiled(
            make_private(
                _recording_mlp(_Uses()),
                l2_norm_clip=1.0,
                noise_multiplier=SIGMA,
                sampling=sampling,
                expected_batch_size=batch,
                dataset_size=n,
                target_delta=DELTA,
                seed=0,
            )
        )
        private = private_training(model)
        for fitted in (False, True):
            _refused(lambda: model.train_on_batch(x[:batch], y[:batch]), "train_on_batch cannot train", *why)
            _refused(lambda: model.train_step(data), "calling train_step outside fit cannot train", *why)
            for jit in (False, True):
                _refused(lambda: tf.function(model.train_step, jit_compile=jit)(data), *why)
            if fitted:  # the step fit traced is out of reach between fits, so Keras' own methods trace anew
                assert model.train_function is None
                _refused(lambda: K.Model.train_on_batch(model, x[:batch], y[:batch]), *why)
            assert private.steps == (10 if fitted else 0), (sampling, fitted, private.steps)
            if not fitted:
                model.fit(x, y, epochs=1, verbose=0)
    # DPSequential, and a plain model made private by its first fit with a DP optimizer (TF Privacy's drop-in).
    dp_sequential = _compiled(
        DPSequential(
            1.0,
            SIGMA,
            layers=[K.Input((4,)), L.Dense(3)],
            expected_batch_size=batch,
            dataset_size=n,
            target_delta=DELTA,
        )
    )
    drop_in = K.Sequential([K.Input((4,)), L.Dense(3)])
    drop_in.compile(
        optimizer=DPKerasSGDOptimizer(l2_norm_clip=1.0, noise_multiplier=SIGMA, learning_rate=0.1),
        loss=K.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none"),
    )
    drop_in.fit(x, y, batch_size=batch, epochs=1, verbose=0)
    for model in (dp_sequential, drop_in):
        _refused(lambda: model.train_on_batch(x[:batch], y[:batch]), "train_on_batch cannot train", *why)
        _refused(lambda: model.train_step(data), "calling train_step outside fit cannot train", *why)
    assert (private_training(dp_sequential).steps, private_training(drop_in).steps) == (0, 10)


def case_target_epsilon_holds_within_fit():
    """target_epsilon 2 with sigma 1: fit stops at the last step within the target (recomputed here from
    dp-accounting), and the step itself holds the target when a callback after ppml's cancels the stop
    (an assertion on the step counter, a backstop behind the budget callback)."""
    n, batch, target = 100, 10, 2.0
    x, y = _id_data(n)
    unit, relation = _expected("poisson", "add-remove", None, n, batch)
    allowed = next(t for t in range(1000) if _epsilon(unit, relation, t + 1) > target)
    assert allowed > 1

    class KeepsGoing(K.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.model.stop_training = False

    for cancel in (False, True):
        model = _compiled(
            make_private(
                _recording_mlp(_Uses()),
                l2_norm_clip=1.0,
                noise_multiplier=SIGMA,
                expected_batch_size=batch,
                dataset_size=n,
                target_epsilon=target,
                target_delta=DELTA,
                seed=0,
            )
        )
        private = private_training(model)
        try:
            model.fit(x, y, epochs=100, verbose=0, callbacks=[KeepsGoing()] if cancel else [])
        except tf.errors.InvalidArgumentError as err:
            assert cancel and "allows no further private step" in str(err), str(err)
        else:
            assert not cancel, "the step ran past the target epsilon"
        assert private.steps == allowed and private.epsilon() <= target < _epsilon(unit, relation, allowed + 1), (
            cancel,
            private.steps,
            allowed,
            private.epsilon(),
            private.max_steps(),
        )
        try:
            model.fit(x, y, epochs=1, verbose=0)
        except PrivacyBudgetExceeded as err:
            assert "target epsilon 2 is spent" in str(err), str(err)
        else:
            raise AssertionError("a fit ran with the target epsilon spent")
        assert private.steps == allowed


def case_a_loaded_model_brings_no_steps_outside_a_ledger():
    """A model trained by the TF Privacy drop-in (7 steps), saved and loaded: tf-keras's load_model compiled it,
    which made it private with an empty ledger, so further training reported the epsilon of the new steps only.
    Loading now leaves it a plain model, and its first fit is refused before any step: its optimizer has
    applied 7 steps that no ledger holds."""
    n, batch = 105, 15
    x, y = _id_data(n)
    model = K.Sequential([K.Input((4,)), L.Dense(3)])
    model.compile(
        optimizer=DPKerasSGDOptimizer(l2_norm_clip=1.0, noise_multiplier=1.1, learning_rate=0.1),
        loss=K.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none"),
    )
    model.fit(x, y, epochs=1, batch_size=batch, verbose=0)
    assert private_training(model).steps == 7
    formats = ("model.keras", "model.h5") if compat.is_tf_keras(model) else ("model.keras",)
    with tempfile.TemporaryDirectory() as tmp:
        for name in formats:
            model.save(os.path.join(tmp, name))
            loaded = K.models.load_model(os.path.join(tmp, name))
            assert not is_private(loaded) and int(loaded.optimizer.iterations.numpy()) == 7, name
            before = [w.copy() for w in loaded.get_weights()]
            _refused(
                lambda: loaded.fit(x, y, epochs=1, batch_size=batch, verbose=0),
                "has already applied 7 steps that no privacy ledger of ppml holds",
                "make_private",
            )
            assert not is_private(loaded) and all(
                np.array_equal(a, b) for a, b in zip(before, loaded.get_weights(), strict=True)
            )


def _shuffle_epsilon(epochs):
    """Each shuffled epoch is one Gaussian of sensitivity 2C (noise multiplier sigma / 2)."""
    return _epsilon(dp_accounting.GaussianDpEvent(SIGMA / 2), R.ADD_OR_REMOVE_ONE, epochs)


def case_shuffled_dataset_epochs_come_from_the_data():
    """A dataset batched at 50 with expected_batch_size 10 is refused at its first batch (it was accounted
    as one epoch of 10 steps for five real passes); batched at 10, its cardinality gives the epoch length."""
    n = 100
    x, y = _id_data(n)
    model = _compiled(
        make_private(
            _recording_mlp(_Uses()),
            l2_norm_clip=1.0,
            noise_multiplier=SIGMA,
            sampling="shuffle",
            expected_batch_size=10,
            dataset_size=n,
            target_delta=DELTA,
            seed=0,
        )
    )
    examples = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(n)
    try:
        model.fit(examples.batch(50), epochs=5, verbose=0)
    except Exception as err:
        assert "more examples than expected_batch_size=10" in str(err), str(err)
    else:
        raise AssertionError("batches larger than expected_batch_size were trained on")
    private = private_training(model)
    assert private.steps == 0, private.steps
    model.fit(examples.batch(10), epochs=3, verbose=0)
    assert (private.steps, private.mechanism().steps_per_epoch, private.mechanism().passes) == (30, 10, 3)
    assert abs(private.epsilon("rdp") - _shuffle_epsilon(3)) < 1e-9
    # A repeated dataset: one epoch per repetition, whatever steps_per_epoch says.
    model.fit(examples.batch(10).repeat().prefetch(1), epochs=4, steps_per_epoch=5, verbose=0)
    assert (private.steps, private.mechanism().passes) == (50, 5)
    for hidden_repeat in (examples.batch(10).repeat().take(25), examples.repeat().batch(10)):
        try:
            model.fit(hidden_repeat, epochs=1, verbose=0)
        except DPConfigurationError as err:
            assert "steps of one shuffled epoch cannot be read" in str(err), str(err)
        else:
            raise AssertionError("a dataset whose epoch length cannot be read was accounted")
    assert private.steps == 50


def case_a_pass_over_a_dataset_holds_at_most_n_examples():
    """one_pass.concatenate(one_pass) has a known cardinality (20 batches of 10 for n = 100), but each of its
    passes uses every example twice: it was accounted as 3 epochs for 6 uses. Its 11th batch would exceed n
    examples in the pass, so the input pipeline stops there: the 10 steps that ran used each example once."""
    n, batch = 100, 10
    x, y = _id_data(n)
    one_pass = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(n).batch(batch)
    for doubled, steps_per_epoch in (
        (one_pass.concatenate(one_pass), None),
        (one_pass.concatenate(one_pass).repeat(), 15),
    ):
        uses = _Uses()
        model = _compiled(
            make_private(
                _recording_mlp(uses),
                l2_norm_clip=1.0,
                noise_multiplier=SIGMA,
                sampling="shuffle",
                expected_batch_size=batch,
                dataset_size=n,
                target_delta=DELTA,
                seed=0,
            )
        )
        try:
            model.fit(doubled, epochs=3, steps_per_epoch=steps_per_epoch, verbose=0)
        except Exception as err:
            assert "one pass over the dataset (20 batches) holds more examples than dataset_size=100" in str(err)
        else:
            raise AssertionError("a pass using every example twice was accounted as one epoch")
        private = private_training(model)
        assert private.steps == 10 and uses.counts(n).tolist() == [1] * n, private.steps
        assert private.mechanism().passes == 1


def case_shuffled_epochs_continue_across_fit_calls():
    """Two fit(steps_per_epoch=5) on a 10-step epoch of arrays: ppml's stream continues the permutation, so
    each example is used once in what is accounted as one epoch (a new permutation per fit used some
    twice). A caller's dataset cannot be continued, so a new pass after a partial epoch is refused."""
    n, batch = 100, 10
    x, y = _id_data(n)
    uses = _Uses()
    model = _compiled(
        make_private(
            _recording_mlp(uses),
            l2_norm_clip=1.0,
            noise_multiplier=SIGMA,
            sampling="shuffle",
            expected_batch_size=batch,
            target_delta=DELTA,
            seed=0,
        )
    )
    for _ in range(2):
        model.fit(x, y, epochs=1, steps_per_epoch=5, verbose=0)
    private = private_training(model)
    assert private.steps == 10 and private.mechanism().passes == 1
    assert uses.counts(n).max() == 1 and uses.counts(n).sum() == n
    model.fit(x, y, epochs=1, steps_per_epoch=3, verbose=0)
    model.fit(x, y, epochs=1, verbose=0)  # 10 more steps: 7 to finish epoch 2, 3 of epoch 3
    assert private.steps == 23 and private.mechanism().passes == 3
    assert set(uses.counts(n)) == {2, 3} and uses.counts(n).max() <= private.mechanism().passes
    assert abs(private.epsilon("rdp") - _shuffle_epsilon(3)) < 1e-9
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(n).batch(batch)
    try:
        model.fit(dataset, epochs=1, verbose=0)
    except DPConfigurationError as err:
        assert "stopped after 3 of its 10 steps" in str(err) and "use some of its examples twice" in str(err)
    else:
        raise AssertionError("a new pass over a dataset was accounted as the rest of an epoch")
    model.fit(x, y, epochs=1, steps_per_epoch=7, verbose=0)
    model.fit(dataset, epochs=1, verbose=0)  # at an epoch boundary a dataset's pass is a new epoch
    assert private.steps == 40 and private.mechanism().passes == 4


def _refused(fn, *fragments):
    try:
        fn()
    except DPConfigurationError as err:
        assert all(fragment in str(err) for fragment in fragments), (fragments, str(err))
    else:
        raise AssertionError(f"not refused: expected an error mentioning {fragments}")


def case_a_resumed_run_cannot_switch_the_order_of_its_epoch():
    """A run stopped after 3 of 10 shuffled steps saves where the partial epoch came from (the state used to say
    no epoch was open, because it was written before fit ended): a rerun with fit(shuffle=False) would have used
    17 examples twice in that epoch, so it is refused; with shuffle=True it continues the permutation and every
    example is used once."""
    n, batch = 100, 10
    x, y = _id_data(n)
    uses = _Uses()
    with tempfile.TemporaryDirectory() as tmp:
        state = os.path.join(tmp, "state.json")

        def run():
            return _compiled(
                make_private(
                    _recording_mlp(uses),
                    l2_norm_clip=1.0,
                    noise_multiplier=SIGMA,
                    sampling="shuffle",
                    expected_batch_size=batch,
                    target_delta=DELTA,
                    state_path=state,
                )
            )

        run().fit(x, y, epochs=1, steps_per_epoch=3, verbose=0)
        with open(state) as f:
            assert json.load(f)["shuffle"]["open_epoch"] == "permuted"
        rerun = run()
        _refused(
            lambda: rerun.fit(x, y, epochs=1, steps_per_epoch=7, shuffle=False, verbose=0),
            "stopped after 3 of its 10 steps (permuted)",
            "use some of its examples twice",
        )
        rerun.fit(x, y, epochs=1, steps_per_epoch=7, verbose=0)
        assert private_training(rerun).steps == 10 and private_training(rerun).mechanism().passes == 1
    assert uses.counts(n).tolist() == [1] * n


def case_resumed_shuffled_epoch_continues_its_permutation():
    """A run saved in the middle of a shuffled epoch resumes the same permutation (its seed and position are
    in the state): across both processes every example is used once in what is accounted as one epoch."""
    n, batch = 60, 10
    x, y = _id_data(n)
    uses = _Uses()
    with tempfile.TemporaryDirectory() as tmp:
        state = os.path.join(tmp, "private_training.json")
        for _ in range(2):
            model = make_private(
                _recording_mlp(uses),
                l2_norm_clip=1.0,
                noise_multiplier=1.0,
                sampling="shuffle",
                expected_batch_size=batch,
                target_delta=DELTA,
                state_path=state,
            )
            _compiled(model)
            model.fit(x, y, epochs=1, steps_per_epoch=3, verbose=0)
        with open(state) as f:
            saved = json.load(f)
        assert saved["steps"] == 6 and saved["shuffle"]["open_epoch"] is None
        assert saved["shuffle"]["steps_per_epoch"] == 6
    assert uses.counts(n).tolist() == [1] * n
    assert private_training(model).mechanism().passes == 1


def case_non_finite_examples_are_dropped_and_counted():
    """Example 0 holds inf: unsampled it must not touch any step (padding used to copy it, and 0 x inf is
    NaN), sampled its gradient is dropped (contributes 0) and counted, outside the logs. A NaN label
    and a NaN sample weight are dropped the same way."""
    n, batch = 40, 4
    x, y = _id_data(n, inputs=4)
    x[0, 1] = np.inf
    uses = _Uses()
    model = make_private(
        _recording_mlp(uses),
        l2_norm_clip=1.0,
        noise_multiplier=1.0,
        expected_batch_size=batch,
        target_delta=DELTA,
        seed=3,
    )
    _compiled(model)
    history = model.fit(x, y, epochs=3, verbose=0)
    private = private_training(model)
    sampled = int(uses.counts(n)[0])
    assert 0 < sampled < private.steps, (sampled, private.steps)
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())
    assert private.dropped_examples == sampled
    # An exact count of private data: kept out of the logs, and labelled in the report with the training loss.
    assert set(history.history) == {"epsilon"}  # no training loss, no dropped count
    assert any(
        note.startswith("not covered: fit's training loss and metrics") and "dropped_examples" in note
        for note in private.report().notes
    )
    for microbatches in (None, 2):
        regression = make_private(
            _recording_mlp(_Uses(), outputs=1),
            l2_norm_clip=1.0,
            noise_multiplier=1.0,
            num_microbatches=microbatches,
            expected_batch_size=batch,
            target_delta=DELTA,
            seed=4,
        )
        _compiled(regression, loss="mse")
        targets = y.astype("float32")
        targets[5] = np.nan
        weights = np.ones(n, "float32")
        weights[7] = np.nan
        for labels, sample_weight in ((targets, np.ones(n, "float32")), (y.astype("float32"), weights)):
            before = private_training(regression).dropped_examples
            # 5 epochs at q ~ 0.1: the bad row is missed in all ~50 steps with probability 0.9^50 ~ 0.5 %
            regression.fit(x[1:], labels[1:], sample_weight=sample_weight[1:], epochs=5, verbose=0)
            assert all(np.all(np.isfinite(w)) for w in regression.get_weights()), microbatches
            assert private_training(regression).dropped_examples > before, microbatches
