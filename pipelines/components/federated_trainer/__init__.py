"""Federated Trainer: TFX's Trainer that trains by federated averaging over simulated clients.

`spec` (no TensorFlow) parses and checks the settings; `component.FederatedTrainer` is the component
(its default ``run_fn`` is `pipelines.trainers.federated.run_fn`); `executor.Executor` checks the
settings before training and records the ledger of a private run in ML Metadata.
"""
