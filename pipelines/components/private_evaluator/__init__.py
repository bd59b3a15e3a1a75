"""Private Evaluator: TFX's Evaluator whose blessing also needs epsilon within budget and a passing
membership-inference audit.

`spec` says what to put in the EvalConfig (`spec.GateSettings` and its `metrics`, or `spec.privacy_metrics`);
`metrics` holds the two TFMA metrics; `audit` runs the loss-threshold attack on a SavedModel; `canary_audit` the
optional one-run privacy audit of the Trainer's DP-SGD run (``privacy_metrics(audit_canaries=...)``);
`component.PrivateEvaluator` is the component and `executor.Executor` the work.
"""
