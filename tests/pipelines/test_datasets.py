"""The bundled breast-cancer CSV holds exactly scikit-learn's data."""

import csv

import numpy as np
from sklearn.datasets import load_breast_cancer

from pipelines.datasets import breast_cancer


def test_csv_holds_sklearn_data_exactly(tmp_path):
    path = breast_cancer.write_csv(tmp_path / "data")
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [breast_cancer.FILE_NAME]
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    assert header == breast_cancer.feature_keys() + [breast_cancer.LABEL_KEY]
    assert header[:2] == ["mean_radius", "mean_texture"] and len(header) == 31
    data = load_breast_cancer()
    values = np.array([[float(v) for v in row[:-1]] for row in body])
    labels = np.array([int(row[-1]) for row in body])
    np.testing.assert_array_equal(values, data.data)  # bit-exact round trip
    np.testing.assert_array_equal(labels, data.target)
    assert len(body) == 569 and labels.sum() == 357  # 357 benign, 212 malignant
