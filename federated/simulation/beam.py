"""The Apache Beam runner: the same round on Beam's FnApiRunner here, or on Flink, Spark or Dataflow.

Per round the driver builds one pipeline (a Beam pipeline is acyclic, so the round loop stays in the
driver): the round's client chunks -> Reshuffle -> ParDo(train the chunk; server state as a side
input) -> CombineGlobally(the aggregation protocol as a CombineFn) -> written to ``temp_location``
and read back by the driver, which takes the server step. That file holds the round's exact (pre-noise)
aggregate: it is written into a folder of the round's own, created for it and removed as soon as the driver has
read it (or the round failed). The client data is written once per
simulation to ``temp_location`` and travels by reference (its URI): each worker process loads it
on first use and keeps it, so a round's pipeline carries only the plan, the state and the settings.
The CombineFn is `TreeSum` (plain) or a modular sum (secure), both independent of bundle splits and
merge order, so the result is bitwise the in-process result for the same seed when workers run the
same TensorFlow build. Each round still pays the runner's fixed cost of starting a pipeline (about
1.5-2 s here), so put many clients in a round.

Where the rounds run is a matter of Beam flags (``pipeline_args``; ``ppml federated run`` takes them as
``--beam-arg``), never of code:

* here, in one process: ``--runner=FnApiRunner`` (the default, `LOCAL_PIPELINE_ARGS`; Beam's own default, the
  DirectRunner, first translates each round's pipeline for its Prism runner and tries to download Prism's binary
  from GitHub, then falls back to the FnApiRunner where that fails);
* here, with worker processes: ``--runner=FnApiRunner --direct_running_mode=multi_processing
  --direct_num_workers=W`` (name the runner: flags that name none get Beam's default, the DirectRunner).
  Each round's pipeline starts its W workers afresh (each imports TensorFlow and traces the model),
  which costs seconds per round (benchmarks/README.md, federated_scaleout.py): worth it only for
  rounds of many clients;
* Flink: ``--runner=FlinkRunner --flink_master=HOST:8081 --environment_type=DOCKER
  --sdk_container_image=IMAGE`` (``--flink_master=[local] --environment_type=LOOPBACK`` to try it here);
* Spark: ``--runner=SparkRunner --spark_master_url=spark://HOST:7077`` with the same environment flags;
* Dataflow: ``--runner=DataflowRunner --project=P --region=R --temp_location=gs://BUCKET/tmp
  --sdk_container_image=IMAGE`` (or ``--requirements_file``/``--setup_file`` instead of an image).

On a distributed runner the workers need ppml and TensorFlow installed (the SDK container image, built
from Beam's Python image with ``pip install`` of this repository), ``model_fn`` and the strategy must be
importable there (e.g. `federated.models.DenseModel`, not a function defined in a notebook), and the
client data and round results travel through ``temp_location``, which every worker and the driver must
reach (gs://, s3://, hdfs:// with Beam's matching extra): it defaults to Beam's ``--temp_location`` flag,
else a local temporary folder (one machine only). The files hold the clients' private data: on a local
file system they go into a fresh folder only this user can open (mode 0700), each file written mode 0600
whatever the umask, the round's result in a 0700 sub-folder removed after the round, the rest removed by
`close`; on a remote one the bucket's access rules are what protects them. The driver runs the server step, so only
the clients' training is spread.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import shutil
import tempfile
import threading
import uuid

import apache_beam as beam
from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions

from federated.simulation.round import train_chunk, trainer_for

_DIAGNOSTICS = "diagnostics"
LOCAL_PIPELINE_ARGS = ("--runner=FnApiRunner",)
"""Beam flags of a run given none: Beam's FnApiRunner in this process."""


class BeamRunner:
    """Runs each round as a Beam pipeline.

    Args:
      pipeline_args: Beam pipeline flags (default: `LOCAL_PIPELINE_ARGS`).
      temp_location: where client data and round results are written for the workers and the driver
        (default: the flags' ``--temp_location``, else the local temporary folder), each run in a folder
        of its own (local: mode 0700).
    """

    name = "beam"

    def __init__(self, pipeline_args: list[str] | None = None, temp_location: str | None = None):
        self.pipeline_args = list(pipeline_args or LOCAL_PIPELINE_ARGS)
        self.temp_location = (
            temp_location or PipelineOptions(self.pipeline_args).view_as(GoogleCloudOptions).temp_location
        )
        self._data_refs: dict[int, tuple] = {}  # id(ClientData) -> (the data, its ClientDataRef)
        self._folder: str | None = None  # this runner's folder under temp_location

    def to_dict(self) -> dict:
        return {"name": self.name, "pipeline_args": self.pipeline_args}

    def run_round(self, job):
        """Returns (accumulator, diagnostics) for ``job``, like `InProcessRunner.run_round`."""
        directory = self._directory()
        job = dataclasses.replace(job, data=self._reference(job.data, directory))
        round_folder = _new_folder(directory, f"ppml-federated-round-{job.plan.round}-")
        try:
            return self._run_round(job, FileSystems.join(round_folder, "aggregate.pkl"))
        finally:  # the exact aggregate leaves the file system with the round, whether it succeeded or not
            _remove_folder(round_folder)

    def _run_round(self, job, path: str):
        """The round's pipeline, its result written to ``path`` and read back."""
        with beam.Pipeline(options=PipelineOptions(self.pipeline_args)) as pipeline:
            state = pipeline | "State" >> beam.Create([job.state])
            trained = (
                pipeline
                | "Chunks" >> beam.Create(job.plan.chunks())
                | "Spread" >> beam.Reshuffle()
                | "Train"
                >> beam.ParDo(
                    TrainChunk(dataclasses.replace(job, state=None)), beam.pvalue.AsSingleton(state)
                ).with_outputs(_DIAGNOSTICS, main="encoded")
            )
            aggregate = trained.encoded | "Aggregate" >> beam.CombineGlobally(AggregateFn(job.aggregation))
            diagnostics = trained[_DIAGNOSTICS] | "Diagnostics" >> beam.combiners.ToList()
            _ = (
                pipeline
                | "Path" >> beam.Create([path])
                | "Write" >> beam.Map(_write, beam.pvalue.AsSingleton(aggregate), beam.pvalue.AsSingleton(diagnostics))
            )
        with FileSystems.open(path) as f:
            accumulator, diagnostics = pickle.load(f)
        return accumulator, sorted(diagnostics, key=lambda d: d.rank)

    def _directory(self) -> str:
        """This runner's folder under ``temp_location``: on a local file system a fresh one that only this
        user can open (mode 0700), since its files hold the clients' data."""
        if self._folder is None:
            base = self.temp_location or tempfile.gettempdir()
            if _local_path(base) is not None:
                os.makedirs(_local_path(base), exist_ok=True)
            self._folder = _new_folder(base, "ppml-federated-")
        return self._folder

    def _reference(self, data, directory: str) -> "ClientDataRef":
        """Writes ``data`` under ``directory`` the first time it is seen; returns its reference."""
        known = self._data_refs.get(id(data))
        if known is None or known[0] is not data:
            uri = FileSystems.join(directory, f"ppml-federated-clients-{uuid.uuid4().hex}.pkl")
            _write_private(uri, pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL))
            known = self._data_refs[id(data)] = (data, ClientDataRef(uri))
        return known[1]

    def close(self) -> None:
        """Deletes the client data files this runner wrote, and its local folder."""
        uris = [ref.uri for _, ref in self._data_refs.values()]
        self._data_refs.clear()
        if uris:
            FileSystems.delete(uris)
        if self._folder is not None and _local_path(self._folder) is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
        self._folder = None


@dataclasses.dataclass(frozen=True)
class ClientDataRef:
    """A `ClientData` by the URI of its pickle; `load` reads it once per process (and keeps only
    the latest one)."""

    uri: str

    def load(self):
        global _LOADED
        with _LOADED_LOCK:
            if _LOADED is None or _LOADED[0] != self.uri:
                with FileSystems.open(self.uri) as f:
                    _LOADED = (self.uri, pickle.load(f))
            return _LOADED[1]


_LOADED = None  # (uri, ClientData) of this process
_LOADED_LOCK = threading.Lock()


class TrainChunk(beam.DoFn):
    """Trains one chunk of clients (the server state arrives as a side input); emits encoded
    contributions, and diagnostics on a tagged output."""

    def __init__(self, job):
        super().__init__()
        self._job = job

    def process(self, ranks, state):
        job = self._job
        trainer = trainer_for(job.model_fn, job.loss, job.execution)
        encoded, diagnostics = train_chunk(
            trainer, job.data.load(), job.strategy, state, job.plan, ranks, job.aggregation, job.keys
        )
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
    _write_private(path, pickle.dumps((accumulator, list(diagnostics))))


def _local_path(uri: str) -> str | None:
    """The local file system path of ``uri``, or None for a remote one (gs://, s3://, hdfs://)."""
    if FileSystems.get_scheme(uri) not in (None, "file"):
        return None
    return uri[len("file://") :] if uri.startswith("file://") else uri


def _write_private(uri: str, payload: bytes) -> None:
    """Writes ``payload`` to ``uri``: locally mode 0600 whatever the umask (it holds client data or an exact
    aggregate), through a fresh name renamed over ``uri``, so a retried or re-executed bundle replaces an earlier
    attempt's file (complete or not) instead of failing on it; remotely as the bucket's rules allow."""
    local = _local_path(uri)
    if local is None:
        with FileSystems.create(uri) as f:
            f.write(payload)
        return
    partial = f"{local}.{uuid.uuid4().hex}.partial"
    try:
        with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            f.write(payload)
        os.replace(partial, local)
    finally:
        if os.path.exists(partial):  # a failed write leaves no part of the payload behind
            os.remove(partial)


def _new_folder(parent: str, prefix: str) -> str:
    """A fresh folder under ``parent``: locally created mode 0700; remotely a unique prefix."""
    local = _local_path(parent)
    if local is None:
        return FileSystems.join(parent, f"{prefix}{uuid.uuid4().hex}")
    return tempfile.mkdtemp(prefix=prefix, dir=local)


def _remove_folder(folder: str) -> None:
    """Removes ``folder`` and what is in it (locally), or the files under its prefix (remotely)."""
    local = _local_path(folder)
    if local is not None:
        shutil.rmtree(local, ignore_errors=True)
        return
    try:  # nothing there (a round that failed before writing) is no error
        found = [m.path for result in FileSystems.match([FileSystems.join(folder, "*")]) for m in result.metadata_list]
        if found:
            FileSystems.delete(found)
    except BeamIOError:
        pass
