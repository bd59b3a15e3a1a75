"""The PATE student's self-training (`privacy.pate.student`, `keras_training.fit_student`): pseudo-labels only on
unanswered public queries and only at the fixed confidence, and on a task with few answered labels the
self-trained student is more accurate than the supervised one."""

import os

import numpy as np
import pytest

from privacy.pate import PateConfigurationError
from privacy.pate.student import SelfTraining, pseudo_labels


def test_pseudo_labels_are_the_unanswered_queries_at_or_above_the_confidence_with_their_argmax():
    probabilities = np.array([[0.95, 0.05], [0.9, 0.1], [0.2, 0.8], [0.05, 0.95], [0.5, 0.5]])
    answered = np.array([True, False, False, False, False])
    rows, labels = pseudo_labels(probabilities, answered, 0.9)
    assert rows.tolist() == [1, 3] and labels.tolist() == [0, 1]  # row 0 is answered: it keeps its released label
    rows, labels = pseudo_labels(probabilities, answered, 0.8)
    assert rows.tolist() == [1, 2, 3] and labels.tolist() == [0, 1, 1]
    assert pseudo_labels(probabilities, np.ones(5, bool), 0.1)[0].size == 0
    assert pseudo_labels(probabilities, answered, 1.0)[0].size == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"confidence": 0.0}, "confidence must be in (0, 1]"),
        ({"confidence": float("nan")}, "confidence"),
        ({"confidence": True}, "confidence"),
        ({"rounds": 0}, "rounds must be an integer"),
        ({"rounds": 1.5}, "rounds"),
    ],
)
def test_bad_self_training_settings_are_refused_naming_them(kwargs, message):
    with pytest.raises(PateConfigurationError, match=message.replace("(", r"\(").replace("]", r"\]")):
        SelfTraining(**kwargs)


def blobs(seed=0, n=1000, classes=4, dim=8):
    """Gaussian clusters (centers ~ N(0, 4 I), unit noise): few labels place the boundaries badly, the unlabeled
    points show the clusters."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=2.0, size=(classes, dim))
    y = rng.integers(0, classes, n)
    return centers[y] + rng.normal(size=(n, dim)), y


def test_with_few_answered_labels_self_training_beats_the_supervised_student_and_labels_only_unanswered_rows():
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "0")
    import scipy.special

    from privacy.pate import keras_training as kt

    x, y = blobs()
    queries, labels, x_test, y_test = x[:600], y[:600].copy(), x[600:], y[600:]
    answered = np.zeros(600, bool)
    answered[:12] = True
    labels[~answered] = -1  # as a VoteHistory holds them: unanswered queries have no released label
    fit = dict(num_classes=4, epochs=30, seed=0, hidden=16)
    supervised, plain = kt.fit_student(queries, labels, answered, **fit)
    assert plain.self_training is None and plain.pseudo_labelled.size == 0 and plain.answered == 12
    semi, training = kt.fit_student(queries, labels, answered, **fit, self_training=SelfTraining(0.9, 1))
    # one round: the pseudo-labelled rows are exactly the unanswered queries the supervised fit (same seed) gives
    # probability >= 0.9
    probabilities = scipy.special.softmax(supervised.predict(queries.astype("float32"), verbose=0), axis=1)
    expected = np.flatnonzero(~answered & (probabilities.max(axis=1) >= 0.9))
    assert 0 < len(expected) < 588 and np.array_equal(training.pseudo_labelled, expected)
    assert not answered[training.pseudo_labelled].any()
    stricter = kt.fit_student(queries, labels, answered, **fit, self_training=SelfTraining(0.99, 1))[1]
    assert set(stricter.pseudo_labelled) <= set(training.pseudo_labelled)
    assert len(stricter.pseudo_labelled) < len(training.pseudo_labelled)
    # measured (seed 0): supervised 0.955, self-trained 0.99 on the 400 held-out rows
    assert kt.accuracy(semi, x_test, y_test) > kt.accuracy(supervised, x_test, y_test) + 0.01
    assert training.to_json() == {
        "method": "self-training",
        "confidence": 0.9,
        "rounds": 1,
        "answered_labels": 12,
        "pseudo_labels": len(expected),
        "privacy": training.to_json()["privacy"],
    }
