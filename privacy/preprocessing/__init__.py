"""Private preprocessing: the statistics a model's preprocessing carries, released with differential privacy.

A z-score, a min-max scale, quantile buckets or a vocabulary computed on the training data are
statistics of it, and a model that carries them reveals them. Here each one is a Gaussian release of
clipped per-record contributions with public bounds, recorded as a dp-accounting event so that it
composes exactly with DP-SGD or DP-FedAvg in one accountant (RDP and PLD):

- `MeanVariance` (mean and variance: z-scores), `TreeHistogram` (quantiles: buckets, min-max),
  `GaussianThresholding` (vocabularies with private partition selection, which adds a delta);
- `PreprocessingBudget`: the preprocessing's (epsilon, delta) and each mechanism's share of it;
- `MechanismRecord`, `ReleaseRecord`, `PublicDeclaration`, `CoverageRecord`: what was released, as text
  records that travel inside the artifact; `PreprocessingAccount` turns them back into events and
  `PreprocessingPart` accounts them for one trainer's neighbours (adjacency, records per privacy unit);
- `adapted_layers`: Keras preprocessing layers adapted on data (exact statistics), with what to use.

Noise comes from a CSPRNG-keyed generator (`NoiseSource`). Nothing here imports TensorFlow or TFX: the
tf.Transform analyzers that use these mechanisms are in `pipelines.transform`.
"""

from privacy.preprocessing.accounting import PreprocessingAccount, PreprocessingPart
from privacy.preprocessing.bounds import Bounds, Grid
from privacy.preprocessing.budget import PreprocessingBudget, check_share
from privacy.preprocessing.gaussian import Component, allocate, gaussian_event, noise_multiplier_of
from privacy.preprocessing.keras_layers import ADAPTED_LAYERS, adapted_layer_problem, adapted_layers
from privacy.preprocessing.moments import MeanVariance
from privacy.preprocessing.noise import NoiseSource
from privacy.preprocessing.partition_selection import GaussianThresholding, additive_delta
from privacy.preprocessing.quantiles import TreeHistogram
from privacy.preprocessing.records import (
    EXACT,
    GAUSSIAN_SUMS,
    GAUSSIAN_THRESHOLDING,
    TREE_HISTOGRAM,
    CoverageRecord,
    MechanismRecord,
    PublicDeclaration,
    RecordError,
    ReleaseRecord,
    from_text,
    group_factor,
    to_text,
)

__all__ = [
    "ADAPTED_LAYERS",
    "Bounds",
    "Component",
    "CoverageRecord",
    "EXACT",
    "GAUSSIAN_SUMS",
    "GAUSSIAN_THRESHOLDING",
    "GaussianThresholding",
    "Grid",
    "MeanVariance",
    "MechanismRecord",
    "NoiseSource",
    "PreprocessingAccount",
    "PreprocessingBudget",
    "PreprocessingPart",
    "PublicDeclaration",
    "RecordError",
    "ReleaseRecord",
    "TREE_HISTOGRAM",
    "TreeHistogram",
    "adapted_layer_problem",
    "adapted_layers",
    "additive_delta",
    "allocate",
    "check_share",
    "from_text",
    "gaussian_event",
    "group_factor",
    "noise_multiplier_of",
    "to_text",
]
