"""PATE Trainer: teachers on the private split, noisy aggregation of their votes on the public split, and the
student, in TFX's Trainer stage.

`spec` (no TensorFlow) parses and checks the settings; `component.PateTrainer` is the component (its ``run_fn``
is `pipelines.trainers.pate.run_fn`); `executor.Executor` checks the settings before training and records the
ledger in ML Metadata.
"""
