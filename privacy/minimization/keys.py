"""The HMAC key of keyed hashing: from a user's key file, or 32 bytes from the OS CSPRNG."""

from __future__ import annotations

import os
import secrets
import stat

KEY_BYTES = 32


def check_key_file(path: str) -> None:
    """Checks ``path`` as `load_or_create_key` would use it, without creating it: an existing file must be at least
    `KEY_BYTES` long and closed to group and others; a missing one needs a writable folder (a symbolic link to a
    missing file is refused: the key could not be created through it).

    Raises:
        ValueError: naming the path (never the key) and what to fix.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            raise ValueError(
                f"key file {path} is a symbolic link to a missing file: remove it, or point it at the key"
            ) from None
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
            raise ValueError(
                f"key file {path} does not exist and its folder {folder} is not a writable folder"
            ) from None
        return
    if not stat.S_ISREG(mode):
        raise ValueError(f"key file {path} is not a regular file")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ValueError(f"key file {path} is accessible to group or others (mode {stat.filemode(mode)}); chmod 600 it")
    size = os.stat(path).st_size
    if size < KEY_BYTES:
        raise ValueError(f"key file {path} holds {size} bytes; a key needs at least {KEY_BYTES}")


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
        check_key_file(path)
        with open(path, "rb") as fh:
            key = fh.read()
        if len(key) < KEY_BYTES:
            raise ValueError(f"key file {path} holds {len(key)} bytes; a key needs at least {KEY_BYTES}") from None
        return key
    key = secrets.token_bytes(KEY_BYTES)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key
