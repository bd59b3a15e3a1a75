"""The settings of a scrubbing run, resolved once into one typed plan (no Presidio, no TensorFlow)."""

from __future__ import annotations

import dataclasses
import json

from privacy import validation

OPERATORS = ("redact", "mask", "replace", "hash")
"""What happens to a detected span: removed, each character replaced by ``*``, replaced by ``<TYPE>``, or replaced
by the HMAC-SHA256 of the value under the run's key (equal values give equal tokens, so joins still work; see
`scrubber.normalized` for the spellings that count as one value)."""

PATTERN_ENTITIES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN", "IP_ADDRESS", "URL")
"""Entity types found by Presidio's pattern recognizers (regular expressions, with checksums for credit cards and
IBANs and libphonenumber validation for phone numbers). No NER model installs from PyPI here, so names and places
are found only where they equal a value of the same row's declared identifying columns (see `ScrubSettings`)."""

DEFAULT_OPERATOR = "replace"
DEFAULT_SCORE_THRESHOLD = 0.0
"""Presidio's own default: every pattern match counts (its weak US_SSN patterns score 0.05)."""


@dataclasses.dataclass(frozen=True)
class ScrubSettings:
    """What a scrubbing run does.

    Attributes:
        columns: ``(column, operator)`` pairs: the columns scanned for PII (free text or structured) and what
            happens to each detected span, one of `OPERATORS`. Empty: every string column, with ``operator``.
        drop_columns: declared identifying columns, removed from every record. Their values (strings of 3 or more
            characters) are also searched for, case-insensitively and as whole words, in the same record's scanned
            columns and treated as an entity named after the column (e.g. ``CUSTOMER_NAME``).
        entities: the Presidio entity types detected, a subset of `PATTERN_ENTITIES`.
        score_threshold: Presidio's minimum score for a detection, in [0, 1].
        operator: the operator of every string column when ``columns`` is empty.
        key_file: file holding the HMAC key for ``hash`` (created from the OS CSPRNG, mode 0600, if missing);
            None: a fresh key per run, so tokens join within a run only.
    """

    columns: tuple = ()
    drop_columns: tuple = ()
    entities: tuple = PATTERN_ENTITIES
    score_threshold: float = DEFAULT_SCORE_THRESHOLD
    operator: str = DEFAULT_OPERATOR
    key_file: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "columns", tuple((str(c), str(o)) for c, o in self.columns))
        object.__setattr__(self, "drop_columns", tuple(str(c) for c in self.drop_columns))
        object.__setattr__(self, "entities", tuple(str(e) for e in self.entities))
        validation.choice("operator", self.operator, OPERATORS)
        for column, operator in self.columns:
            validation.choice(f"the operator of column {column!r}", operator, OPERATORS)
        scanned = [c for c, _ in self.columns]
        if "" in scanned or "" in self.drop_columns:
            raise ValueError("a scanned or dropped column name is empty")
        for name in {c for c in scanned if scanned.count(c) > 1}:
            raise ValueError(f"column {name!r} is listed twice")
        for name in set(scanned) & set(self.drop_columns):
            raise ValueError(f"column {name!r} is both scanned and dropped")
        for entity in self.entities:
            validation.choice("entity", entity, PATTERN_ENTITIES)
        validation.probability("score_threshold", self.score_threshold, zero=True, one=True)

    @classmethod
    def parse_columns(cls, specs) -> tuple:
        """``["text", "notes=hash"]`` -> ``(("text", "replace"), ("notes", "hash"))`` (default `DEFAULT_OPERATOR`)."""
        pairs = []
        for spec in specs:
            column, _, operator = str(spec).partition("=")
            if not column:
                raise ValueError(f"column spec {spec!r} has no column name (want COLUMN or COLUMN=OPERATOR)")
            pairs.append((column, operator or DEFAULT_OPERATOR))
        return tuple(pairs)

    def absent_columns(self, present) -> list:
        """The declared (scanned or dropped) columns that are not in ``present`` (column names), in order."""
        present = set(present)
        return [c for c in (*(c for c, _ in self.columns), *self.drop_columns) if c not in present]

    def to_json(self) -> str:
        """The settings as JSON (no key material: only the key file's path)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ScrubSettings":
        fields = json.loads(text)
        fields["columns"] = tuple(tuple(p) for p in fields["columns"])
        return cls(**fields)
