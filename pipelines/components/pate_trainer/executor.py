"""PATE Trainer executor: TFX's GenericExecutor, plus the settings check before ``run_fn`` and the ledger's epsilon
on the Model artifact after."""

from __future__ import annotations

from typing import Any

from absl import logging
from tfx.components.trainer import executor as trainer_executor
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import json_utils

from pipelines import privacy_ledger
from pipelines.components.pate_trainer.spec import PateTrainingConfig


class Executor(trainer_executor.GenericExecutor):
    """Checks the settings before training; the run must have written a ``pate`` ledger (its epsilon recomputed
    from the events its parameters describe), which is recorded on the Model artifact."""

    def Do(
        self, input_dict: dict[str, list[Any]], output_dict: dict[str, list[Any]], exec_properties: dict[str, Any]
    ) -> None:
        custom_config = json_utils.loads(exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "null")
        PateTrainingConfig.from_custom_config(custom_config)  # fails fast, before reading data
        fn_args = self._GetFnArgs(input_dict, output_dict, exec_properties)
        super().Do(input_dict, output_dict, exec_properties)
        ledger = privacy_ledger.read_ledger(fn_args.serving_model_dir)
        if ledger is None or ledger.mechanism != privacy_ledger.PATE:
            raise RuntimeError(
                f"run_fn wrote no {privacy_ledger.PATE} privacy ledger (got {ledger.mechanism if ledger else None!r})"
            )
        model = artifact_utils.get_single_instance(output_dict[standard_component_specs.MODEL_KEY])
        path = privacy_ledger.ledger_path(fn_args.serving_model_dir)
        privacy_ledger.record_on_artifact(model, ledger, path)
        logging.info(
            "Privacy ledger %s: %s-level epsilon %.4g at delta %g, %d queries, %d answered",
            path,
            ledger.privacy_unit,
            ledger.epsilon,
            ledger.delta,
            ledger.parameters["queries"],
            ledger.parameters["answered"],
        )
