"""What a private run trains on: under client-level DP no one record decides whether the run happens.

Refusing a data set for one record's value (a NaN, an infinity, a feature of 1e300 that float32 makes
infinite, a label outside the model's classes) makes the run's existence a function of that record:
"a model and a ledger" against "an error" tells the neighbours apart with certainty. A private run
instead leaves each such record out on its own, after the records are dealt to clients, so every
client stays (empty ones send a zero update) and one record changes at most its own client's data. How
many records were left out is not reported. A finite but huge record still trains; its client's update
then overflows, which DP-FedAvg turns into a zero update counted as clipped.
"""

from __future__ import annotations

import numpy as np


def trainable(x, y, num_classes: int) -> np.ndarray:
    """[n] bool: the record's features are finite in float32 and its label is an integer in [0, num_classes)."""
    x = np.asarray(x, np.float64)
    features = x.reshape(len(x), int(np.prod(x.shape[1:])))  # no record: [0, d]
    with np.errstate(over="ignore"):
        finite = np.isfinite(features.astype(np.float32)).all(axis=1)
    labels = np.asarray(y, np.float64)
    return finite & integral(labels) & (labels >= 0) & (labels < num_classes)


def largest_label(*labels) -> int:
    """The largest integer label >= 0 among the arrays ``labels`` (-1 when there is none)."""
    values = np.concatenate([np.asarray(a, np.float64).ravel() for a in labels])
    values = values[integral(values) & (values >= 0)]
    return int(values.max()) if values.size else -1


def integral(values: np.ndarray) -> np.ndarray:
    """Elementwise: the float64 value is a finite integer. Silent for every value, ±inf and NaN included (a
    numpy warning for one label would be a log line decided by that record)."""
    finite = np.isfinite(values)
    return finite & (np.mod(np.where(finite, values, 0), 1) == 0)
