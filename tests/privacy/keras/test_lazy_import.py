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


def test_the_noise_kernel_compiles_when_a_step_that_runs_it_is_traced(python_subprocess):
    """numba and the compiled noise kernel load while a step that draws float32 noise on CPU without XLA is traced
    (before it runs), with their machine code for the fixed signatures ready: no step waits for a compile; building
    the noise, float64 draws (central DP-FedAvg's) and XLA steps do not load them; the transform alone, which only
    the tests call, compiles on first use. (Where a GPU or TPU is visible no step runs the kernel: none loads it.)"""
    code = """
import sys
import tensorflow as tf
from privacy.keras import noise
source = noise.GaussianNoise(seed=1)
source.build()
source.add([tf.zeros([5], tf.float64)], 1.0)
tf.function(lambda: source.add([tf.zeros([5])], 1.0), jit_compile=True)()
assert "numba" not in sys.modules and "privacy.keras.noise_kernel" not in sys.modules
step = tf.function(lambda: source.add([tf.zeros([5])], 1.0))
step.get_concrete_function()
assert ("privacy.keras.noise_kernel" in sys.modules) == noise.compiled_kernel_applies()
if noise.compiled_kernel_applies():
    kernel = sys.modules["privacy.keras.noise_kernel"]
    assert len(kernel.normal.overloads) == 1 and len(kernel.philox_words.overloads) == 1
    assert "box_muller_words" not in vars(kernel)
    assert len(kernel.box_muller_words.overloads) == 1 and "box_muller_words" in vars(kernel)
print("ok")
"""
    assert python_subprocess(code, legacy_keras=False).stdout.strip().endswith("ok")
