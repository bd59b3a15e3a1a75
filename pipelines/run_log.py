"""A pipeline run's log file: what TFX, TensorFlow, Beam and absl print goes there, not to the terminal.

A run prints hundreds of lines of library WARNING and INFO messages, from Python's ``logging`` and from
native code (TensorFlow's C++ logs) alike, on both stdout and stderr. `captured_output` points the
process's file descriptors 1 and 2 at a file for the duration of the run and hands the caller the
terminal to print its progress on. Python log records of level ERROR and above are also copied to the
terminal, so real errors stay in sight; the file holds everything, tracebacks included.

The capture starts in a temporary file, before the pipeline root may be written to; `RunLog.keep_at`
moves it under the root once the run's settings are known to be good. If the capture ends by an
exception before that (other than one the caller says explains itself), the captured text is replayed
on the terminal, so nothing is lost.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
import time
from typing import Iterator, TextIO

LOG_DIR = "logs"
"""Sub-folder of the pipeline root that holds one log file per run."""


def new_log_path(pipeline_root: str) -> str:
    """A fresh ``<pipeline_root>/logs/run-<local time>.log`` path (not created)."""
    stem = os.path.join(pipeline_root, LOG_DIR, time.strftime("run-%Y%m%d-%H%M%S"))
    path, suffix = stem + ".log", 1
    while os.path.exists(path):
        path, suffix = f"{stem}-{suffix}.log", suffix + 1
    return path


class RunLog:
    """The capture in progress: `terminal` is where the user sees output; `path` the log, once kept."""

    def __init__(self, terminal: TextIO, temporary: str):
        self.terminal = terminal
        self.path: str | None = None
        self._temporary = temporary

    def keep_at(self, path: str) -> str:
        """Moves what was captured so far to ``path`` (folders created) and captures there from now on."""
        _flush()
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        shutil.copyfile(self._temporary, path)
        _point_stdout_and_stderr_at(path)
        os.unlink(self._temporary)
        self._temporary, self.path = None, path
        return path

    def _captured_text(self) -> str:
        with open(self._temporary, errors="replace") as f:
            return f.read()


class _TerminalErrors(logging.Handler):
    """Copies the message (not the traceback) of each ERROR+ record to the terminal, or with ``quote`` False
    (a private run: a stage's error can quote a training record) its level and logger only."""

    def __init__(self, terminal: TextIO, quote: bool = True):
        super().__init__(level=logging.ERROR)
        self._terminal = terminal
        self._quote = quote

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage() if self._quote else f"from {record.name} (message in the run log)"
            self._terminal.write(f"{record.levelname}: {message}\n")
            self._terminal.flush()
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def captured_output(
    self_explaining: tuple[type[BaseException], ...] = (), quote_errors: bool = True
) -> Iterator[RunLog]:
    """Sends this process's stdout and stderr (file descriptors 1 and 2) to a log while the context is open.

    Args:
      self_explaining: exceptions whose message says all (e.g. a bad setting): when one ends the
        capture before the log is kept, the captured text is dropped instead of replayed.
      quote_errors: copy the message of each ERROR record to the terminal (else its level and logger only).

    Yields:
      The `RunLog`: print progress to its ``terminal``; call ``keep_at(path)`` to keep the log.
    """
    _flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    terminal = os.fdopen(os.dup(saved[2]), "w", buffering=1)
    fd, temporary = tempfile.mkstemp(prefix="ppml-run-", suffix=".log")
    os.close(fd)
    log = RunLog(terminal, temporary)
    errors = _TerminalErrors(terminal, quote=quote_errors)
    _point_stdout_and_stderr_at(temporary)
    if not logging.root.handlers:
        logging.basicConfig()  # what absl.logging does on its first record; ours must not pre-empt it
    logging.root.addHandler(errors)
    replay = True
    try:
        yield log
        replay = False
    except self_explaining:
        replay = False
        raise
    finally:
        logging.root.removeHandler(errors)
        _flush()
        for target, original in saved.items():
            os.dup2(original, target)
            os.close(original)
        if log.path is None:
            if replay:  # an unexpected failure and no log kept: show what was captured rather than lose it
                terminal.write(log._captured_text())
            os.unlink(temporary)
        terminal.close()


def _point_stdout_and_stderr_at(path: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    for target in (1, 2):
        os.dup2(fd, target)
    os.close(fd)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, ValueError, OSError):
            pass
