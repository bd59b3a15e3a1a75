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


def test_the_noise_kernel_compiles_when_the_noise_is_built_not_at_the_first_step(python_subprocess):
    """numba and the compiled noise kernel load with `GaussianNoise.build` (eagerly, before a step is traced), with
    their machine code for the fixed signatures ready: no training step waits for a compile."""
    code = """
import sys
from privacy.keras.noise import GaussianNoise
noise = GaussianNoise(seed=1)
assert "numba" not in sys.modules and "privacy.keras.noise_kernel" not in sys.modules
noise.build()
kernel = sys.modules["privacy.keras.noise_kernel"]
assert len(kernel.standard_normal.overloads) == 1 and len(kernel.philox_words.overloads) == 1
print("ok")
"""
    assert python_subprocess(code, legacy_keras=False).stdout.strip().endswith("ok")
