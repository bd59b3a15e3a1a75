"""Writing a state file so that a crash leaves the old file or the new one, never half of either.

Privacy state (budgets, training steps, ledgers) must survive a restart without double counting, so it
is written to a temporary file in the same folder, synced, and renamed over the old one.
"""

from __future__ import annotations

import os
import tempfile


def write_atomically(path: str | os.PathLike, text: str) -> str:
    """Writes ``text`` to ``path`` (folders created) by an fsync'ed temporary file and a rename; returns the path."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
