"""The front door: `make_private(model, ...)`, and `DPModel` / `DPSequential` for TF Privacy users.

`make_private` validates a Keras model (Keras 3 or tf-keras), attaches a `PrivateTraining` to it and
replaces five of its methods on the instance only: `train_step` (the DP-SGD step, which runs only inside
`fit`), `fit` (which checks the data's sampling, draws the batches from arrays, adds the privacy budget
callback, refuses training that changes non-trainable weights but seed generators' counters, and zeroes
the compiled loss and metric accumulators when it ends, and for tf-keras at every epoch end, and after every
step where a callback may see the model between steps, before a ModelCheckpoint saves, so that no model file
carries an exact training statistic), `evaluate` and
`test_on_batch` (the same, after they return: their accumulators sum over the examples evaluated, perhaps
training ones) and `train_on_batch` (refused: the caller's batch cannot be accounted). The class, `compile`,
`predict` and saving are untouched, so the trained model is an ordinary Keras model for serving (TFX
Pusher/Evaluator included).
"""

from __future__ import annotations

import functools
import math
import types
import warnings

import numpy as np
import tensorflow as tf

from privacy.accounting import DpSgdMechanism, Sampling, delta_warning
from privacy.accounting.noise_cutoff import check_step_noise
from privacy.keras import callback, compat, monitoring, optimizers, recording, roundoff, sampling, validator
from privacy.keras.params import DPConfigurationError, DPParams
from privacy.keras.private_training import (
    CALLERS_DATASET,
    IN_ORDER,
    PERMUTED,
    PrivateTraining,
    attach,
    detach,
    is_private,
    outside_fit,
    private_training,
)
from privacy.keras.train_step import dp_train_step

_FIT_ARGUMENTS = (
    "x",
    "y",
    "batch_size",
    "epochs",
    "verbose",
    "callbacks",
    "validation_split",
    "validation_data",
    "shuffle",
    "class_weight",
    "sample_weight",
    "initial_epoch",
    "steps_per_epoch",
)
_DEFAULT_KERAS_BATCH_SIZE = 32


def make_private(
    model,
    mechanism: DpSgdMechanism | None = None,
    *,
    l2_norm_clip: float | None = None,
    noise_multiplier: float | None = None,
    num_microbatches: int | None = None,
    expected_batch_size: float | None = None,
    dataset_size: int | None = None,
    sampling: str | None = None,
    adjacency: str | None = None,
    target_delta: float | None = None,
    target_epsilon: float | None = None,
    accountant: str | None = None,
    state_path: str | None = None,
    seed: int | None = None,
    secure_noise: bool = False,
    truncated_batch_size: int | str | None = None,
    skip_padding: bool = False,
    batch_size_noise_multiplier: float | None = None,
):
    """Makes ``model`` train with DP-SGD through its ordinary `compile` and `fit`; returns ``model``.

    The mechanism is given either as one planned `privacy.accounting.DpSgdMechanism` (with ``l2_norm_clip``,
    which it does not hold) or as its parts ``noise_multiplier``, ``num_microbatches``,
    ``expected_batch_size``, ``dataset_size``, ``sampling``, ``adjacency`` and ``truncated_batch_size``; not
    both (`DPConfigurationError`).

    Args:
      model: a Keras 3 or tf-keras model (Sequential, functional or subclassed).
      mechanism: the planned run: its noise multiplier, microbatches, batch size B (``expected_batch_size``),
        dataset size, sampling, adjacency and truncated batch size are used. Its ``steps`` (and, for shuffled
        batches, ``steps_per_epoch``) are not a limit: the steps `fit` runs are what is counted and accounted.
        A mechanism with ``max_examples_per_user`` (group privacy) is refused: the guarantee here is per
        example.
      l2_norm_clip: C, the L2 bound on each example's gradient over all trainable variables. With
        ``noise_multiplier``, or neither when the model is compiled with a DPKeras*Optimizer.
      noise_multiplier: sigma; noise of std sigma * C (1 + 2^-10) is added once to the sum of clipped gradients
        (the slack covers the clipped sum's rounding: `privacy.keras.params.SLACK`).
      num_microbatches: clip M equal slices of each batch instead of examples (a microbatch moves by up to
        2C when one example joins it, so x and a replacement x' are up to 4C apart under Poisson
        replace-one; the accountant is told: `DpSgdMechanism.sensitivity`).
      expected_batch_size: B, the public batch size the noisy sum is divided by (for Poisson sampling
        the expected size q * n). Default: `fit`'s batch_size, or the Poisson dataset's.
      dataset_size: n, the number of training examples (needed for accounting; taken from arrays or
        a `poisson_batches` dataset when not given).
      sampling: "poisson" (the default; arrays given to `fit` are Poisson-sampled, their rows gathered in
        place without copying them; datasets must come from `poisson_batches`), "fixed"
        (`fixed_size_batches`), or "shuffle" (each epoch a permutation batched within the epoch;
        accounted with the once-per-epoch bound, which claims no amplification). Under shuffling,
        arrays run as ppml's epochs (``fit(shuffle=False)``: in the arrays' order), continued across
        `fit` calls and resumed runs; a caller's tf.data.Dataset gives the epoch length by its
        cardinality (or that of the dataset it repeats), each batch is checked to hold at most
        ``expected_batch_size`` examples, and a new pass over it may start only at an epoch boundary.
      adjacency: "add-remove" or "replace-one"; default: the sampling's natural one, add-remove for
        Poisson sampling and replace-one for fixed-size and shuffled batches (which refuse add-remove).
      target_delta: delta of the reported guarantee; default: the largest power of 10 at most 1/(2n). A
        larger one (above 1/(2n)) gets a warning at fit, and in the report.
      target_epsilon: stop training before epsilon (at target_delta) would exceed this.
      accountant: "rdp" or "pld" for logs and stopping; default RDP where it applies, else PLD.
      state_path: JSON file for the steps and budget ledger, written every epoch; a run started with an
        existing file resumes its count (pair it with Keras' BackupAndRestore or ModelCheckpoint).
      seed: seed for reproducible noise and sampling (tests); default: fresh randomness.
      secure_noise: draw the noise generator's state from the OS CSPRNG (incompatible with ``seed``).
      truncated_batch_size: K for truncated Poisson sampling (arrays given to `fit` are padded to K instead
        of the 1e-9 quantile, a batch drawing more is cut to a uniformly random K of its examples), or
        "default" for B + 4 standard deviations (`privacy.accounting.truncation.default_truncated_batch_size`).
        Accounted with `TruncatedSubsampledGaussianDpEvent` (PLD only; per-example clipping only); the batches
        cut are counted (`PrivateTraining.truncated_batches`, the report). A `poisson_batches` dataset brings its
        own.
      skip_padding: outside XLA and without ``num_microbatches`` (elsewhere it does nothing), leave a batch's
        padding rows out before the forward pass (the sampler's padding only, weight -0.0: real examples of sample
        weight 0 stay), down to a multiple of 32 rows, so that a Poisson step costs what its realised batch costs.
        The model and the accounting are the same; but a step's duration (and Keras' ms/step in logs) then follows
        the batch size drawn, which epsilon does not cover (the report says so) unless ``batch_size_noise_multiplier``
        is given. Default False: every step computes
        the whole padded batch.
      batch_size_noise_multiplier: sigma_c, in rows (noisy padding; needs ``skip_padding=True``, untruncated Poisson
        batches, per-example clipping, add-remove, one replica, no XLA): each step keeps its m drawn examples plus
        max(0, ceil(mu + Z)) padding rows (Z ~ N(0, sigma_c^2) from the gradient noise's generator), in all rounded
        up to a multiple of `privacy.accounting.noisy_padding.NOISY_ROWS_MULTIPLE` rows, so its row count is covered by
        epsilon (its duration too where a row's cost does not depend on its content, not the
        input pipeline's gathering of the drawn examples: README); each step is accounted as one Gaussian of noise
        multiplier (sigma^-2 + sigma_c^-2)^-1/2, and the guarantee's delta gains T 2^-50 (1 + 2^-40)
        (1 + e^eps) (`privacy.accounting.noisy_padding.clamp_delta`). None: padding as ``skip_padding`` says.

    Returns:
      ``model`` itself, now private. `private_training(model)` gives its `PrivateTraining` (budget,
      epsilon, report); `privacy_budget(model)` its `PrivacyBudget`.

    Private steps run only inside `fit`, which checks that its batches are what ``sampling`` declares
    (Poisson datasets, batch sizes, epoch lengths, examples per pass); every step is counted and kept
    within ``target_epsilon``. `train_on_batch` and `train_step` called outside `fit` are refused with a
    `DPConfigurationError`: ppml cannot check how the caller's batch was sampled, so it cannot account it.

    Raises:
      DPConfigurationError: for layers, losses or settings DP-SGD cannot handle, naming what to use instead; for
        an ``l2_norm_clip`` whose noise, sigma C (1 + 2^-10) / B, is below float32's range (its draws flushed to 0:
        `check_step_noise`; where B is known here, else at the first step), or above
        `privacy.accounting.noise_cutoff.max_l2_norm_clip` (a step's float32 noisy sum could overflow; that cap also
        keeps the noise below the top of float32's range).
    """
    if mechanism is not None:
        _check_mechanism(
            mechanism,
            l2_norm_clip,
            dict(
                noise_multiplier=noise_multiplier,
                num_microbatches=num_microbatches,
                expected_batch_size=expected_batch_size,
                dataset_size=dataset_size,
                sampling=sampling,
                adjacency=adjacency,
                truncated_batch_size=truncated_batch_size,
                batch_size_noise_multiplier=batch_size_noise_multiplier,
            ),
        )
        noise_multiplier, num_microbatches = mechanism.noise_multiplier, mechanism.num_microbatches
        expected_batch_size, dataset_size = mechanism.batch_size, mechanism.dataset_size
        sampling, adjacency = mechanism.sampling, mechanism.adjacency
        truncated_batch_size = mechanism.truncated_batch_size
        batch_size_noise_multiplier = mechanism.batch_size_noise_multiplier
    elif sampling is None:
        sampling = Sampling.POISSON
    params = _params(l2_norm_clip, noise_multiplier, num_microbatches)
    if is_private(model):
        raise DPConfigurationError(
            f"model '{model.name}' is already private (by make_private, as a DPModel or "
            f"DPSequential, or by a fit with a DP optimizer); call make_private once, before "
            f"the first fit"
        )
    validator.validate(model, target_epsilon=target_epsilon)
    private = PrivateTraining(
        params=params,
        expected_batch_size=expected_batch_size,
        dataset_size=dataset_size,
        sampling=sampling,
        adjacency=adjacency,
        target_delta=target_delta,
        target_epsilon=target_epsilon,
        accountant=accountant,
        state_path=state_path,
        seed=seed,
        secure_noise=secure_noise,
        truncated_batch_size=truncated_batch_size,
        skip_padding=skip_padding,
        batch_size_noise_multiplier=batch_size_noise_multiplier,
    )
    denominator = None if params is None else params.num_microbatches or private.expected_batch_size
    if denominator is not None and params.noise_multiplier != 0:  # else the first step checks it
        check_step_noise(params.noise_multiplier, params.l2_norm_clip, denominator, error=DPConfigurationError)
    attach(model, private)
    object.__setattr__(model, "train_step", types.MethodType(_train_step, model))
    object.__setattr__(model, "fit", types.MethodType(_fit_with(type(model).fit), model))
    object.__setattr__(model, "train_on_batch", types.MethodType(refused_train_on_batch, model))
    for name in _METRIC_ZEROING:
        object.__setattr__(model, name, types.MethodType(_zeroing_metrics(getattr(type(model), name)), model))
    model.train_function = None  # a function traced before holds the non-private step
    return model


def _train_step(model, data):
    return dp_train_step(model, private_training(model), data)


def _fit_with(class_fit):
    """``class_fit`` run through `private_fit`."""

    def fit(model, *args, **kwargs):
        return private_fit(model, types.MethodType(class_fit, model), *args, **kwargs)

    return fit


def private_fit(model, fit, *args, **kwargs):
    """`fit` with the checks and defaults of private training (see `make_private`)."""
    if len(args) > len(_FIT_ARGUMENTS):
        raise TypeError(f"fit() takes at most {len(_FIT_ARGUMENTS)} positional arguments here")
    for name, value in zip(_FIT_ARGUMENTS, args, strict=False):  # args may stop early
        if name in kwargs:
            raise TypeError(f"fit() got multiple values for argument '{name}'")
        kwargs[name] = value
    private = _ready(model)
    if any(v.dtype == tf.float32 for v in model.trainable_variables):  # each fit: the traced step outlives them
        roundoff.refuse_tensor_float_32()
    # the noise's cut-off, accounted before the first step: the gradients' pairs and noisy padding's Z
    z = [] if private.batch_size_noise_multiplier is None else [tf.TensorSpec([1], tf.float64)]
    private.noise.expect([*model.trainable_variables, *z])
    shuffled_from = _prepare_data(model, private, kwargs)
    _avoid_xla_for_recurrent_fallbacks(model, private)
    given = kwargs.get("callbacks") or []
    callbacks = list(getattr(given, "callbacks", given))  # a Keras CallbackList: the callbacks it holds
    problems = monitoring.training_metric_problems(callbacks)
    if problems:
        raise DPConfigurationError(
            "private training refuses callbacks that act on training metrics:\n  - " + "\n  - ".join(problems)
        )
    if private.state_path:
        _check_checkpoint_frequency(callbacks)
    accounting = _check_accounting(private)
    if accounting:
        _check_planned_steps(private, kwargs)
    kwargs["callbacks"] = fit_callbacks(model, callbacks, accounting)
    model.train_function = private.held_train_function
    validation = kwargs.get("validation_data") is not None  # validation_split is refused (_prepare_data)
    private.note_validation_decisions(monitoring.validation_decisions(callbacks, validation=validation))
    try:
        with private.fitting(shuffled_from):
            return fit(**kwargs)
    finally:
        # Between fits nobody may call the traced private step (model.train_function(...), Keras' own
        # train_on_batch): it would run on the caller's batch, accounted as if ppml had drawn it.
        private.held_train_function, model.train_function = model.train_function, None
        # The compiled loss and metrics hold exact sums over the sampled training examples (and their count):
        # zero them, so that a saved model carries none of it (NOT_COVERED names what fit still returned).
        model.reset_metrics()


def fit_callbacks(model, callbacks: list, accounting: bool) -> list:
    """The callbacks a private `fit` of ``model`` runs: its state guard, then the caller's `PrivacyBudgetCallback`
    or, with ``accounting`` and none given, a new one (so that epsilon is in the logs before TensorBoard, History or
    EarlyStopping read them), then the caller's other ``callbacks``."""
    ours = [cb for cb in callbacks if isinstance(cb, callback.PrivacyBudgetLogic)]
    if accounting and not ours:
        ours = [callback.callback_for(model)]
    others = ours + [cb for cb in callbacks if cb not in ours]
    return [callback.state_guard_for(model, others), *others]


_METRIC_ZEROING = ("evaluate", "test_on_batch")
"""A private model's methods that leave its compiled metrics zeroed when they return (`_zeroing_metrics`)."""


def _zeroing_metrics(method):
    """``method`` of a Keras model, zeroing the model's compiled loss and metric accumulators when it returns: they
    sum over the examples it saw (training records, when evaluated on them), and tf-keras saves them with the
    model. What it returns is computed before."""

    @functools.wraps(method)
    def zeroing(model, *args, **kwargs):
        try:
            return method(model, *args, **kwargs)
        finally:
            model.reset_metrics()

    return zeroing


def refused_train_on_batch(model, *args, **kwargs):
    """`train_on_batch` of a private model: refused (`private_training.outside_fit`)."""
    raise DPConfigurationError(outside_fit("train_on_batch"))


def _ready(model) -> PrivateTraining:
    """The model's `PrivateTraining` once the compiled model passes the validator, hyperparameters resolved."""
    private = private_training(model)
    if getattr(model, "optimizer", None) is None:
        raise DPConfigurationError("compile the model (optimizer and per-example loss) before training")
    validator.validate(model, target_epsilon=private.target_epsilon)
    private.resolve_params(model.optimizer)
    return private


def _check_accounting(private) -> bool:
    """Whether this training is accounted. Refused when it cannot be: with a target epsilon or a state_path,
    and for a model made private by its DP optimizer (the drop-in); otherwise a private training warns."""
    missing = private.missing_for_accounting()
    why = (
        "noise_multiplier is 0 (no privacy)"
        if private.params.noise_multiplier == 0
        else f"{' and '.join(missing)} unknown (pass {' and '.join(missing)} to make_private)"
        if missing
        else None
    )
    if why is None:
        reason = private.unaccountable_reason()
        if reason:
            kind = private.accountant_kind().value.upper()
            raise DPConfigurationError(f"cannot account this training with the {kind} accountant: {reason}")
        too_large = delta_warning(private.target_delta, private.dataset_size)
        if too_large:
            warnings.warn(f"target_delta: {too_large}", stacklevel=3)
        return True
    for option, value in (("target_epsilon", private.target_epsilon), ("state_path", private.state_path)):
        if value is not None:
            raise DPConfigurationError(
                f"make_private({option}={value!r}) needs the privacy spent, but fit cannot account this training: {why}"
            )
    if private.params.noise_multiplier > 0:
        if private.require_accounting:
            raise DPConfigurationError(
                f"the model is compiled with a DP optimizer, so fit trains it privately, but cannot account this "
                f"training: {' and '.join(missing)} unknown. Call make_private(model, "
                f"{', '.join(f'{name}=...' for name in missing)}, sampling='shuffle') before fit"
            )
        warnings.warn(f"this private training is not accounted (no epsilon): {why}", stacklevel=3)
    return False


def _check_checkpoint_frequency(callbacks) -> None:
    """The privacy state is saved at epoch ends: a checkpoint saved mid-epoch would restore weights
    trained by steps that the saved state does not count, so a resumed run would under-report epsilon."""
    for cb in callbacks:
        frequency = getattr(cb, "save_freq", "epoch")
        if frequency not in ("epoch", False, None):
            raise DPConfigurationError(
                f"{type(cb).__name__}(save_freq={frequency!r}) checkpoints within epochs, but the privacy state "
                f"(state_path) is saved at the end of each epoch; use save_freq='epoch' (pass steps_per_epoch "
                f"to fit for shorter epochs)"
            )


def _check_planned_steps(private: PrivateTraining, kwargs: dict) -> None:
    """Refuses, before the first step, a fit without a target epsilon whose planned steps (epochs x steps per
    epoch, after those run) its accountant cannot account (PLD's cost limits), instead of failing mid-fit.
    With a target epsilon, training stops in time (`PrivateTraining.max_steps`); with an unknown epoch length
    the callback reports it when it happens."""
    per_epoch = kwargs.get("steps_per_epoch") or private.steps_per_epoch
    if private.target_epsilon is not None or per_epoch is None:
        return
    planned = private.steps + max(0, kwargs.get("epochs", 1) - kwargs.get("initial_epoch", 0)) * int(per_epoch)
    reason = private.unaccountable_reason(steps=planned)
    if reason:
        kind = private.accountant_kind().value.upper()
        raise DPConfigurationError(
            f"fit plans {planned} private steps in all, whose epsilon the {kind} accountant "
            f"is not asked for: {reason}; train fewer steps, or give make_private a "
            f"target_epsilon or another accountant"
        )


def _prepare_data(model, private: PrivateTraining, kwargs: dict) -> str | None:
    """Puts the batches that will run in ``kwargs``, checked against the declared sampling.

    Returns where shuffled batches come from (`private_training.PERMUTED`, `IN_ORDER` or
    `CALLERS_DATASET`), or None for Poisson and fixed-size batches.
    """
    x = kwargs.get("x")
    if kwargs.get("validation_split"):
        raise DPConfigurationError(
            "validation_split cannot be combined with private training's batches; pass "
            "validation_data (held-out examples) instead"
        )
    if isinstance(x, tf.data.Dataset):
        return _check_dataset(private, x, kwargs)
    if _is_array_like(x):
        return _sample_arrays(model, private, kwargs)
    raise DPConfigurationError(
        f"fit received {type(x).__name__} input, whose batches cannot be checked for {private.sampling.value} "
        "sampling; pass arrays, a dataset from poisson_batches / fixed_size_batches, or (with sampling='shuffle') "
        "a tf.data.Dataset of shuffled batches"
    )


def _microbatched(private) -> bool:
    """True when the batch is clipped in microbatches of several consecutive slots."""
    return bool(private.params is not None and (private.params.num_microbatches or 1) > 1)


def _check_dataset(private, dataset, kwargs) -> str | None:
    seen = sampling.sampling_of(dataset)
    if seen is None:
        if private.sampling is Sampling.SHUFFLE:
            return _check_shuffled_dataset(private, dataset, kwargs)
        builder = "poisson_batches" if private.sampling is Sampling.POISSON else "fixed_size_batches"
        raise DPConfigurationError(
            f"fit received a tf.data.Dataset that privacy.keras.{builder} did not build, but the training is "
            f"accounted as {private.sampling.value}-sampled. Build the batches with {builder}(examples, "
            "dataset_size=..., ...), or pass sampling='shuffle' to make_private to account them as shuffled "
            "batches (a weaker guarantee)"
        )
    if seen.sampling is not private.sampling:
        raise DPConfigurationError(
            f"the dataset's batches are {seen.sampling.value}-sampled but make_private "
            f"declared sampling='{private.sampling.value}'"
        )
    _agree(private, "dataset_size", seen.dataset_size)
    _agree(private, "expected_batch_size", seen.expected_batch_size)
    _agree_truncation(private, seen)
    private.ran_sampler(seen)
    if seen.sampling is Sampling.POISSON and _microbatched(private) and not seen.random_slots:
        raise DPConfigurationError(
            "clipping Poisson batches in microbatches needs poisson_batches(..., "
            "random_slots=True): with the examples first, one added example shifts every "
            "later microbatch and the sensitivity is no longer 2C"
        )
    kwargs.setdefault("shuffle", False)  # the sampler draws every batch afresh; Keras would only warn
    if kwargs.get("steps_per_epoch") is None:
        kwargs["steps_per_epoch"] = seen.steps_per_epoch
    return None


def _agree_truncation(private, seen) -> None:
    """The accountant's truncated batch size is the dataset's: taken from it when make_private gave none."""
    if private.truncated_batch_size is None:
        private.truncated_batch_size = seen.truncated_batch_size
        return
    declared = sampling.resolve_truncated_batch_size(
        private.truncated_batch_size, seen.dataset_size, seen.expected_batch_size
    )
    if declared != seen.truncated_batch_size:
        ran = (
            f"truncated_batch_size={seen.truncated_batch_size}" if seen.truncated else "no truncation (max_batch_size)"
        )
        raise DPConfigurationError(
            f"make_private declared truncated_batch_size={declared} but the dataset's poisson_batches ran with {ran}"
        )


def _check_shuffled_dataset(private, dataset, kwargs) -> str:
    """A caller's dataset of shuffled batches: the epoch length from the data, every batch's size checked.

    Accepted: a finite dataset of known cardinality (one epoch = one pass = its batches), or one
    `repeat()` of such a dataset (one epoch per repetition). Each batch may hold at most
    ``expected_batch_size`` examples and each pass at most ``dataset_size``; that no example appears
    twice in a pass (e.g. ``examples.shuffle(n).batch(B)``) is what ``sampling='shuffle'`` declares.
    """
    per_epoch = sampling.batches_per_pass(dataset)
    private.set_epoch_length(per_epoch, "the dataset")
    if private.expected_batch_size is None:
        static = tf.nest.flatten(dataset.element_spec)[0].shape
        private.expected_batch_size = static[0] if static.rank and static[0] is not None else None
    kwargs.setdefault("shuffle", False)  # the caller's dataset is shuffled by the caller; Keras would only warn
    if private.expected_batch_size is not None:
        kwargs["x"] = sampling.checked_passes(
            dataset,
            batch_size=int(private.expected_batch_size),
            batches_per_pass=per_epoch,
            dataset_size=private.dataset_size,
        )
    private.shuffled_start(CALLERS_DATASET)
    return CALLERS_DATASET


def _sample_arrays(model, private, kwargs) -> str | None:
    x, y, weights = kwargs.pop("x"), kwargs.pop("y", None), kwargs.pop("sample_weight", None)
    n = len(tf.nest.flatten(x)[0])
    batch_size = kwargs.pop("batch_size", None)
    _agree(private, "dataset_size", n)
    if private.expected_batch_size is None:
        private.expected_batch_size = batch_size or _DEFAULT_KERAS_BATCH_SIZE
    elif batch_size is not None and batch_size != private.expected_batch_size:
        raise DPConfigurationError(
            f"fit(batch_size={batch_size}) differs from make_private's "
            f"expected_batch_size={private.expected_batch_size}"
        )
    examples = (x, y) if weights is None else (x, y, weights)  # gathered from in place, not copied
    if private.sampling is Sampling.SHUFFLE:
        return _shuffle_arrays(private, examples, n, kwargs)
    # A seeded run continues its sampling stream from the steps already taken (each fit, a resumed run).
    seed = (
        None
        if private.sampling_seed is None
        else int(np.random.SeedSequence([private.sampling_seed, private.steps]).generate_state(1)[0])
    )
    if private.sampling is Sampling.POISSON and private.truncated_batch_size is not None:
        cap = sampling.resolve_truncated_batch_size(private.truncated_batch_size, n, private.expected_batch_size)
        replicas = model.distribute_strategy.num_replicas_in_sync
        if cap % replicas:
            raise DPConfigurationError(
                f"truncated_batch_size={cap} cannot be split among {replicas} replicas; give a multiple of {replicas}"
            )
        batches = sampling.poisson_batches(
            examples,
            dataset_size=n,
            expected_batch_size=private.expected_batch_size,
            truncated_batch_size=cap,
            seed=seed,
        )
        private.ran_sampler(sampling.sampling_of(batches))
    elif private.sampling is Sampling.POISSON:
        # Pad to a size every replica and microbatch split divides.
        multiple = math.lcm(private.params.num_microbatches or 1, model.distribute_strategy.num_replicas_in_sync)
        limit = sampling.default_max_batch_size(n, private.expected_batch_size)
        batches = sampling.poisson_batches(
            examples,
            dataset_size=n,
            expected_batch_size=private.expected_batch_size,
            max_batch_size=-(-limit // multiple) * multiple,
            seed=seed,
            random_slots=_microbatched(private),
        )
    else:
        batches = sampling.fixed_size_batches(
            examples, dataset_size=n, batch_size=int(private.expected_batch_size), seed=seed
        )
    kwargs.update(x=batches.prefetch(2), shuffle=False)
    if kwargs.get("steps_per_epoch") is None:
        kwargs["steps_per_epoch"] = sampling.sampling_of(batches).steps_per_epoch
    return None


def _shuffle_arrays(private, examples, n: int, kwargs) -> str:
    """Shuffle-and-iterate over arrays: ppml's stream, which continues a partial epoch in the next fit."""
    order = kwargs.pop("shuffle", True)
    if order not in (True, False):
        raise DPConfigurationError(
            f"fit(shuffle={order!r}) is not supported with sampling='shuffle'; use True "
            "(a new permutation every epoch) or False (the arrays' order)"
        )
    source = PERMUTED if order else IN_ORDER
    batch = private.expected_batch_size
    if float(batch) != int(batch):
        raise DPConfigurationError(f"shuffled batches need a whole expected_batch_size, got {batch!r}")
    microbatches = private.params.num_microbatches
    if microbatches and (int(batch) % microbatches or n % int(batch) % microbatches):
        raise DPConfigurationError(
            f"shuffled batches of {int(batch)} (the last of each epoch holding {n % int(batch) or int(batch)} of the "
            f"{n} examples) cannot all be split into num_microbatches={microbatches} equal parts"
        )
    private.set_epoch_length(math.ceil(n / batch), f"{n} examples in batches of {int(batch)}")
    start = private.shuffled_start(source)
    batches = sampling.shuffled_batches(
        examples, dataset_size=n, batch_size=int(batch), seed=private.shuffle_seed, start_step=start, shuffle=order
    )
    kwargs.update(x=batches.prefetch(2), shuffle=False)
    if kwargs.get("steps_per_epoch") is None:
        kwargs["steps_per_epoch"] = private.steps_per_epoch
    return source


def _agree(private, name, value) -> None:
    current = getattr(private, name)
    if current is None:
        setattr(private, name, value)
    elif current != value:
        raise DPConfigurationError(
            f"the training data has {name}={value:g} but make_private was given {name}={current:g}"
        )


def _is_array_like(x) -> bool:
    leaves = tf.nest.flatten(x)
    return (
        bool(leaves)
        and all(hasattr(leaf, "shape") and hasattr(leaf, "__len__") or tf.is_tensor(leaf) for leaf in leaves)
        and not isinstance(x, tf.data.Dataset)
    )


def _avoid_xla_for_recurrent_fallbacks(model, private) -> None:
    """XLA cannot compile the vectorised fallback's per-example gradients through Keras' RNN loops (Keras 3's, and
    tf-keras' SimpleRNN's; the LSTM and GRU rules run their own loop, which compiles): compile those steps without
    it."""
    if not getattr(model, "jit_compile", False):
        return
    loops = [u.name for u in private.units(model) if u.rule.is_fallback and recording.runs_sublayers_in_loop(u.layer)]
    if loops:
        warnings.warn(
            f"per-example gradients of {loops} do not compile with XLA; training without jit_compile", stacklevel=2
        )
        model.jit_compile = False


def make_dp_model_class(cls: type) -> type:
    """A subclass of the Keras model class ``cls`` whose constructor takes DP-SGD arguments first.

    ``DP<cls>(l2_norm_clip, noise_multiplier, num_microbatches=None, *args, **kwargs)``: the keyword
    arguments of `make_private` (expected_batch_size, dataset_size, sampling, ...) are accepted too and
    the rest goes to ``cls``. Leaving l2_norm_clip and noise_multiplier out takes them from a
    DPKeras*Optimizer at compile time.
    """
    private_options = (
        "expected_batch_size",
        "dataset_size",
        "sampling",
        "adjacency",
        "target_delta",
        "target_epsilon",
        "accountant",
        "state_path",
        "seed",
        "secure_noise",
        "truncated_batch_size",
        "skip_padding",
        "batch_size_noise_multiplier",
    )

    class DPModelClass(cls):
        def __init__(self, l2_norm_clip=None, noise_multiplier=None, num_microbatches=None, *args, **kwargs):
            options = {k: kwargs.pop(k) for k in private_options if k in kwargs}
            super().__init__(*args, **kwargs)
            attach(
                self,
                PrivateTraining(params=_params(l2_norm_clip, noise_multiplier, num_microbatches), **_defaults(options)),
            )

        def train_step(self, data):
            return dp_train_step(self, private_training(self), data)

        def fit(self, *args, **kwargs):
            return private_fit(self, super().fit, *args, **kwargs)

        train_on_batch = refused_train_on_batch
        evaluate = _zeroing_metrics(cls.evaluate)
        test_on_batch = _zeroing_metrics(cls.test_on_batch)

    DPModelClass.__name__ = DPModelClass.__qualname__ = f"DP{cls.__name__}"
    DPModelClass.__doc__ = f"A Keras {cls.__name__} trained with DP-SGD (see `make_dp_model_class` and `make_private`)."
    return DPModelClass


def _check_mechanism(mechanism, l2_norm_clip, parts: dict) -> None:
    """Refuses a ``mechanism`` given to make_private with any of ``parts`` (the arguments it stands for), without
    ``l2_norm_clip``, or with a group-privacy setting."""
    if not isinstance(mechanism, DpSgdMechanism):
        raise DPConfigurationError(
            f"mechanism must be a privacy.accounting.DpSgdMechanism, got {type(mechanism).__name__}"
        )
    given = [f"{name}={value!r}" for name, value in parts.items() if value is not None]
    if given:
        raise DPConfigurationError(
            f"make_private got a mechanism and {', '.join(given)}: give the DpSgdMechanism "
            f"or its parts ({', '.join(parts)}), not both"
        )
    if l2_norm_clip is None:
        raise DPConfigurationError(
            "make_private with a mechanism needs l2_norm_clip (C: the mechanism's noise multiplier is in units of it)"
        )
    if mechanism.max_examples_per_user is not None:
        raise DPConfigurationError(
            f"mechanism.max_examples_per_user={mechanism.max_examples_per_user}: make_private "
            f"accounts a per-example guarantee; give a mechanism without it"
        )


def _params(l2_norm_clip, noise_multiplier, num_microbatches) -> DPParams | None:
    """The DP-SGD parameters given to a front door, or None to take them from a DPKeras*Optimizer."""
    if (l2_norm_clip is None) != (noise_multiplier is None):
        raise DPConfigurationError(
            "give both l2_norm_clip and noise_multiplier (or neither, to take them from "
            "a DPKeras*Optimizer at compile time)"
        )
    if l2_norm_clip is None and num_microbatches is not None:
        raise DPConfigurationError("num_microbatches goes with l2_norm_clip and noise_multiplier")
    return DPParams(l2_norm_clip, noise_multiplier, num_microbatches) if l2_norm_clip is not None else None


def _defaults(options: dict) -> dict:
    out = dict(
        expected_batch_size=None,
        dataset_size=None,
        sampling="poisson",
        adjacency=None,
        target_delta=None,
        target_epsilon=None,
        accountant=None,
        state_path=None,
        seed=None,
        secure_noise=False,
    )
    out.update(options)
    return out


def install_drop_in(model_class) -> None:
    """Wraps ``model_class.fit`` so that TF Privacy's pattern trains privately; idempotent.

    This is all that ``import privacy.keras`` changes in Keras: ``keras.Model.fit`` (of the Keras behind
    tf.keras) becomes a wrapper that, for a model compiled with a DPKeras*Optimizer that is not private
    and whose class does not override `train_step` (such a step calls the optimizer's `minimize`), calls
    `make_private(model, sampling="shuffle")` and then the private `fit`. Every other call runs Keras'
    own `fit` unchanged; `compile`, saving and loading are untouched, so a loaded model is made private
    only by a later `fit`, and one whose optimizer already took steps is refused there (no ledger holds
    them). A first `fit` refused before any step leaves the model as it was, so `make_private` can
    still choose other settings.
    """
    original = model_class.fit
    if getattr(original, "ppml_drop_in", False):
        return

    @functools.wraps(original)
    def fit(model, *args, **kwargs):
        if (
            is_private(model)
            or optimizers.dp_params_of(getattr(model, "optimizer", None)) is None
            or validator.overridden_training(model)
        ):
            return original(model, *args, **kwargs)
        taken = int(model.optimizer.iterations.numpy())
        if taken:
            raise DPConfigurationError(
                f"model '{model.name}' is compiled with {type(model.optimizer).__name__}, which has already applied "
                f"{taken} steps that no privacy ledger of ppml holds (e.g. a model loaded from a file), so fit cannot "
                f"account them. Resume the run that trained it with make_private(model, state_path=...), or call "
                f"make_private(model, ...) yourself to account the steps from now on only"
            )
        make_private(model, sampling="shuffle")
        private_training(model).require_accounting = True
        try:
            return model.fit(*args, **kwargs)
        except DPConfigurationError:
            if private_training(model).steps == 0:
                _undo_make_private(model)
            raise

    fit.ppml_drop_in = True
    model_class.fit = fit


def _undo_make_private(model) -> None:
    """Returns a model that ran no private step to its state before `make_private`."""
    for name in ("train_step", "fit", "train_on_batch", *_METRIC_ZEROING):
        object.__delattr__(model, name)
    detach(model)
    model.train_function = None


_keras = compat.default_keras()
install_drop_in(_keras.Model)
DPModel = make_dp_model_class(_keras.Model)
DPSequential = make_dp_model_class(_keras.Sequential)
del _keras
