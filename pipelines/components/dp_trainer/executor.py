"""DP Trainer executor: TFX's GenericExecutor, plus privacy checks before and after ``run_fn``."""

from __future__ import annotations

from typing import Any

from absl import logging
from tfx.components.trainer import executor as trainer_executor
from tfx.components.util import udf_utils
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import json_utils

from pipelines import privacy_ledger
from pipelines.components.dp_trainer import fn_args_utils
from pipelines.components.dp_trainer.spec import DpTrainingConfig, DpTrainingPlan
from privacy import training_state


class Executor(trainer_executor.GenericExecutor):
    """Checks the privacy settings before training and records the ledger on the Model artifact.

    Before ``run_fn``: the settings in ``custom_config`` are checked and resolved on the training
    data (n, steps, calibrated sigma); any problem raises `InvalidPrivacySetting` naming the key,
    and nothing is trained. After: a private run must have written a ledger that accounts the
    planned mechanism and names no run_fn but the one called (`fn_args_utils.check_trainer_record`), and no
    checkpoint it wrote under the Model or ModelRun artifact may hold Keras metric state (`check_metric_state`); its
    epsilon and delta become custom properties of the Model artifact.
    """

    def Do(
        self, input_dict: dict[str, list[Any]], output_dict: dict[str, list[Any]], exec_properties: dict[str, Any]
    ) -> None:
        custom_config = json_utils.loads(exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "null")
        DpTrainingConfig.from_custom_config(custom_config)  # fails fast, before reading any data
        fn_args = self._GetFnArgs(input_dict, output_dict, exec_properties)
        plan = fn_args_utils.plan_from_fn_args(fn_args)
        logging.info("DP Trainer plan: %s", _describe(plan))
        super().Do(input_dict, output_dict, exec_properties)
        ledger = privacy_ledger.read_ledger(fn_args.serving_model_dir)
        _check_ledger(plan, ledger)
        if ledger is not None:  # the run_fn GenericExecutor called, resolved as it resolves it
            fn_args_utils.check_trainer_record(ledger, udf_utils.get_fn(exec_properties, "run_fn"))
        if plan.private:
            check_metric_state(
                artifact_utils.get_single_uri(output_dict[key])
                for key in (standard_component_specs.MODEL_KEY, standard_component_specs.MODEL_RUN_KEY)
                if output_dict.get(key)
            )
        model = artifact_utils.get_single_instance(output_dict[standard_component_specs.MODEL_KEY])
        path = privacy_ledger.ledger_path(fn_args.serving_model_dir) if ledger else None
        privacy_ledger.record_on_artifact(model, ledger, path)
        if ledger:
            logging.info("Privacy ledger %s: epsilon %.4g at delta %g", path, ledger.epsilon, ledger.delta)


def _check_ledger(plan: DpTrainingPlan, ledger: privacy_ledger.PrivacyLedger | None) -> None:
    if not plan.private:
        if ledger is not None:
            raise RuntimeError("run_fn wrote a privacy ledger although custom_config['private'] is false")
        return
    if ledger is None:
        raise RuntimeError(
            "custom_config['private'] is true but run_fn wrote no privacy ledger; a private "
            "run_fn must call pipelines.components.dp_trainer.fn_args_utils.write_run_ledger"
        )
    ran = ledger.dp_sgd_mechanism()
    if ran.replace(steps=plan.mechanism.steps) != plan.mechanism or ran.steps > plan.mechanism.steps:
        raise RuntimeError(f"the ledger describes {ran}, not the planned run {plan.mechanism}")
    if ledger.preprocessing != plan.preprocessing or ledger.accountant_delta != privacy_ledger.accountant_delta_of(
        plan.delta, plan.preprocessing
    ):
        raise RuntimeError(
            "the ledger does not account the preprocessing of the Trainer's Transform graph (write it "
            "with fn_args_utils.write_run_ledger and the plan of plan_from_fn_args)"
        )


def check_metric_state(roots) -> None:
    """Refuses (RuntimeError, one line) a private run whose files under the folders ``roots`` (the Model and
    ModelRun artifacts: the serving model, checkpoints, logs) include a TensorFlow checkpoint holding Keras
    metric state: exact sums over the records last fitted or evaluated (`privacy.training_state`)."""
    problems = [problem for root in roots for problem in training_state.metric_state_problems(root)]
    if problems:
        raise RuntimeError(
            f"the private run_fn wrote {len(problems)} checkpoint(s) outside the guarantee; first: {problems[0]}"
        )


def _describe(plan: DpTrainingPlan) -> str:
    if not plan.private:
        return f"non-private, n={plan.dataset_size}, {plan.steps} steps of batch {plan.config.batch_size}"
    m = plan.mechanism
    releases = (
        "" if plan.preprocessing is None else (f", after {len(plan.preprocessing.events())} preprocessing releases")
    )
    sampling = m.sampling.value + ("" if m.truncated_batch_size is None else f", cut to {m.truncated_batch_size}")
    if m.batch_size_noise_multiplier is not None:
        sampling += f", noisy padding of {m.batch_size_noise_multiplier:g} rows"
    return (
        f"DP-SGD, n={m.dataset_size}, B={m.batch_size:g} ({sampling}), {m.steps} steps, "
        f"C={plan.config.l2_norm_clip:g}, sigma={m.noise_multiplier:.4g}, delta={plan.delta:g}{releases}"
    )
