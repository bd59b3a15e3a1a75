"""The pattern recognizers a scrubbing run uses: Presidio's, configured to work offline and to miss less.

Changes from Presidio's defaults, each measured on the bundled tickets (`pipelines.datasets.pii_tickets`):
- e-mail and URL validation reads the public-suffix list bundled with tldextract (Presidio's default fetches it
  from the network on first use);
- URLs with a scheme (``http://``, ``https://``) and host names without one (``www.example.biz/path``) match any
  public suffix, not only Presidio's fixed list (which lacks e.g. ``.biz`` and cuts such a URL short);
- credit cards: also any run of 12-19 digits, or 4-digit groups separated by spaces, dashes or dots, that passes
  the Luhn checksum (Presidio's pattern misses 19-digit Visa, 12-digit Maestro and 15-digit JCB numbers);
- IBANs in lower or mixed case (Presidio's pattern is upper-case only): the text is matched upper-cased;
- phone numbers: libphonenumber's POSSIBLE leniency (Presidio's VALID one drops numbers whose area code is
  unassigned and ``001-`` prefixed ones), keeping matches of 10 or more digits.
No NER model is used (none installs from PyPI here): names and places are not detected by these recognizers.
"""

from __future__ import annotations

import functools

LANGUAGE = "en"
MIN_PHONE_DIGITS = 10
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


@functools.lru_cache(maxsize=1)
def _offline_tld():
    import tldextract

    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


def _has_public_suffix(text: str) -> bool:
    parts = _offline_tld()(text)
    return bool(parts.domain and parts.suffix)


@functools.lru_cache(maxsize=None)
def _classes() -> dict:
    """``{entity_type: recognizer class}``, built on first use (Presidio imported here only)."""
    from presidio_analyzer import Pattern
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
        UrlRecognizer,
        UsSsnRecognizer,
    )

    class OfflineEmailRecognizer(EmailRecognizer):
        """Presidio's e-mail pattern; the domain's suffix checked against the bundled public-suffix list."""

        def validate_result(self, pattern_text: str):
            return _has_public_suffix(pattern_text.rpartition("@")[2])

    class OfflineUrlRecognizer(UrlRecognizer):
        """Presidio's URL patterns plus any ``http(s)://`` URL or host name whose host has a public suffix;
        host labels may hold any letter (internationalized names such as ``www.café.fr``)."""

        PATTERNS = [
            *UrlRecognizer.PATTERNS,
            Pattern("URL with scheme", r"(?i)\bhttps?://[^\W_][\w.\-]*\.[a-z]{2,63}\b(?:/[^\s()<>\"']*)?", 0.6),
            Pattern(
                "Host without scheme",
                r"(?i)(?<![@\w.\-])[^\W_][\w\-]*(?:\.[\w\-]+)*\.[a-z]{2,63}"
                r"\b(?:/[^\s()<>\"']*)?",
                0.5,
            ),
        ]

        def validate_result(self, pattern_text: str):
            return _has_public_suffix(pattern_text)

    class LuhnCreditCardRecognizer(CreditCardRecognizer):
        """Presidio's card patterns plus 12-19 digits (or 4-digit groups) passing the Luhn check."""

        PATTERNS = [
            *CreditCardRecognizer.PATTERNS,
            Pattern("Card digits (Luhn)", r"\b(?:\d{12,19}|\d{4}([ .-])\d{4}\1\d{4}\1\d{1,7})\b", 0.3),
        ]

        def __init__(self, **kwargs):
            super().__init__(replacement_pairs=[("-", ""), (" ", ""), (".", "")], **kwargs)

    class CaseInsensitiveIbanRecognizer(IbanRecognizer):
        """Presidio's IBAN patterns and checksum on the text with ASCII letters upper-cased (same offsets)."""

        def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):
            return super().analyze(text.translate(_ASCII_UPPER), entities, nlp_artifacts, regex_flags)

    class PossiblePhoneRecognizer(PhoneRecognizer):
        """Presidio's libphonenumber matcher at POSSIBLE leniency, keeping matches of at least
        `MIN_PHONE_DIGITS` digits (POSSIBLE alone also takes house numbers and social security numbers)."""

        def __init__(self, **kwargs):
            super().__init__(leniency=0, **kwargs)

        def analyze(self, text, entities, nlp_artifacts=None):
            return [
                r
                for r in super().analyze(text, entities, nlp_artifacts)
                if sum(c.isdigit() for c in text[r.start : r.end]) >= MIN_PHONE_DIGITS
            ]

    return {
        "EMAIL_ADDRESS": OfflineEmailRecognizer,
        "PHONE_NUMBER": PossiblePhoneRecognizer,
        "CREDIT_CARD": LuhnCreditCardRecognizer,
        "IBAN_CODE": CaseInsensitiveIbanRecognizer,
        "US_SSN": UsSsnRecognizer,
        "IP_ADDRESS": IpRecognizer,
        "URL": OfflineUrlRecognizer,
    }


def build(entities: tuple) -> list:
    """One recognizer per entity type in ``entities`` (each a member of `settings.PATTERN_ENTITIES`)."""
    return [_classes()[e](supported_language=LANGUAGE) for e in entities]


def resolve_overlaps(results: list) -> list:
    """``results`` without those lying inside a kept one (kept first: higher score, then longer span), in text
    order: one entity per span, as Presidio's anonymizer resolves them, so counts and measurements agree."""
    kept = []
    for r in sorted(results, key=lambda r: (-r.score, r.start - r.end, r.start)):
        if not any(k.start <= r.start and r.end <= k.end for k in kept):
            kept.append(r)
    return sorted(kept, key=lambda r: r.start)
