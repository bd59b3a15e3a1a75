"""Keys, defaults and settings of the encrypted-inference gate (each declared once, here).

Imports neither TensorFlow nor TFX, so reports can read the gate's artifacts cheaply; the
ComponentSpec is in `component`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np

from privacy import validation
from privacy.encrypted.model.ranges import HALF_OPEN, InputBounds
from privacy.encrypted.model.ring import FixedPoint
from privacy.encrypted.verify import DEFAULT_MAX_ACCURACY_DROP, DEFAULT_MIN_AGREEMENT

EXAMPLES_KEY = "examples"
MODEL_KEY = "model"
TRANSFORM_GRAPH_KEY = "transform_graph"
MODEL_BLESSING_KEY = "model_blessing"
BLESSING_KEY = "blessing"
REPORT_FILE = "encrypted_inference.json"
"""JSON report written into the blessing artifact: settings, figures, decision and reason."""
GATE_PASSED = "encrypted_gate_passed"
GATE_REASON = "encrypted_gate_reason"
GATE_OUTPUT = "encrypted_output"
GATE_INPUT_CHECK = "encrypted_input_check"
"""The bounds the parties check and why (`RangePlan.describe_check`)."""
GATE_PRIVACY = "encrypted_gate_privacy"
PRIVACY_NOTE = (
    "outside the differential-privacy guarantee: the agreement and accuracy figures are exact "
    "statistics of the eval split's rows, and they decide the push"
)
"""Custom property (and report entry) that labels the gate's figures for a reader of ML Metadata."""
"""What the gate compared and blessed: 'logits', or 'label' for a model whose logits could wrap the ring."""
FIGURES = (
    "decision_agreement",
    "max_abs_error",
    "accuracy_difference_points",
    "plaintext_accuracy",
    "encrypted_accuracy",
    "latency_ms_per_batch",
    "rounds_per_batch",
    "bytes_per_batch",
)
"""Report fields also recorded as custom properties of the blessing (prefixed ``encrypted_``)."""


@dataclasses.dataclass(frozen=True)
class GateSettings:
    """What the gate checks.

    Attributes:
        feature_keys: (transformed) feature names stacked, in order, into the model's input.
        label_key: integer class label.
        split: the Examples split to predict on.
        num_examples: how many examples (the first ones) to predict, encrypted and in plaintext.
        min_agreement: smallest fraction of equal decisions to bless.
        max_accuracy_drop: largest |accuracy difference| to bless, in percentage points.
        frac_bits: fixed-point fractional bits of the encrypted engine.
        batch_size: examples per encrypted prediction call.
        input_lo / input_hi: bounds every input feature is declared to lie in (both or neither), checked
            rounded inward to multiples of 2^-frac_bits (refused if they hold none); by default the model is
            shared for the per-feature range of the checked examples.
        input_check: what the parties check, as `share-model --input-check` serves the model (`InputBounds.
            input_check`; None: "widened", the bounds widened outward to a window one comparison per value checks
            where the analysis proves it safe, else exact; the record's "input_check" says which). "half-open"
            checks [input_lo, input_hi) (the top grid value dropped, an input at input_hi computed on as input_hi -
            2^-bits, bits the inputs' precision; `InputBounds.half_open`): needs input_lo / input_hi whose span is a
            power of two of at least 2 grid steps.
        half_open: short for input_check "half-open" (refused with another input_check).
        input_frac_bits: the inputs' precision, as `share-model --input-frac-bits` serves the model: inputs rounded
            to multiples of 2^-input_frac_bits and checked at that precision (at most frac_bits; None: frac_bits);
            input_lo / input_hi must then be multiples of it, the examples' range is widened outward to it.
    """

    feature_keys: tuple
    label_key: str
    split: str = "eval"
    num_examples: int = 200
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    max_accuracy_drop: float = DEFAULT_MAX_ACCURACY_DROP
    frac_bits: int = 16
    batch_size: int = 100
    input_lo: float | None = None
    input_hi: float | None = None
    input_check: str | None = None
    half_open: bool = False
    input_frac_bits: int | None = None

    def __post_init__(self):
        if not self.feature_keys or not all(isinstance(k, str) and k for k in self.feature_keys):
            raise ValueError(f"feature_keys must be a non-empty list of feature names, got {self.feature_keys!r}")
        if not (isinstance(self.label_key, str) and self.label_key):
            raise ValueError(f"label_key must be a feature name, got {self.label_key!r}")
        object.__setattr__(
            self, "min_agreement", validation.probability("min_agreement", self.min_agreement, zero=True, one=True)
        )
        object.__setattr__(
            self,
            "max_accuracy_drop",
            validation.number("max_accuracy_drop", self.max_accuracy_drop, low=0, note="percentage points"),
        )
        for name in ("num_examples", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if (self.input_lo is None) != (self.input_hi is None):
            raise ValueError("input_lo and input_hi go together: give both or neither")
        if self.input_lo is not None and not (
            math.isfinite(self.input_lo) and math.isfinite(self.input_hi) and self.input_lo <= self.input_hi
        ):
            raise ValueError(f"need finite input_lo <= input_hi, got {self.input_lo!r} and {self.input_hi!r}")
        if self.input_frac_bits is not None:
            validation.integer("input_frac_bits", self.input_frac_bits, minimum=0, maximum=self.frac_bits)
        if (self.half_open is not False or self.input_check == HALF_OPEN) and self.input_lo is None:
            raise ValueError(
                "half_open applies to input_lo / input_hi: the examples' range is widened outward, never narrowed"
            )
        if self.input_lo is not None:  # the executor's checks, here before TFX runs: no grid value, half-open spans
            self.bounds(()).encoded(FixedPoint(self.frac_bits))
        else:  # the choice's checks (unknown, or contradicting half_open)
            InputBounds.declared(0, 0, (), input_check=self.input_check, half_open=self.half_open)

    def bounds(self, shape: tuple, examples: np.ndarray | None = None) -> InputBounds:
        """The bounds for inputs of `shape`: the declared ones, else the range of `examples` (widened outward)."""
        if self.input_lo is None:
            return InputBounds.from_data(examples, shape, frac_bits=self.input_frac_bits, input_check=self.input_check)
        return InputBounds.declared(
            self.input_lo,
            self.input_hi,
            shape,
            frac_bits=self.input_frac_bits,
            input_check=self.input_check,
            half_open=self.half_open,
        )

    def exec_properties(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["feature_keys"] = json.dumps(list(self.feature_keys))
        values["half_open"] = int(self.half_open)  # TFX execution parameters have no bool type
        return values

    @classmethod
    def from_exec_properties(cls, props: dict[str, Any]) -> "GateSettings":
        values = {f.name: props[f.name] for f in dataclasses.fields(cls) if props.get(f.name) is not None}
        values["feature_keys"] = tuple(json.loads(values["feature_keys"]))
        if "half_open" in values:  # 0 / 1 as written by `exec_properties`; anything else is refused as it is
            flag = values["half_open"]
            values["half_open"] = bool(flag) if type(flag) is int and flag in (0, 1) else flag  # 1.0 is refused too
        return cls(**values)
