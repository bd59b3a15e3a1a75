"""PATE Trainer component: TFX's Trainer, its two splits named by its settings, checked when the pipeline is
built."""

from __future__ import annotations

from typing import Any

from tfx import v1 as tfx
from tfx.components import Trainer
from tfx.dsl.components.base import executor_spec

from pipelines.components.pate_trainer import executor
from pipelines.components.pate_trainer.spec import InvalidPateSetting, PateTrainingConfig

RUN_FN = "pipelines.trainers.pate.run_fn"


class PateTrainer(Trainer):
    """TFX's Trainer (same outputs) that trains a PATE student (`pipelines.trainers.pate`).

    Give it ExampleGen's raw examples: ``custom_config['private_split']`` is its ``train_args`` split (the
    teachers' data) and ``custom_config['public_split']`` its ``eval_args`` split (the unlabeled queries); it
    takes no Transform graph (the student's constants are public statistics). It writes a ``pate`` privacy
    ledger into the SavedModel and records epsilon on the Model artifact, so the Private Evaluator and ``ppml
    report`` treat it as the other trainers' models.

    Raises:
      InvalidPateSetting: at construction, when a setting is invalid, or when train_args, eval_args or a
        Transform input are given (the settings name the splits; a Transform graph would be unaccounted).
    """

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, *, examples, custom_config: dict[str, Any], run_fn: str = RUN_FN, **kwargs: Any):
        """Takes ExampleGen's ``examples`` and the settings (`pipelines.components.pate_trainer.spec`); further
        keywords go to `tfx.v1.components.Trainer` (``schema``, ``hyperparameters``, ...)."""
        config = PateTrainingConfig.from_custom_config(custom_config)
        given = [k for k in ("train_args", "eval_args", "transform_graph", "transformed_examples") if k in kwargs]
        if given:
            raise InvalidPateSetting(
                given[0],
                "the PATE Trainer reads the private and public splits its settings "
                "name from ExampleGen's examples, and no Transform output",
            )
        super().__init__(
            examples=examples,
            custom_config=custom_config,
            run_fn=run_fn,
            train_args=tfx.proto.TrainArgs(splits=[config.private_split]),
            eval_args=tfx.proto.EvalArgs(splits=[config.public_split]),
            **kwargs,
        )
