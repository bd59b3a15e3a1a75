"""`ppml minimize`: the data-minimization stages alone (CsvExampleGen -> PiiScrubber -> StatisticsGen -> SchemaGen
-> ExampleValidator [-> KAnonymityValidator]) on a folder of CSV files or the bundled PII tickets, without training.

Settings are checked against the CSV header before TFX is imported (exit 2, naming the value).
"""

from __future__ import annotations

import glob
import json
import os
import shutil

import click

from pipelines import private_root
from pipelines.cli import pipeline as pipeline_cli
from pipelines.cli.minimization import csv_columns, failure_message, minimization_options, minimization_settings


def _latest(pattern: str) -> list:
    """The files matching ``pattern`` (with one ``{id}`` for the execution folder) of the newest execution (the
    pipeline runs without TFX's cache, so that is this run's)."""
    folder = pattern.split("{id}")[0]
    paths = {p: os.path.relpath(p, folder).split(os.sep)[0] for p in glob.glob(pattern.format(id="*"))}
    newest = max(paths.values(), key=int, default=None)
    return sorted(p for p, execution in paths.items() if execution == newest)


@click.command("minimize")
@minimization_options
@click.option(
    "--data-root",
    type=click.Path(file_okay=False, exists=True),
    help="Folder holding only the CSV file(s) to minimize [default: the bundled PII tickets, copied to "
    "PIPELINE_ROOT/data].",
)
@click.option(
    "--pipeline-root",
    type=click.Path(file_okay=False),
    default="ppml-minimization",
    show_default=True,
    help="Folder for artifacts, ML Metadata (metadata.sqlite) and logs.",
)
@click.option(
    "--verbose",
    is_flag=True,
    help="Print what TFX and Beam log here instead of to the log file; refused under --scrub-pii (a library's "
    "record can quote a raw row): read the owner-only log.",
)
def minimize(data_root, pipeline_root, verbose, **options):
    """Runs CsvExampleGen -> PiiScrubber -> StatisticsGen -> SchemaGen -> ExampleValidator [-> KAnonymityValidator]
    without training, then prints the scrubber's report (counts only) and each split's k and l as JSON.

    The scrubbed examples and the reports stay in PIPELINE_ROOT (CsvExampleGen's output there still holds the
    raw rows). The k-anonymity anomaly is reported, it stops nothing here.

    \b
    Example (the bundled PII tickets):
      ppml minimize --scrub-pii --scrub-column ticket_text=hash --drop-column customer_name --drop-column email \\
          --quasi-identifier age --quasi-identifier zip3 --target-k 5 --sensitive-column product

    Exit status: 0 after the report; 2 for a bad option (before anything is written); 1 when a stage fails.
    """
    from pipelines.datasets import pii_tickets

    if not options["scrub_pii"] and not options["quasi_identifiers"]:
        raise click.UsageError("nothing to do: give --scrub-pii and/or --quasi-identifier")
    settings = minimization_settings(options, columns=csv_columns(data_root or pii_tickets.DATA_DIR))
    scrubbing = settings["scrub"] is not None  # a library's record can quote a raw row: to the owner-only log only
    if verbose and scrubbing:
        pipeline_cli.refuse_verbose("--scrub-pii")
    from pipelines.plan import PipelineLayout

    layout = PipelineLayout(os.path.abspath(pipeline_root))
    with private_root.owner_only_files(), pipeline_cli.locked_root(pipeline_root):  # owner-only, one run per root
        if data_root is None:
            data_root = layout.data_root
            if not os.path.exists(os.path.join(data_root, os.path.basename(pii_tickets.CSV_PATH))):
                os.makedirs(data_root, exist_ok=True)
                shutil.copyfile(
                    pii_tickets.CSV_PATH,  # not its mode: the copy is owner-only
                    os.path.join(data_root, os.path.basename(pii_tickets.CSV_PATH)),
                )
        with pipeline_cli.library_output(verbose, quote_errors=not scrubbing) as (terminal, log):
            # tf-keras is set before TFX loads
            _, runners = pipeline_cli.import_tfx()
            from pipelines.minimization import minimization_pipeline

            tfx_pipeline = minimization_pipeline(
                pipeline_root=layout.root,
                data_root=os.path.abspath(data_root),
                metadata_path=layout.metadata_path,
                **settings,
            )
            if log is not None:
                from pipelines import run_log

                path = log.keep_at(run_log.new_log_path(pipeline_root))
                hint = "" if scrubbing else " (--verbose shows them here)"
                click.echo(f"Logs of TFX and Beam: {path}{hint}", file=terminal)

            current = {}

            def progress(event):
                current["stage"] = event.stage
                click.echo(f"[{event.index}/{event.total}] {event.stage} {event.state}", file=terminal)

            try:
                runners.run(tfx_pipeline, progress=progress)
            except Exception as err:
                message = failure_message(err, scrubbing=scrubbing)  # traceback into the log
                where = f"; full log in {log.path}" if log is not None else ""
                raise click.ClickException(f"{current.get('stage', 'the pipeline')} failed: {message}{where}") from None
    report = {}
    scrub_reports = os.path.join(layout.root, "PiiScrubber", "scrubbed_examples", "{id}", "pii_scrub_report.json")
    for path in _latest(scrub_reports):
        with open(path) as fh:
            report["scrub"] = json.load(fh)
    for path in _latest(
        os.path.join(layout.root, "KAnonymityValidator", "anomalies", "{id}", "Split-*", "kanonymity.json")
    ):
        with open(path) as fh:
            split = json.load(fh)
        report.setdefault("kanonymity", {})[os.path.basename(os.path.dirname(path))[len("Split-") :]] = {
            name: split[name] for name in ("rows", "classes", "k", "l", "target_k", "meets_target")
        }
        report["kanonymity"]["disclaimer"] = split["disclaimer"]
    click.echo(json.dumps(report, indent=2))


COMMANDS = (minimize,)
