"""Frozen-dataclass fields renamed to the glossary's names (README, "Glossary"), their old names kept for one
release: the old keyword (an ``InitVar``) sets the new field, and reading the old attribute gives the new one's
value, each with a DeprecationWarning; giving both names is refused."""

from __future__ import annotations

import warnings


def take_old_keyword(obj, new: str, old: str, old_value, default) -> None:
    """In ``__post_init__``: sets ``obj.<new>`` to ``old_value`` when the old keyword was given (a ValueError when
    ``new`` was given too, i.e. is not None), else leaves it; a ``new`` still None becomes ``default``."""
    value = getattr(obj, new)
    if old_value is not None:
        if value is not None:
            raise ValueError(f"{old} is the old name of {new}; give {new} only")
        warnings.warn(f"{type(obj).__name__}({old}=...) is deprecated: use {new}", DeprecationWarning, stacklevel=4)
        value = old_value
    object.__setattr__(obj, new, default if value is None else value)


def old_attribute(cls: type, old: str, new: str) -> type:
    """Makes ``instance.<old>`` read ``instance.<new>`` with a DeprecationWarning (the ``InitVar``'s default would
    otherwise stay a class attribute, and an old read would get None silently). Returns ``cls``."""

    def read(self):
        warnings.warn(f"{cls.__name__}.{old} is deprecated: use {new}", DeprecationWarning, stacklevel=2)
        return getattr(self, new)

    setattr(cls, old, property(read, doc=f"The old name of `{new}` (deprecated)."))
    return cls
