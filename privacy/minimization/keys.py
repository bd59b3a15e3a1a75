"""The HMAC key of keyed hashing: from a user's key file, or 32 bytes from the OS CSPRNG."""

from __future__ import annotations

import os
import secrets
import stat

KEY_BYTES = 32


def load_or_create_key(path: str | None) -> bytes:
    """The key in ``path`` (at least 32 bytes, readable by its owner only), or a new one.

    A missing ``path`` is created with 32 bytes from `secrets` (the OS CSPRNG) and mode 0600; ``None`` gives an
    ephemeral key that is never written.

    Raises:
        ValueError: the file is shorter than 32 bytes, or group/other may read it (the message names the path,
            never the key).
    """
    if path is None:
        return secrets.token_bytes(KEY_BYTES)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = os.stat(path).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ValueError(f"key file {path} is accessible to group or others (mode {stat.filemode(mode)}); "
                             f"chmod 600 it") from None
        with open(path, "rb") as fh:
            key = fh.read()
        if len(key) < KEY_BYTES:
            raise ValueError(f"key file {path} holds {len(key)} bytes; a key needs at least {KEY_BYTES}")
        return key
    key = secrets.token_bytes(KEY_BYTES)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key
