"""The data-minimization options of `ppml pipeline run` (``--scrub-pii`` and the k-anonymity validator).

Resolved into `privacy.minimization.ScrubSettings` and `KAnonymitySettings` before TFX is imported; a bad value is
a usage error (exit 2) that names its option.
"""

from __future__ import annotations

import csv
import os
import sys
import traceback

import click

from privacy.minimization import OPERATORS, KAnonymitySettings, ScrubSettings, check_key_file
from privacy.minimization.kanonymity import DEFAULT_TARGET_K
from privacy.minimization.settings import DEFAULT_OPERATOR

_OPTIONS = (
    "scrub_pii",
    "scrub_columns",
    "drop_columns",
    "pii_operator",
    "pii_key_file",
    "quasi_identifiers",
    "target_k",
    "sensitive_column",
    "generalize",
)


def minimization_options(fn):
    """Adds the options to a click command (they reach it as keyword arguments; see `minimization_settings`)."""
    options = [
        click.option(
            "--scrub-pii",
            is_flag=True,
            help="Run the PII scrubber after ExampleGen: every later stage reads examples without the PII "
            "its pattern recognizers find in text columns (e-mail, phone, credit card, IBAN, US SSN, "
            "IP, URL; no NER model runs) and without --drop-column columns. Columns of numbers are NOT "
            "scanned (an all-digit phone or card column, which CsvExampleGen stores as integers, "
            "reaches every later stage raw; the report counts it in unscanned_values): --drop-column "
            "them.",
        ),
        click.option(
            "--scrub-column",
            "scrub_columns",
            multiple=True,
            metavar="COLUMN[=OPERATOR]",
            help=f"A column to scan, with its operator ({', '.join(OPERATORS)}; default {DEFAULT_OPERATOR});"
            f" repeatable; a column of numbers is refused [default: every text column, with "
            "--pii-operator].",
        ),
        click.option(
            "--drop-column",
            "drop_columns",
            multiple=True,
            metavar="COLUMN",
            help="A declared identifying column: dropped, and its value removed from the same record's "
            "scanned columns; repeatable.",
        ),
        click.option(
            "--pii-operator",
            type=click.Choice(OPERATORS),
            default=DEFAULT_OPERATOR,
            show_default=True,
            help="Operator of every string column when no --scrub-column is given.",
        ),
        click.option(
            "--pii-key-file",
            type=click.Path(dir_okay=False),
            help="HMAC key for the hash operator (created from the OS CSPRNG, mode 0600, if missing) "
            "[default: a fresh key per run: tokens join within the run only].",
        ),
        click.option(
            "--quasi-identifier",
            "quasi_identifiers",
            multiple=True,
            metavar="COLUMN",
            help="A quasi-identifier column: runs the k-anonymity validator on the (scrubbed) examples; repeatable.",
        ),
        click.option(
            "--target-k",
            type=click.IntRange(min=1),
            default=DEFAULT_TARGET_K,
            show_default=True,
            help="The k-anonymity validator raises an anomaly for a split whose k is below this (it reports: "
            "nothing reads it, the split still trains and is pushed).",
        ),
        click.option(
            "--sensitive-column",
            metavar="COLUMN",
            help="Column whose distinct values per class the k-anonymity report counts (l-diversity).",
        ),
        click.option(
            "--generalize",
            is_flag=True,
            help="The PII scrubber also generalizes the quasi-identifiers (Mondrian: ranges and category "
            "sets) until every class of each split has --target-k records (needs --scrub-pii).",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def minimization_settings(options: dict, columns=None, model_inputs=()) -> dict:
    """Pops this module's options from ``options`` and resolves them into `pipelines.plan.PipelinePlan`'s fields
    ``scrub``, ``kanonymity`` and ``generalize``.

    ``columns``: ``{column: holds numbers only}`` of the data where known before TFX (`csv_columns`); every declared
    column must be one, and a scanned one must hold text. ``model_inputs``: columns the trainer reads, which
    ``--generalize`` must not turn into text ranges.
    """
    values = {name: options.pop(name) for name in _OPTIONS}
    scrub = None
    if values["scrub_pii"]:
        try:
            scrub = ScrubSettings(
                columns=ScrubSettings.parse_columns(values["scrub_columns"]),
                drop_columns=values["drop_columns"],
                operator=values["pii_operator"],
                key_file=values["pii_key_file"],
            )
        except ValueError as err:
            raise click.BadParameter(str(err), param_hint="'--scrub-column' / '--drop-column'") from None
        if values["pii_key_file"]:
            try:
                check_key_file(values["pii_key_file"])
            except ValueError as err:
                raise click.BadParameter(str(err), param_hint="'--pii-key-file'") from None
    elif values["scrub_columns"] or values["drop_columns"] or values["pii_key_file"]:
        raise click.UsageError("--scrub-column, --drop-column and --pii-key-file need --scrub-pii")
    kanonymity = None
    if values["quasi_identifiers"]:
        kanonymity = KAnonymitySettings(
            quasi_identifiers=values["quasi_identifiers"],
            target_k=values["target_k"],
            sensitive=values["sensitive_column"],
        )
    elif values["sensitive_column"] or values["generalize"]:
        raise click.UsageError("--sensitive-column and --generalize need --quasi-identifier")
    if values["generalize"] and scrub is None:
        raise click.UsageError("--generalize needs --scrub-pii (the scrubber generalizes)")
    if scrub is not None and kanonymity is not None:
        for name in set(scrub.drop_columns) & {*kanonymity.quasi_identifiers, kanonymity.sensitive}:
            raise click.UsageError(
                f"column {name!r} is dropped (--drop-column) before the k-anonymity validator "
                f"reads it (--quasi-identifier / --sensitive-column)"
            )
    if values["generalize"]:
        for name in set(kanonymity.quasi_identifiers) & set(model_inputs):
            raise click.UsageError(
                f"--generalize would turn quasi-identifier {name!r} into text ranges, but the "
                f"trainer reads it as a model input"
            )
    if columns is not None:
        declared = (scrub.absent_columns(columns) if scrub else []) + [
            c
            for c in ((*kanonymity.quasi_identifiers, kanonymity.sensitive) if kanonymity else ())
            if c is not None and c not in columns
        ]
        if declared:
            raise click.UsageError(f"declared column(s) {declared} are not in the data (columns: {', '.join(columns)})")
        for name, _ in scrub.columns if scrub else ():
            if columns[name]:
                raise click.UsageError(
                    f"column {name!r} holds numbers, which the PII scrubber does not scan: drop "
                    f"it (--drop-column {name}) or store it as text"
                )
    return {"scrub": scrub, "kanonymity": kanonymity, "generalize": values["generalize"]}


def minimization_requested(options: dict) -> bool:
    """Whether any of this module's options is set in ``options`` (so the data's columns are worth reading)."""
    return bool(options.get("scrub_pii") or options.get("quasi_identifiers"))


def failure_message(err: BaseException, scrubbing: bool, private: bool = False) -> str:
    """Writes ``err``'s traceback to stderr (the owner-only run log, or the terminal with --verbose, which
    ``ppml pipeline run`` refuses under --dp and --scrub-pii) and returns the one line that names it on the
    terminal. A stage's error can quote a raw row (CsvExampleGen quotes a row it cannot parse, a Trainer a
    record's values): with ``scrubbing`` both hold the exception types and frames (file, line, function) only,
    never a message; with ``private`` (a private Trainer) the line holds the type only."""
    if not scrubbing:
        traceback.print_exception(err, file=sys.stderr)
        if private:
            return (
                f"{type(err).__name__} (message withheld here under --dp: it may quote training records; "
                f"it is in the owner-only run log)"
            )
        return f"{type(err).__name__}: {err}"
    chain = []
    while err is not None:
        chain.append(err)
        err = err.__cause__ or err.__context__
    for link in reversed(chain):
        frames = "".join(
            f'  File "{f.filename}", line {f.lineno}, in {f.name}\n' for f in traceback.extract_tb(link.__traceback__)
        )
        sys.stderr.write(f"{frames}{type(link).__name__} (message withheld: --scrub-pii)\n")
    return f"{type(chain[0]).__name__} (message withheld under --scrub-pii: it may quote raw data)"


def csv_columns(data_root: str):
    """``{column: holds numbers only}`` over the CSV files in a local folder ``data_root`` (as CsvExampleGen types
    them: a column whose non-empty cells, one at least, all parse as numbers is numeric), or None where the folder is
    not local or holds no CSV file. Reads the files whole.

    Raises:
        click.UsageError: a row whose field count differs from its header's, or a cell longer than CsvExampleGen
            reads (`csv.field_size_limit`); the message names the file and line, never a value.
    """
    if not os.path.isdir(data_root):
        return None
    text, numbers = {}, set()  # column -> holds a cell that is not a number; columns with a number
    for name in sorted(os.listdir(data_root)):
        if name.endswith(".csv"):
            with open(os.path.join(data_root, name), newline="", encoding="utf-8", errors="replace") as fh:
                reader = csv.reader(fh)
                try:
                    header = next(reader, [])
                    for column in header:
                        text.setdefault(column, False)
                    for row in reader:
                        if not row:  # a blank line
                            continue
                        if len(row) != len(header):
                            raise click.UsageError(
                                f"file {name} line {reader.line_num} has {len(row)} fields, the header {len(header)}"
                            )
                        for column, cell in zip(header, row, strict=True):
                            if cell:
                                number = _is_number(cell)
                                text[column] = text[column] or not number
                                numbers.update([column] if number else [])
                except csv.Error:
                    raise click.UsageError(
                        f"file {name} line {reader.line_num}: a cell is longer than the "
                        f"{csv.field_size_limit()} characters CsvExampleGen reads, or the CSV is malformed"
                    ) from None
    return {column: not is_text and column in numbers for column, is_text in text.items()} or None


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True
