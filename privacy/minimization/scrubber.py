"""Per-column PII scrubbing on Presidio: detect with pattern recognizers, then redact, mask, replace or keyed-hash.

Presidio's analyzer runs with its no-op NLP engine (no spaCy model is loaded or downloaded, so no NER runs) and an
explicit registry of pattern recognizers (`recognizers`); `ScrubReport.recognizers` names the ones that ran.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import hmac
import ipaddress
import re
from typing import Any, Iterable, Mapping

from privacy.minimization import recognizers as _recognizers
from privacy.minimization.keys import load_or_create_key
from privacy.minimization.settings import ScrubSettings

_LANGUAGE = _recognizers.LANGUAGE
_MIN_IDENTIFIER_CHARS = 3
_MIN_IDENTIFIER_DIGITS = 4
"""A dropped column's integer value is searched for in the text from this many digits on."""
_ENCODING = ("utf-8", "surrogateescape")
HASH_HEX_CHARS = 32
"""Keyed-hash tokens keep the first 128 bits of HMAC-SHA256, as hex."""


@dataclasses.dataclass
class ScrubReport:
    """What a run found, as counts only: it never holds a detected value.

    Attributes:
        rows: records scrubbed.
        rows_touched: records in which at least one span was replaced or a dropped column held a value.
        entities: ``{column: {entity_type: count}}`` of replaced spans (after Presidio's overlap resolution).
        unscanned_values: ``{column: count}`` of values left as they are because they are not text (numbers) in
            columns that were not declared; a declared column holding numbers is refused (`Scrubber.scrub_record`).
        unscanned_columns: ``{column: count}`` of text values left raw because declared ``columns`` do not list
            their column (empty without declared columns: every text column is scanned).
        dropped_columns: declared identifying columns removed from every record.
        recognizers: names of the recognizers that ran.
        ner: whether a named-entity model ran (always False here: none installs from PyPI).
    """

    rows: int = 0
    rows_touched: int = 0
    entities: dict = dataclasses.field(default_factory=dict)
    unscanned_values: dict = dataclasses.field(default_factory=dict)
    unscanned_columns: dict = dataclasses.field(default_factory=dict)
    dropped_columns: tuple = ()
    recognizers: tuple = ()
    ner: bool = False

    def add(self, other: "ScrubReport") -> None:
        """Adds another report's counts (e.g. of another split) to this one."""
        self.rows += other.rows
        self.rows_touched += other.rows_touched
        for column, counts in other.entities.items():
            mine = self.entities.setdefault(column, {})
            for entity, n in counts.items():
                mine[entity] = mine.get(entity, 0) + n
        for counts, others in (
            (self.unscanned_values, other.unscanned_values),
            (self.unscanned_columns, other.unscanned_columns),
        ):
            for column, n in others.items():
                counts[column] = counts.get(column, 0) + n

    def to_dict(self) -> dict:
        return {
            "rows": self.rows,
            "rows_touched": self.rows_touched,
            "entities": {c: dict(sorted(v.items())) for c, v in sorted(self.entities.items())},
            "unscanned_values": dict(sorted(self.unscanned_values.items())),
            "unscanned_columns": dict(sorted(self.unscanned_columns.items())),
            "dropped_columns": list(self.dropped_columns),
            "recognizers": list(self.recognizers),
            "ner": self.ner,
            "note": (
                "Pattern recognizers only: names and places are removed only where they equal a value of "
                "the same record's dropped columns. Numbers are not scanned (unscanned_values), nor text "
                "columns left out of the declared columns (unscanned_columns). Counts only; no detected "
                "value is recorded."
            ),
        }


_SEPARATED = ("PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN")
"""Entity types whose spellings differ by separators and letter case only: hashed as their letters and digits
(phone numbers that libphonenumber finds possible, region US: as E.164, without an extension)."""
_PHONE_REGION = "US"


def normalized(value: str, entity_type: str | None) -> str:
    """The spelling of ``value`` that keyed hashing uses, so that one value written differently gets one token:
    phone numbers as E.164 (``+1-555-867-5309`` = ``(555) 867-5309`` = ``555.867.5309x12``); the other
    `_SEPARATED` types as their letters and digits, upper-cased; IP addresses in their compressed lower-case form
    (``2001:DB8::1`` = ``2001:db8::1``); URLs with their scheme and host lower-cased (the path keeps its case);
    e-mail addresses and declared columns' values case-folded. Bytes that are not UTF-8 (surrogates) read as
    latin-1, as they are scanned (`_scan_form`)."""
    value = _scan_form(value)
    if entity_type == "PHONE_NUMBER":
        import phonenumbers

        try:
            number = phonenumbers.parse(value, _PHONE_REGION)
        except phonenumbers.NumberParseException:
            number = None
        if number is not None and phonenumbers.is_possible_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if entity_type in _SEPARATED:
        return "".join(c for c in value if c.isalnum()).upper()
    if entity_type == "IP_ADDRESS":
        try:
            return ipaddress.ip_address(value).compressed
        except ValueError:
            return value.lower()
    if entity_type == "URL":
        scheme, sep, rest = value.rpartition("://")
        host, slash, path = rest.partition("/")
        return f"{scheme.lower()}{sep}{host.lower()}{slash}{path}"
    if entity_type in ("DEFAULT", None):
        return value
    return value.casefold()


def _scan_form(text: str) -> str:
    """``text`` with each surrogate (a byte that is not UTF-8, decoded with surrogateescape) read as its latin-1
    character: same length and offsets, and the patterns' ``\\w`` matches it (so ``zo\\xeb.lee@...`` is one
    address)."""
    return re.sub("[\udc80-\udcff]", lambda m: chr(ord(m.group()) - 0xDC00), text)


class Scrubber:
    """Scrubs records (mappings of column to value) under one `ScrubSettings`; counts into `report`."""

    def __init__(self, settings: ScrubSettings):
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import NoOpNlpEngine
        from presidio_anonymizer import AnonymizerEngine

        self.settings = settings
        self._key = load_or_create_key(settings.key_file)
        recognizers = _recognizers.build(settings.entities)
        registry = RecognizerRegistry(recognizers=recognizers, supported_languages=[_LANGUAGE])
        nlp = NoOpNlpEngine(models=[{"lang_code": _LANGUAGE, "model_name": "none"}])
        self._analyzer = AnalyzerEngine(registry=registry, nlp_engine=nlp, supported_languages=[_LANGUAGE])
        self._anonymizer = AnonymizerEngine()
        self.report = ScrubReport(
            dropped_columns=settings.drop_columns, recognizers=tuple(type(r).__name__ for r in recognizers)
        )

    def keyed_hash(self, value: str, entity_type: str | None = None) -> str:
        """HMAC-SHA256 of ``value`` (`normalized` for ``entity_type``) under the run's key, first `HASH_HEX_CHARS`
        hex digits."""
        value = normalized(value, entity_type)
        return hmac.new(self._key, value.encode(*_ENCODING), hashlib.sha256).hexdigest()[:HASH_HEX_CHARS]

    def _operators(self, operator: str, entity_types: Iterable[str]) -> dict:
        from presidio_anonymizer.entities import OperatorConfig

        if operator == "redact":
            config = OperatorConfig("redact")
        elif operator == "mask":
            config = OperatorConfig("custom", {"lambda": lambda s: "*" * len(s)})
        elif operator == "hash":
            return {
                t: OperatorConfig("custom", {"lambda": functools.partial(self.keyed_hash, entity_type=t)})
                for t in ("DEFAULT", *entity_types)
            }
        else:
            return {}  # Presidio's default: replace by "<ENTITY_TYPE>"
        return {t: config for t in ("DEFAULT", *entity_types)}

    def detect(self, text: str, known: Mapping[str, str | tuple] = None) -> list:
        """Presidio's results for ``text`` plus whole-word matches of ``known`` values (``{entity_type: value or
        values}``), without spans inside another kept one (`recognizers.resolve_overlaps`). A known value that a
        recognizer also finds keeps the recognizer's type, so it hashes as that type's other spellings do."""
        from presidio_analyzer import RecognizerResult

        text = _scan_form(text)
        results = self._analyzer.analyze(
            text=text,
            language=_LANGUAGE,
            entities=list(self.settings.entities),
            score_threshold=self.settings.score_threshold,
        )
        found = list(results)
        for entity, values in (known or {}).items():
            for value in (values,) if isinstance(values, str) else values:
                for match in re.finditer(rf"(?<!\w){re.escape(_scan_form(value))}(?!\w)", text, flags=re.IGNORECASE):
                    if not any(r.start <= match.start() and match.end() <= r.end for r in found):
                        results.append(RecognizerResult(entity, match.start(), match.end(), 1.0))
        return _recognizers.resolve_overlaps(results)

    def scrub_text(self, text: str, operator: str, known: Mapping[str, str | tuple] = None) -> tuple[str, dict]:
        """``text`` with each detected span replaced by ``operator``, and ``{entity_type: spans replaced}``."""
        results = self.detect(text, known)
        if not results:
            return text, {}
        out = self._anonymizer.anonymize(
            text=text, analyzer_results=results, operators=self._operators(operator, {r.entity_type for r in results})
        )
        return out.text, dict(collections.Counter(item.entity_type for item in out.items))

    def scrub_record(self, record: Mapping[str, Any]) -> dict:
        """The record without its dropped columns and with its scanned columns scrubbed; counts go to `report`.

        Text is a str or a multi-valued feature ``("bytes_list", (str, ...))`` (each value is scanned). Without
        declared ``columns`` every text value is scanned with the settings' ``operator``, and numbers are counted in
        `ScrubReport.unscanned_values`; with declared ``columns`` the text of other columns is counted in
        `ScrubReport.unscanned_columns`. A declared column that holds numbers raises (the scrubber scans text only).
        Missing values (None, empty features) are left as they are.

        Raises:
            ValueError: a declared column holds numbers (the message names the column).
        """
        known = {}
        for name in self.settings.drop_columns:
            value = record.get(name)
            if isinstance(value, str) and len(value.strip()) >= _MIN_IDENTIFIER_CHARS:
                known[name.upper()] = value
            elif _is_text(value) and not isinstance(value, str):  # a multi-valued column: each value
                known[name.upper()] = tuple(v for v in value[1] if len(v.strip()) >= _MIN_IDENTIFIER_CHARS)
            elif (
                isinstance(value, int)
                and not isinstance(value, bool)
                and len(str(abs(value))) >= _MIN_IDENTIFIER_DIGITS
            ):
                known[name.upper()] = str(value)
        touched = any(_present(record.get(name)) for name in self.settings.drop_columns)
        out = {k: v for k, v in record.items() if k not in self.settings.drop_columns}
        columns = self.settings.columns or [(c, self.settings.operator) for c, v in out.items() if _is_text(v)]
        for column, operator in columns:
            value = out.get(column)
            if not _present(value):
                continue
            if not _is_text(value):
                raise ValueError(
                    f"column {column!r} holds numbers, which the PII scrubber does not scan: drop it "
                    f"(--drop-column {column}) or store it as text"
                )
            texts = [value] if isinstance(value, str) else list(value[1])
            for i, text in enumerate(texts):
                texts[i], counts = self.scrub_text(text, operator, known) if text else (text, {})
                touched = touched or bool(counts)
                mine = self.report.entities.setdefault(column, {}) if counts else {}
                for entity, n in counts.items():
                    mine[entity] = mine.get(entity, 0) + n
            out[column] = texts[0] if isinstance(value, str) else (value[0], tuple(texts))
        declared = dict(self.settings.columns)
        for column, value in out.items():
            if not _present(value) or column in declared:
                continue
            if _is_text(value):  # scanned unless columns are declared
                unscanned = self.report.unscanned_columns if declared else None
            else:  # counted where the default mode left it
                unscanned = None if declared else self.report.unscanned_values
            if unscanned is not None:
                n = len(value[1]) if isinstance(value, tuple) else 1
                unscanned[column] = unscanned.get(column, 0) + n
        self.report.rows += 1
        self.report.rows_touched += int(touched)
        return out


def _present(value: Any) -> bool:
    """Whether a record's value holds anything (not None, "", or an empty feature)."""
    return value not in (None, "") and not (isinstance(value, tuple) and not value[1])


def _is_text(value: Any) -> bool:
    """A str, or a multi-valued text feature ``("bytes_list", (str, ...))``."""
    return isinstance(value, str) or (isinstance(value, tuple) and value[0] == "bytes_list")
