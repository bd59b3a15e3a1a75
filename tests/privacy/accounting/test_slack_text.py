"""DP-SGD's clip slack (`privacy.accounting.SLACK`, exported as `privacy.keras.params.SLACK`) is written out in
docstrings, README and help texts: every such text states the value the step uses, so changing SLACK cannot leave a
false one."""

import re
from fractions import Fraction
from pathlib import Path

from click.testing import CliRunner

from privacy.accounting import SLACK, SLACK_TEXT

ROOT = Path(__file__).resolve().parents[3]
MENTION = re.compile(r"C\)? ?\*?\(1 \+ (2\^-?\d+)\)|(2\^-?\d+) slack")
"""How the texts write the slack: 'C (1 + 2^-10)', 'sigma*C*(1 + 2^-10)', '(factor x C) (1 + 2^-10)', 'the 2^-10
slack' (a clip norm C times it: other factors 1 + 2^-k, roundings' and probabilities' bounds, are not the slack)."""


def _mentions() -> dict[str, set[str]]:
    paths = [ROOT / "README.md", *ROOT.glob("benchmarks/*.md")]
    paths += [p for folder in ("privacy", "federated", "pipelines") for p in (ROOT / folder).rglob("*.py")]
    found: dict[str, set[str]] = {}
    for path in paths:
        for match in MENTION.finditer(path.read_text()):
            found.setdefault(path.relative_to(ROOT).as_posix(), set()).add(match.group(1) or match.group(2))
    return found


def test_the_slack_text_is_the_slack():
    base, exponent = SLACK_TEXT.split("^")
    assert Fraction(int(base)) ** int(exponent) == SLACK


def test_every_written_out_slack_is_the_slack():
    found = _mentions()
    # the texts known to write it out (docstrings, README): the test reads them, so it can fail
    assert found.keys() >= {
        "README.md",
        "pipelines/components/dp_trainer/spec.py",
        "privacy/keras/model.py",
        "privacy/auditing/dp_sgd_audit.py",
    }
    assert {name: texts for name, texts in found.items() if texts != {SLACK_TEXT}} == {}


def test_the_mention_pattern_finds_each_form_and_another_value():
    texts = "C (1 + 2^-10), sigma*C*(1 + 2^-9) and the 2^-12 slack"
    assert [m.group(1) or m.group(2) for m in MENTION.finditer(texts)] == ["2^-10", "2^-9", "2^-12"]


def test_the_cli_states_the_slack_from_the_constant():
    from pipelines.cli.main import cli

    out = CliRunner().invoke(cli, ["epsilon", "--help"], terminal_width=400)
    assert out.exit_code == 0 and f"sigma*C*(1 + {SLACK_TEXT})" in " ".join(out.output.split())
    result = CliRunner().invoke(
        cli,
        [
            "noise",
            "--target-epsilon",
            "3",
            "--n",
            "1000",
            "--batch-size",
            "50",
            "--steps",
            "100",
            "--accountant",
            "rdp",
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"(/ C (1 + {SLACK_TEXT}) in ppml's DP-SGD)" in result.output
