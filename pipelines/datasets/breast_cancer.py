"""Wisconsin Diagnostic Breast Cancer data (scikit-learn's bundled copy) as a CSV for CsvExampleGen.

569 patients, 30 real-valued measurements of cell nuclei each, and the diagnosis. Every row is a
person's medical record: the privacy unit of the pipelines is one row (one patient).

Columns are scikit-learn's feature names in snake_case (``mean radius`` -> ``mean_radius``) plus
`LABEL_KEY`, the diagnosis as scikit-learn codes it: 1 = benign, 0 = malignant.
"""

from __future__ import annotations

import csv
import io
import os

from privacy.atomic_files import write_atomically

LABEL_KEY = "diagnosis"
NUM_CLASSES = 2
"""The label's classes: a public fact of the data set (a private Federated Trainer needs it as a setting)."""
FILE_NAME = "breast_cancer.csv"


def feature_keys() -> list[str]:
    """The 30 feature column names, in scikit-learn's order."""
    from sklearn.datasets import load_breast_cancer

    return _column_names(load_breast_cancer().feature_names)


def _column_names(feature_names) -> list[str]:
    return [name.replace(" ", "_") for name in feature_names]


def write_csv(directory: str | os.PathLike) -> str:
    """Writes the data set to ``directory/breast_cancer.csv`` (atomically) and returns the path.

    Values are written with Python's shortest round-trip float repr, so the CSV holds exactly
    scikit-learn's numbers. ``directory`` should hold nothing else: CsvExampleGen reads every
    file in it.
    """
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(_column_names(data.feature_names) + [LABEL_KEY])
    for row, label in zip(data.data, data.target, strict=True):
        writer.writerow([repr(float(v)) for v in row] + [int(label)])
    return write_atomically(os.path.join(os.fspath(directory), FILE_NAME), text.getvalue())
