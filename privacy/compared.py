"""A value and the bound it is checked against, as text that compares as the numbers do.

A check that prints both rounded to a few digits can show a failing value equal to its bound (``delta 1e-05 >
1e-05`` for 1e-5 plus a cut-off's 1e-11) or a passing one above it. `compared` widens both to the fewest
significant digits at which the printed numbers order as the values (equal only when equal; 17 digits always
do, as they round-trip a float).
"""

from __future__ import annotations

import math

MAX_DIGITS = 17
"""Significant digits at which every float prints as itself (round-trip), so the widening always ends."""


def compared(value: float, bound: float, *, digits: int = 4, bound_digits: int = 6) -> tuple[str, str]:
    """(value, bound) as text: ``value`` with at least ``digits`` significant digits, ``bound`` with at least
    ``bound_digits`` (trailing zeros dropped), both widened together until the printed numbers compare as
    ``value`` and ``bound`` do. Infinities print as ``inf`` / ``-inf``."""
    order = _order(value, bound)
    for extra in range(MAX_DIGITS):
        shown = _text(value, min(digits + extra, MAX_DIGITS)), _text(bound, min(bound_digits + extra, MAX_DIGITS))
        if _order(float(shown[0]), float(shown[1])) == order:
            break
    return shown


def _order(a: float, b: float) -> int:
    return (a > b) - (a < b)


def _text(number: float, digits: int) -> str:
    if math.isinf(number):
        return "inf" if number > 0 else "-inf"
    return f"{number:.{digits}g}"
