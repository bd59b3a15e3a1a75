"""One `ppml pipeline run` per pipeline root at a time: an OS file lock held for the run's lifetime.

`exclusive_root` takes `fcntl.flock` on ``<root>/.ppml-run.lock``. The kernel releases the lock when the
holder closes the file or dies, however it dies (SIGKILL included), so a lock file left behind never blocks
a later run; the pid written into it only names the holder in the error. TFX-free.
"""

from __future__ import annotations

import contextlib
import fcntl
import os

LOCK_FILE = ".ppml-run.lock"


class RootBusy(RuntimeError):
    """Another process holds the pipeline root's lock."""


@contextlib.contextmanager
def exclusive_root(root: str):
    """Creates ``root`` if needed and holds its lock until the block ends.

    Raises:
      RootBusy: another process holds the lock (the message names its pid).
      OSError: the root cannot be created or the lock file opened.
    """
    os.makedirs(root, mode=0o700, exist_ok=True)  # private material: `pipelines.private_root`
    fd = os.open(os.path.join(root, LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise RootBusy(
                f"{root} is in use by another `ppml pipeline run` (pid {holder}); wait for it to end "
                f"or give another --pipeline-root"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
