"""DP Trainer component: TFX's Trainer, with its privacy settings checked when the pipeline is built."""

from __future__ import annotations

from typing import Any

from tfx.components import Trainer
from tfx.dsl.components.base import executor_spec
from tfx.orchestration import data_types

from pipelines.components.dp_trainer import executor
from pipelines.components.dp_trainer.spec import DpTrainingConfig


class DpTrainer(Trainer):
    """TFX's Trainer (same inputs, outputs and ``run_fn`` contract) for DP-SGD training.

    ``custom_config`` carries the settings of `pipelines.components.dp_trainer.spec`; with
    ``private: false`` it trains without privacy (and without a ledger), so a pipeline switches by
    configuration only. The Model artifact gets the custom properties of
    `pipelines.privacy_ledger` (``private``, ``epsilon``, ``delta``, ...).

    Raises:
      InvalidPrivacySetting: at construction, when a setting is invalid on its own; at run time,
        before training, when it does not fit the data (e.g. ``delta`` >= 1/n).
    """

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, *, custom_config: dict[str, Any] | None = None, **kwargs: Any):
        """Takes `tfx.v1.components.Trainer`'s arguments, by keyword."""
        if not isinstance(custom_config, data_types.RuntimeParameter):
            DpTrainingConfig.from_custom_config(custom_config)
        super().__init__(custom_config=custom_config, **kwargs)
