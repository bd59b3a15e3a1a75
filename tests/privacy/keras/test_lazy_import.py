"""`import privacy` and `privacy.accounting` stay TensorFlow-free; privacy.keras names load on first use."""


def test_privacy_imports_tensorflow_only_when_a_keras_name_is_used(python_subprocess):
    code = """
import sys
import privacy, privacy.accounting
assert "tensorflow" not in sys.modules, "import privacy imported TensorFlow"
from privacy import make_private, DPKerasSGDOptimizer
import privacy.keras
assert make_private is privacy.keras.make_private and DPKerasSGDOptimizer is privacy.keras.DPKerasSGDOptimizer
assert "tensorflow" in sys.modules
print("ok")
"""
    assert python_subprocess(code, legacy_keras=False).stdout.strip().endswith("ok")
