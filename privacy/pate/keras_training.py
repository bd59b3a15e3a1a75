"""Teachers and student as small Keras 3 classifiers (`import keras`; the rest of privacy.pate imports no Keras).

Each teacher is fitted on its own partition only; the student is fitted on the public queries that the
aggregator answered, with the aggregator's labels, so it depends on the private data only through them; with
`privacy.pate.student.SelfTraining` also on unanswered queries it pseudo-labels itself (post-processing: the
same epsilon).
Callers set TF_USE_LEGACY_KERAS before TensorFlow is first imported (`ppml pate run` sets 0 unless set).
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.special

from privacy.pate.student import SelfTraining, StudentTraining, pseudo_labels


def _classifier(input_dim: int, num_classes: int, hidden: int, seed: int):
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((input_dim,)), keras.layers.Dense(hidden, activation="relu"), keras.layers.Dense(num_classes)]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def fit_classifier(x: np.ndarray, y: np.ndarray, num_classes: int, *, epochs: int, seed: int, hidden: int = 32):
    """A small MLP (one hidden layer) fitted on (x, y) with Adam, batches of 32; on no row, its seeded
    initialisation (so that no row count decides whether a model comes out)."""
    model = _classifier(x.shape[1], num_classes, hidden, seed)
    if len(x) == 0:
        return model
    model.fit(x.astype("float32"), y.astype("int64"), epochs=epochs, batch_size=32, verbose=0)
    return model


def fit_student(
    queries: np.ndarray,
    labels: np.ndarray,
    answered: np.ndarray,
    num_classes: int,
    *,
    epochs: int,
    seed: int,
    hidden: int = 32,
    self_training: SelfTraining | None = None,
):
    """(student, `StudentTraining`): the student fitted on ``queries[answered]`` with ``labels[answered]`` (the
    aggregator's release), then, with ``self_training``, refitted ``rounds`` times from the same seeded
    initialisation on those plus the unanswered queries its previous fit labels with probability >= confidence.
    Uses the public queries and the released labels only: post-processing, no privacy cost."""
    answered = np.asarray(answered, dtype=bool)
    labels = np.asarray(labels, dtype=np.int64)
    fit = functools.partial(fit_classifier, num_classes=num_classes, epochs=epochs, seed=seed, hidden=hidden)
    student = fit(queries[answered], labels[answered])
    rows = np.zeros(0, dtype=np.int64)
    for _ in range(self_training.rounds if self_training else 0):
        probabilities = scipy.special.softmax(student.predict(queries.astype("float32"), verbose=0), axis=1)
        rows, pseudo = pseudo_labels(probabilities, answered, self_training.confidence)
        student = fit(np.concatenate([queries[answered], queries[rows]]), np.concatenate([labels[answered], pseudo]))
    return student, StudentTraining(self_training, int(answered.sum()), rows)


def teacher_votes(
    x: np.ndarray,
    y: np.ndarray,
    partitions,
    queries: np.ndarray,
    num_classes: int,
    *,
    epochs: int,
    seed: int,
    hidden: int = 32,
) -> np.ndarray:
    """(queries, classes) vote counts of one teacher per partition, each fitted on x[partition] only.

    A teacher with an empty partition is not fitted: its model is the initialisation from its seed, so its
    votes depend on the public queries and the seed only.
    """
    votes = np.zeros((len(queries), num_classes), dtype=np.int64)
    for teacher, rows in enumerate(partitions):
        if len(rows) == 0:
            model = _classifier(queries.shape[1], num_classes, hidden, seed + teacher)
        else:
            model = fit_classifier(x[rows], y[rows], num_classes, epochs=epochs, seed=seed + teacher, hidden=hidden)
        predicted = np.argmax(model.predict(queries.astype("float32"), verbose=0), axis=1)
        votes[np.arange(len(queries)), predicted] += 1
    return votes


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    """Share of rows of x the model labels as y."""
    return float(np.mean(np.argmax(model.predict(x.astype("float32"), verbose=0), axis=1) == y))
