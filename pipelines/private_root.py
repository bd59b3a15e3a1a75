"""The pipeline root holds private material (raw examples, exact statistics, logs, ML Metadata): owner-only.

`owner_only_files` sets the process umask to 077 while a run writes, so every folder TFX, Beam or ppml creates
under the root is 0700 and every file 0600, whatever the caller's umask; `private_folder` creates the root
0700, or takes group and world access away from an existing one (so older contents are unreachable too).
TFX-free.
"""

from __future__ import annotations

import contextlib
import os
import stat

OWNER_ONLY_UMASK = 0o077


@contextlib.contextmanager
def owner_only_files():
    """Files and folders created in the block are readable by their owner only (umask 077)."""
    previous = os.umask(OWNER_ONLY_UMASK)
    try:
        yield
    finally:
        os.umask(previous)


def private_folder(path: str) -> str | None:
    """Creates ``path`` (and missing parents) mode 0700, or makes an existing folder 0700; returns a warning
    when an existing one was open to group or others, else None."""
    with owner_only_files():
        os.makedirs(path, mode=0o700, exist_ok=True)
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077 == 0:
        return None
    os.chmod(path, mode & 0o700 | stat.S_IRWXU)
    return (
        f"{path} was readable by others (mode {mode:o}); it holds the raw data and exact statistics, so it is now 0700"
    )
