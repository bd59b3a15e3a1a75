"""`ppml report`: the privacy report of a pipeline run, from ML Metadata and the model's ledger.

Imports neither TensorFlow nor TFX; ML Metadata and the report modules only when the command runs, so
that registering it costs the other commands nothing.
"""

from __future__ import annotations

import json

import click


@click.command()
@click.option("--pipeline-root", type=click.Path(file_okay=False), required=True,
              help="The folder given to `ppml pipeline run --pipeline-root`.")
@click.option("--pipeline-name", help="Which pipeline, when several share the metadata.")
@click.option("--variant", type=click.Choice(["private", "non-private"]), default="private", show_default=True,
              help="Which Trainer/Evaluator branch (non-private: the --compare-non-private one).")
@click.option("--compare", is_flag=True,
              help="Table of the private and non-private branches side by side (text; see --variant for JSON).")
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
    from pipelines.privacy_ledger import LedgerError  # pylint: disable=import-outside-toplevel
    from pipelines.report import ReportError, comparison_text, load_report  # pylint: disable=import-outside-toplevel
    try:
        if compare:  # the latest run with both branches
            non_private = load_report(pipeline_root, pipeline_name=pipeline_name, non_private_variant=True)
            private = load_report(pipeline_root, pipeline_name=pipeline_name, run_id=non_private.run_id)
            click.echo(comparison_text(private, non_private))
            return
        result = load_report(pipeline_root, pipeline_name=pipeline_name,
                             non_private_variant=variant == "non-private")
    except (ReportError, LedgerError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(json.dumps(result.to_dict(), indent=2, allow_nan=False) if as_json else result.format_text())


COMMANDS = (report,)
