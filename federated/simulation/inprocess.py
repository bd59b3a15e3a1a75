"""The in-process runner: a round's chunks of clients trained on a few threads of this process."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from federated.simulation.round import train_chunk, trainer_for
from privacy import validation


class InProcessRunner:
    """Trains a round's chunks here (single clients under sequential execution), ``workers`` at a time.

    TensorFlow releases the GIL while a compiled local run executes, so two workers keep two cores
    busy with models too small for TensorFlow's own intra-op parallelism. The aggregate does not
    depend on the order in which chunks finish (`TreeSum`, modular sums), so results are bitwise
    the same for any number of workers.

    Args:
      workers: threads training chunks concurrently (default: the number of CPUs, at most 4).
    """

    name = "inprocess"

    def __init__(self, workers: int | None = None):
        if workers is None:
            workers = min(os.cpu_count() or 1, 4)
        self.workers = validation.integer("workers", workers, minimum=1)

    def run_round(self, job) -> tuple:
        """Returns (accumulator, diagnostics) for ``job`` (a `RoundJob`)."""
        trainer = trainer_for(job.model_fn, job.loss, job.execution)
        aggregation = job.aggregation

        def train(ranks):
            return train_chunk(trainer, job.data, job.strategy, job.state, job.plan, ranks, aggregation, job.keys)

        chunks = job.plan.chunks()
        if job.execution == "sequential":  # one call per client anyway: balance the threads per client
            chunks = [[rank] for chunk in chunks for rank in chunk]
        if self.workers == 1 or len(chunks) <= 1:  # none: an empty Poisson sample
            results = map(train, chunks)
        else:
            with ThreadPoolExecutor(min(self.workers, len(chunks))) as pool:
                results = list(pool.map(train, chunks))
        accumulator = aggregation.new_accumulator()
        diagnostics = []
        for encoded, diag in results:
            for item in encoded:
                accumulator = aggregation.accumulate(accumulator, item)
            diagnostics.extend(diag)
        return accumulator, diagnostics

    def to_dict(self) -> dict:
        return {"name": self.name, "workers": self.workers}
