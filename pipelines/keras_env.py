"""tf-keras (Keras 2) for processes that run TFX pipelines.

TensorFlow Transform and TFMA 0.52 need Keras 2, and TensorFlow reads ``TF_USE_LEGACY_KERAS`` once,
when it is first imported. Importing tensorflow_transform sets the variable to 1 *after* TensorFlow
may already be loaded, which leaves ``tf.keras`` on Keras 3 while code reading the variable sees 1.
So a pipeline process sets it explicitly, before anything imports TensorFlow.
"""

from __future__ import annotations

import os
import sys

VARIABLE = "TF_USE_LEGACY_KERAS"


def use_tf_keras() -> None:
    """Makes this process use tf-keras; call it before TensorFlow is imported.

    Raises:
      RuntimeError: if TensorFlow was already imported with Keras 3 as ``tf.keras``.
    """
    if "tensorflow" not in sys.modules:
        os.environ[VARIABLE] = "1"
        return
    require_tf_keras()


def require_tf_keras() -> None:
    """Raises RuntimeError unless ``tf.keras`` is tf-keras (Keras 2) in this process."""
    import tensorflow as tf

    module = tf.keras.layers.Dense.__module__
    if not module.startswith("tf_keras"):
        raise RuntimeError(
            f"TFX pipelines need tf-keras, but tf.keras is Keras 3 in this process ({module}); "
            f"TensorFlow was imported before {VARIABLE}=1 was set. Set {VARIABLE}=1 in the environment, or call "
            f"pipelines.keras_env.use_tf_keras() before importing TensorFlow."
        )
