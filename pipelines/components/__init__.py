"""Custom TFX components, one folder each: ``component.py`` (the class, checked when the pipeline is
built), ``executor.py`` (the work, at run time) and ``spec.py`` (what a pipeline author configures).

- `dp_trainer`: the standard Trainer with DP-SGD settings in ``custom_config``, a privacy ledger
  and epsilon on the Model artifact.
- `private_evaluator`: the standard Evaluator whose blessing also requires epsilon within budget and a
  passing membership-inference audit, both as TFMA metrics with thresholds.
- `federated_trainer`: the standard Trainer running federated averaging (optionally client-level DP,
  with a ledger like the DP Trainer's).
- `encrypted_gate`: blesses a model only if its secret-shared predictions match the plaintext ones.
- `settings`: the number checks the specs share, each naming the ``custom_config`` key it refuses.

Importing this package imports neither TensorFlow nor TFX; import a component's ``component`` module
to use it.
"""
