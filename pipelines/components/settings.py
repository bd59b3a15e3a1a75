"""Reading numbers and choices from a component's ``custom_config``: each check names the key it refuses.

The checks take the component's error class (a subclass of `InvalidSetting`), so a pipeline author
sees which component refused which key; they are `privacy.validation`'s, with its messages. Imports neither
TensorFlow nor TFX.
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, Iterable, Sequence

from privacy import validation


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


def _checked(error: type[InvalidSetting], key: str, check: Callable, value: Any, **bounds):
    """``check(key, value, **bounds)`` (a `privacy.validation` check), its refusal raised as ``error`` for ``key``."""
    try:
        return check(key, value, **bounds)
    except ValueError as err:
        raise error(key, str(err).removeprefix(f"{key} ")) from None


def number(error: type[InvalidSetting], key: str, value: Any, **bounds) -> float:
    """A finite number within `privacy.validation.number`'s ``bounds`` (low, high, low_open, high_open), as a float."""
    return float(_checked(error, key, validation.number, value, **bounds))


def positive(error: type[InvalidSetting], key: str, value: Any) -> float:
    """A finite number > 0, as a float."""
    return float(_checked(error, key, validation.positive, value))


def integer(error: type[InvalidSetting], key: str, value: Any, *, minimum: int = 1, maximum: int | None = None) -> int:
    """A whole number in [minimum, maximum] (None: no upper bound; 2.0 is accepted as 2)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return _checked(error, key, validation.integer, value, minimum=minimum, maximum=maximum)


def probability(error: type[InvalidSetting], key: str, value: Any) -> float:
    """A number in the open interval (0, 1), e.g. delta, as a float."""
    return float(_checked(error, key, validation.probability, value))


def choice(error: type[InvalidSetting], key: str, value: Any, choices: Iterable) -> Any:
    """One of ``choices``."""
    return _checked(error, key, validation.choice, value, choices=choices)
