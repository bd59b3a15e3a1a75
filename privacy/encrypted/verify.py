"""Encrypted versus plaintext predictions of one model on one dataset: the correctness report.

`verify_model` is what `ppml encrypted verify` prints and what the TFX gate records and thresholds.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from privacy import validation
from privacy.compared import compared

DEFAULT_MIN_AGREEMENT = 0.995
DEFAULT_MAX_ACCURACY_DROP = 0.5  # percentage points


@dataclasses.dataclass(frozen=True)
class VerificationReport:
    """How far encrypted predictions are from plaintext ones.

    Attributes:
        examples: number of examples compared.
        decision_agreement: fraction of examples with the same predicted label.
        max_abs_error: largest |encrypted - plaintext| over all model outputs (None when only labels were
            compared: `output` 'label').
        plaintext_accuracy / encrypted_accuracy: fractions, if labels were given (else None).
        accuracy_difference_points: 100 * |plaintext - encrypted accuracy| (None without labels).
        latency_ms_per_batch: mean wall time of one encrypted prediction call.
        batch_size: examples per call.
        rounds_per_batch / bytes_per_batch: communication between parties per call.
        output: what the encrypted predictions released and were compared on: 'logits' or 'label'.
    """

    examples: int
    decision_agreement: float
    max_abs_error: float | None
    plaintext_accuracy: float | None
    encrypted_accuracy: float | None
    accuracy_difference_points: float | None
    latency_ms_per_batch: float
    batch_size: int
    rounds_per_batch: int
    bytes_per_batch: int
    output: str = "logits"

    def passes(
        self, *, min_agreement: float = DEFAULT_MIN_AGREEMENT, max_accuracy_drop: float = DEFAULT_MAX_ACCURACY_DROP
    ) -> bool:
        """Agreement at least `min_agreement` and accuracy difference at most `max_accuracy_drop` points."""
        accuracy_ok = self.accuracy_difference_points is None or self.accuracy_difference_points <= max_accuracy_drop
        return self.decision_agreement >= min_agreement and accuracy_ok

    def reason(
        self, *, min_agreement: float = DEFAULT_MIN_AGREEMENT, max_accuracy_drop: float = DEFAULT_MAX_ACCURACY_DROP
    ) -> str:
        """What `passes` compares, as text: the agreement in percent and the accuracy difference in points with two
        decimals each (as `format_text`), and their thresholds, widened where two decimals would not order them as
        the values (`privacy.compared`)."""
        agreement, needed = compared(
            100 * self.decision_agreement, 100 * min_agreement, digits=2, bound_digits=2, fixed=True
        )
        text = f"decision agreement {agreement} % (needs >= {needed} %)"
        if self.accuracy_difference_points is None:
            return f"{text}, accuracy difference not measured (no labels)"
        drop, allowed = compared(
            self.accuracy_difference_points, max_accuracy_drop, digits=2, bound_digits=2, fixed=True
        )
        return f"{text}, accuracy difference {drop} points (needs <= {allowed})"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def format_text(self) -> str:
        rows = [
            ("examples", f"{self.examples}"),
            ("decision agreement", f"{100 * self.decision_agreement:.2f} %"),
            (
                "max abs error",
                "not measured (labels only)" if self.max_abs_error is None else f"{self.max_abs_error:.3g}",
            ),
        ]
        if self.plaintext_accuracy is not None:
            rows += [
                ("plaintext accuracy", f"{100 * self.plaintext_accuracy:.2f} %"),
                ("encrypted accuracy", f"{100 * self.encrypted_accuracy:.2f} %"),
                ("accuracy difference", f"{self.accuracy_difference_points:.2f} points"),
            ]
        rows += [
            ("latency per batch", f"{self.latency_ms_per_batch:.1f} ms (batch {self.batch_size})"),
            ("rounds per batch", f"{self.rounds_per_batch}"),
            ("bytes per batch", f"{self.bytes_per_batch / 1e6:.3f} MB between parties"),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _labels(outputs: np.ndarray, threshold: float) -> np.ndarray:
    return (outputs[:, 0] > threshold).astype(np.int64) if outputs.shape[1] == 1 else outputs.argmax(axis=1)


def _decision_threshold(model) -> float:
    """Where a single-unit output decides: its activation at logit 0 (sigmoid 0.5, linear 0), as
    `Prediction.labels` decides on the logit."""
    activation = getattr(model.layers[-1], "activation", None)
    if activation is None:
        return 0.0
    return float(np.asarray(activation(np.zeros((1, 1), np.float32))).reshape(-1)[0])


def verify_model(
    model, x: np.ndarray, y: np.ndarray | None, predictor, *, batch_size: int = 100, output: str = "logits"
) -> VerificationReport:
    """Runs `model` in plaintext and `predictor` (an `InProcessCluster` or a connected `RemoteClient`
    serving the same model, shared with logits allowed: the model owner's check) on `x`, and compares.

    Args:
        model: the Keras model (plaintext baseline).
        x: examples, shape (n,) + input shape.
        y: integer labels (n,), or None.
        predictor: has ``predict(x, output=output) -> Prediction`` and ``last_cost``.
        batch_size: examples per encrypted call.
        output: 'logits' (compares outputs and labels), or 'label' for a model whose release policy is
            labels only (compares labels; `max_abs_error` is None).
    """
    x = np.asarray(x)
    if len(x) == 0:
        raise ValueError("verification needs at least one example")
    batch_size = validation.integer("batch_size", batch_size, minimum=1)
    validation.choice("output", output, ("logits", "label"))
    expected = tuple(model.input_shape[1:])
    if x.shape[1:] != expected:
        raise ValueError(f"input has shape {x.shape}, expected (batch,) + {expected}")
    plain = np.asarray(model.predict(x, verbose=0), dtype=np.float64).reshape(len(x), -1)
    encrypted, seconds, rounds, nbytes = [], [], 0, 0
    for start in range(0, len(x), batch_size):
        began = time.perf_counter()
        prediction = predictor.predict(x[start : start + batch_size], output=output)
        encrypted.append(prediction.outputs if output == "logits" else prediction.labels)
        seconds.append(time.perf_counter() - began)
        rounds, nbytes = max(rounds, predictor.last_cost.rounds), max(nbytes, predictor.last_cost.bytes)
    threshold = _decision_threshold(model) if plain.shape[1] == 1 else 0.0
    plain_labels = _labels(plain, threshold)
    if output == "logits":
        encrypted = np.concatenate(encrypted).reshape(len(x), -1)
        enc_labels, max_abs_error = _labels(encrypted, threshold), float(np.abs(encrypted - plain).max())
    else:
        enc_labels, max_abs_error = np.concatenate(encrypted).reshape(-1).astype(np.int64), None
    plain_acc = enc_acc = diff = None
    if y is not None:
        y = np.asarray(y).reshape(-1)
        if len(y) != len(x):
            raise ValueError(f"got {len(y)} labels for {len(x)} examples")
        plain_acc, enc_acc = float((plain_labels == y).mean()), float((enc_labels == y).mean())
        diff = 100.0 * abs(plain_acc - enc_acc)
    return VerificationReport(
        len(x),
        float((plain_labels == enc_labels).mean()),
        max_abs_error,
        plain_acc,
        enc_acc,
        diff,
        1e3 * float(np.mean(seconds)),
        min(batch_size, len(x)),
        rounds,
        nbytes,
        output,
    )
