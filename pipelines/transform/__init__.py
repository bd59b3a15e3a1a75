"""Private preprocessing in tf.Transform: analyzers whose statistics are released with differential privacy.

`analyzers.private_preprocessing_fn` wraps a preprocessing function written with `analyzers.PrivateAnalyzers`
(drop-ins for tft's z-score and min-max scaling, mean and variance, quantile buckets and vocabularies); `spec` holds
the settings the pipeline passes through the Transform's ``custom_config``; `artifact` reads the records
back from a transform graph or a SavedModel. The mechanisms themselves are `privacy.preprocessing`.
"""
