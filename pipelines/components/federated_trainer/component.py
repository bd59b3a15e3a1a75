"""Federated Trainer component: TFX's Trainer, with federated settings checked when the pipeline is built."""

from __future__ import annotations

from typing import Any

from tfx.components import Trainer
from tfx.dsl.components.base import executor_spec
from tfx.orchestration import data_types

from pipelines.components.federated_trainer import executor
from pipelines.components.federated_trainer.spec import FederatedTrainingConfig

RUN_FN = "pipelines.trainers.federated.run_fn"


class FederatedTrainer(Trainer):
    """TFX's Trainer (same inputs and outputs) that trains by FedAvg over simulated clients.

    Give it ExampleGen's raw examples (and Transform's graph, which it applies itself): it keys each
    record by its raw content, before Transform's data-dependent constants, so adding one record
    changes one client (`pipelines.trainers.federated`). The training split is divided among clients
    by ``custom_config['client_key']`` (a column) or a keyed partition; see
    `pipelines.components.federated_trainer.spec` for every setting. With
    ``private: true`` it runs client-level DP-FedAvg, writes a privacy ledger into the SavedModel
    and records epsilon on the Model artifact (custom properties of `pipelines.privacy_ledger`), so
    the Private Evaluator and ``ppml report`` treat it like the DP Trainer's model.

    Raises:
      InvalidFederatedSetting: at construction, when a setting is invalid on its own; at run time,
        before training, when it does not fit the data (e.g. ``delta`` >= 1/N clients).
    """

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, *, custom_config: dict[str, Any] | None = None, run_fn: str = RUN_FN, **kwargs: Any):
        """Takes `tfx.v1.components.Trainer`'s arguments, by keyword (``run_fn`` defaults to `RUN_FN`)."""
        if not isinstance(custom_config, data_types.RuntimeParameter):
            FederatedTrainingConfig.for_trainer(custom_config)
        super().__init__(custom_config=custom_config, run_fn=run_fn, **kwargs)
