"""Helpers for a DP Trainer ``run_fn``: the resolved plan of the run, and its ledger.

A module file trains like any TFX ``run_fn`` and calls two things from here::

    plan = fn_args_utils.plan_from_fn_args(fn_args)     # n counted, sigma calibrated, steps
    ...train plan.steps steps (DP-SGD with plan.mechanism when plan.private)...
    fn_args_utils.write_run_ledger(fn_args, plan, steps_taken=training.steps, budget=training.budget,
                                   noise_draws=training.noise.draws,
                                   validation_decisions=training.validation_decisions,
                                   uncovered_padding=training.uncovered_padding)
    # (private runs only; training = privacy.keras.private_training(model); without noise_draws the ledger lists
    # the noise sampler's cut-off outside the guarantee; without validation_decisions it lists as unknown whether
    # callbacks acted on validation metrics, without uncovered_padding whether steps' durations show batch sizes)

The DP Trainer's executor resolves the same plan before training (so bad settings fail early)
and checks the ledger against it afterwards.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

from pipelines import privacy_ledger
from pipelines.components.dp_trainer.spec import DpTrainingConfig, DpTrainingPlan, InvalidPrivacySetting
from pipelines.transform.artifact import NO_TRANSFORM_GRAPH, transformed_without_graph
from privacy.accounting import NoiseDraws


def _files(file_patterns: list[str]) -> list[str]:
    import tensorflow as tf

    files = sorted(f for pattern in file_patterns for f in tf.io.gfile.glob(pattern))
    if not files:
        raise ValueError(f"no training files match {file_patterns}")
    return files


def count_examples(file_patterns: list[str]) -> int:
    """Number of tf.Example records in the (GZIP) TFRecord files matching ``file_patterns``."""
    import tensorflow as tf

    files = _files(file_patterns)
    gzip = [f for f in files if f.endswith(".gz")]
    count = 0
    for group, compression in ((gzip, "GZIP"), ([f for f in files if not f.endswith(".gz")], "")):
        if group:
            count += int(tf.data.TFRecordDataset(group, compression_type=compression).reduce(0, lambda n, _: n + 1))
    return count


def plan_from_fn_args(fn_args) -> DpTrainingPlan:
    """Reads the settings from ``fn_args.custom_config`` and resolves them on the training files.

    n is the number of training records (after Transform); ``train_args.num_steps``, when set,
    fixes the number of steps instead of ``epochs``. A private run with a Transform graph
    (``fn_args.transform_output``) accounts the graph's preprocessing releases too.

    Raises:
      InvalidPrivacySetting: naming the bad key ('private' for a private run on a Transform's
        ``transformed_examples`` without its ``transform_graph``: its releases would be missing from the ledger).
    """
    config = DpTrainingConfig.from_custom_config(fn_args.custom_config)
    transform_output = getattr(fn_args, "transform_output", None) or None
    train_files = list(fn_args.train_files)
    if config.private and transformed_without_graph(_files(train_files), transform_output):
        raise InvalidPrivacySetting("private", NO_TRANSFORM_GRAPH)
    return _plan(
        config, count_examples(train_files), int(fn_args.train_steps) if fn_args.train_steps else None, transform_output
    )


@functools.lru_cache(maxsize=8)
def _plan(
    config: DpTrainingConfig, dataset_size: int, steps: int | None, transform_output: str | None
) -> DpTrainingPlan:
    """`DpTrainingConfig.plan`, remembered: the executor and ``run_fn`` resolve the same plan in one
    process, and calibrating sigma takes a second or two."""
    preprocessing = None
    if config.private and transform_output:
        from pipelines.transform.artifact import transform_graph_account

        preprocessing = transform_graph_account(transform_output)
    return config.plan(dataset_size=dataset_size, steps=steps, preprocessing=preprocessing)


def write_run_ledger(
    fn_args,
    plan: DpTrainingPlan,
    *,
    steps_taken: int | None = None,
    budget=None,
    trainer: dict[str, Any] | None = None,
    truncated_batches: int | None = None,
    noise_draws: NoiseDraws | None = None,
    validation_decisions: Sequence[str] | None = None,
    uncovered_padding: bool | None = None,
) -> str:
    """Writes the ledger of a private run into the exported SavedModel; returns its path.

    Call it after the model is saved to ``fn_args.serving_model_dir``.

    Args:
      steps_taken: noisy steps actually taken (default: all of ``plan.steps``).
      budget: the `privacy.accounting.PrivacyBudget` the training composed; it must account
        exactly the steps taken.
      truncated_batches: under truncated Poisson sampling (``plan.mechanism.truncated_batch_size``), the
        batches the sampler cut (`privacy.keras.PrivateTraining.truncated_batches`); required then.
      noise_draws: what the noise sampler drew (cut-off radius, Box-Muller pairs per step),
        `privacy.keras.PrivateTraining.noise.draws`: the ledger's delta then includes what the cut-off adds; without
        it the cut-off is listed outside the guarantee.
      validation_decisions: `privacy.keras.PrivateTraining.validation_decisions`, the run's callbacks that acted on
        validation metrics or wrote them to disk (`privacy.keras.monitoring.validation_decisions`): listed outside
        the guarantee; without it (None: not reported) the ledger lists that it is unknown whether callbacks acted
        on them.
      uncovered_padding: `privacy.keras.PrivateTraining.uncovered_padding`, whether steps left their batch's padding
        out without noisy padding (``skip_padding``), so that their durations follow the batch sizes drawn: listed
        outside the guarantee; without it (None: not reported) the ledger lists that it is unknown.
    """
    ledger = plan.ledger(
        steps_taken=steps_taken,
        budget=budget,
        trainer=trainer,
        truncated_batches=truncated_batches,
        noise_draws=noise_draws,
        validation_decisions=validation_decisions,
        uncovered_padding=uncovered_padding,
    )
    return privacy_ledger.write_ledger(fn_args.serving_model_dir, ledger)


def check_trainer_record(ledger: privacy_ledger.PrivacyLedger, run_fn: Callable) -> None:
    """Refuses (RuntimeError, one line) a ledger whose trainer record names a ``run_fn`` other than ``run_fn``, the
    function the Trainer called (by its defining module and name, so a module re-exporting another's run_fn passes).

    The Private Evaluator's implementation check imports the module that record names and trains through its audit
    hooks (`pipelines.components.private_evaluator.canary_audit.HOOKS`): a record naming another module (e.g. the
    bundled one, copied) would have that module's hooks audited in place of the code that trained. A record naming
    none passes (the check then uses ppml's audit model). The module's own code is trusted: nothing here shows that
    its run_fn trains through its hooks."""
    named = ledger.trainer.get("run_fn")
    called = f"{run_fn.__module__}.{run_fn.__qualname__}"
    if named is not None and named != called:
        raise RuntimeError(
            f"the ledger's trainer record names run_fn {named!r}, but the Trainer called {called!r} (the Evaluator's "
            f"implementation check trains through the hooks of the module the record names)"
        )
