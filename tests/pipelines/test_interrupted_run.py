"""`ppml pipeline run` killed (SIGKILL) during the Trainer's executor, after a second run on the same root was refused
by the root's lock: the killed run leaves no lock behind, `ppml report` says in one line that there is no
complete run, and running again finishes with the upstream stages cached; a half-written ledger is refused
in one line. Real runs (about 1 epoch each, the shortest the bundled data allows for a model to push)."""

import json
import os
import signal
import subprocess
import sys
import time

from pipelines.privacy_ledger import DP_SGD, LEDGER_FILE

from .conftest import REPO, ppml

OPTIONS = ("--dp", "--target-epsilon", "3", "--epochs", "1", "--min-accuracy", "0")
UPSTREAM = ("CsvExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform")
CLI = (sys.executable, "-c", "from pipelines.cli.main import cli; cli()")


def _lines_until(proc: subprocess.Popen, last, timeout: float = 600) -> list[str]:
    """The run's stage lines up to the first for which ``last(line)`` holds."""
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        assert line, f"the run ended early:\n{''.join(lines)}"
        lines.append(line)
        if last(line):
            return lines
    raise AssertionError(f"not seen within {timeout} s:\n{''.join(lines)}")


def _wait_for_the_trainers_executor(proc: subprocess.Popen, root, timeout: float = 300) -> None:
    """Returns once TFX has made the Trainer's output folders (``Trainer/model_run/<execution id>``), right before it
    calls the executor, which then trains and exports for seconds at least: a kill right after lands in it."""
    folder, deadline = root / "Trainer" / "model_run", time.monotonic() + timeout
    while not (folder.is_dir() and any(folder.iterdir())):
        assert proc.poll() is None, "the run ended before its Trainer's executor started"
        assert time.monotonic() < deadline, f"no Trainer executor within {timeout} s"
        time.sleep(0.02)


def test_a_run_killed_in_the_trainer_resumes_with_cached_stages_and_the_report_never_reads_half(tmp_path):
    root = tmp_path / "root"
    first = subprocess.Popen(
        [*CLI, "pipeline", "run", *OPTIONS, "--pipeline-root", str(root)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        before = _lines_until(first, lambda line: line.startswith("["))  # a stage started: the root is locked
        second = ppml("pipeline", "run", *OPTIONS, "--pipeline-root", str(root), check=False, timeout=120)
        assert second.returncode == 1 and second.stderr.splitlines() == [
            f"Error: {root} is in use by another `ppml pipeline run` (pid {first.pid}); wait for it to end or give "
            f"another --pipeline-root"
        ]
        before += _lines_until(first, lambda line: line.rstrip().endswith("Trainer ..."))
        _wait_for_the_trainers_executor(first, root)  # then killed at once: no sleep that the Trainer could outlast
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert first.returncode == -signal.SIGKILL
    assert [line.split()[1] for line in before if line.startswith("[")][-1] == "Trainer"

    report = ppml("report", "--pipeline-root", str(root), check=False)
    assert report.returncode == 1 and len(report.stderr.splitlines()) == 1 and "Traceback" not in report.stderr
    assert "has no completed Trainer" in report.stderr, report.stderr

    again = ppml("pipeline", "run", *OPTIONS, "--pipeline-root", str(root), "--json")
    states = {
        line.split()[1]: line.split()[2]
        for line in again.stderr.splitlines()
        if line.startswith("[") and not line.rstrip().endswith("...")
    }
    assert {stage: states[stage] for stage in UPSTREAM} == dict.fromkeys(UPSTREAM, "cached"), again.stderr
    assert states["Trainer"] == "complete"
    result = json.loads(again.stdout)
    assert json.loads(ppml("report", "--pipeline-root", str(root), "--json").stdout) == result
    assert result["privacy"]["mechanism"] == DP_SGD and result["privacy"]["privacy_unit"] == "example"

    [ledger] = [os.path.join(d, LEDGER_FILE) for d, _, files in os.walk(root / "Trainer") if LEDGER_FILE in files]
    with open(ledger) as f:
        text = f.read()
    with open(ledger, "w") as f:
        f.write(text[: len(text) // 2])  # what a non-atomic writer killed half-way would leave
    half = ppml("report", "--pipeline-root", str(root), check=False)
    assert half.returncode == 1 and half.stdout == "" and "Traceback" not in half.stderr
    assert len(half.stderr.splitlines()) == 1 and "cannot read privacy ledger" in half.stderr, half.stderr
