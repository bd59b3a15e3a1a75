"""A value and the bound it is checked against, as text that compares as the numbers do.

A check that prints both rounded to a few digits can show a failing value equal to its bound (``delta 1e-05 >
1e-05`` for 1e-5 plus a cut-off's 1e-11) or a passing one above it. `compared` widens both to the fewest
significant digits (or decimals) at which the printed numbers order as the values: equal only when equal. 17
significant digits always do, as they round-trip a float; so do 1074 decimals, a float's exact expansion.
"""

from __future__ import annotations

import math

MAX_DIGITS = 17
"""Significant digits at which every float prints as itself (round-trip), so the widening always ends."""
MAX_DECIMALS = 1074
"""Decimals at which every float prints exactly (the smallest subnormal is 2^-1074)."""


def compared(
    value: float, bound: float, *, digits: int = 4, bound_digits: int = 6, fixed: bool = False
) -> tuple[str, str]:
    """(value, bound) as text: ``value`` with at least ``digits`` significant digits, ``bound`` with at least
    ``bound_digits`` (``fixed``: that many decimals, as ``.2f``; else trailing zeros dropped, as ``g``), both
    widened together until the printed numbers compare as ``value`` and ``bound`` do. Infinities print as
    ``inf`` / ``-inf``."""
    value, bound = float(value), float(bound)  # numpy scalars compare to numpy booleans, which do not subtract
    kind, most = ("f", MAX_DECIMALS) if fixed else ("g", MAX_DIGITS)
    order = _order(value, bound)
    extra = 0
    while True:
        shown = (
            _text(value, min(digits + extra, most), kind),
            _text(bound, min(bound_digits + extra, most), kind),
        )
        if _order(float(shown[0]), float(shown[1])) == order or min(digits, bound_digits) + extra >= most:
            return shown
        extra += 1


def _order(a: float, b: float) -> int:
    return (a > b) - (a < b)


def _text(number: float, digits: int, kind: str) -> str:
    if math.isinf(number):
        return "inf" if number > 0 else "-inf"
    return f"{number:.{digits}{kind}}"
