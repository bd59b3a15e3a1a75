"""`ppml pipeline run` and `ppml pipeline compile`: the TFX pipeline with the DP, Federated or PATE Trainer and
the privacy gate.

Every setting is checked first, into one `pipelines.plan.PipelinePlan` (no TFX import: a bad setting is
refused in about a second, before anything is written); then `ppml pipeline run` takes the pipeline root's
lock (`pipelines.root_lock`: one run per root at a time; the root is owner-only and the run writes with umask
077: `pipelines.private_root`) and imports TFX (after TF_USE_LEGACY_KERAS=1 is set
for this process). Unless ``--verbose``, what TFX, TensorFlow and Beam print goes to a log file
(`pipelines.run_log`), not the terminal.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys

import click

from pipelines import private_root, run_log
from pipelines.cli.aliases import deprecated_alias
from pipelines.cli.minimization import (
    csv_columns,
    failure_message,
    minimization_options,
    minimization_requested,
    minimization_settings,
)
from pipelines.cli.types import FiniteFloatRange, TruncatedBatchSize
from pipelines.components.private_evaluator.spec import DEFAULT_MAX_MEMBERSHIP_AUC, DEFAULT_PRIVACY_UNIT
from pipelines.components.settings import InvalidSetting
from pipelines.plan import (
    DEFAULT_EPSILON_BUDGET,
    DEFAULT_MIN_ACCURACY,
    TRAINERS,
    PipelineLayout,
    resolve_plan,
    schema_features,
)
from pipelines.privacy_ledger import PRIVACY_UNITS
from pipelines.root_lock import RootBusy, exclusive_root
from pipelines.transform.spec import DEFAULT_SHARE
from privacy.accounting import DEFAULT_DELTA_RULE, Adjacency, Sampling
from privacy.auditing.canaries import MAX_CANARIES
from privacy.auditing.one_run import MIN_CANARIES

DEFAULT_ROOT = "ppml-pipeline"
ADJACENCIES = [a.value for a in Adjacency]
_OPTION_OF_SETTING = {
    "target_epsilon": "--target-epsilon",
    "noise_multiplier": "--noise-multiplier",
    "epochs": "--epochs",
    "batch_size": "--batch-size",
    "l2_norm_clip": "--l2-norm-clip",
    "delta": "--target-delta",
    "sampling": "--sampling",
    "num_microbatches": "--num-microbatches",
    "learning_rate": "--learning-rate",
    "private": "--dp",
    "truncated_batch_size": "--truncated-batch-size",
}


_DP_SGD_ONLY = (
    "epochs",
    "batch_size",
    "l2_norm_clip",
    "sampling",
    "num_microbatches",
    "truncated_batch_size",
    "learning_rate",
)


def _training_options(fn):
    options = [
        click.option(
            "--trainer",
            type=click.Choice(TRAINERS),
            default="dp",
            show_default=True,
            help="The DP Trainer (DP-SGD), the Federated Trainer (FedAvg over clients partitioned "
            "from the training split; DP-FedAvg when private) or the PATE Trainer (teachers on the "
            "private split label the public split through a noisy vote; the student is pushed; no "
            "Transform stage; its noise, splits and the student's self-training, semi_supervised, in "
            "--trainer-config).",
        ),
        click.option(
            "--trainer-config",
            "trainer_config_json",
            metavar="JSON",
            help="Further keys of the Trainer's custom_config, as a JSON object, e.g. "
            '\'{"num_clients": 40, "rounds": 20}\' (keys: pipelines/components/'
            "{dp,federated,pate}_trainer/spec.py).",
        ),
        click.option(
            "--dp/--no-dp",
            "private",
            default=True,
            show_default=True,
            help="Train with DP (privacy ledger, epsilon in ML Metadata) or without privacy.",
        ),
        click.option(
            "--target-epsilon",
            type=float,
            help="Calibrate the noise multiplier to this epsilon [default: 3 unless --noise-multiplier].",
        ),
        click.option("--noise-multiplier", type=float, help="sigma, instead of --target-epsilon."),
        click.option(
            "--target-delta", "delta", type=float, help=f"delta of the guarantee [default: {DEFAULT_DELTA_RULE}]."
        ),
        click.option(
            "--epochs",
            type=float,
            default=15,
            show_default=True,
            help="Total passes over the training data (DP-SGD; not the local epochs per round of "
            "`ppml federated`: the Federated Trainer's go in --trainer-config).",
        ),
        click.option(
            "--batch-size",
            type=int,
            default=32,
            show_default=True,
            help="Batch size B (the expected one under Poisson sampling).",
        ),
        click.option(
            "--l2-norm-clip",
            type=float,
            default=1.0,
            show_default=True,
            help="Per-example gradient clipping norm C (at most about 2.5e27: privacy.accounting.noise_cutoff."
            "max_l2_norm_clip).",
        ),
        click.option(
            "--sampling",
            type=click.Choice([s.value for s in Sampling]),
            default="poisson",
            show_default=True,
            help="Batch sampling: poisson (add/remove adjacency), fixed (B drawn without replacement; "
            "replace-one adjacency, RDP only) or shuffle (once-per-epoch bound, replace-one "
            "adjacency).",
        ),
        click.option(
            "--num-microbatches",
            type=int,
            help="Clip per microbatch instead of per example (one example moves a microbatch of several "
            "examples by up to 2C; accounted).",
        ),
        click.option(
            "--truncated-batch-size",
            type=TruncatedBatchSize(),
            help="Truncated Poisson sampling (--dp, per-example clipping): a batch drawing more than K "
            "examples is cut to a uniformly random K of them ('default': B + 4 standard deviations); "
            "accounted as dp-accounting's TruncatedSubsampledGaussianDpEvent by PLD (the Trainer's "
            "accountant is then pld); the ledger and `ppml report` count the batches cut (a count "
            "that epsilon does not cover, listed outside the guarantee).",
        ),
        click.option("--learning-rate", type=float, default=0.2, show_default=True, help="SGD learning rate."),
        click.option(
            "--preprocessing-share",
            type=click.FloatRange(0, 1, min_open=True),
            default=DEFAULT_SHARE,
            show_default=True,
            help="Fraction of --target-epsilon the Transform's private analyzers are calibrated to spend; "
            "the Trainer's noise is calibrated so that preprocessing and training together meet "
            "the target.",
        ),
        click.option(
            "--preprocessing-epsilon",
            type=click.FloatRange(0, min_open=True),
            help="The Transform's budget itself, instead of a share (needed with --noise-multiplier).",
        ),
        click.option(
            "--epsilon-budget",
            type=FiniteFloatRange(0, min_open=True),
            default=DEFAULT_EPSILON_BUDGET,
            show_default=True,
            help="Evaluator: bless only models with epsilon <= this (the whole artifact: preprocessing and "
            "training composed).",
        ),
        click.option(
            "--delta-budget",
            type=click.FloatRange(0, 1, min_open=True, max_open=True),
            help="Evaluator: bless only models with delta <= this, the ledger's: the trainer's target delta plus its "
            "noise cut-off's, at most 1 % more (a budget equal to the target refuses a cut-off that adds anything a "
            "float holds, as DP-SGD's float32 noise's does: give 1.01 x it) [default: any delta below 1/n].",
        ),
        click.option(
            "--privacy-unit",
            type=click.Choice(PRIVACY_UNITS),
            default=DEFAULT_PRIVACY_UNIT,
            show_default=True,
            help="What --epsilon-budget protects: one example, one user, or one client (the Federated "
            "Trainer's ledgers are client-level, user-level with a client key); a model whose "
            "ledger is in another unit is not blessed, but a budget per example meets a keyed "
            "client-level ledger at its record-level epsilon.",
        ),
        click.option(
            "--budget-adjacency",
            type=click.Choice(ADJACENCIES),
            help="The neighbouring relation --epsilon-budget is stated in: add-remove (one example, user or "
            "client added or removed) or replace-one (one replaced). A ledger in the other relation meets no "
            "such budget, so a private Trainer whose ledger accounts it is refused before the run. A budget "
            "per example meets a keyed Federated Trainer's ledger in either: add-remove at its record-level "
            "epsilon, replace-one at its replaced-record epsilon (two clients change), which the Trainer then "
            "calibrates its noise for [default: the ledger's own].",
        ),
        click.option(
            "--max-membership-auc",
            type=FiniteFloatRange(0, 1),
            default=DEFAULT_MAX_MEMBERSHIP_AUC,
            show_default=True,
            help="Evaluator: bless only if the loss-threshold attack AUC is <= this.",
        ),
        click.option(
            "--min-accuracy",
            type=FiniteFloatRange(0, 1),
            default=DEFAULT_MIN_ACCURACY,
            show_default=True,
            help="Evaluator: bless only if the noisy binary accuracy on the eval split is >= this (a private "
            "release: the Trainer reserves a share of --target-epsilon for it; 0: no threshold, nothing "
            "released).",
        ),
        click.option(
            "--encrypted-check",
            is_flag=True,
            help="Run the encrypted-inference gate after the Evaluator: secret-shared vs plaintext "
            "predictions on evaluation examples; push only if both bless.",
        ),
        click.option(
            "--encrypted-examples",
            type=click.IntRange(min=1),
            default=200,
            show_default=True,
            help="Evaluation examples the encrypted-inference gate predicts.",
        ),
        click.option(
            "--audit-canaries",
            type=click.IntRange(MIN_CANARIES, MAX_CANARIES),
            metavar="M",
            help="Evaluator: also audit a canary-augmented copy of the DP-SGD training run (M white-box "
            "canaries, Poisson sampling) and one full-batch step at its C and sigma (10,000 canaries, "
            "through the trainer module's own model and fit where it exports audit hooks: can catch a clip "
            "at 2C where the copy cannot; both discarded, never pushed), and bless nothing "
            "when a measured lower bound on epsilon exceeds the epsilon claimed for its run (accounting "
            "inconsistent) [default: no audit].",
        ),
        click.option(
            "--schema-file",
            type=click.Path(dir_okay=False),
            help="A tf.metadata Schema (.pbtxt) declared before the data is read: imported (ImportSchemaGen) "
            "instead of inferred from the private examples by SchemaGen, so the serving signature's feature "
            "kinds are not a function of the data (the DP Trainer's ledger then lists no inferred feature spec). "
            "Checked before TFX starts: it must parse and type every column the trainer reads "
            "[default: inferred, listed outside the guarantee].",
        ),
        click.option(
            "--compare-non-private",
            is_flag=True,
            help="Also train and evaluate a non-private model side by side (never pushed; see "
            "`ppml report --compare`).",
        ),
    ]
    options += [
        deprecated_alias("--delta", "--target-delta", "delta", type=float),
        deprecated_alias("--private/--no-private", "--dp/--no-dp", "private", default=None),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _plan(
    trainer,
    trainer_config_json,
    private,
    target_epsilon,
    noise_multiplier,
    delta,
    epochs,
    batch_size,
    l2_norm_clip,
    sampling,
    num_microbatches,
    truncated_batch_size,
    learning_rate,
    preprocessing_share,
    preprocessing_epsilon,
    epsilon_budget,
    delta_budget,
    privacy_unit,
    budget_adjacency,
    max_membership_auc,
    min_accuracy,
    encrypted_check,
    encrypted_examples,
    compare_non_private,
    audit_canaries,
    schema_file,
):
    """The options resolved and checked into one `PipelinePlan` (no TFX import); usage errors name the option."""
    if private and target_epsilon is None and noise_multiplier is None:
        target_epsilon = 3.0
    trainer_config = {
        "private": private,
        "target_epsilon": target_epsilon,
        "noise_multiplier": noise_multiplier,
        "delta": delta,
    }
    if trainer == "dp":
        trainer_config.update(
            epochs=epochs,
            batch_size=batch_size,
            l2_norm_clip=l2_norm_clip,
            sampling=sampling,
            num_microbatches=num_microbatches,
            learning_rate=learning_rate,
            truncated_batch_size=truncated_batch_size,
        )
        if truncated_batch_size is not None:
            trainer_config["accountant"] = "pld"  # RDP has no analysis of truncated Poisson sampling
    else:
        context = click.get_current_context()
        given = [
            name
            for name in _DP_SGD_ONLY
            if context.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
        ]
        if given:
            raise click.UsageError(
                f"{_OPTION_OF_SETTING[given[0]]} sets DP-SGD training (--trainer dp); give the "
                f"{'PATE' if trainer == 'pate' else 'Federated'} Trainer's settings with "
                f"--trainer-config"
            )
    if trainer == "pate":  # its noise is set in --trainer-config, not calibrated; it runs no Transform
        context = click.get_current_context()
        given = [
            name
            for name in ("target_epsilon", "noise_multiplier", "preprocessing_share")
            if context.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
        ]
        if given:
            option = "--" + given[0].replace("_", "-")
            raise click.UsageError(
                f"{option}: the PATE Trainer's noise is set by its sigma, sigma1 and threshold "
                f"(--trainer-config), not calibrated, and its pipeline runs no Transform"
            )
        trainer_config = {"private": private, "delta": delta}
    if trainer_config_json:
        try:
            extra = json.loads(trainer_config_json)
        except json.JSONDecodeError as err:
            raise click.BadParameter(f"not JSON ({err})", param_hint="'--trainer-config'") from None
        if not isinstance(extra, dict):
            raise click.BadParameter(
                f"must be a JSON object, got {trainer_config_json!r}", param_hint="'--trainer-config'"
            )
        trainer_config.update(extra)
    try:
        return resolve_plan(
            trainer=trainer,
            trainer_config={k: v for k, v in trainer_config.items() if v is not None},
            epsilon_budget=epsilon_budget,
            delta_budget=delta_budget,
            privacy_unit=privacy_unit,
            budget_adjacency=budget_adjacency,
            max_membership_auc=max_membership_auc,
            min_accuracy=min_accuracy,
            preprocessing_share=preprocessing_share,
            preprocessing_epsilon=preprocessing_epsilon,
            encrypted_check=encrypted_check,
            encrypted_examples=encrypted_examples,
            compare_non_private=compare_non_private,
            audit_canaries=audit_canaries,
            schema_file=schema_file,
        )
    except InvalidSetting as err:
        raise click.BadParameter(
            str(err), param_hint=f"'{_OPTION_OF_SETTING.get(err.setting, '--trainer-config')}'"
        ) from None
    except ValueError as err:
        if str(err).startswith("schema_file: "):
            raise click.BadParameter(str(err)[len("schema_file: ") :], param_hint="'--schema-file'") from None
        raise click.UsageError(str(err)) from None


def _check_schema_columns(schema_file: str | None, columns: dict[str, bool]) -> None:
    """Refuses (exit 2) a --schema-file that leaves out a column the trainer reads or gives a numeric one
    (``columns``: name -> holds numbers only) the BYTES type."""
    if schema_file is None:
        return
    features = schema_features(schema_file)
    for column, numeric in columns.items():
        if column not in features:
            raise click.BadParameter(f"{schema_file!r} has no feature {column!r}", param_hint="'--schema-file'")
        if numeric and features[column] == "BYTES":
            raise click.BadParameter(
                f"{schema_file!r} types the numeric column {column!r} BYTES (use INT or FLOAT)",
                param_hint="'--schema-file'",
            )


def import_tfx():
    """Imports the pipeline modules with tf-keras; returns (pipeline, runners)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from pipelines.keras_env import use_tf_keras

    use_tf_keras()
    from pipelines import pipeline, runners

    return pipeline, runners


def _private_local_root(pipeline_root: str) -> None:
    """Creates a local pipeline root 0700, or takes group and world access away (with a warning)."""
    if "://" not in pipeline_root:
        warning = private_root.private_folder(pipeline_root)
        if warning:
            click.echo(f"Warning: {warning}", err=True)


@contextlib.contextmanager
def locked_root(pipeline_root: str):
    """Holds ``pipeline_root``'s lock (creating the folder, owner-only): one run per root; errors in one line."""
    held = contextlib.ExitStack()
    try:
        held.enter_context(exclusive_root(pipeline_root))
        _private_local_root(pipeline_root)
    except RootBusy as err:
        raise click.ClickException(str(err)) from None
    except OSError as err:
        if err.filename is None or not os.path.abspath(err.filename).startswith(os.path.abspath(pipeline_root)):
            raise
        raise click.BadParameter(
            f"cannot create or lock {pipeline_root!r}: {err.strerror or err}", param_hint="'--pipeline-root'"
        ) from None
    with held:
        yield


def refuse_verbose(option: str) -> None:
    """Refuses --verbose (exit 2) under ``option``, where a library's record can quote a training record."""
    raise click.UsageError(
        f"--verbose prints what TFX, TensorFlow and Beam log, error records and messages included, which "
        f"can quote a training record; under {option} they go to the owner-only run log only (its path is printed)"
    )


@contextlib.contextmanager
def library_output(verbose: bool, quote_errors: bool = True):
    """Yields (terminal stream, `run_log.RunLog` or None) with absl logging at INFO (TFX's and our
    executors' records): with ``verbose`` the libraries print to the terminal as usual (stdout kept for
    the report); else to a `run_log` capture, which copies ERROR records' messages to the terminal when
    ``quote_errors``. Afterwards absl logs at its former level again."""
    from absl import logging as absl_logging

    former = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.INFO)
    try:
        if verbose:
            with contextlib.redirect_stdout(sys.stderr):  # stdout is for the report (Keras prints its progress)
                yield sys.stderr, None
        else:
            with run_log.captured_output(self_explaining=(click.ClickException,), quote_errors=quote_errors) as log:
                yield log.terminal, log
    finally:
        absl_logging.set_verbosity(former)


@click.group()
def pipeline():
    """The TFX pipeline: standard stages, DP, Federated or PATE Trainer, privacy-gated Evaluator and Pusher."""


@pipeline.command()
@_training_options
@minimization_options
@click.option(
    "--pipeline-root",
    type=click.Path(file_okay=False),
    default=DEFAULT_ROOT,
    show_default=True,
    help="Folder for artifacts, data, ML Metadata (metadata.sqlite) and pushed models, owner-only "
    "(0700; everything the run writes is 0600/0700); re-running on the same folder reuses cached "
    "stages.",
)
@click.option(
    "--runner",
    type=click.Choice(["local", "beam"]),
    default="local",
    show_default=True,
    help="TFX orchestrator: LocalDagRunner or BeamDagRunner.",
)
@click.option("--no-cache", is_flag=True, help="Run every stage even when a cached result exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the final report as JSON.")
@click.option(
    "--verbose",
    is_flag=True,
    help="Print what TFX, TensorFlow and Beam log (INFO and up) here instead of to the log file; refused under "
    "--dp and --scrub-pii (a library's record can quote a training record): read the owner-only log.",
)
def run(pipeline_root, runner, no_cache, as_json, verbose, **options):
    """Runs CsvExampleGen [-> PiiScrubber] -> StatisticsGen -> SchemaGen -> ExampleValidator -> Transform ->
    Trainer -> Evaluator [-> EncryptedInferenceGate] -> Pusher on the bundled breast-cancer data, then prints the
    report. With --scrub-pii every stage after ExampleGen reads the PII scrubber's examples (its report:
    PIPELINE_ROOT/PiiScrubber/scrubbed_examples/<id>/pii_scrub_report.json). The bundled data holds numbers only,
    so here the scrubber finds nothing (it shows the wiring) and the k-anonymity anomaly only reports; `ppml
    minimize` runs the scrubber on text data.

    With --trainer pate, ExampleGen writes three splits (train: private, public: the unlabeled queries, eval:
    held out), no Transform runs, and the pushed model is the PATE student.

    Progress is shown per stage; what TFX, TensorFlow and Beam print goes to
    PIPELINE_ROOT/logs/run-<time>.log (its path is shown first; --verbose prints it here instead). With --dp
    (the default) a failing stage is named here with its exception's type only, and error records without
    their message: a message can quote a training record; it stays in the owner-only log. --verbose, which prints
    the libraries' own records here, messages included, is refused under --dp and --scrub-pii.

    \b
    Example:
      ppml pipeline run --dp --target-epsilon 3 --pipeline-root /tmp/ppml

    Exit status: 0 after the report; 2 for a bad option (before anything is written); 1 when the run
    fails, or when another run holds the same --pipeline-root.
    """
    columns = dict.fromkeys(_bundled_columns(), True) if minimization_requested(options) else None
    minimization = minimization_settings(options, columns=columns, model_inputs=columns or ())
    current, plan = {}, dataclasses.replace(_plan(**options), **minimization)
    _check_schema_columns(plan.schema_file, dict.fromkeys(_bundled_columns(), True))
    private = bool(plan.trainer_config.get("private"))  # stage errors can quote training records: not shown
    if verbose and (private or plan.scrub):
        refuse_verbose("--scrub-pii" if plan.scrub else "--dp")
    with private_root.owner_only_files(), locked_root(pipeline_root):  # held until the report is read
        with library_output(verbose, quote_errors=not (private or plan.scrub)) as (terminal, log):
            pipeline_module, runners = import_tfx()
            tfx_pipeline = pipeline_module.bundled_pipeline(pipeline_root, plan=plan, enable_cache=not no_cache)
            if log is not None:
                path = log.keep_at(run_log.new_log_path(pipeline_root))
                hint = "" if private or plan.scrub else " (--verbose shows them here)"
                click.echo(f"Logs of TFX, TensorFlow and Beam: {path}{hint}", file=terminal)

            def progress(event):
                current["stage"] = event.stage
                if event.state == "running":
                    click.echo(f"[{event.index}/{event.total}] {event.stage} ...", file=terminal)
                else:
                    click.echo(
                        f"[{event.index}/{event.total}] {event.stage} {event.state} ({event.seconds:.1f} s)",
                        file=terminal,
                    )

            try:
                runners.run(tfx_pipeline, runner=runner, progress=progress)
            except Exception as err:
                message = failure_message(err, scrubbing=plan.scrub is not None, private=private)  # traceback: log
                stage = current.get("stage", "the pipeline")
                where = f"; full log in {log.path}" if log is not None else ""
                raise click.ClickException(
                    f"{stage} failed: {message}\n"
                    f"(artifacts of the stages that completed stay in {pipeline_root} and are "
                    f"reused on the next run{where})"
                ) from None
        from pipelines.report import load_report

        report = load_report(pipeline_root)
    click.echo(json.dumps(report.to_dict(), indent=2, allow_nan=False) if as_json else report.format_text())
    composed = PipelineLayout(os.path.abspath(pipeline_root)).composition_warning()
    if composed:
        click.echo(f"Warning: {composed}", err=True)


def _bundled_columns() -> list[str]:
    """The bundled breast-cancer CSV's columns, all numeric: the trainer reads every one (features and label)."""
    from pipelines.datasets import breast_cancer

    return [*breast_cancer.feature_keys(), breast_cancer.LABEL_KEY]


@pipeline.command("compile")
@_training_options
@minimization_options
@click.option(
    "--kubeflow-v2",
    "output",
    type=click.Path(dir_okay=False),
    required=True,
    help="Write the Kubeflow Pipelines v2 PipelineSpec (JSON) to this file.",
)
@click.option("--pipeline-root", required=True, help="Pipeline root the cluster can reach (e.g. gs://bucket/root).")
@click.option("--data-root", required=True, help="Folder or bucket URI holding the CSV data.")
@click.option("--serving-model-dir", required=True, help="Where the Pusher copies blessed models.")
@click.option("--image", default="ppml:latest", show_default=True, help="Container image with ppml and TFX 1.21.")
@click.option(
    "--lineage-unchecked",
    metavar="REASON",
    default=None,
    help="Declare the gate's lineage check skipped (the gate cannot read the cluster's ML Metadata), "
    "with this reason, shown in the evaluation summary; without it the gate blesses nothing.",
)
@click.option("--verbose", is_flag=True, help="Print what TFX and TensorFlow log (else shown only on failure).")
def compile_(output, pipeline_root, data_root, serving_model_dir, image, lineage_unchecked, verbose, **options):
    """Compiles the pipeline for Kubeflow Pipelines v2 (JSON; no cluster needed).

    \b
    Example:
      ppml pipeline compile --kubeflow-v2 pipeline.json --pipeline-root gs://b/root \\
          --data-root gs://b/data --serving-model-dir gs://b/serving
    """
    model_inputs = _bundled_columns() if minimization_requested(options) else ()
    minimization = minimization_settings(
        options, columns=csv_columns(data_root) if model_inputs else None, model_inputs=model_inputs
    )
    plan = dataclasses.replace(_plan(**options), **minimization)
    _check_schema_columns(plan.schema_file, dict.fromkeys(_bundled_columns(), True))  # the bundled trainer's
    try:
        _private_local_root(pipeline_root)
    except OSError as err:
        raise click.BadParameter(
            f"cannot create {pipeline_root!r}: {err.strerror or err}", param_hint="'--pipeline-root'"
        ) from None
    with library_output(verbose):
        pipeline_module, runners = import_tfx()
        tfx_pipeline = pipeline_module.create_pipeline(
            plan=plan,
            pipeline_root=pipeline_root,
            data_root=data_root,
            serving_model_dir=serving_model_dir,
            beam_pipeline_args=(),
            lineage_unchecked=lineage_unchecked,
        )
        try:
            path = runners.compile_kubeflow_v2(tfx_pipeline, output, default_image=image)
        except (ValueError, RuntimeError) as err:
            raise click.ClickException(str(err)) from None
    click.echo(f"wrote {path}", err=not sys.stdout.isatty())


COMMANDS = (pipeline,)
