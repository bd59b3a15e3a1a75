"""Running the pipeline: LocalDagRunner (default) or BeamDagRunner, with per-stage progress, and
compiling it for Kubeflow Pipelines v2 (a JSON PipelineSpec; no cluster needed).

Imports TFX: call `pipelines.keras_env.use_tf_keras()` first in a fresh process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from typing import Callable

from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx
from tfx.orchestration.portable import launcher

from pipelines import private_root
from privacy import validation

RUNNERS = ("local", "beam")
LOCAL_BEAM_ARGS = ("--runner=FnApiRunner", "--direct_running_mode=in_memory", "--direct_num_workers=1")
"""Beam options of a local run: Beam's FnApiRunner in this process, one worker. Named, not Beam's default
DirectRunner: that first translates the pipeline for the Prism runner, a binary it downloads from GitHub, and
falls back to this runner where the download fails. Given any option, TFX's Beam executors also package TFX's installed
tree for remote workers at every Beam stage (a ``setup.py sdist``, about 2 s CPU; `tfx.utils.dependency_utils`),
which a run in this process never reads: the price of naming the runner."""
DEFAULT_IMAGE = "ppml:latest"
"""Container image for Kubeflow: any image with ppml and TFX 1.21 installed."""


@dataclasses.dataclass(frozen=True)
class StageEvent:
    """One stage starting (``state='running'``) or ending (``'complete'``, ``'cached'`` or ``'skipped'``)."""

    stage: str
    state: str
    index: int
    total: int
    seconds: float = 0.0


@contextlib.contextmanager
def _reporting_stages(stages: list[str], callback: Callable[[StageEvent], None]):
    """Reports each stage launched in this process while the context is open.

    Both runners launch every node through `tfx.orchestration.portable.launcher.Launcher.launch`;
    it is wrapped for the duration of the run (log messages are no use: stages reset log levels).
    """
    original = launcher.Launcher.launch

    def launch(self):
        stage = self._pipeline_node.node_info.id
        index = stages.index(stage) + 1 if stage in stages else 0
        callback(StageEvent(stage, "running", index, len(stages)))
        start = time.monotonic()
        info = original(self)
        state = "skipped"  # the driver decided not to run it
        if info is not None:
            with self._mlmd_connection as handle:
                [execution] = handle.store.get_executions_by_id([info.execution_id])
                cached = execution.last_known_state == metadata_store_pb2.Execution.CACHED
                state = "cached" if cached else "complete"
        callback(StageEvent(stage, state, index, len(stages), time.monotonic() - start))
        return info

    launcher.Launcher.launch = launch
    try:
        yield
    finally:
        launcher.Launcher.launch = original


def run(
    pipeline: tfx.dsl.Pipeline, *, runner: str = "local", progress: Callable[[StageEvent], None] | None = None
) -> None:
    """Runs ``pipeline`` to the end; ``progress`` is called as each stage starts and ends. What the run writes (under
    the pipeline root: raw examples, exact statistics, ML Metadata) is owner-only (`private_root.owner_only_files`),
    from the command line and from Python alike.

    Raises:
      ValueError: for an unknown ``runner``.
      Whatever the failing stage raised (TFX records the failed execution in ML Metadata).
    """
    validation.choice("runner", runner, RUNNERS)
    dag_runner = tfx.orchestration.LocalDagRunner() if runner == "local" else _beam_dag_runner()
    with private_root.owner_only_files():
        if progress is None:
            dag_runner.run(pipeline)
            return
        with _reporting_stages([c.id for c in pipeline.components], progress):
            dag_runner.run(pipeline)


def _beam_dag_runner():
    from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

    return BeamDagRunner()


def compile_kubeflow_v2(pipeline: tfx.dsl.Pipeline, output_file: str, *, default_image: str = DEFAULT_IMAGE) -> str:
    """Writes the Kubeflow Pipelines v2 PipelineSpec (JSON) of ``pipeline`` to ``output_file``; returns the path.

    Needs the ``kfp-pipeline-spec`` package. The pipeline should have no local metadata connection
    (Kubeflow brings its own) and a pipeline root the cluster can reach.
    """
    try:
        runner_config = tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=default_image)
    except AttributeError:
        raise RuntimeError(
            "Kubeflow v2 compilation needs the kfp-pipeline-spec package (pip install 'kfp-pipeline-spec<2.17')"
        ) from None
    directory, name = os.path.split(os.path.abspath(output_file))
    os.makedirs(directory, exist_ok=True)
    tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=runner_config, output_dir=directory, output_filename=name
    ).run(pipeline, write_out=True)
    return os.path.join(directory, name)
