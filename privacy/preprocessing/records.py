"""What the preprocessing released, as records that travel inside the artifact.

A `MechanismRecord` describes one release: the analyzer, the mechanism and its public parameters
(bounds, grid, threshold), each noised block's sensitivity and noise, where the noise came from and the
budget share, and a `ReleaseRecord` the noisy values it released. A `PublicDeclaration` records
constants a pipeline author states are public, with the reason. A `CoverageRecord` says, for a whole
preprocessing function, how many statistics it computed from the data and which of them no private
mechanism or declaration covers.

Records are written as text, `RECORD_PREFIX` followed by JSON, so that they can be stored as string
constants in a graph and found again in any copy of it. Epsilon is never read from a record: the
consumer derives the dp-accounting events from the sensitivities and noise (`MechanismRecord.event`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from privacy import validation
from privacy.accounting import Adjacency
from privacy.preprocessing import partition_selection
from privacy.preprocessing.gaussian import Component, gaussian_event, noise_multiplier_of
from privacy.preprocessing.noise import SEEDED

RECORD_PREFIX = "ppml.preprocessing/1:"
GAUSSIAN_SUMS = "gaussian-sums"
TREE_HISTOGRAM = "gaussian-tree-histogram"
GAUSSIAN_THRESHOLDING = "gaussian-thresholding"
EXACT = "exact"
"""Computed without noise (a non-private pipeline's preprocessing): no epsilon covers it."""
MECHANISMS = (GAUSSIAN_SUMS, TREE_HISTOGRAM, GAUSSIAN_THRESHOLDING, EXACT)


class RecordError(ValueError):
    """A record is malformed, or cannot be accounted as asked."""


@dataclasses.dataclass(frozen=True)
class MechanismRecord:
    """One private (or exact) release of the preprocessing.

    Attributes:
      name: unique within the preprocessing function, e.g. 'mean_radius/scale_to_z_score'.
      analyzer: what the author called, e.g. 'scale_to_z_score'.
      mechanism: one of `MECHANISMS`.
      adjacency: the neighbouring relation the sensitivities are for.
      components: the noised blocks (sensitivity, noise std).
      parameters: public parameters (bounds, grid, threshold, ...).
      noise: where the noise came from (`privacy.preprocessing.noise`), or 'none'.
      share: the fraction of the preprocessing budget it was given.
    """

    name: str
    analyzer: str
    mechanism: str
    adjacency: str
    components: tuple[Component, ...]
    parameters: dict[str, Any]
    noise: str
    share: float | None = None

    def __post_init__(self):
        if self.mechanism not in MECHANISMS:
            raise RecordError(f"record {self.name!r}: unknown mechanism {self.mechanism!r}")
        Adjacency(self.adjacency)

    @property
    def noise_multiplier(self) -> float:
        return 0.0 if self.mechanism == EXACT else noise_multiplier_of(self.components)

    @property
    def seeded(self) -> bool:
        return self.noise == SEEDED

    def event(self, adjacency: Adjacency | str, group_size: int = 1):
        """The dp-accounting event of this release for neighbours under ``adjacency`` that differ in
        ``group_size`` records (a client's records), see `group_factor`."""
        factor = group_factor(self.adjacency, adjacency, group_size)
        multiplier = self.noise_multiplier
        return gaussian_event(multiplier if multiplier in (0.0, math.inf) else multiplier / factor)

    def additive_delta(self, adjacency: Adjacency | str, group_size: int = 1) -> float:
        """The delta this release adds on top of its event's (thresholded partition selection only)."""
        if self.mechanism != GAUSSIAN_THRESHOLDING:
            return 0.0
        if Adjacency(adjacency) is not Adjacency.ADD_REMOVE:
            raise RecordError(
                f"record {self.name!r}: a private vocabulary is analysed under add-remove adjacency "
                f"only, not {Adjacency(adjacency).value}"
            )
        p = self.parameters
        return partition_selection.additive_delta(
            threshold=p["threshold"],
            noise_std=p["noise_std"],
            max_tokens_per_record=p["max_tokens_per_record"],
            group_size=group_size,
        )

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["components"] = [c.to_dict() for c in self.components]
        return {"kind": "mechanism", **out}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MechanismRecord":
        try:
            fields = {k: v for k, v in data.items() if k != "kind"}
            fields["components"] = tuple(Component(**c) for c in fields["components"])
            return cls(**fields)
        except (KeyError, TypeError, ValueError) as err:
            raise RecordError(f"malformed mechanism record: {err}") from None


@dataclasses.dataclass(frozen=True)
class ReleaseRecord:
    """The noisy values one release published (its `MechanismRecord` has the same name): for mean and
    variance the noisy [count, sum, sum of squares], for quantiles the noisy counts of every tree node."""

    name: str
    values: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "release", "name": self.name, "values": list(self.values)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ReleaseRecord":
        try:
            return cls(name=str(data["name"]), values=tuple(float(v) for v in data["values"]))
        except (KeyError, TypeError, ValueError) as err:
            raise RecordError(f"malformed release record: {err}") from None


@dataclasses.dataclass(frozen=True)
class PublicDeclaration:
    """Constants a pipeline author declares public (domain knowledge, a public data set).

    Attributes:
      name: what is declared, e.g. 'age/bounds'.
      reason: why it does not depend on the private data.
      value: the constants (JSON), when they are known when declared.
      analyzers: analyzer outputs the declaration covers (their graph names): only in graphs built before
        `declare_public` took constants only, and then a problem of the account.
    """

    name: str
    reason: str
    value: Any = None
    analyzers: tuple[str, ...] = ()

    def __post_init__(self):
        if not isinstance(self.reason, str) or not self.reason.strip():
            raise RecordError(
                f"public declaration {self.name!r}: a reason is required (why it does not depend on the private data)"
            )

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "public", **dataclasses.asdict(self), "analyzers": list(self.analyzers)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PublicDeclaration":
        try:
            return cls(
                name=data["name"],
                reason=data["reason"],
                value=data.get("value"),
                analyzers=tuple(data.get("analyzers") or ()),
            )
        except (KeyError, TypeError) as err:
            raise RecordError(f"malformed public declaration: {err}") from None


@dataclasses.dataclass(frozen=True)
class CoverageRecord:
    """Which statistics one preprocessing function computed from the data, and what covers each.

    Attributes:
      analyzer_outputs: how many analyzer outputs (statistics of the data) the function has.
      private: names of the `MechanismRecord`s among them.
      public: the declarations (covering constants or analyzer outputs).
      uncovered: each analyzer output nothing covers: {'output', 'analyzer', 'replacement'}.
      budget: the preprocessing budget it was configured with (epsilon, delta, adjacency), or None
        when its analyzers computed exact statistics.
    """

    analyzer_outputs: int
    private: tuple[str, ...] = ()
    public: tuple[PublicDeclaration, ...] = ()
    uncovered: tuple[dict[str, str], ...] = ()
    budget: dict[str, Any] | None = None

    def public_outputs(self) -> set[str]:
        """The analyzer outputs the declarations cover."""
        return {name for d in self.public for name in d.analyzers}

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "coverage",
            "analyzer_outputs": self.analyzer_outputs,
            "private": list(self.private),
            "public": [d.to_dict() for d in self.public],
            "uncovered": [dict(u) for u in self.uncovered],
            "budget": self.budget,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CoverageRecord":
        try:
            return cls(
                analyzer_outputs=int(data["analyzer_outputs"]),
                private=tuple(data["private"]),
                public=tuple(PublicDeclaration.from_dict(d) for d in data["public"]),
                uncovered=tuple(dict(u) for u in data["uncovered"]),
                budget=data.get("budget"),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise RecordError(f"malformed coverage record: {err}") from None


def to_text(record) -> str:
    """``RECORD_PREFIX`` + the record's JSON (keys sorted, so equal records have equal texts)."""
    return RECORD_PREFIX + json.dumps(record.to_dict(), sort_keys=True, allow_nan=False)


def from_text(text: str | bytes):
    """A record from its text (see `to_text`)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    if not text.startswith(RECORD_PREFIX):
        raise RecordError(f"not a ppml preprocessing record: {text[:40]!r}")
    try:
        data = json.loads(text[len(RECORD_PREFIX) :])
    except json.JSONDecodeError as err:
        raise RecordError(f"malformed preprocessing record: {err}") from None
    kinds = {
        "mechanism": MechanismRecord,
        "release": ReleaseRecord,
        "public": PublicDeclaration,
        "coverage": CoverageRecord,
    }
    if not isinstance(data, dict) or data.get("kind") not in kinds:
        raise RecordError(f"unknown preprocessing record kind {data.get('kind') if isinstance(data, dict) else data!r}")
    return kinds[data["kind"]].from_dict(data)


def group_factor(record_adjacency: Adjacency | str, adjacency: Adjacency | str, group_size: int = 1) -> float:
    """How much more than one record (under ``record_adjacency``) a neighbour under ``adjacency`` of
    ``group_size`` records moves a release.

    Adding or removing K records moves a sum of per-record-bounded contributions K times as far as one
    record; replacing K records by at most K others, at most 2 K times as far as adding one (remove, then
    add). A release analysed under replace-one (its count exact, n public) has no add/remove bound at all,
    and covers a group only when the group is one record.

    Raises:
      RecordError: when no bound follows.
    """
    source, target = Adjacency(record_adjacency), Adjacency(adjacency)
    validation.integer("group_size", group_size, minimum=1, error=RecordError)
    if source is Adjacency.ADD_REMOVE:
        return float(group_size if target is Adjacency.ADD_REMOVE else 2 * group_size)
    if target is Adjacency.REPLACE_ONE and group_size == 1:
        return 1.0
    raise RecordError(
        f"a release analysed under replace-one adjacency (its record count exact) cannot be accounted "
        f"for {'groups of records' if group_size > 1 else 'add-remove neighbours'}; set the "
        f"preprocessing adjacency to add-remove"
    )
