"""Keys and exec properties of the PII scrubber (each declared once, here). Imports neither TensorFlow nor TFX."""

from __future__ import annotations

EXAMPLES_KEY = "examples"
SCRUBBED_EXAMPLES_KEY = "scrubbed_examples"
SETTINGS_KEY = "scrub_settings"
"""Exec property: `privacy.minimization.ScrubSettings` as JSON (a key file's path, never a key)."""
GENERALIZATION_KEY = "generalization"
"""Optional exec property: `privacy.minimization.KAnonymitySettings` as JSON; each split's quasi-identifiers are
then generalized (Mondrian) until every class has ``target_k`` records."""
REPORT_FILE = "pii_scrub_report.json"
"""Counts-only report (`privacy.minimization.ScrubReport`) written into the scrubbed Examples artifact."""
REPORT_PROPERTIES = ("rows", "rows_touched")
"""Report fields also recorded as integer custom properties ``pii_<field>`` of the scrubbed Examples."""
