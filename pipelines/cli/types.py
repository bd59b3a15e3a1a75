"""Parameter types and checks shared by the `ppml` commands."""

from __future__ import annotations

import math
from typing import Callable

import click


def check(option: str, validate: Callable, value, **bounds):
    """``validate(option, value, **bounds)`` (a `privacy.validation` function), its refusal turned into click's
    one-line usage error naming ``option`` (exit 2); None passes."""
    if value is not None:
        try:
            validate(option, value, **bounds)
        except ValueError as err:  # "--x must be ..., got v": click puts the option's name first itself
            raise click.BadParameter(str(err).removeprefix(f"{option} "), param_hint=f"'{option}'") from None
    return value


def checked(option: str, validate: Callable, **bounds) -> Callable:
    """A click callback that runs `check` on the option's value."""
    return lambda ctx, param, value: check(option, validate, value, **bounds)


class FiniteFloatRange(click.FloatRange):
    """`click.FloatRange` that also refuses NaN, which passes every range comparison, and infinities."""

    name = "finite float range"

    def convert(self, value, param, ctx):
        value = super().convert(value, param, ctx)
        if not math.isfinite(value):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return value


class TruncatedBatchSize(click.ParamType):
    """``--truncated-batch-size``: an integer K or "default" (`privacy.accounting.truncation.DEFAULT`); K's bounds
    against n and B are checked where they are known."""

    name = "K|default"

    def get_metavar(self, param, ctx=None):
        """``K|default`` as typed (click would upper-case the name, a spelling `convert` refuses)."""
        return self.name

    def convert(self, value, param, ctx):
        from privacy.accounting import truncation

        if isinstance(value, int) or value == truncation.DEFAULT:
            return value
        try:
            return int(value)
        except ValueError:
            self.fail(f"must be an integer or {truncation.DEFAULT!r}, got {value!r}", param, ctx)
