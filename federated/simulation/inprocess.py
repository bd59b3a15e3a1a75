"""The in-process runner: clients trained chunk by chunk in this Python process."""

from __future__ import annotations

from federated.simulation.round import train_chunk, trainer_for


class InProcessRunner:
    """Runs a round's clients here, one chunk at a time (one vectorized call per chunk when vectorized)."""

    name = "inprocess"

    def run_round(self, job) -> tuple:
        """Returns (accumulator, diagnostics) for ``job`` (a `RoundJob`)."""
        trainer = trainer_for(job.model_fn, job.loss, job.execution)
        aggregation = job.aggregation
        accumulator = aggregation.new_accumulator()
        diagnostics = []
        for ranks in job.plan.chunks():
            encoded, diag = train_chunk(trainer, job.data, job.strategy, job.state, job.plan, ranks, aggregation,
                                        job.keys)
            for item in encoded:
                accumulator = aggregation.accumulate(accumulator, item)
            diagnostics.extend(diag)
        return accumulator, diagnostics

    def to_dict(self) -> dict:
        return {"name": self.name}
