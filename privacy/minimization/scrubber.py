"""Per-column PII scrubbing on Presidio: detect with pattern recognizers, then redact, mask, replace or keyed-hash.

Presidio's analyzer runs with its no-op NLP engine (no spaCy model is loaded or downloaded, so no NER runs) and an
explicit registry of pattern recognizers (`recognizers`); `ScrubReport.recognizers` names the ones that ran.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import hmac
import re
from typing import Any, Iterable, Mapping

from privacy.minimization import recognizers as _recognizers
from privacy.minimization.keys import load_or_create_key
from privacy.minimization.settings import ScrubSettings

_LANGUAGE = _recognizers.LANGUAGE
_MIN_IDENTIFIER_CHARS = 3
HASH_HEX_CHARS = 32
"""Keyed-hash tokens keep the first 128 bits of HMAC-SHA256, as hex."""


@dataclasses.dataclass
class ScrubReport:
    """What a run found, as counts only: it never holds a detected value.

    Attributes:
        rows: records scrubbed.
        rows_touched: records in which at least one span was replaced or a dropped column held a value.
        entities: ``{column: {entity_type: count}}`` of replaced spans (after Presidio's overlap resolution).
        dropped_columns: declared identifying columns removed from every record.
        recognizers: names of the recognizers that ran.
        ner: whether a named-entity model ran (always False here: none installs from PyPI).
    """

    rows: int = 0
    rows_touched: int = 0
    entities: dict = dataclasses.field(default_factory=dict)
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

    def to_dict(self) -> dict:
        return {"rows": self.rows, "rows_touched": self.rows_touched,
                "entities": {c: dict(sorted(v.items())) for c, v in sorted(self.entities.items())},
                "dropped_columns": list(self.dropped_columns), "recognizers": list(self.recognizers),
                "ner": self.ner,
                "note": ("Pattern recognizers only: names and places are removed only where they equal a value of "
                         "the same record's dropped columns. Counts only; no detected value is recorded.")}


class Scrubber:
    """Scrubs records (mappings of column to value) under one `ScrubSettings`; counts into `report`."""

    def __init__(self, settings: ScrubSettings):
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry  # pylint: disable=import-outside-toplevel
        from presidio_analyzer.nlp_engine import NoOpNlpEngine  # pylint: disable=import-outside-toplevel
        from presidio_anonymizer import AnonymizerEngine  # pylint: disable=import-outside-toplevel

        self.settings = settings
        self._key = load_or_create_key(settings.key_file)
        recognizers = _recognizers.build(settings.entities)
        registry = RecognizerRegistry(recognizers=recognizers, supported_languages=[_LANGUAGE])
        nlp = NoOpNlpEngine(models=[{"lang_code": _LANGUAGE, "model_name": "none"}])
        self._analyzer = AnalyzerEngine(registry=registry, nlp_engine=nlp, supported_languages=[_LANGUAGE])
        self._anonymizer = AnonymizerEngine()
        self.report = ScrubReport(dropped_columns=settings.drop_columns,
                                  recognizers=tuple(type(r).__name__ for r in recognizers))

    def keyed_hash(self, value: str) -> str:
        """HMAC-SHA256 of ``value`` under the run's key, first `HASH_HEX_CHARS` hex digits."""
        return hmac.new(self._key, value.encode("utf-8"), hashlib.sha256).hexdigest()[:HASH_HEX_CHARS]

    def _operators(self, operator: str, entity_types: Iterable[str]) -> dict:
        from presidio_anonymizer.entities import OperatorConfig  # pylint: disable=import-outside-toplevel
        if operator == "redact":
            config = OperatorConfig("redact")
        elif operator == "mask":
            config = OperatorConfig("custom", {"lambda": lambda s: "*" * len(s)})
        elif operator == "hash":
            config = OperatorConfig("custom", {"lambda": self.keyed_hash})
        else:
            return {}   # Presidio's default: replace by "<ENTITY_TYPE>"
        return {t: config for t in ("DEFAULT", *entity_types)}

    def detect(self, text: str, known: Mapping[str, str] = None) -> list:
        """Presidio's results for ``text`` plus whole-word matches of ``known`` values (``{entity_type: value}``),
        without spans inside another kept one (`recognizers.resolve_overlaps`)."""
        from presidio_analyzer import RecognizerResult  # pylint: disable=import-outside-toplevel
        results = self._analyzer.analyze(text=text, language=_LANGUAGE, entities=list(self.settings.entities),
                                          score_threshold=self.settings.score_threshold)
        for entity, value in (known or {}).items():
            for match in re.finditer(rf"(?<!\w){re.escape(value)}(?!\w)", text, flags=re.IGNORECASE):
                results.append(RecognizerResult(entity, match.start(), match.end(), 1.0))
        return _recognizers.resolve_overlaps(results)

    def scrub_text(self, text: str, operator: str, known: Mapping[str, str] = None) -> tuple[str, dict]:
        """``text`` with each detected span replaced by ``operator``, and ``{entity_type: spans replaced}``."""
        results = self.detect(text, known)
        if not results:
            return text, {}
        out = self._anonymizer.anonymize(text=text, analyzer_results=results,
                                         operators=self._operators(operator, {r.entity_type for r in results}))
        return out.text, dict(collections.Counter(item.entity_type for item in out.items))

    def scrub_record(self, record: Mapping[str, Any]) -> dict:
        """The record without its dropped columns and with its scanned columns scrubbed; counts go to `report`.

        Values that are not strings (numbers, missing values) in a scanned column are left as they are. Without
        declared ``columns`` every string value is scanned with the settings' ``operator``.
        """
        known = {name.upper(): str(record[name]) for name in self.settings.drop_columns
                 if isinstance(record.get(name), str) and len(record[name].strip()) >= _MIN_IDENTIFIER_CHARS}
        touched = any(record.get(name) not in (None, "") for name in self.settings.drop_columns)
        out = {k: v for k, v in record.items() if k not in self.settings.drop_columns}
        columns = self.settings.columns or [(c, self.settings.operator) for c, v in out.items() if isinstance(v, str)]
        for column, operator in columns:
            value = out.get(column)
            if not isinstance(value, str) or not value:
                continue
            out[column], counts = self.scrub_text(value, operator, known)
            if counts:
                touched = True
                mine = self.report.entities.setdefault(column, {})
                for entity, n in counts.items():
                    mine[entity] = mine.get(entity, 0) + n
        self.report.rows += 1
        self.report.rows_touched += int(touched)
        return out
