"""Reading numbers from a component's ``custom_config``: each check names the key it refuses.

The checks take the component's error class (a subclass of `InvalidSetting`), so a pipeline author
sees which component refused which key. Imports neither TensorFlow nor TFX.
"""

from __future__ import annotations

import math
from typing import Any


class InvalidSetting(ValueError):
    """A setting in a component's ``custom_config`` is invalid; ``setting`` names the key."""

    def __init__(self, setting: str, message: str):
        super().__init__(f"custom_config[{setting!r}]: {message}")
        self.setting = setting
        self.message = message


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
