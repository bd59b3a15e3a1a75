"""Trainer modules: ``preprocessing_fn`` for Transform and ``run_fn`` for the (DP) Trainer, one file per
model. `breast_cancer` is the bundled example; point Transform/Trainer at them by dotted path, e.g.
``run_fn="pipelines.trainers.breast_cancer.run_fn"``.
"""
