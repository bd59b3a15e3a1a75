"""A run's log file: library output (Python logging, native writes, stdout) goes there; errors stay visible."""

import os

SCRIPT = """
import logging, os, sys
from pipelines import run_log
root = sys.argv[1]

with run_log.captured_output() as log:
    print("library output on stdout, before the root is known")
    os.write(2, b"I0000 native log line before the root is known\\n")
    path = log.keep_at(run_log.new_log_path(root))
    log.terminal.write(f"LOG {path}\\n")
    logging.getLogger("absl").warning("a library warning")  # to stderr, through the standard library's handler
    os.write(1, b"native stdout\\n")
    os.write(2, b"E0000 native stderr\\n")
    logging.getLogger("tfx").error("a real error", exc_info=ValueError("details"))
    log.terminal.write("[1/1] Stage complete\\n")
print("REPORT")
sys.stdout.flush()

sys.stderr.write("--- unexpected failure before the log is kept\\n")
try:
    with run_log.captured_output(self_explaining=(KeyError,)):
        print("what was captured before the failure")
        raise RuntimeError("boom")
except RuntimeError:
    pass
sys.stderr.write("--- a self-explaining failure\\n")
try:
    with run_log.captured_output(self_explaining=(KeyError,)):
        print("import noise")
        raise KeyError("bad setting")
except KeyError:
    pass
sys.stderr.write("--- end\\n")
"""


def test_library_output_goes_to_the_log_and_errors_to_the_terminal(tmp_path, python_subprocess):
    root = tmp_path / "root"
    proc = python_subprocess(f"import sys; sys.argv[1:] = [{str(root)!r}]\n" + SCRIPT)
    assert proc.stdout == "REPORT\n"  # stdout is back for the report once the capture ends
    lines = proc.stderr.splitlines()
    path = lines[0][len("LOG ") :]
    assert os.path.dirname(path) == str(root / "logs") and os.path.basename(path).startswith("run-")
    assert lines[1:] == [
        "ERROR: a real error",  # the message of an ERROR record, not its traceback
        "[1/1] Stage complete",
        "--- unexpected failure before the log is kept",
        "what was captured before the failure",  # replayed: nothing is lost
        "--- a self-explaining failure",
        "--- end",
    ]
    with open(path) as f:
        log = f.read().splitlines()
    # Everything, in the order it reached the file descriptors (Python's stdout is flushed when the log moves).
    assert log == [
        "I0000 native log line before the root is known",
        "library output on stdout, before the root is known",
        "WARNING:absl:a library warning",
        "native stdout",
        "E0000 native stderr",
        "ERROR:tfx:a real error",
        "ValueError: details",
    ]  # the traceback too
    assert os.listdir(root / "logs") == [os.path.basename(path)]


QUIET_ERRORS = """
import logging, sys
from pipelines import run_log
with run_log.captured_output(quote_errors=False) as log:
    path = log.keep_at(run_log.new_log_path(sys.argv[1]))
    logging.getLogger("tfx").error("cannot parse row '17.99,10.38,122.8'")
print(path)
"""


def test_a_private_run_copies_error_records_to_the_terminal_without_their_message(tmp_path, python_subprocess):
    """quote_errors=False (a private run): the terminal learns an error was logged, and by whom, not its message,
    which can quote a training record; the log keeps it."""
    proc = python_subprocess(f"import sys; sys.argv[1:] = [{str(tmp_path)!r}]\n" + QUIET_ERRORS)
    assert proc.stderr.splitlines() == ["ERROR: from tfx (message in the run log)"]
    with open(proc.stdout.strip()) as f:
        assert f.read().splitlines() == ["ERROR:tfx:cannot parse row '17.99,10.38,122.8'"]
