"""The preprocessing part of an artifact's privacy account, read back from its records.

`PreprocessingAccount` gathers the `MechanismRecord`s and the `CoverageRecord` of one preprocessing
function and answers what a trainer composing its own events needs: the dp-accounting events of the
releases under the trainer's adjacency and privacy unit, the delta that thresholding adds, and every
reason the preprocessing is not covered by an epsilon (statistics no private mechanism or declaration
covers, exact statistics, seeded noise).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable

from dp_accounting import dp_event

from privacy import validation
from privacy.accounting import Adjacency
from privacy.preprocessing.records import (
    EXACT,
    CoverageRecord,
    MechanismRecord,
    PublicDeclaration,
    RecordError,
    ReleaseRecord,
    from_text,
)


@dataclasses.dataclass(frozen=True)
class PreprocessingAccount:
    """What a preprocessing function released.

    Attributes:
      mechanisms: its releases, sorted by name.
      coverage: its coverage record, or None when it had none (it did not use ppml's private analyzers).
      unaccounted: statistics found in the artifact that no record accounts for (descriptions), set by
        whoever inspected the artifact when there is no coverage record.
      releases: {release name: the noisy values it published}, where recorded (informative).
    """

    mechanisms: tuple[MechanismRecord, ...] = ()
    coverage: CoverageRecord | None = None
    unaccounted: tuple[str, ...] = ()
    releases: dict[str, tuple[float, ...]] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_texts(cls, texts: Iterable[str | bytes], unaccounted: Iterable[str] = ()) -> "PreprocessingAccount":
        """The account of the records in ``texts`` (each record once; at most one coverage record)."""
        mechanisms, coverage, releases = {}, [], {}
        for text in sorted(set(t.decode("utf-8") if isinstance(t, bytes) else t for t in texts)):
            record = from_text(text)
            if isinstance(record, (MechanismRecord, ReleaseRecord)):
                found = mechanisms if isinstance(record, MechanismRecord) else releases
                if record.name in found:
                    raise RecordError(f"two different records are both named {record.name!r}")
                found[record.name] = record if isinstance(record, MechanismRecord) else record.values
            elif isinstance(record, CoverageRecord):
                coverage.append(record)
        if len(coverage) > 1:
            raise RecordError(f"{len(coverage)} coverage records: the artifact mixes several preprocessing functions")
        return cls(
            mechanisms=tuple(mechanisms[k] for k in sorted(mechanisms)),
            coverage=coverage[0] if coverage else None,
            unaccounted=tuple(unaccounted),
            releases={k: releases[k] for k in sorted(releases)},
        )

    @property
    def declarations(self) -> tuple[PublicDeclaration, ...]:
        return () if self.coverage is None else self.coverage.public

    def events(self, adjacency: Adjacency | str, group_size: int = 1) -> list[dp_event.DpEvent]:
        """The releases' events (by name) for neighbours under ``adjacency`` differing in ``group_size`` records."""
        return [m.event(adjacency, group_size) for m in self.mechanisms]

    def additive_delta(self, adjacency: Adjacency | str, group_size: int = 1) -> float:
        """The sum of the releases' additive deltas (see `privacy.preprocessing.partition_selection`)."""
        return sum(m.additive_delta(adjacency, group_size) for m in self.mechanisms)

    def problems(self) -> list[str]:
        """Every reason the preprocessing is not covered by an epsilon; empty when it is."""
        problems = list(self.unaccounted)
        if self.coverage is not None:
            problems += [
                f"{u['analyzer']} (output {u['output']}) computes a statistic of the training data without "
                f"privacy; use {u['replacement']}"
                for u in self.coverage.uncovered
            ]
            missing = sorted(set(self.coverage.private) - {m.name for m in self.mechanisms})
            problems += [f"the private release {name!r} is listed but its record is missing" for name in missing]
        elif self.mechanisms:
            problems.append(
                "the preprocessing has private releases but no coverage record, so its other statistics "
                "are unknown; build the preprocessing_fn with pipelines.transform.private_preprocessing_fn"
            )
        problems += [
            f"the public declaration {d.name!r} covers tft analyzer outputs {list(d.analyzers)}: exact "
            f"statistics of the training split (declare_public takes constant values only)"
            for d in self.declarations
            if d.analyzers
        ]
        problems += [
            f"{m.name} ({m.analyzer}) computed exact statistics (the Transform ran with private: false)"
            for m in self.mechanisms
            if m.mechanism == EXACT
        ]
        problems += [
            f"{m.name} ({m.analyzer}) drew its noise from a seed (for tests only: anyone who knows the seed "
            f"can remove it)"
            for m in self.mechanisms
            if m.seeded
        ]
        return problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "mechanisms": [m.to_dict() for m in self.mechanisms],
            "coverage": None if self.coverage is None else self.coverage.to_dict(),
            "unaccounted": list(self.unaccounted),
            "releases": {name: list(values) for name, values in self.releases.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PreprocessingAccount":
        try:
            return cls(
                mechanisms=tuple(MechanismRecord.from_dict(m) for m in data["mechanisms"]),
                coverage=None if data.get("coverage") is None else CoverageRecord.from_dict(data["coverage"]),
                unaccounted=tuple(data.get("unaccounted") or ()),
                releases={k: tuple(float(v) for v in vs) for k, vs in (data.get("releases") or {}).items()},
            )
        except (KeyError, TypeError, ValueError) as err:
            raise RecordError(f"malformed preprocessing account: {err}") from None


@dataclasses.dataclass(frozen=True)
class PreprocessingPart:
    """The preprocessing part of an artifact's account: its releases, for one trainer's neighbours.

    Attributes:
      account: what the preprocessing released.
      adjacency: the trainer's neighbouring relation (its semantics: add-remove or replace-one).
      group_size: records per privacy unit (1 for example-level DP; a client's largest number of
        records for client-level DP).
    """

    account: PreprocessingAccount
    adjacency: Adjacency
    group_size: int = 1

    def __post_init__(self):
        object.__setattr__(self, "adjacency", Adjacency(self.adjacency))
        object.__setattr__(
            self, "group_size", validation.integer("group_size", self.group_size, minimum=1, error=RecordError)
        )

    def events(self) -> list[dp_event.DpEvent]:
        """Every release's event (an exact release is a `NonPrivateDpEvent`: infinite epsilon)."""
        return self.account.events(self.adjacency, self.group_size)

    def private_events(self) -> list[dp_event.DpEvent]:
        """The events of the noisy releases only (what a trainer calibrates its noise against)."""
        return [e for e in self.events() if not isinstance(e, dp_event.NonPrivateDpEvent)]

    def additive_delta(self) -> float:
        return self.account.additive_delta(self.adjacency, self.group_size)

    def to_dict(self) -> dict[str, Any]:
        return {"account": self.account.to_dict(), "adjacency": self.adjacency.value, "group_size": self.group_size}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PreprocessingPart":
        try:
            return cls(
                account=PreprocessingAccount.from_dict(data["account"]),
                adjacency=Adjacency(data["adjacency"]),
                group_size=int(data.get("group_size", 1)),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise RecordError(f"malformed preprocessing part: {err}") from None
