"""numba kernels' machine-code cache, private to the user (the encrypted protocol's and the DP-SGD noise's).

The machine code is cached in ``$XDG_CACHE_HOME/ppml/numba`` (``~/.cache/ppml/numba``), a directory of the
current user with no access for others (a cache that someone else can write would run their code); where
that cannot be had (no home, a directory it cannot write, or one that someone else owns or can write to,
or whose parents someone else can change) the kernels compile without a cache. ``NUMBA_CACHE_DIR``, if
set, is used instead, as it is (numba's own setting: the user's choice, not checked). Importing this module
imports numba.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile

import numba


def private_cache_dir() -> str | None:
    """The per-user cache directory for the machine code, created 0700; None if it is not safe or possible.

    Safe: every directory from it up to / belongs to this user or root and is writable by no one else
    (sticky ones such as /tmp excepted), so nobody else can put or swap files in it; and this user can write
    in it (numba refuses to import a kernel whose cache it cannot write). A relative XDG_CACHE_HOME is
    ignored (XDG spec)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    path = os.path.realpath(os.path.join(base, "ppml", "numba"))
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        if not all(_owned_and_closed(d, d == path) for d in _with_parents(path)):
            return None
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return None
    return path


def _with_parents(path: str):
    while True:
        yield path
        parent = os.path.dirname(path)
        if parent == path:
            return
        path = parent


def _owned_and_closed(directory: str, leaf: bool) -> bool:
    """Whether this user (or root, above the leaf) owns the directory and no one else can write to it (or,
    above the leaf, it is sticky); the leaf is also closed to others."""
    info = os.stat(directory)
    if info.st_uid != os.getuid() and (leaf or info.st_uid != 0):
        return False
    if leaf:
        return not info.st_mode & (stat.S_IWGRP | stat.S_IRWXO)
    return not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) or bool(info.st_mode & stat.S_ISVTX)


def compiled(*signatures, depends: tuple = (), nogil: bool = True):
    """numba.njit with these signatures (compiled now), cached in the private directory if there is one.

    ``depends``: the values from other modules that the kernel bakes into its machine code (numba treats globals
    as constants and checks only the kernel's own file for changes): the code is cached apart for each set of
    values (in a subdirectory named by their hash), so changing one of them never loads code made with another.
    ``nogil``: whether a call releases the GIL; code that keeps it is cached apart too (numba's cache does not tell
    the two apart)."""
    base = numba.config.CACHE_DIR or private_cache_dir()
    directory = base
    key = depends if nogil else depends + ("keeps the GIL",)
    if base and key:
        directory = os.path.join(base, hashlib.sha256(repr(key).encode()).hexdigest()[:16])

    def decorate(fn):
        if directory is None:
            return numba.njit(list(signatures), nogil=nogil, cache=False)(fn)
        saved, numba.config.CACHE_DIR = numba.config.CACHE_DIR, directory
        try:  # the cache's location is fixed when the dispatcher is made
            return numba.njit(list(signatures), nogil=nogil, cache=True)(fn)
        finally:
            numba.config.CACHE_DIR = saved

    return decorate
