"""Type and range checks of settings, with one message form: ``"<name> must be <condition>, got <value!r>"``.

Each check returns the value as a plain Python number or raises ``error`` (ValueError by default; a module
with its own ValueError subclass passes it). Booleans are not numbers here; numpy scalars are, and come back
as ``float`` or ``int`` (so that what is kept serializes to JSON); Python ints and floats come back as given.
``note``, where given, explains the bound in parentheses after the condition. The message stays one line:
a value whose repr spans lines or exceeds `MAX_SHOWN` characters is shown by its type and a shortened repr.
"""

from __future__ import annotations

import math
import numbers

MAX_SHOWN = 80
"""Most characters of a bad value's repr that a message shows."""


def number(
    name: str,
    value,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    note: str = "",
    error: type[Exception] = ValueError,
) -> float:
    """``value``, a finite number within [low, high] (an open end with ``low_open`` / ``high_open``; None: no
    bound on that side)."""
    if low is None and high is None:
        condition = "a finite number"
    elif high is None:
        condition = f"a finite number {'>' if low_open else '>='} {_bound(low)}"
    elif low is None:
        condition = f"a finite number {'<' if high_open else '<='} {_bound(high)}"
    else:
        condition = f"in {'(' if low_open else '['}{_bound(low)}, {_bound(high)}{')' if high_open else ']'}"
    as_float = _float(value)
    if (
        as_float is None
        or not math.isfinite(as_float)
        or (low is not None and (as_float <= low if low_open else as_float < low))
        or (high is not None and (as_float >= high if high_open else as_float > high))
    ):
        raise error(_message(name, condition, note, value))
    return value if type(value) in (int, float) else as_float


def positive(
    name: str, value, *, maximum: float | None = None, note: str = "", error: type[Exception] = ValueError
) -> float:
    """``value``, a finite number > 0 (and <= ``maximum`` when given)."""
    return number(name, value, low=0, high=maximum, low_open=True, note=note, error=error)


def probability(
    name: str, value, *, zero: bool = False, one: bool = False, note: str = "", error: type[Exception] = ValueError
) -> float:
    """``value``, a number in (0, 1); ``zero`` / ``one`` admit that end."""
    return number(name, value, low=0, high=1, low_open=not zero, high_open=not one, note=note, error=error)


def integer(
    name: str,
    value,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    note: str = "",
    error: type[Exception] = ValueError,
) -> int:
    """``value`` as an int within [minimum, maximum] (None: no bound on that side). Floats are refused, even
    whole ones."""
    if minimum is not None and maximum is not None:
        condition = f"an integer in [{minimum}, {maximum}]"
    elif minimum is not None:
        condition = f"an integer >= {minimum}"
    elif maximum is not None:
        condition = f"an integer <= {maximum}"
    else:
        condition = "an integer"
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or (minimum is not None and value < minimum)
        or (maximum is not None and value > maximum)
    ):
        raise error(_message(name, condition, note, value))
    return int(value)


def choice(name: str, value, choices, *, note: str = "", error: type[Exception] = ValueError):
    """``value``, one of ``choices`` (compared with ==, except that True and False are not 1 and 0, and an
    unhashable value such as a list or an array, which == would compare elementwise, is none of them)."""
    choices = tuple(choices)
    if not _among(value, choices):
        raise error(_message(name, f"one of {', '.join(str(c) for c in choices)}", note, value))
    return value


def _among(value, choices: tuple) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return value in choices and not (isinstance(value, bool) and not any(c is value for c in choices))


def _float(value) -> float | None:
    """``value`` as a float, or None when it is not a real number (or a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    try:
        return float(value)
    except OverflowError:  # an int beyond float's range
        return math.inf


def _bound(bound: float) -> str:
    """A bound as ``:g`` prints it, or as its repr where ``:g`` would print another number (255.9999 as 256)."""
    text = f"{bound:g}"
    return text if float(text) == bound else repr(float(bound))


def _message(name: str, condition: str, note: str, value) -> str:
    return f"{name} must be {condition}{f' ({note})' if note else ''}, got {shown(value)}"


def shown(value) -> str:
    """``value``'s repr for a one-line message (`MAX_SHOWN` characters at most)."""
    try:
        text = repr(value)
    except ValueError:  # e.g. an int of more digits than Python converts to text
        return f"an {type(value).__name__} too large to show"
    if "\n" in text or len(text) > MAX_SHOWN:
        text = " ".join(text.split())
        text = (
            f"{type(value).__name__} {text[: MAX_SHOWN - 3]}..."
            if len(text) > MAX_SHOWN
            else f"{type(value).__name__} {text}"
        )
    return text
