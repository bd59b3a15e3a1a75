"""Data minimization before training: PII scrubbing of columns and a k-anonymity / l-diversity risk report.

`settings` (the typed plan of a scrubbing run), `keys` (the HMAC key for keyed hashing), `scrubber` (detection
with Presidio's pattern recognizers, then redact, mask, replace or keyed hash; a report that holds counts, never a
detected value) and `kanonymity` (the risk report and Mondrian generalization). No TensorFlow, no TFX.
"""

from privacy.minimization.kanonymity import KAnonymityReport, KAnonymitySettings, kanonymity_report, mondrian_generalize
from privacy.minimization.keys import check_key_file, load_or_create_key
from privacy.minimization.scrubber import Scrubber, ScrubReport
from privacy.minimization.settings import OPERATORS, PATTERN_ENTITIES, ScrubSettings

__all__ = [
    "KAnonymityReport",
    "KAnonymitySettings",
    "OPERATORS",
    "PATTERN_ENTITIES",
    "ScrubReport",
    "ScrubSettings",
    "Scrubber",
    "check_key_file",
    "kanonymity_report",
    "load_or_create_key",
    "mondrian_generalize",
]
