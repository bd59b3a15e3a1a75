"""`ppml report`: the privacy report of a pipeline run, from ML Metadata and the model's ledger.

Imports neither TensorFlow nor TFX; ML Metadata and the report modules only when the command runs, so
that registering it costs the other commands nothing.
"""

from __future__ import annotations

import json
import os

import click

SQLITE_HEADER = b"SQLite format 3\x00"


def _check_metadata_file(pipeline_root: str) -> None:
    """Refuses a metadata.sqlite that is not a SQLite database (empty, truncated, another file), in one line."""
    path = os.path.join(pipeline_root, "metadata.sqlite")
    if not os.path.isfile(path):
        return  # load_report says that there is no run yet
    with open(path, "rb") as file:
        header = file.read(len(SQLITE_HEADER))
    if header != SQLITE_HEADER:
        raise click.BadParameter(
            f"{path} is not an ML Metadata store (not a SQLite database; {os.path.getsize(path)} bytes)",
            param_hint="'--pipeline-root'",
        )


@click.command()
@click.option(
    "--pipeline-root",
    type=click.Path(file_okay=False),
    required=True,
    help="The folder given to `ppml pipeline run --pipeline-root`.",
)
@click.option("--pipeline-name", help="Which pipeline, when several share the metadata.")
@click.option(
    "--variant",
    type=click.Choice(["private", "non-private"]),
    default="private",
    show_default=True,
    help="Which Trainer/Evaluator branch (non-private: the --compare-non-private one).",
)
@click.option(
    "--compare",
    is_flag=True,
    help="Table of the private and non-private branches side by side (text; see --variant for JSON).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def report(pipeline_root, pipeline_name, variant, compare, as_json):
    """Privacy report of the latest pipeline run: epsilon (as `ppml epsilon`), utility, audit, gate.

    \b
    Examples:
      ppml report --pipeline-root /tmp/ppml --json
      ppml report --pipeline-root /tmp/ppml --compare
    """
    if compare and as_json:
        raise click.UsageError("--compare prints a table; for JSON, run --json once per --variant")
    _check_metadata_file(pipeline_root)
    from pipelines.privacy_ledger import LedgerError
    from pipelines.report import ReportError, comparison_text, load_report

    try:
        if compare:  # the latest run with both branches
            non_private = load_report(pipeline_root, pipeline_name=pipeline_name, non_private_variant=True)
            private = load_report(pipeline_root, pipeline_name=pipeline_name, run_id=non_private.run_id)
            click.echo(comparison_text(private, non_private))
            return
        result = load_report(pipeline_root, pipeline_name=pipeline_name, non_private_variant=variant == "non-private")
    except (ReportError, LedgerError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(json.dumps(result.to_dict(), indent=2, allow_nan=False) if as_json else result.format_text())


COMMANDS = (report,)
