"""JSON form of dp-accounting's DpEvents, for ledgers and budget state.

An event is written as ``{"class_name": "<ClassName>", <field>: <value>, ...}`` with nested events
as nested objects. Only classes defined in ``dp_accounting.dp_event`` are read back, so a
ledger file cannot name arbitrary code.
"""

from __future__ import annotations

from typing import Any

import attr
from dp_accounting import dp_event

_CLASS_KEY = "class_name"


def event_to_json(event: dp_event.DpEvent) -> dict[str, Any]:
    """Returns a JSON-serialisable dict describing ``event``."""
    if not isinstance(event, dp_event.DpEvent):
        raise TypeError(f"expected a dp_accounting DpEvent, got {type(event).__name__}")
    out: dict[str, Any] = {_CLASS_KEY: type(event).__name__}
    for field in attr.fields(type(event)):
        out[field.name] = _value_to_json(getattr(event, field.name))
    return out


def event_from_json(data: dict[str, Any]) -> dp_event.DpEvent:
    """Inverse of :func:`event_to_json`; raises ValueError on anything else."""
    if not isinstance(data, dict) or _CLASS_KEY not in data:
        raise ValueError(f"not a DpEvent object: {data!r}")
    name = data[_CLASS_KEY]
    cls = getattr(dp_event, str(name), None)
    if not (isinstance(cls, type) and issubclass(cls, dp_event.DpEvent)):
        raise ValueError(f"unknown DpEvent class {name!r}")
    kwargs = {k: _value_from_json(v) for k, v in data.items() if k != _CLASS_KEY}
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ValueError(f"bad fields for {name}: {err}") from None


def _value_to_json(value: Any) -> Any:
    if isinstance(value, dp_event.DpEvent):
        return event_to_json(value)
    if isinstance(value, (list, tuple)):
        return [_value_to_json(v) for v in value]
    return value


def _value_from_json(value: Any) -> Any:
    if isinstance(value, dict):
        return event_from_json(value)
    if isinstance(value, list):
        return [_value_from_json(v) for v in value]
    return value
