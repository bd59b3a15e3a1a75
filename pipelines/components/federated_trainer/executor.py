"""Federated Trainer executor: TFX's GenericExecutor, plus the settings check before ``run_fn`` and
the ledger's epsilon on the Model artifact after."""

from __future__ import annotations

from typing import Any

from absl import logging
from tfx.components.trainer import executor as trainer_executor
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import json_utils

from pipelines import privacy_ledger
from pipelines.components.federated_trainer.spec import FederatedTrainingConfig, InvalidFederatedSetting
from pipelines.transform.artifact import NO_TRANSFORM_GRAPH, transformed_without_graph


class Executor(trainer_executor.GenericExecutor):
    """Checks the settings before training and records the ledger on the Model artifact.

    A private run must have written a ``dp-fedavg`` ledger (its epsilon is recomputed from the
    DpEvents it holds); a non-private run must not have written one. A private run on a Transform's
    ``transformed_examples`` without its ``transform_graph`` is refused before training (the ledger would miss
    the preprocessing).
    """

    def Do(
        self, input_dict: dict[str, list[Any]], output_dict: dict[str, list[Any]], exec_properties: dict[str, Any]
    ) -> None:
        custom_config = json_utils.loads(exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "null")
        config = FederatedTrainingConfig.for_trainer(custom_config)  # fails fast, before reading data
        fn_args = self._GetFnArgs(input_dict, output_dict, exec_properties)
        if config.private and transformed_without_graph(_files(fn_args.train_files), fn_args.transform_output):
            raise InvalidFederatedSetting("private", NO_TRANSFORM_GRAPH)
        super().Do(input_dict, output_dict, exec_properties)
        ledger = privacy_ledger.read_ledger(fn_args.serving_model_dir)
        if config.private and (ledger is None or ledger.mechanism != privacy_ledger.DP_FEDAVG):
            raise RuntimeError(
                f"custom_config['private'] is true but run_fn wrote no {privacy_ledger.DP_FEDAVG} "
                f"privacy ledger (got {ledger.mechanism if ledger else None!r})"
            )
        if not config.private and ledger is not None:
            raise RuntimeError("run_fn wrote a privacy ledger although custom_config['private'] is false")
        model = artifact_utils.get_single_instance(output_dict[standard_component_specs.MODEL_KEY])
        path = privacy_ledger.ledger_path(fn_args.serving_model_dir) if ledger else None
        privacy_ledger.record_on_artifact(model, ledger, path)
        if ledger:
            logging.info(
                "Privacy ledger %s: client-level epsilon %.4g at delta %g after %d rounds",
                path,
                ledger.epsilon,
                ledger.delta,
                ledger.parameters["steps"],
            )


def _files(patterns: list[str]) -> list[str]:
    from tfx.dsl.io import fileio

    return [path for pattern in patterns for path in fileio.glob(pattern)]
