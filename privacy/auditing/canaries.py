"""Canaries for one-run audits (no TensorFlow import): secret inclusion bits and the canaries' rows.

Each canary is included in the training data independently with probability 1/2, by bits drawn from the OS
CSPRNG (`secrets`); the bits are returned to the caller only and never logged. Two kinds:

* input-space (black-box): real inputs from outside the training data with a label drawn uniformly among the
  wrong ones (`mislabelled_canaries`); the attack score is minus the trained model's loss on the canary;
* gradient-space (white-box): rows that reach only a dedicated weight slot of the audited model, one slot
  coordinate per canary, addressed by one id column (`dirac_slot_rows`, read by
  `privacy.auditing.keras_canaries.DiracCanaryHead`): each canary's gradient is a Dirac on its own coordinate;
  the score is that coordinate's change over training.
"""

from __future__ import annotations

import dataclasses
import secrets

import numpy as np

from privacy import validation

DIRAC_AMPLITUDE = 1e4
"""A: a Dirac canary's unclipped gradient norm is A (K - 1) / K >= A / 2 for K >= 2 classes; clip norms must stay
below A / 2 (`MAX_DIRAC_CLIP`) so that clipping scales it to exactly C."""
MAX_DIRAC_CLIP = DIRAC_AMPLITUDE / 2
MAX_CANARIES = 100_000
"""Most canaries of one audit; ids travel in a float32 column, exact far beyond it (2^24). The memory a step takes is
bounded apart (`MAX_SLOT_GRADIENTS`)."""
MAX_SLOT_GRADIENTS = 150_000_000
"""Most per-example canary-slot gradients one private step may hold: its rows (the batch size B; n + m in a full-batch
run) x the canaries m, 600 MB of float32 each time a step holds them (about 2 GB peak measured at 9,347 x 8,000)."""


def inclusion_bits(num_canaries: int) -> np.ndarray:
    """Boolean array of `num_canaries` independent fair bits from the OS CSPRNG (True = include)."""
    validation.integer("num_canaries", num_canaries, minimum=1)
    raw = np.frombuffer(secrets.token_bytes((num_canaries + 7) // 8), dtype=np.uint8)
    return np.unpackbits(raw)[:num_canaries].astype(bool)


def _csprng_rng() -> np.random.Generator:
    return np.random.default_rng(secrets.randbits(128))


@dataclasses.dataclass(frozen=True, repr=False)
class Canaries:
    """Canary rows and their secret inclusion bits (the repr shows neither).

    Attributes:
      x: canary inputs, one row per canary.
      y: canary labels.
      included: secret bits; row i joins the training data iff included[i].
    """

    x: np.ndarray
    y: np.ndarray
    included: np.ndarray

    def __repr__(self) -> str:
        return f"Canaries({len(self.y)} canaries, inclusion bits withheld)"

    def training_data(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The training arrays with the included canaries appended, rows shuffled (CSPRNG) so that a canary's
        position does not tell its bit."""
        x_all = np.concatenate([x, self.x[self.included]])
        y_all = np.concatenate([y, self.y[self.included]])
        order = _csprng_rng().permutation(len(y_all))
        return x_all[order], y_all[order]


def mislabelled_canaries(x_pool: np.ndarray, y_pool: np.ndarray, num_canaries: int, num_classes: int) -> Canaries:
    """Input-space canaries: `num_canaries` rows of `x_pool` (which must not be training data), each relabelled
    with a class drawn uniformly among the num_classes - 1 wrong ones (CSPRNG)."""
    x_pool, y_pool = np.asarray(x_pool), np.asarray(y_pool).reshape(-1)
    if len(x_pool) != len(y_pool):
        raise ValueError(f"{len(x_pool)} pool inputs but {len(y_pool)} labels")
    validation.integer("num_canaries", num_canaries, minimum=1, maximum=len(y_pool), note="the pool's size")
    validation.integer("num_classes", num_classes, minimum=2)
    rng = _csprng_rng()
    rows = rng.choice(len(y_pool), size=num_canaries, replace=False)
    wrong = (y_pool[rows] + rng.integers(1, num_classes, size=num_canaries)) % num_classes
    return Canaries(x=x_pool[rows], y=wrong.astype(y_pool.dtype), included=inclusion_bits(num_canaries))


def dirac_slot_rows(num_features: int, num_canaries: int, label: int = 0) -> Canaries:
    """Gradient-space canaries for a model whose input is [features (num_features) | canary id (one column)]:
    canary i has zero features, the id i + 1 (0 marks a real row) and the label `label` (the head's canary
    class). One column whatever the number of canaries, so the rows take O(num_canaries) memory."""
    validation.integer("num_features", num_features, minimum=1)
    validation.integer("num_canaries", num_canaries, minimum=1, maximum=MAX_CANARIES)
    x = np.zeros((num_canaries, num_features + 1), np.float32)
    x[:, -1] = np.arange(1, num_canaries + 1)
    return Canaries(x=x, y=np.full(num_canaries, label, np.int64), included=inclusion_bits(num_canaries))


def with_empty_slot(x: np.ndarray) -> np.ndarray:
    """Training inputs widened with a canary-id column of 0 (a real row: it never touches the slot's weights)."""
    x = np.asarray(x, np.float32)
    return np.concatenate([x, np.zeros((len(x), 1), np.float32)], axis=1)
