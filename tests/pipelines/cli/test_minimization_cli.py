"""`ppml pipeline run --scrub-pii` and the k-anonymity options: resolved before TFX, bad values refused naming
the option (exit 2), nothing written."""

import pytest

from pipelines.cli.minimization import minimization_settings
from privacy.minimization import ScrubSettings
from tests.pipelines.cli.test_pipeline_cli import invoke, no_tfx  # noqa: F401  (fixture)


@pytest.mark.parametrize("args, message", [
    (["--scrub-pii", "--scrub-column", "text=shred"], "operator 'shred' of column 'text'"),
    (["--scrub-pii", "--scrub-column", "a", "--drop-column", "a"], "column 'a' is both scanned and dropped"),
    (["--scrub-pii", "--pii-operator", "shred"], "--pii-operator"),
    (["--drop-column", "name"], "need --scrub-pii"),
    (["--sensitive-column", "product"], "need --quasi-identifier"),
    (["--quasi-identifier", "age", "--target-k", "0"], "--target-k"),
    (["--generalize"], "need --quasi-identifier"),
    (["--quasi-identifier", "age", "--generalize"], "--generalize needs --scrub-pii"),
])
def test_bad_minimization_options_are_usage_errors_before_tfx(no_tfx, tmp_path, args, message):  # noqa: F811
    root = tmp_path / "root"
    result = invoke("pipeline", "run", "--pipeline-root", str(root), *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not root.exists()


def test_options_resolve_into_the_scrubber_and_validator_settings():
    options = {"scrub_pii": True, "scrub_columns": ("ticket_text=hash",), "drop_columns": ("email",),
               "pii_operator": "redact", "pii_key_file": None, "quasi_identifiers": ("age", "zip3"),
               "target_k": 10, "sensitive_column": "product", "generalize": True, "epochs": 3}
    resolved = minimization_settings(options)
    scrub, kanonymity = resolved["scrub"], resolved["kanonymity"]
    assert resolved["generalize"] is True
    assert scrub == ScrubSettings(columns=(("ticket_text", "hash"),), drop_columns=("email",), operator="redact")
    assert (kanonymity.quasi_identifiers, kanonymity.target_k, kanonymity.sensitive) == (("age", "zip3"), 10,
                                                                                         "product")
    assert options == {"epochs": 3}
    unset = {"scrub_pii": False, "scrub_columns": (), "drop_columns": (), "pii_operator": "replace",
             "pii_key_file": None, "quasi_identifiers": (), "target_k": 5, "sensitive_column": None,
             "generalize": False}
    assert minimization_settings(unset) == {"scrub": None, "kanonymity": None, "generalize": False}
