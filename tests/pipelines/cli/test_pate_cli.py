"""`ppml pate epsilon` and `ppml pate run`: epsilons against dp-accounting, one-line refusals, an end-to-end run.

The first test, one refusal and the two runs go through the real command line in a fresh interpreter (`ppml_cli`);
the other refusals and the vote-history reads call the same entry point in this process (`ppml`), which prints and
exits alike."""

import json
import math
import os
import stat

import dp_accounting
import numpy as np
import pytest
from click.testing import CliRunner
from dp_accounting import dp_event

from pipelines.cli.main import cli


def _direct(events, delta):
    accountant = dp_accounting.rdp.RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
    for event, count in events:
        accountant.compose(event, count)
    return accountant.get_epsilon(delta)


def ppml(*args: str, check: bool = True):
    """The ``ppml`` group in this process: stdout, stderr and the exit code apart (click's CliRunner)."""
    result = CliRunner().invoke(cli, list(args))
    assert not check or result.exit_code == 0, f"ppml {' '.join(args)}: exit {result.exit_code}\n{result.output}"
    return result


def test_epsilon_data_independent_json_matches_dp_accounting(ppml_cli):
    out = json.loads(
        ppml_cli(
            "pate",
            "epsilon",
            "--teachers",
            "250",
            "--classes",
            "10",
            "--queries",
            "500",
            "--sigma",
            "40",
            "--threshold",
            "150",
            "--sigma1",
            "60",
            "--max-answered",
            "200",
            "--delta",
            "1e-6",
            "--json",
        ).stdout
    )
    expected = _direct(
        [(dp_event.GaussianDpEvent(60.0), 500), (dp_event.GaussianDpEvent(40 / math.sqrt(2)), 200)], 1e-6
    )
    assert out["guarantee"]["epsilon"] == pytest.approx(expected, rel=1e-12)
    assert "data-independent" in out["guarantee"]["analysis"]
    assert "add/remove one record" in out["privacy_unit"] and "two teachers" in out["privacy_unit"]


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ("epsilon", "--teachers", "5", "--classes", "10", "--queries", "9", "--sigma", "4"),
            "--teachers: teachers (5) must be at least the number of classes (10)",
        ),
        (
            ("epsilon", "--teachers", "50", "--classes", "10", "--queries", "9", "--sigma", "-1"),
            "--sigma: sigma must be in",
        ),
        (
            ("epsilon", "--teachers", "50", "--classes", "10", "--queries", "9", "--sigma", "1e-300"),
            "is too small for any finite epsilon over 9 queries",
        ),
        (
            (
                "epsilon",
                "--teachers",
                "50",
                "--classes",
                "10",
                "--queries",
                "9",
                "--sigma",
                "4",
                "--threshold",
                "20",
                "--sigma1",
                "inf",
            ),
            "--sigma1: sigma1 must be in",
        ),
        (
            ("run", "--dataset", "digits", "--teachers", "9", "--sigma", "4"),
            "--teachers: teachers (9) must be at least",
        ),
        (
            ("run", "--dataset", "breast_cancer", "--teachers", "900", "--sigma", "4"),
            "--teachers: at most 569 (the rows of breast_cancer), got 900",
        ),
        (("run", "--sigma", "4", "--smooth-order", "20", "--smooth-beta", "0.5"), "smooth-sensitivity beta must be in"),
        (
            ("epsilon", "--teachers", "50", "--classes", "10", "--queries", "9", "--sigma", "4", "--max-answered", "5"),
            "--max-answered: --sigma1 and --max-answered need --threshold",
        ),
        (
            ("run", "--dataset", "breast_cancer", "--sigma", "4", "--votes-out", "/nonexistent-folder/votes.json"),
            "--votes-out: /nonexistent-folder/votes.json is a folder, or its folder does not exist",
        ),
        (
            ("run", "--sigma", "4", "--confidence", "0.8"),
            "--confidence: sets the student's self-training: it needs --semi-supervised",
        ),
        (
            ("run", "--sigma", "4", "--semi-supervised", "--confidence", "1.5"),
            "--confidence: confidence must be in (0, 1]",
        ),
        (
            ("run", "--sigma", "4", "--semi-supervised", "--self-training-rounds", "0"),
            "--self-training-rounds: rounds must be an integer in [1, 100], got 0",
        ),
    ],
)
def test_bad_settings_exit_2_with_one_line(args, message):
    proc = ppml("pate", *args, check=False)
    assert proc.exit_code == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_a_refusal_in_a_fresh_interpreter_is_one_line_on_stderr_and_exit_2(ppml_cli):
    """The real command line refusing after the dataset is loaded: what the in-process refusals cannot see (text a
    library or an import writes to the process's stderr, outside click) would show here."""
    proc = ppml_cli("pate", "run", "--dataset", "breast_cancer", "--teachers", "900", "--sigma", "4", check=False)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2 and proc.stdout == "", proc
    assert len(lines) == 1 and lines[0].startswith(
        "Error: --teachers: at most 569 (the rows of breast_cancer), got 900"
    ), proc.stderr


@pytest.mark.parametrize(
    "history,message",
    [
        (
            {
                "aggregator": {"mechanism": "gnmax", "sigma": 40.0},
                "votes": [[200, 50], [100, 150, 0]],
                "answered": [True, True],
            },
            "--votes: ",
        ),  # ragged
        (
            {
                "aggregator": {
                    "mechanism": "confident_gnmax",
                    "threshold": 150,
                    "sigma1": 60,
                    "sigma2": 40,
                    "max_answered": 1,
                },
                "votes": [[200, 50], [240, 10]],
                "answered": [True, True],
            },
            "2 answers, more than the cap max_answered=1",
        ),
        (
            {
                "aggregator": {"mechanism": "confident_gnmax", "threshold": 150, "sigma1": 60, "sigma2": 40},
                "votes": [[2_000_000, 0]],
                "answered": [True],
            },
            "teachers must be an integer <= 100000, got 2000000",
        ),
        (
            {"aggregator": {"mechanism": "gnmax", "sigma": 40.0}, "votes": [[2, 0]], "answered": ["yes"]},
            "'answered' must be a list of true/false",
        ),
    ],
)
def test_malformed_vote_history_exits_2_with_one_line(tmp_path, history, message):
    path = tmp_path / "votes.json"
    path.write_text(json.dumps(history))
    proc = ppml("pate", "epsilon", "--votes", str(path), check=False)
    assert proc.exit_code == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_epsilon_votes_prints_the_stored_release_and_never_draws_a_new_one(tmp_path):
    from privacy.pate import GNMax, SmoothSensitivityRelease, analyze

    history = GNMax(40.0).aggregate(np.tile([200, 30, 20, 0], (30, 1)), seed=0)
    smoothed = SmoothSensitivityRelease().release(history, seed=5)
    path = tmp_path / "votes.json"
    path.write_text(json.dumps({**history.to_json(), "smoothed_release": smoothed.to_json()}))
    outs = [json.loads(ppml("pate", "epsilon", "--votes", str(path), "--json").stdout) for _ in range(2)]
    assert outs[0] == outs[1]  # the same numbers: no fresh noise
    assert outs[0]["smoothed_data_dependent"]["epsilon"] == pytest.approx(smoothed.epsilon(1e-5), rel=1e-12)
    assert outs[0]["guarantee"]["epsilon"] == pytest.approx(analyze(history, 1e-5, smoothed=smoothed).epsilon)
    assert outs[0]["guarantee"]["epsilon"] > outs[0]["guarantee"]["labels_epsilon"]  # the release is paid for
    path.write_text(json.dumps(history.to_json()))  # no release stored: none is made
    out = json.loads(ppml("pate", "epsilon", "--votes", str(path), "--json").stdout)
    assert "holds no smoothed release" in out["smoothed_data_dependent"]["refused"]
    assert out["guarantee"]["epsilon"] == out["guarantee"]["labels_epsilon"]
    proc = ppml("pate", "epsilon", "--votes", str(path), "--smooth-order", "10", check=False)
    assert proc.exit_code == 2 and "--smooth-order" in proc.stderr  # settings were fixed by the run


@pytest.mark.parametrize(
    "partitions,message",
    [
        ({"teachers": [[0, 1], [1, 2]], "public": [50, 51]}, "row 1 is in the partitions of teachers 0 and 1"),
        ({"teachers": [[0, 1], [2, 3]], "public": [3, 60]}, "public split overlaps the private one"),
    ],
)
def test_run_refuses_overlapping_splits(tmp_path, partitions, message):
    path = tmp_path / "partitions.json"
    path.write_text(json.dumps(partitions))
    proc = ppml("pate", "run", "--dataset", "breast_cancer", "--partitions", str(path), "--sigma", "2", check=False)
    assert proc.exit_code == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.slow
def test_run_then_epsilon_of_its_vote_history(ppml_cli, tmp_path):
    votes = tmp_path / "votes.json"
    out = json.loads(
        ppml_cli(
            "pate",
            "run",
            "--dataset",
            "breast_cancer",
            "--teachers",
            "6",
            "--epochs",
            "5",
            "--sigma",
            "2",
            "--threshold",
            "4",
            "--sigma1",
            "1",
            "--votes-out",
            str(votes),
            "--json",
        ).stdout
    )
    assert stat.S_IMODE(os.stat(votes).st_mode) == 0o600  # the teachers' votes are private
    history = json.loads(votes.read_text())
    queries, answered = len(history["votes"]), sum(history["answered"])
    assert out["queries"] == queries and out["answered"] == answered and 0 < answered <= queries
    expected = _direct(
        [(dp_event.GaussianDpEvent(1.0), queries), (dp_event.GaussianDpEvent(2 / math.sqrt(2)), queries)], 1e-5
    )
    assert out["guarantee"]["labels_epsilon"] == pytest.approx(expected, rel=1e-12)
    assert 0.5 <= out["student_test_accuracy"] <= 1 and "outside the privacy guarantee" in out["accuracies_note"]
    assert "smoothed_release" in history  # the run's one release (or why it was refused) is stored
    again = json.loads(ppml("pate", "epsilon", "--votes", str(votes), "--json").stdout)
    assert again["guarantee"] == out["guarantee"]
    assert again["smoothed_data_dependent"] == out["smoothed_data_dependent"]


@pytest.mark.slow
def test_run_semi_supervised_reports_the_self_training_and_the_same_epsilon(ppml_cli, tmp_path):
    votes = tmp_path / "votes.json"
    out = json.loads(
        ppml_cli(
            "pate",
            "run",
            "--dataset",
            "breast_cancer",
            "--teachers",
            "6",
            "--epochs",
            "5",
            "--sigma",
            "2",
            "--threshold",
            "5",
            "--sigma1",
            "1",
            "--semi-supervised",
            "--confidence",
            "0.8",
            "--votes-out",
            str(votes),
            "--json",
        ).stdout
    )
    history = json.loads(votes.read_text())
    queries, answered = len(history["votes"]), sum(history["answered"])
    # the events of the supervised run: self-training charges nothing
    expected = _direct(
        [(dp_event.GaussianDpEvent(1.0), queries), (dp_event.GaussianDpEvent(2 / math.sqrt(2)), queries)], 1e-5
    )
    assert out["guarantee"]["labels_epsilon"] == pytest.approx(expected, rel=1e-12)
    training = out["student_training"]
    assert training["method"] == "self-training" and training["confidence"] == 0.8 and training["rounds"] == 2
    assert training["answered_labels"] == answered and 0 <= training["pseudo_labels"] <= queries - answered
    assert 0.5 <= out["student_test_accuracy"] <= 1
