"""A per-thread flag raised for the length of a block: how the training step tells the code it calls
where it was entered from (Keras may trace the step on several threads at once)."""

from __future__ import annotations

import contextlib
import threading


class ThreadFlag:
    """False until a `raised()` block of this thread; nested blocks restore the outer value."""

    def __init__(self):
        self._local = threading.local()

    @property
    def up(self) -> bool:
        return getattr(self._local, "up", False)

    @contextlib.contextmanager
    def raised(self):
        previous, self._local.up = self.up, True
        try:
            yield
        finally:
            self._local.up = previous
