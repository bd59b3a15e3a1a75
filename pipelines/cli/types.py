"""Parameter types shared by the `ppml` commands."""

from __future__ import annotations

import math

import click


class FiniteFloatRange(click.FloatRange):
    """`click.FloatRange` that also refuses NaN, which passes every range comparison, and infinities."""

    name = "finite float range"

    def convert(self, value, param, ctx):
        value = super().convert(value, param, ctx)
        if not math.isfinite(value):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return value
