"""The runtime loads the whole stack: a broken environment fails here, loudly, instead of skipping."""

import json
import sys


def test_tfx_stack_imports(python_subprocess):
    code = """
import json, importlib
mods = ["tensorflow", "tfx", "tfx.v1", "tensorflow_data_validation", "tensorflow_transform",
        "tensorflow_model_analysis", "ml_metadata", "apache_beam", "tfx_bsl", "tf_keras", "dp_accounting"]
versions = {}
for name in mods:
    m = importlib.import_module(name)
    versions[name] = getattr(m, "__version__", "?")
print(json.dumps(versions))
"""
    proc = python_subprocess(code, legacy_keras=True, timeout=600)
    versions = json.loads(proc.stdout.strip().splitlines()[-1])
    assert versions["tensorflow"].startswith("2.21.")
    assert versions["tfx"].startswith("1.21.")
    assert versions["tensorflow_data_validation"].startswith("1.21.")


def test_tfdv_native_extension_works(python_subprocess):
    """TFDV's C++ validation runs (it is what cannot load on glibc < 2.39)."""
    code = """
import pandas as pd
import tensorflow_data_validation as tfdv
df = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0]})
stats = tfdv.generate_statistics_from_dataframe(df)
schema = tfdv.infer_schema(stats)
bad = tfdv.generate_statistics_from_dataframe(pd.DataFrame({"x": ["a", "b"], "y": [0, 1]}))
anomalies = tfdv.validate_statistics(bad, schema)
print(sorted(anomalies.anomaly_info))
"""
    proc = python_subprocess(code, legacy_keras=True, timeout=600)
    assert "'x'" in proc.stdout


def test_python_version_supported():
    assert (3, 11) <= sys.version_info[:2] <= (3, 13)
