"""DP Trainer: TFX's Trainer with DP-SGD settings in ``custom_config`` and epsilon in ML Metadata.

`spec` (no TensorFlow) parses and checks the settings; `component.DpTrainer` is the component;
`executor.Executor` checks the settings before training and records the ledger in MLMD.
"""
