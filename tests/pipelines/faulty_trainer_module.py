"""A DP Trainer module with the audit hooks of `pipelines.trainers.breast_cancer` and a bug chosen by
``hp["fault"]``, for the implementation check's tests (tests/pipelines/test_privacy_audit_gate.py):

* "warm-up": one ordinary (non-private) full-batch step before the private fit, a bug no ledger shows;
* "clip-2x": passes `make_private` twice the plan's clip norm, while its ledger states the plan's;
* "crash": its fit raises a TypeError of its own;
* "not-a-model": its build_model returns None;
* "two-lines": its build_model raises a ValueError whose message has two lines;
* "standardised-warm-up": its fit standardises every input column, then takes the "warm-up" step.
"""

import dataclasses

import tensorflow as tf

from pipelines.trainers import breast_cancer

FAULTS = ("warm-up", "clip-2x", "crash", "not-a-model", "two-lines", "standardised-warm-up")


def build_model(hp):
    if hp["fault"] == "not-a-model":
        return None
    if hp["fault"] == "two-lines":
        raise ValueError("line one\nline two")
    return breast_cancer.build_model(hp)


def fit_private(model, features, labels, plan, hp):
    if hp["fault"] == "standardised-warm-up":
        features = (features - features.mean(axis=0)) / (features.std(axis=0) + 1e-6)
    if hp["fault"] in ("warm-up", "standardised-warm-up"):
        model.compile(optimizer=tf.keras.optimizers.SGD(hp["learning_rate"]), loss=tf.keras.losses.BinaryCrossentropy())
        model.fit(features, labels, batch_size=len(labels), epochs=1, verbose=0)
    elif hp["fault"] == "clip-2x":
        plan = dataclasses.replace(
            plan, config=dataclasses.replace(plan.config, l2_norm_clip=2 * plan.config.l2_norm_clip)
        )
    elif hp["fault"] == "crash":
        raise TypeError("fit_private() got an unexpected keyword")
    return breast_cancer.fit_private(model, features, labels, plan, hp)
