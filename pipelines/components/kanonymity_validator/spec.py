"""Keys of the k-anonymity validator (each declared once, here; its settings: `privacy.minimization.kanonymity`).

Imports neither TensorFlow nor TFX.
"""

from __future__ import annotations

EXAMPLES_KEY = "examples"
ANOMALIES_KEY = "anomalies"
SETTINGS_KEY = "kanonymity_settings"
REPORT_FILE = "kanonymity.json"
"""Per split, beside ExampleValidator's ``SchemaDiff.pb``: `privacy.minimization.KAnonymityReport` as JSON."""
ANOMALY_KEY = "k_anonymity"
"""The key of the anomaly in the split's Anomalies proto (``anomaly_info``)."""
BLESSED_PROPERTY = "blessed"
"""As ExampleValidator: a JSON custom property ``{split: 1 or 0}``, 0 where k is below the target."""
