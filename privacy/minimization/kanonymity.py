"""k-anonymity and l-diversity risk report for declared quasi-identifiers, and Mondrian generalization to reach k.

k-anonymity is no privacy guarantee: it says nothing about what an adversary learns by linking the released
records with other data (or about the sensitive values of a homogeneous class), and it does not compose. Only
differential privacy (DP-SGD in `privacy.keras`, with the accounting in `privacy.accounting`) bounds what one
record changes in a released artifact.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
from typing import Any, Mapping, Sequence

DISCLAIMER = (
    "k-anonymity is no privacy guarantee: records stay linkable to other data sets on attributes not "
    "declared as quasi-identifiers, a class whose sensitive values agree reveals them (l-diversity only "
    "counts distinct values), and releases do not compose. Use differential privacy (ppml's DP "
    "trainers and their epsilon reports) for a guarantee."
)
SMALLEST_CLASSES = 5
DEFAULT_TARGET_K = 5


@dataclasses.dataclass(frozen=True)
class KAnonymityReport:
    """Risk figures of a table for its quasi-identifiers (class sizes only: no quasi-identifier value).

    Attributes:
        quasi_identifiers: the declared columns.
        rows: records counted.
        classes: equivalence classes (records with equal quasi-identifiers).
        k: size of the smallest class (0 for no records).
        smallest_classes: the sizes of the `SMALLEST_CLASSES` smallest classes, ascending.
        target_k: the k asked for.
        rows_below_target: records in classes smaller than ``target_k``; ``share_below_target`` their share.
        sensitive: the sensitive column of l-diversity, or None; ``l`` the fewest distinct sensitive values in a
            class (distinct l-diversity), None without a sensitive column.
    """

    quasi_identifiers: tuple
    rows: int
    classes: int
    k: int
    smallest_classes: tuple
    target_k: int
    rows_below_target: int
    share_below_target: float
    sensitive: str | None = None
    l: int | None = None  # noqa: E741 (l-diversity's own name)

    @property
    def meets_target(self) -> bool:
        return self.rows == 0 or self.k >= self.target_k

    def to_dict(self) -> dict:
        return dict(
            dataclasses.asdict(self),
            quasi_identifiers=list(self.quasi_identifiers),
            smallest_classes=list(self.smallest_classes),
            meets_target=self.meets_target,
            disclaimer=DISCLAIMER,
        )


@dataclasses.dataclass(frozen=True)
class KAnonymitySettings:
    """Attributes: quasi_identifiers (columns), target_k (the k to reach), sensitive (column for distinct
    l-diversity, or None)."""

    quasi_identifiers: tuple
    target_k: int = DEFAULT_TARGET_K
    sensitive: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "quasi_identifiers", tuple(str(q) for q in self.quasi_identifiers))
        if not self.quasi_identifiers:
            raise ValueError("k-anonymity needs at least one quasi-identifier column")
        if isinstance(self.target_k, bool) or not isinstance(self.target_k, int) or self.target_k < 1:
            raise ValueError(f"target k {self.target_k!r} is not an integer >= 1")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "KAnonymitySettings":
        return cls(**json.loads(text))


class _Missing:
    """The one value of a missing quasi-identifier or sensitive value (absent feature, None, NaN, empty feature)."""

    def __repr__(self) -> str:
        return MISSING_LABEL


MISSING = _Missing()
MISSING_LABEL = "missing"
"""How a missing value reads in a generalized label."""


def _normalized(value: Any) -> Any:
    """``value``, or `MISSING` for None, NaN and an empty feature ``(kind, ())`` (NaN != NaN would make each its
    own class)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, tuple) and len(value) == 2 and not value[1]:
        return MISSING
    return value


def _check_columns(records: Sequence[Mapping[str, Any]], columns: Sequence[str], what: str) -> None:
    """Raises for a column that no record has (a record lacking it has a missing value there)."""
    if not records:
        return
    seen = set().union(*(r.keys() for r in records))
    absent = [c for c in columns if c not in seen]
    if absent:
        raise ValueError(f"{what} {absent} are in no record (columns: {sorted(seen)})")


def _key(record: Mapping[str, Any], quasi_identifiers: Sequence[str]) -> tuple:
    return tuple(_normalized(record.get(q)) for q in quasi_identifiers)


def kanonymity_report(
    records: Sequence[Mapping[str, Any]],
    quasi_identifiers: Sequence[str],
    *,
    target_k: int = DEFAULT_TARGET_K,
    sensitive: str | None = None,
) -> KAnonymityReport:
    """k, l and the classes below ``target_k`` of ``records`` for ``quasi_identifiers``.

    Raises:
        ValueError: no quasi-identifier, ``target_k`` < 1, or a column that no record has (named). A record
            that lacks a column, or holds None, NaN or an empty feature there, has the value `MISSING`: all
            missing values of a column are equal.
    """
    quasi_identifiers = tuple(quasi_identifiers)
    if not quasi_identifiers:
        raise ValueError("k-anonymity needs at least one quasi-identifier column")
    if int(target_k) != target_k or target_k < 1:
        raise ValueError(f"target k {target_k!r} is not an integer >= 1")
    _check_columns(records, quasi_identifiers, "quasi-identifier columns")
    sizes = collections.Counter(_key(r, quasi_identifiers) for r in records)
    values = collections.defaultdict(set)
    if sensitive is not None:
        _check_columns(records, [sensitive], "sensitive column")
        for r in records:
            values[_key(r, quasi_identifiers)].add(_normalized(r.get(sensitive)))
    ordered = sorted(sizes.values())
    below = sum(n for n in ordered if n < target_k)
    return KAnonymityReport(
        quasi_identifiers=quasi_identifiers,
        rows=len(records),
        classes=len(sizes),
        k=ordered[0] if ordered else 0,
        smallest_classes=tuple(ordered[:SMALLEST_CLASSES]),
        target_k=int(target_k),
        rows_below_target=below,
        share_below_target=below / len(records) if records else 0.0,
        sensitive=sensitive,
        l=min((len(v) for v in values.values()), default=0) if sensitive is not None else None,
    )


def _is_numeric(values) -> bool:
    """Whether every non-missing value is a number (a column of missing values only is not)."""
    present = [v for v in values if v is not MISSING]
    return bool(present) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)


def _number(value) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


def _generalized(values: list, numeric: bool) -> str:
    """A partition's label: ``[lo, hi]`` (or the one number) for numbers, ``a|b`` for others; `MISSING_LABEL`
    stands for missing values (``missing|[lo, hi]`` when some are)."""
    present = [v for v in values if v is not MISSING]
    labels = [MISSING_LABEL] if len(present) < len(values) else []
    if numeric and present:
        lo, hi = min(present), max(present)
        labels.append(_number(lo) if lo == hi else f"[{_number(lo)}, {_number(hi)}]")
    else:
        labels += sorted({str(v) for v in present})
    return "|".join(labels)


def mondrian_generalize(records: Sequence[Mapping[str, Any]], quasi_identifiers: Sequence[str], k: int) -> list:
    """Copies of ``records`` whose quasi-identifiers are generalized so that every class has at least ``k`` records.

    Greedy strict Mondrian (LeFevre et al. 2006): a partition is split at the median of the quasi-identifier with
    the widest range (numeric columns by value, others by their sorted distinct values; missing values rank first),
    as long as both halves keep ``k`` records; each final partition's values become a range ``[lo, hi]`` (numbers)
    or a set ``a|b`` (others), with ``missing`` for missing values. With fewer than ``k`` records every record is
    suppressed (an empty list is returned). Record order is kept.

    Raises:
        ValueError: as `kanonymity_report`.
    """
    quasi_identifiers = tuple(quasi_identifiers)
    kanonymity_report(records, quasi_identifiers, target_k=k)  # validates
    if len(records) < k:
        return []
    values = {q: [_normalized(r.get(q)) for r in records] for q in quasi_identifiers}
    numeric = {q: _is_numeric(values[q]) for q in quasi_identifiers}
    ranks = {}
    for q in quasi_identifiers:
        present = [v for v in values[q] if v is not MISSING]
        if numeric[q]:
            below = min(present) - 1  # missing values rank first
            ranks[q] = [below if v is MISSING else v for v in values[q]]
        else:
            order = {v: i + 1 for i, v in enumerate(sorted(set(present), key=str))}
            ranks[q] = [0 if v is MISSING else order[v] for v in values[q]]

    def span(q, part):
        return max(ranks[q][i] for i in part) - min(ranks[q][i] for i in part)

    full = {q: span(q, range(len(records))) or 1 for q in quasi_identifiers}
    done, todo = [], [list(range(len(records)))]
    while todo:
        part = todo.pop()
        for _, q in sorted(((span(q, part) / full[q], q) for q in quasi_identifiers), reverse=True):
            ranked = sorted(part, key=lambda i, q=q: ranks[q][i])
            median = ranks[q][ranked[len(ranked) // 2]]
            left = [i for i in ranked if ranks[q][i] < median]
            right = [i for i in ranked if ranks[q][i] >= median]
            if len(left) >= k and len(right) >= k:
                todo += [left, right]
                break
        else:
            done.append(part)
    covered = sorted(i for part in done for i in part)
    if covered != list(range(len(records))):
        raise AssertionError(f"Mondrian partitions cover {len(covered)} of {len(records)} records")
    out = [dict(r) for r in records]
    for part in done:
        for q in quasi_identifiers:
            label = _generalized([values[q][i] for i in part], numeric[q])
            for i in part:
                out[i][q] = label
    return out
