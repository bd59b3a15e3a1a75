"""The Apache Beam runner: the same round on the DirectRunner here, or on Flink, Spark or Dataflow.

Per round the driver builds one pipeline (a Beam pipeline is acyclic, so the round loop stays in the
driver): the round's client chunks -> Reshuffle -> ParDo(train the chunk; server state as a side
input) -> CombineGlobally(the aggregation protocol as a CombineFn) -> written to ``temp_location``
and read back by the driver, which takes the server step. The CombineFn is `TreeSum` (plain) or a
modular sum (secure), both independent of bundle splits and merge order, and the chunks are the
in-process runner's, so the result is bitwise the in-process result for the same seed when workers
run the same TensorFlow build.

On a distributed runner, ``model_fn`` and the strategy must be importable on the workers, and
``temp_location`` must be a path every worker and the driver can reach (e.g. gs://...).
"""

from __future__ import annotations

import dataclasses
import pickle
import tempfile
import uuid

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from federated.simulation.round import train_chunk, trainer_for

_DIAGNOSTICS = "diagnostics"


class BeamRunner:
    """Runs each round as a Beam pipeline.

    Args:
      pipeline_args: Beam pipeline flags (default: ``--runner=DirectRunner``).
      temp_location: where round results are written for the driver (default: a local temp dir).
    """

    name = "beam"

    def __init__(self, pipeline_args: list[str] | None = None, temp_location: str | None = None):
        self.pipeline_args = list(pipeline_args or ["--runner=DirectRunner"])
        self.temp_location = temp_location

    def to_dict(self) -> dict:
        return {"name": self.name, "pipeline_args": self.pipeline_args}

    def run_round(self, job):
        """Returns (accumulator, diagnostics) for ``job``, like `InProcessRunner.run_round`."""
        directory = self.temp_location or tempfile.gettempdir()
        path = FileSystems.join(directory, f"ppml-federated-round-{job.plan.round}-{uuid.uuid4().hex}.pkl")
        with beam.Pipeline(options=PipelineOptions(self.pipeline_args)) as pipeline:
            state = pipeline | "State" >> beam.Create([job.state])
            trained = (pipeline
                       | "Chunks" >> beam.Create(job.plan.chunks())
                       | "Spread" >> beam.Reshuffle()
                       | "Train" >> beam.ParDo(TrainChunk(dataclasses.replace(job, state=None)),
                                               beam.pvalue.AsSingleton(state)).with_outputs(_DIAGNOSTICS,
                                                                                            main="encoded"))
            aggregate = trained.encoded | "Aggregate" >> beam.CombineGlobally(AggregateFn(job.aggregation))
            diagnostics = trained[_DIAGNOSTICS] | "Diagnostics" >> beam.combiners.ToList()
            _ = (pipeline
                 | "Path" >> beam.Create([path])
                 | "Write" >> beam.Map(_write, beam.pvalue.AsSingleton(aggregate),
                                       beam.pvalue.AsSingleton(diagnostics)))
        with FileSystems.open(path) as f:
            accumulator, diagnostics = pickle.load(f)
        FileSystems.delete([path])
        return accumulator, sorted(diagnostics, key=lambda d: d.rank)


class TrainChunk(beam.DoFn):
    """Trains one chunk of clients (the server state arrives as a side input); emits encoded
    contributions, and diagnostics on a tagged output."""

    def __init__(self, job):
        super().__init__()
        self._job = job

    def process(self, ranks, state):
        job = self._job
        trainer = trainer_for(job.model_fn, job.loss, job.execution)
        encoded, diagnostics = train_chunk(trainer, job.data, job.strategy, state, job.plan, ranks,
                                           job.aggregation, job.keys)
        yield from encoded
        for item in diagnostics:
            yield beam.pvalue.TaggedOutput(_DIAGNOSTICS, item)


class AggregateFn(beam.CombineFn):
    """An aggregation protocol (`PlainAggregation` or `SecureAggregation`) as a CombineFn."""

    def __init__(self, aggregation):
        super().__init__()
        self._aggregation = aggregation

    def create_accumulator(self):
        return self._aggregation.new_accumulator()

    def add_input(self, accumulator, encoded):
        return self._aggregation.accumulate(accumulator, encoded)

    def merge_accumulators(self, accumulators):
        return self._aggregation.merge(accumulators)

    def extract_output(self, accumulator):
        return accumulator


def _write(path, accumulator, diagnostics):
    with FileSystems.create(path) as f:
        f.write(pickle.dumps((accumulator, list(diagnostics))))
