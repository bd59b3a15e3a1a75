"""Configurations A/B'd in one process: a balanced rotated order of visits, timed train-function calls, and a
bootstrap interval of the median per-round ratio (noisy_padding_ab.py, dp_sgd_speed.py ``--paired``).

Standard library only at load time; `train_once` needs a compiled Keras model (either flavour).
"""

from __future__ import annotations

import random
import statistics
import time


def balanced_rounds(names: list, rounds: int):
    """Yields, for each of ``rounds`` rounds, the order in which ``names`` run: each block of len(names) rounds
    rotates an order shuffled for the block (seeded by the block's first round), so every name runs once in every
    position of a block and an effect of the position (e.g. caches warm from the previous visit) falls on all alike."""
    order = list(names)
    for round_ in range(rounds):
        if round_ % len(order) == 0:
            random.Random(round_).shuffle(order)
        k = round_ % len(order)
        yield order[k:] + order[:k]


def bootstrap_interval(values: list[float], draws: int = 2000) -> tuple[float, float]:
    """95 % interval of the median of ``values`` (percentile bootstrap, seeded): `clustered_interval` of one group."""
    return clustered_interval([values], draws)


def clustered_interval(groups: list[list[float]], draws: int = 2000) -> tuple[float, float]:
    """95 % interval of the median of the pooled ``groups`` (e.g. the rounds of several processes), by a two-level
    percentile bootstrap (seeded): the groups resampled, then each drawn group's values, so that a difference
    between the groups (a process's own state) widens the interval as it would the next process's figure."""
    rng = random.Random(0)
    medians = sorted(
        statistics.median(v for g in rng.choices(groups, k=len(groups)) for v in rng.choices(g, k=len(g)))
        for _ in range(draws)
    )
    return medians[int(0.025 * draws)], medians[int(0.975 * draws) - 1]


def train_once(model, iterator, callbacks=None, batch: int = 0) -> tuple[float, float]:
    """One call of ``model``'s Keras train function on ``iterator``, up to its loss on the host, with ``callbacks``'
    (a Keras CallbackList) batch hooks around it as `fit` calls them: (wall ms, process CPU ms). A private model's
    call must run inside `private_training(model).fitting(...)`."""
    began = (time.perf_counter(), time.process_time())
    if callbacks is not None:
        callbacks.on_train_batch_begin(batch)
    logs = model.train_function(iterator)
    logs = logs.get_value() if hasattr(logs, "get_value") else logs  # Keras 3: an Optional
    float(logs["loss"])
    if callbacks is not None:
        callbacks.on_train_batch_end(batch, logs)
    return (time.perf_counter() - began[0]) * 1e3, (time.process_time() - began[1]) * 1e3
