"""`ppml federated run` as a real process: interrupted and resumed, and what reaches its stderr."""

import json

import dp_accounting
import pytest
from dp_accounting import dp_event

_FOREGROUND = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
"""Child code prefix: Ctrl-C raises KeyboardInterrupt, as in a terminal's foreground job, even where the test runner
ignores SIGINT (a child inherits an ignored SIGINT, and Python then installs no handler: seen under pytest-xdist)."""


def test_killed_runs_resume_from_their_checkpoint_to_the_uninterrupted_result(tmp_path):
    """SIGINT (exit 130, a line saying how to resume), then SIGKILL, mid-run: the same command resumes from
    the checkpoint, and the final history and epsilon equal an uninterrupted run's (seeded noise)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from pipelines import privacy_ledger

    rounds = 12  # stopped after round 3, killed 3 or more rounds later, resumed for the rest
    args = [
        "--dp",
        "--seeded-noise",
        "--noise-multiplier",
        "1",
        "--sampling",
        "poisson",
        "--clients",
        "20",
        "-C",
        "0.5",
        "--model",
        "2nn",
        "--rounds",
        str(rounds),
        "--seed",
        "3",
    ]

    started = []

    def start(name, checkpoint=None):
        extra = ["--checkpoint-dir", str(checkpoint)] if checkpoint else []
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _FOREGROUND + "from pipelines.cli.main import cli; cli()",
                "federated",
                "run",
                *args,
                *extra,
                "--out",
                str(tmp_path / name),
            ],
            cwd=os.getcwd(),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        started.append(proc)
        return proc

    def rounds_done(checkpoint):
        try:
            return json.loads((checkpoint / "latest" / "state.json").read_text())["round"]
        except (OSError, ValueError, KeyError):
            return 0

    def stop_after(proc, checkpoint, done, sig):
        deadline = time.monotonic() + 600
        while rounds_done(checkpoint) < done and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the run finished before it could be interrupted"
        proc.send_signal(sig)
        return proc.communicate(timeout=600)

    try:
        straight = start("straight")
        checkpoint = tmp_path / "ckpt"
        _, stderr = stop_after(start("resumed", checkpoint), checkpoint, 3, signal.SIGINT)
        assert "interrupted after round" in stderr and "run the same command to resume" in stderr
        assert not (tmp_path / "resumed" / "history.json").exists()
        interrupted_at = rounds_done(checkpoint)
        killed = start("resumed", checkpoint)
        stop_after(killed, checkpoint, interrupted_at + 3, signal.SIGKILL)
        assert killed.returncode == -signal.SIGKILL and 0 < rounds_done(checkpoint) < rounds
        resumed = start("resumed", checkpoint)
        for proc in (straight, resumed):
            stdout, stderr = proc.communicate(timeout=900)
            assert proc.returncode == 0, stderr[-3000:]
        histories = [json.loads((tmp_path / name / "history.json").read_text()) for name in ("straight", "resumed")]
        without_time = [[{k: v for k, v in r.items() if k != "seconds"} for r in h["rounds"]] for h in histories]
        assert len(without_time[0]) == rounds and without_time[0] == without_time[1]
        ledgers = [
            privacy_ledger.read_ledger_file(str(tmp_path / name / "privacy_ledger.json"))
            for name in ("straight", "resumed")
        ]
        assert ledgers[0].epsilons == ledgers[1].epsilons and ledgers[1].budget.units == rounds
        event = dp_event.PoissonSampledDpEvent(0.5, dp_event.GaussianDpEvent(1.0))
        assert ledgers[1].epsilons["rdp"] == pytest.approx(
            dp_accounting.rdp.RdpAccountant().compose(event, rounds).get_epsilon(0.01), rel=1e-12
        )
    finally:  # a failed assertion leaves no run behind (its Popen would warn in a later test)
        for proc in started:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def test_the_command_line_drops_dp_accountings_excluded_order_warnings(tmp_path):
    """At small z dp-accounting logs 'failed to converge ... Excluding this order' through absl for every
    epsilon it computes (public numbers only; an excluded order can only raise epsilon): over a hundred lines
    between the round lines of a 2-round run. A real process (CliRunner does not see absl's stderr)."""
    import logging
    import subprocess
    import sys

    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from pipelines.cli.main import cli; cli()",
            "federated",
            "run",
            "--dp",
            "--rounds",
            "2",
            "--sampling",
            "poisson",
            "--model",
            "linear",
            "--out",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "round 2: " in proc.stderr and "_compute_log_a_frac" not in proc.stderr
    from privacy.accounting.accountants import _RdpOrderExcluded  # only that message is dropped

    assert _RdpOrderExcluded().filter(logging.LogRecord("absl", logging.WARNING, "", 0, "another warning", None, None))
