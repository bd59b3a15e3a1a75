"""Reference models of the FedAvg literature, as Keras 3 model builders (picklable for Beam)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DenseModel:
    """A builder of input -> [Dense(h, relu)]* -> Dense(classes) logits.

    ``DenseModel(784, 10, (200, 200))`` is McMahan et al.'s MNIST 2NN (199,210 parameters);
    ``DenseModel(784, 10)`` the linear (softmax-regression) model. Calling it builds a fresh model
    with weights drawn from ``seed``.
    """

    input_dim: int
    num_classes: int
    hidden: tuple[int, ...] = ()
    seed: int = 0

    def __call__(self):
        import keras

        keras.utils.set_random_seed(self.seed)
        layers = [keras.Input((self.input_dim,))]
        layers += [keras.layers.Dense(width, activation="relu") for width in self.hidden]
        layers.append(keras.layers.Dense(self.num_classes))
        return keras.Sequential(layers)
