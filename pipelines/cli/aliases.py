"""Old flag spellings kept for one release after a rename to the CLI's one glossary.

The glossary (one name per concept across commands; README, "Glossary"): ``--target-delta``,
``--num-microbatches``, ``--dp``, ``--epochs`` (total passes over the data) beside ``--local-epochs`` (a federated
client's passes over its own data each round), ``--sampling-probability`` (q). A command that spelled one
differently (``ppml epsilon``, ``noise`` and ``epochs``: ``--delta``, ``--microbatches`` and ``--sampling-rate``;
``ppml pipeline run``: ``--delta``, ``--private``; ``ppml federated run``: ``--epochs``) keeps the old spelling as
a hidden option that sets the same value, prints one warning line on stderr and raises a `DeprecationWarning` (an
error in ppml's tests, so no test leans on an old spelling); giving both spellings is a usage error naming the old
one."""

from __future__ import annotations

import functools
import warnings

import click
from click.core import ParameterSource

REMOVED_IN = "the next release"


def deprecated_alias(old: str, new: str, dest: str, **option_kwargs):
    """Decorator for a click command: ``old`` is a hidden alias of the option ``new`` (parameter ``dest``).

    ``option_kwargs`` (type, callback, is_flag) describe the old option as the new one; its value, when
    given, replaces ``dest``'s. A boolean flag pair is spelled as click spells it, e.g. ``--private/--no-private``.
    """
    hidden_dest = "deprecated_" + old.split("/")[0].lstrip("-").replace("-", "_")

    def decorate(fn):
        @functools.wraps(fn)
        def command(*args, **kwargs):
            value = kwargs.pop(hidden_dest)
            ctx = click.get_current_context()
            if ctx.get_parameter_source(hidden_dest) in (ParameterSource.DEFAULT, None):
                return fn(*args, **kwargs)
            if ctx.get_parameter_source(dest) not in (ParameterSource.DEFAULT, None):
                raise click.UsageError(f"{old}: is the old spelling of {new}; give {new} only")
            message = f"{old} is deprecated and goes in {REMOVED_IN}: use {new}"
            click.echo(f"warning: {message}", err=True)
            warnings.warn(message, DeprecationWarning, stacklevel=1)  # attributed to ppml: an error in its tests
            kwargs[dest] = value
            return fn(*args, **kwargs)

        return click.option(old, hidden_dest, hidden=True, **option_kwargs)(command)

    return decorate
