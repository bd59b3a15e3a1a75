"""Reading numbers from a component's ``custom_config``: each check names the key it refuses.

The checks take the component's error class (a subclass of `InvalidSetting`), so a pipeline author
sees which component refused which key. Imports neither TensorFlow nor TFX.
"""

from __future__ import annotations

import difflib
import math
from typing import Any, Iterable, Sequence


class InvalidSetting(ValueError):
    """A setting in a component's ``custom_config`` is invalid; ``setting`` names the key."""

    def __init__(self, setting: str, message: str):
        super().__init__(f"custom_config[{setting!r}]: {message}")
        self.setting = setting
        self.message = message


def refuse_unknown(error: type[InvalidSetting], keys: Iterable[str], names: Sequence[str]) -> None:
    """Raises ``error`` for the first of ``keys`` that is none of ``names``, with the closest name as a hint (or the
    list of names): a typo must not leave a setting at its default."""
    for key in keys:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(names)}"
            raise error(key, f"unknown setting{hint}")


def number(value: Any) -> float | None:
    """``value`` as a float if it is a finite int or float (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def positive(error: type[InvalidSetting], key: str, value: Any) -> float:
    """A finite number > 0."""
    checked = number(value)
    if checked is None or checked <= 0:
        raise error(key, f"must be a finite number > 0, got {value!r}")
    return checked


def integer(error: type[InvalidSetting], key: str, value: Any, *, minimum: int = 1) -> int:
    """A whole number >= ``minimum`` (2.0 is accepted as 2)."""
    checked = number(value)
    if checked is None or checked != int(checked) or checked < minimum:
        raise error(key, f"must be an integer >= {minimum}, got {value!r}")
    return int(checked)


def probability(error: type[InvalidSetting], key: str, value: Any) -> float:
    """A number in the open interval (0, 1), e.g. delta."""
    checked = number(value)
    if checked is None or not 0 < checked < 1:
        raise error(key, f"must be a number in (0, 1), got {value!r}")
    return checked
