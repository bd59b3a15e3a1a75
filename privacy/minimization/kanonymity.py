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
from typing import Any, Mapping, Sequence

DISCLAIMER = ("k-anonymity is no privacy guarantee: records stay linkable to other data sets on attributes not "
              "declared as quasi-identifiers, a class whose sensitive values agree reveals them (l-diversity only "
              "counts distinct values), and releases do not compose. Use differential privacy (ppml's DP "
              "trainers and their epsilon reports) for a guarantee.")
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
    l: int | None = None

    @property
    def meets_target(self) -> bool:
        return self.rows == 0 or self.k >= self.target_k

    def to_dict(self) -> dict:
        return dict(dataclasses.asdict(self), quasi_identifiers=list(self.quasi_identifiers),
                    smallest_classes=list(self.smallest_classes), meets_target=self.meets_target,
                    disclaimer=DISCLAIMER)


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


def _key(record: Mapping[str, Any], quasi_identifiers: Sequence[str]) -> tuple:
    missing = [q for q in quasi_identifiers if q not in record]
    if missing:
        raise ValueError(f"quasi-identifier columns {missing} are not in the records (have {sorted(record)})")
    return tuple(record[q] for q in quasi_identifiers)


def kanonymity_report(records: Sequence[Mapping[str, Any]], quasi_identifiers: Sequence[str], *,
                      target_k: int = DEFAULT_TARGET_K, sensitive: str | None = None) -> KAnonymityReport:
    """k, l and the classes below ``target_k`` of ``records`` for ``quasi_identifiers``.

    Raises:
        ValueError: no quasi-identifier, ``target_k`` < 1, or a column missing from a record (named).
    """
    quasi_identifiers = tuple(quasi_identifiers)
    if not quasi_identifiers:
        raise ValueError("k-anonymity needs at least one quasi-identifier column")
    if int(target_k) != target_k or target_k < 1:
        raise ValueError(f"target k {target_k!r} is not an integer >= 1")
    sizes = collections.Counter(_key(r, quasi_identifiers) for r in records)
    values = collections.defaultdict(set)
    if sensitive is not None:
        for r in records:
            if sensitive not in r:
                raise ValueError(f"sensitive column {sensitive!r} is not in the records (have {sorted(r)})")
            values[_key(r, quasi_identifiers)].add(r[sensitive])
    ordered = sorted(sizes.values())
    below = sum(n for n in ordered if n < target_k)
    return KAnonymityReport(
        quasi_identifiers=quasi_identifiers, rows=len(records), classes=len(sizes), k=ordered[0] if ordered else 0,
        smallest_classes=tuple(ordered[:SMALLEST_CLASSES]), target_k=int(target_k), rows_below_target=below,
        share_below_target=below / len(records) if records else 0.0, sensitive=sensitive,
        l=min((len(v) for v in values.values()), default=0) if sensitive is not None else None)


def _is_numeric(values) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _generalized(values: list, numeric: bool) -> str:
    if numeric:
        lo, hi = min(values), max(values)
        return f"{lo:g}" if lo == hi else f"{lo:g}-{hi:g}"
    return "|".join(sorted({str(v) for v in values}))


def mondrian_generalize(records: Sequence[Mapping[str, Any]], quasi_identifiers: Sequence[str], k: int) -> list:
    """Copies of ``records`` whose quasi-identifiers are generalized so that every class has at least ``k`` records.

    Greedy strict Mondrian (LeFevre et al. 2006): a partition is split at the median of the quasi-identifier with
    the widest range (numeric columns by value, others by their sorted distinct values), as long as both halves
    keep ``k`` records; each final partition's values become a range ``lo-hi`` (numbers) or a set ``a|b``
    (others). With fewer than ``k`` records every record is suppressed (an empty list is returned). Record order
    is kept.

    Raises:
        ValueError: as `kanonymity_report`.
    """
    quasi_identifiers = tuple(quasi_identifiers)
    kanonymity_report(records, quasi_identifiers, target_k=k)   # validates
    if len(records) < k:
        return []
    numeric = {q: _is_numeric([r[q] for r in records]) for q in quasi_identifiers}
    order = {q: {v: i for i, v in enumerate(sorted({r[q] for r in records}, key=str))}
             for q in quasi_identifiers if not numeric[q]}

    def rank(q, record):
        return record[q] if numeric[q] else order[q][record[q]]

    full = {q: (max(rank(q, r) for r in records) - min(rank(q, r) for r in records)) or 1 for q in quasi_identifiers}
    done, todo = [], [list(range(len(records)))]
    while todo:
        part = todo.pop()
        spans = sorted(((max(rank(q, records[i]) for i in part) - min(rank(q, records[i]) for i in part)) / full[q], q)
                       for q in quasi_identifiers)
        for _, q in reversed(spans):
            ranked = sorted(part, key=lambda i, q=q: rank(q, records[i]))
            median = rank(q, records[ranked[len(ranked) // 2]])
            left = [i for i in ranked if rank(q, records[i]) < median]
            right = [i for i in ranked if rank(q, records[i]) >= median]
            if len(left) >= k and len(right) >= k:
                todo += [left, right]
                break
        else:
            done.append(part)
    out = [dict(r) for r in records]
    for part in done:
        for q in quasi_identifiers:
            label = _generalized([records[i][q] for i in part], numeric[q])
            for i in part:
                out[i][q] = label
    return out
