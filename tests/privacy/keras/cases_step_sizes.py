"""A DP-SGD step's summed sizes unknown when it is traced, run on both Keras flavours.

`max_l2_norm_clip` holds for sums of at most `MAX_STEP_POSITIONS` terms; XLA drops `tf.debugging` assertions, so
a size left None when the step is traced (a caller's dataset with a smaller last batch, a sequence length left None)
is checked by a guard XLA keeps (`clipping.checked_positions`); with ``skip_padding`` the realised batch's rows are
unknown, and the padded batch's bound them when the step is traced. The limit is patched down (to the realised sizes of
a few rows) so that nothing large is built; the check reads the module's `noise_cutoff.MAX_STEP_POSITIONS` when the
step is traced, which `_limit` patches.
"""

import contextlib
import functools

import numpy as np
import tensorflow as tf

from privacy.accounting import noise_cutoff
from privacy.keras import DPConfigurationError, compat, make_private, private_training, sampling

K = compat.default_keras()
L = K.layers


@contextlib.contextmanager
def _limit(terms: int):
    saved = noise_cutoff.MAX_STEP_POSITIONS
    noise_cutoff.MAX_STEP_POSITIONS = terms
    try:
        yield
    finally:
        noise_cutoff.MAX_STEP_POSITIONS = saved


def _fit(model, dataset, *, limit: int, batch: int, n: int, xla: bool):
    """Fits ``model`` privately for one epoch of ``dataset`` (a caller's shuffled batches of at most ``batch`` of
    ``n`` examples), with XLA or not, under ``limit``; returns (the weights before, after, the private steps
    counted)."""
    K.utils.set_random_seed(0)
    make_private(
        model,
        l2_norm_clip=1.0,
        noise_multiplier=1.0,
        sampling="shuffle",
        expected_batch_size=batch,
        dataset_size=n,
        seed=0,
    )
    model.compile(optimizer=K.optimizers.SGD(0.1), loss="mse", jit_compile=xla)
    before = [v.numpy().copy() for v in model.trainable_variables]
    with _limit(limit):
        model.fit(dataset, epochs=1, verbose=0)
    after = [v.numpy() for v in model.trainable_variables]
    return before, after, private_training(model).steps


def _refused(fit, count: int, limit: int, what: tuple[str, str], xla: bool) -> None:
    """``fit()`` fails naming the limit, what is summed (``what``: in the assertion's words, in the guard's op name)
    and the realised ``count``: under XLA when the step is compiled (the guard), else when it runs (the
    assertion)."""
    words, op_name = what
    try:
        fit()
    except tf.errors.InvalidArgumentError as err:
        text = str(err)
        if xla:
            assert f"a_DP-SGD_step_sums_more_than_{limit}_{op_name}" in text, text[:2000]
            assert f"[{count}] is not compatible with expected shape [0]" in text, text[:2000]
        else:
            assert f"a DP-SGD step sums more than {limit} {words}" in text, text[-2000:]
            assert f"= ] [{count}]" in text, text[-2000:]
    else:
        raise AssertionError(f"a step over {count} {words or 'terms'} trained (XLA {xla}) with a limit of {limit}")


def _rows_model():
    return K.Sequential([K.Input((3,)), L.Dense(1)])


def case_a_batch_left_none_is_refused_beyond_the_limit_and_trains_within_with_and_without_xla():
    """A caller's dataset of 12 examples in batches of 8 (the last of 4: the batch dimension is None when traced):
    with the limit at 7 the step over 8 rows is refused, when XLA compiles it or, without XLA, when it runs; at 8
    both batches train (2 steps, the weights move and stay finite)."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(12, 3)).astype("float32"), rng.normal(size=(12, 1)).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    assert dataset.element_spec[0].shape[0] is None
    for xla in (True, False):
        fit = functools.partial(_fit, dataset=dataset, batch=8, n=12, xla=xla)
        _refused(lambda: fit(_rows_model(), limit=7), 8, 7, ("", ""), xla)  # the batch's, or the Dense's
        before, after, steps = fit(_rows_model(), limit=8)
        assert steps == 2 and all(np.all(np.isfinite(w)) for w in after), (xla, steps, after)
        assert any(not np.array_equal(b, a) for b, a in zip(before, after, strict=True)), xla


def case_a_sequence_left_none_is_refused_beyond_the_limit_and_trains_within_with_and_without_xla():
    """An embedding's clipped sum runs over rows times ids: 4 rows of a length left None (padded to 5 ids, 20 terms)
    are refused with the limit at 19, with XLA or without, naming the embedding's sum, and train at 20."""
    rng = np.random.default_rng(2)
    ids = rng.integers(0, 6, size=(4, 5)).astype("int32")
    y = rng.normal(size=(4, 1)).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((ids, y)).padded_batch(4, ([None], [1]), drop_remainder=True)
    assert dataset.element_spec[0].shape.as_list() == [4, None]

    def model():
        inputs = K.Input((None,), dtype="int32")
        hidden = L.GlobalAveragePooling1D()(L.Embedding(6, 2)(inputs))
        return K.Model(inputs, L.Dense(1)(hidden))

    for xla in (True, False):
        fit = functools.partial(_fit, dataset=dataset, batch=4, n=4, xla=xla)
        what = ("rows (times positions) in ", "rows_times_positions_in_")
        _refused(lambda: fit(model(), limit=19), 20, 19, what, xla)
        before, after, steps = fit(model(), limit=20)
        assert steps == 1 and all(np.all(np.isfinite(w)) for w in after), (xla, steps, after)
        assert any(not np.array_equal(b, a) for b, a in zip(before, after, strict=True)), xla


def case_skip_padding_refuses_a_padded_batch_beyond_the_limit_when_traced_and_trains_within():
    """With ``skip_padding`` the layers see the realised rows (unknown when traced), at most the padded batch's P
    (Poisson, 1024 examples, B = 64, P = 115): an embedding over 8 ids sums at most 8 P terms. With the limit at
    8 P - 1 the fit is refused when the step is traced, before any step, naming the embedding's sum and 8 P, as it is
    with the padding kept (the realised batches, about 64 rows rounded up to a multiple of 32, stay below it: an
    assertion on them lets the run start and fail at whichever step first samples over 114 examples); at 8 P the
    epoch (16 steps) trains."""
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 6, size=(1024, 8)).astype("int32")
    y = rng.normal(size=(1024, 1)).astype("float32")
    padded = sampling.default_max_batch_size(1024, 64)
    assert padded == 115, padded

    def fit(limit: int, skip_padding: bool):
        K.utils.set_random_seed(0)
        inputs = K.Input((8,), dtype="int32")
        model = K.Model(inputs, L.Dense(1)(L.GlobalAveragePooling1D()(L.Embedding(6, 2)(inputs))))
        make_private(
            model, l2_norm_clip=1.0, noise_multiplier=1.0, expected_batch_size=64, seed=0, skip_padding=skip_padding
        )
        model.compile(optimizer=K.optimizers.SGD(0.1), loss="mse")
        with _limit(limit):
            try:
                model.fit(ids, y, epochs=1, verbose=0)
            except DPConfigurationError as err:
                assert private_training(model).steps == 0, private_training(model).steps
                return str(err)
        assert all(np.all(np.isfinite(v.numpy())) for v in model.trainable_variables)
        return private_training(model).steps

    for skip_padding in (True, False):
        message = fit(8 * padded - 1, skip_padding)
        assert isinstance(message, str), (skip_padding, message)
        assert f"over {8 * padded} rows (times positions) in " in message and "embedding" in message, message
    assert fit(8 * padded, True) == 16
