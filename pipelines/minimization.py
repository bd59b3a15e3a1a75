"""The data-minimization stages of a pipeline: `PiiScrubber` right after ExampleGen and, for declared
quasi-identifiers, `KAnonymityValidator` on the scrubbed examples. Imports TFX."""

from __future__ import annotations

from tfx import types

from pipelines.components.kanonymity_validator.component import KAnonymityValidator
from pipelines.components.pii_scrubber.component import PiiScrubber
from pipelines.runners import LOCAL_BEAM_ARGS
from privacy.minimization import KAnonymitySettings, ScrubSettings

PII_SCRUBBER = "PiiScrubber"
KANONYMITY_VALIDATOR = "KAnonymityValidator"


def minimization_stages(
    examples: types.BaseChannel,
    scrub: ScrubSettings | None,
    kanonymity: KAnonymitySettings | None = None,
    generalize: bool = False,
) -> tuple[types.BaseChannel, list]:
    """(the examples every later stage reads, the components to add). Without ``scrub`` the examples are
    ExampleGen's and no scrubber runs; without ``kanonymity`` no validator runs; with ``generalize`` the scrubber
    also generalizes ``kanonymity``'s quasi-identifiers to its ``target_k`` (needs both)."""
    if generalize and (scrub is None or kanonymity is None):
        raise ValueError("generalizing to k needs the scrubber's settings and the k-anonymity settings")
    components = []
    if scrub is not None:
        scrubber = PiiScrubber(
            examples=examples, settings=scrub, generalization=kanonymity if generalize else None
        ).with_id(PII_SCRUBBER)
        examples = scrubber.outputs["scrubbed_examples"]
        components.append(scrubber)
    if kanonymity is not None:
        components.append(KAnonymityValidator(examples=examples, settings=kanonymity).with_id(KANONYMITY_VALIDATOR))
    return examples, components


def minimization_pipeline(
    *,
    pipeline_root: str,
    data_root: str,
    metadata_path: str,
    scrub: ScrubSettings | None,
    kanonymity: KAnonymitySettings | None = None,
    generalize: bool = False,
    beam_pipeline_args=None,
):
    """CsvExampleGen (``data_root``: a folder of CSV files only) -> `minimization_stages` -> StatisticsGen ->
    SchemaGen -> ExampleValidator, without training: the scrubbed examples, their statistics and the reports
    (``beam_pipeline_args`` default: `pipelines.runners.LOCAL_BEAM_ARGS`). Every run executes every stage (no
    cache), so the newest artifacts are the run's."""
    from tfx import v1 as tfx

    example_gen = tfx.components.CsvExampleGen(input_base=data_root)
    examples, stages = minimization_stages(example_gen.outputs["examples"], scrub, kanonymity, generalize)
    statistics = tfx.components.StatisticsGen(examples=examples)
    schema = tfx.components.SchemaGen(statistics=statistics.outputs["statistics"])
    validator = tfx.components.ExampleValidator(
        statistics=statistics.outputs["statistics"], schema=schema.outputs["schema"]
    )
    return tfx.dsl.Pipeline(
        pipeline_name="ppml-minimization",
        pipeline_root=pipeline_root,
        enable_cache=False,
        beam_pipeline_args=list(beam_pipeline_args or LOCAL_BEAM_ARGS),
        components=[example_gen, *stages, statistics, schema, validator],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path),
    )
