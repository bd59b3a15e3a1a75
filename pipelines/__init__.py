"""ppml.pipelines: TFX integration and the `ppml` command line.

Layout (one obvious home per piece; new components and trainer modules slot in beside these):

- `plan`: one run's settings checked once into a `PipelinePlan`, without TFX (`resolve_plan`, `PipelineLayout`).
- `pipeline`: the pipeline factory (`create_pipeline`, `bundled_pipeline`), built from a plan.
- `root_lock`: one `ppml pipeline run` per pipeline root at a time (an OS file lock).
- `runners`: LocalDagRunner / BeamDagRunner with per-stage progress; Kubeflow Pipelines v2 compilation.
- `components/<name>/`: custom TFX components, each ``component.py`` + ``executor.py`` + ``spec.py``:
  `components.dp_trainer` (Trainer with DP-SGD settings, ledger and epsilon in MLMD),
  `components.private_evaluator` (Evaluator whose blessing needs epsilon and a membership audit),
  `components.federated_trainer` and `components.encrypted_gate`.
- `trainers/<dataset>.py`: module files (``preprocessing_fn``, ``run_fn``) by dotted path.
- `privacy_ledger`: the shared ledger format (JSON in the SavedModel) and the Model artifact's MLMD
  properties; any private trainer writes its ledger with it.
- `report`: a run's report from ML Metadata, the ledger and the evaluation summary.
- `datasets/`: data the project ships as files (the breast-cancer CSV).
- `keras_env`: tf-keras for pipeline processes (TF_USE_LEGACY_KERAS=1 before TensorFlow loads).
- `cli/`: the `ppml` command, one module per command group.

Importing this package imports neither TensorFlow nor TFX; `pipeline`, `runners` and the components'
``component``/``executor`` modules load TFX when imported.
"""
