"""Writing a state file so that a crash leaves the old file or the new one, never half of either.

Privacy state (budgets, training steps, ledgers) must survive a restart without double counting, so it
is written to a temporary file in the same folder, synced, and renamed over the old one. The temporary
file is created readable and writable by its owner only (``tempfile.mkstemp``) and keeps that mode, so
secrets (keys, weight shares, private predictions) are written this way too, never readable by others.
"""

from __future__ import annotations

import os
import tempfile


def write_atomically(path: str | os.PathLike, text: str | bytes) -> str:
    """Writes ``text`` (str, or bytes as they are) to ``path`` (folders created) by an fsync'ed, owner-only
    temporary file and a rename; returns the path."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb" if isinstance(text, bytes) else "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
