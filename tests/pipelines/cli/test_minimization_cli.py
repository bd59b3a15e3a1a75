"""`ppml pipeline run --scrub-pii` and the k-anonymity options: resolved before TFX, bad values refused naming
the option (exit 2), nothing written."""

import pytest

from pipelines.cli.minimization import minimization_settings
from privacy.minimization import ScrubSettings
from tests.pipelines.cli.test_pipeline_cli import invoke


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--scrub-pii", "--scrub-column", "text=shred"],
            "the operator of column 'text' must be one of redact, mask, replace, hash, got 'shred'",
        ),
        (["--scrub-pii", "--scrub-column", "a", "--drop-column", "a"], "column 'a' is both scanned and dropped"),
        (["--scrub-pii", "--pii-operator", "shred"], "--pii-operator"),
        (["--drop-column", "name"], "need --scrub-pii"),
        (["--sensitive-column", "product"], "need --quasi-identifier"),
        (["--quasi-identifier", "age", "--target-k", "0"], "--target-k"),
        (["--generalize"], "need --quasi-identifier"),
        (["--quasi-identifier", "age", "--generalize"], "--generalize needs --scrub-pii"),
        (["--scrub-pii", "--drop-column", ""], "column name is empty"),
        (
            ["--scrub-pii", "--scrub-column", "ticket_text=hash"],
            "declared column(s) ['ticket_text'] are not in the data",
        ),
        (["--scrub-pii", "--drop-column", "emial"], "declared column(s) ['emial'] are not in the data"),
        (["--quasi-identifier", "age"], "declared column(s) ['age'] are not in the data (columns: mean_radius,"),
        (
            ["--scrub-pii", "--drop-column", "mean_radius", "--quasi-identifier", "mean_radius"],
            "column 'mean_radius' is dropped",
        ),
        (
            ["--scrub-pii", "--quasi-identifier", "mean_radius", "--generalize"],
            "--generalize would turn quasi-identifier 'mean_radius' into text ranges",
        ),
        (["--scrub-pii", "--scrub-column", "mean_radius"], "column 'mean_radius' holds numbers"),
    ],
)
def test_bad_minimization_options_are_usage_errors_before_tfx(no_tfx, tmp_path, args, message):
    root = tmp_path / "root"
    result = invoke("pipeline", "run", "--pipeline-root", str(root), *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not root.exists()


def test_options_resolve_into_the_scrubber_and_validator_settings():
    options = {
        "scrub_pii": True,
        "scrub_columns": ("ticket_text=hash",),
        "drop_columns": ("email",),
        "pii_operator": "redact",
        "pii_key_file": None,
        "quasi_identifiers": ("age", "zip3"),
        "target_k": 10,
        "sensitive_column": "product",
        "generalize": True,
        "epochs": 3,
    }
    resolved = minimization_settings(options)
    scrub, kanonymity = resolved["scrub"], resolved["kanonymity"]
    assert resolved["generalize"] is True
    assert scrub == ScrubSettings(columns=(("ticket_text", "hash"),), drop_columns=("email",), operator="redact")
    assert (kanonymity.quasi_identifiers, kanonymity.target_k, kanonymity.sensitive) == (("age", "zip3"), 10, "product")
    assert options == {"epochs": 3}
    unset = {
        "scrub_pii": False,
        "scrub_columns": (),
        "drop_columns": (),
        "pii_operator": "replace",
        "pii_key_file": None,
        "quasi_identifiers": (),
        "target_k": 5,
        "sensitive_column": None,
        "generalize": False,
    }
    assert minimization_settings(unset) == {"scrub": None, "kanonymity": None, "generalize": False}


def _key_file(tmp_path, mode, size):
    path = tmp_path / "key"
    path.write_bytes(b"k" * size)
    path.chmod(mode)
    return str(path)


@pytest.mark.parametrize(
    "key, message",
    [
        (lambda tmp: _key_file(tmp, 0o644, 32), "accessible to group or others"),
        (lambda tmp: _key_file(tmp, 0o600, 1), "holds 1 bytes"),
        (lambda tmp: str(tmp / "no-such-folder" / "key"), "is not a writable folder"),
        (lambda tmp: str(tmp), "is a directory"),
    ],
)
def test_a_key_file_the_scrubber_would_refuse_is_a_usage_error_before_tfx(no_tfx, tmp_path, key, message):
    root = tmp_path / "root"
    result = invoke("pipeline", "run", "--pipeline-root", str(root), "--scrub-pii", "--pii-key-file", key(tmp_path))
    assert result.exit_code == 2 and "--pii-key-file" in result.output and message in result.output, result.output
    assert not root.exists()


def test_compile_checks_declared_columns_against_the_csv_header_before_tfx(no_tfx, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "tickets.csv").write_text("ticket_id,ticket_text,email\n1,hi,a@b.c\n,2,\n3.5,x,\n")
    args = [
        "pipeline",
        "compile",
        "--kubeflow-v2",
        str(tmp_path / "p.json"),
        "--pipeline-root",
        "gs://b/r",
        "--data-root",
        str(data),
        "--serving-model-dir",
        "gs://b/s",
        "--scrub-pii",
    ]
    result = invoke(*args, "--scrub-column", "ticket_txt=hash")
    assert (
        result.exit_code == 2
        and "['ticket_txt'] are not in the data (columns: ticket_id, ticket_text, email)" in result.output
    ), result.output
    result = invoke(*args, "--scrub-column", "ticket_id")
    assert result.exit_code == 2 and "column 'ticket_id' holds numbers" in result.output, result.output
    result = invoke(*args, "--scrub-column", "ticket_text=hash", "--drop-column", "email")
    assert "TFX would be imported" in str(result.exception)  # the declared columns passed the checks


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "nothing to do"),
        (["--scrub-pii", "--scrub-column", "ticket_txt"], "declared column(s) ['ticket_txt'] are not in the data"),
        (["--quasi-identifier", "age", "--sensitive-column", "products"], "['products'] are not in the data"),
    ],
)
def test_minimize_checks_its_settings_against_the_bundled_tickets_before_tfx(no_tfx, tmp_path, args, message):
    root = tmp_path / "root"
    result = invoke("minimize", "--pipeline-root", str(root), *args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert not root.exists()


def test_minimize_runs_the_readme_example_up_to_tfx(no_tfx, tmp_path):
    from tests.pipelines.test_minimization_pipeline import README_EXAMPLE

    result = invoke(*README_EXAMPLE, "--pipeline-root", str(tmp_path / "root"))
    assert "TFX would be imported" in str(result.exception)
    assert (tmp_path / "root" / "data" / "pii_tickets.csv").exists()


@pytest.mark.parametrize(
    "rows, message",
    [
        (
            "hi,1\nmail zed.secret@example.com,41,EXTRA-SECRET-555-867-5309\n",
            "file t.csv line 3 has 3 fields, the header 2",
        ),
        ("hi,1\nzed.secret@example.com\n", "file t.csv line 3 has 1 fields, the header 2"),
        ("hi,1\n" + "zed.secret@example.com " * 6000 + ",2\n", "file t.csv line 3: a cell is longer than the 131072"),
    ],
)
def test_minimize_refuses_a_malformed_csv_row_naming_file_and_line_only(no_tfx, tmp_path, rows, message):
    data = tmp_path / "data"
    data.mkdir()
    (data / "t.csv").write_text("ticket_text,age\n" + rows)
    root = tmp_path / "root"
    result = invoke("minimize", "--scrub-pii", "--data-root", str(data), "--pipeline-root", str(root))
    assert result.exit_code == 2 and message in result.output, result.output
    assert "zed.secret" not in result.output and "EXTRA" not in result.output and "Traceback" not in result.output
    assert not root.exists()


def test_a_failing_stage_under_scrub_pii_prints_and_logs_no_exception_message(capsys):
    from pipelines.cli.minimization import failure_message

    def stage():
        try:
            raise KeyError("inner zed.secret@example.com")
        except KeyError as inner:
            raise ValueError("Columns do not match: [b'mail zed.secret@example.com']") from inner

    try:
        stage()
    except ValueError as err:
        message = failure_message(err, scrubbing=True)
        logged = capsys.readouterr().err
        assert message.startswith("ValueError (message withheld") and "zed.secret" not in message
        assert "ValueError" in logged and "KeyError" in logged and "in stage" in logged
        assert "zed.secret" not in logged
        assert "zed.secret" in failure_message(err, scrubbing=False)
        assert "zed.secret" in capsys.readouterr().err


def test_scrub_pii_help_says_columns_of_numbers_are_not_scanned():
    for command in (("minimize",), ("pipeline", "run")):
        result = invoke(*command, "--help")
        assert result.exit_code == 0 and "Columns of numbers are NOT scanned" in " ".join(result.output.split())


FAILING_SCRUB = """
import logging, sys
from types import SimpleNamespace
from pipelines.cli import pipeline as pipeline_cli
from pipelines.cli.main import cli
ROW = "zed.secret@example.com,555-867-5309"

def run(tfx_pipeline, progress):
    progress(SimpleNamespace(stage="PiiScrubber", state="running", index=2, total=3))
    logging.getLogger("apache_beam").error(f"cannot process {ROW!r}")
    raise ValueError(f"bad row {ROW!r}")

# the TFX stages are stubbed, so is their module (importing it would import TFX, 17 s of CPU, for nothing)
sys.modules["pipelines.minimization"] = SimpleNamespace(minimization_pipeline=lambda **settings: None)
pipeline_cli.import_tfx = lambda: (None, SimpleNamespace(run=run))
cli(["minimize", *sys.argv[1:]])
"""


def test_minimize_with_scrubbing_prints_no_raw_row_and_refuses_verbose(tmp_path, python_subprocess):
    """Under --scrub-pii a library's ERROR record quoting a raw row reaches the terminal without its message (the
    owner-only log keeps it), and --verbose, which would print it, is refused (exit 2) before the root is made."""
    row = "zed.secret@example.com,555-867-5309"
    for verbose in (False, True):
        root = tmp_path / f"root{verbose}"
        argv = ["--scrub-pii", "--pipeline-root", str(root), *(["--verbose"] if verbose else [])]
        proc = python_subprocess(f"import sys; sys.argv[1:] = {argv!r}\n" + FAILING_SCRUB, check=False)
        terminal = proc.stdout + proc.stderr
        assert row not in terminal, terminal
        if verbose:
            assert proc.returncode == 2 and "--verbose prints what TFX" in terminal and not root.exists(), terminal
        else:
            assert proc.returncode == 1 and "ERROR: from apache_beam (message in the run log)" in terminal, terminal
            [log] = (root / "logs").iterdir()
            assert f"cannot process {row!r}" in log.read_text()
