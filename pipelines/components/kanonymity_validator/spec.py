"""Keys and settings of the k-anonymity validator (each declared once, here). Imports neither TensorFlow nor TFX."""

from __future__ import annotations

import dataclasses
import json

EXAMPLES_KEY = "examples"
ANOMALIES_KEY = "anomalies"
SETTINGS_KEY = "kanonymity_settings"
REPORT_FILE = "kanonymity.json"
"""Per split, beside ExampleValidator's ``SchemaDiff.pb``: `privacy.minimization.KAnonymityReport` as JSON."""
ANOMALY_KEY = "k_anonymity"
"""The key of the anomaly in the split's Anomalies proto (``anomaly_info``)."""
BLESSED_PROPERTY = "blessed"
"""As ExampleValidator: a JSON custom property ``{split: 1 or 0}``, 0 where k is below the target."""
DEFAULT_TARGET_K = 5


@dataclasses.dataclass(frozen=True)
class KAnonymitySettings:
    """Attributes: quasi_identifiers (columns), target_k (the k a split must reach), sensitive (column for
    distinct l-diversity, or None)."""

    quasi_identifiers: tuple
    target_k: int = DEFAULT_TARGET_K
    sensitive: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "quasi_identifiers", tuple(str(q) for q in self.quasi_identifiers))
        if not self.quasi_identifiers:
            raise ValueError("the k-anonymity validator needs at least one quasi-identifier column")
        if isinstance(self.target_k, bool) or not isinstance(self.target_k, int) or self.target_k < 1:
            raise ValueError(f"target k {self.target_k!r} is not an integer >= 1")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "KAnonymitySettings":
        return cls(**json.loads(text))
