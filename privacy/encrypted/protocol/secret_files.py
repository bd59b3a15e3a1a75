"""Writing files that hold secrets (keys, weight shares, private predictions): owner-only, all or nothing.

`write_owner_only` writes to a temporary file created with mode 0600 in the target's folder, syncs it and
renames it over the target, so the secret is never readable by others, not even for a moment, and a
crash leaves the old file or the new one, never half of either.
"""

from __future__ import annotations

import os
import tempfile


def write_owner_only(path: str | os.PathLike, data: bytes) -> str:
    """Writes ``data`` to ``path`` (mode 0600; folders created with mode 0700); returns the path.

    Raises:
        OSError: if the folder cannot be created or written (nothing is left behind).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
