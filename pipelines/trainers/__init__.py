"""Trainer modules: ``preprocessing_fn`` for Transform and ``run_fn`` for the Trainer, one file per model
or training scheme (e.g. `breast_cancer`, the bundled DP-SGD example). Point Transform and Trainer at
them by dotted path, e.g. ``run_fn="pipelines.trainers.breast_cancer.run_fn"``.
"""
