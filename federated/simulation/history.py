"""What a simulation reports per round, as JSON and as a PNG."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from typing import Any

from privacy.atomic_files import write_atomically


@dataclasses.dataclass(frozen=True)
class RoundRecord:
    """One round's outcome, as the (trusted) server of the simulation sees it.

    Under DP only the model, the clipping norm and what derives from them are covered by the
    guarantee. The client counts and the aggregation report are exact, un-noised facts of the round
    (secure aggregation's ``clipped_coordinates`` even counts what clients clipped, which a real
    server would not learn): diagnostics for the researcher, not for release beside the model.

    Attributes:
      round: 1-based index.
      sampled / reported / dropped / nonfinite: client counts. ``nonfinite`` clients' local updates
        were not finite: without DP they do not report (sampled = reported + dropped + nonfinite);
        under DP they report a zero update (sampled = reported + dropped).
      evaluation: central evaluation after the round ({"loss", "accuracy"}), or {} when not evaluated.
      train_loss: the round's local training loss as TFF defines it: every batch's mean loss, taken with
        the weights before its step, weighted by the batch's examples, over all reporting clients (None
        under DP: it is not private).
      metrics: the strategy's round metrics (clipping norm, epsilon, ...).
      aggregation: the aggregation's report (secure aggregation cost), or {}.
      seconds: wall time of the round.
    """

    round: int
    sampled: int
    reported: int
    dropped: int
    nonfinite: int
    evaluation: dict
    train_loss: float | None
    metrics: dict
    aggregation: dict
    seconds: float

    def line(self) -> str:
        """A one-line progress message."""
        parts = [f"round {self.round}: {self.reported}/{self.sampled} clients"]
        if self.dropped or self.nonfinite:
            parts.append(f"dropped {self.dropped}, non-finite {self.nonfinite}")
        if self.train_loss is not None:
            parts.append(f"train loss {self.train_loss:.4f}")
        if self.evaluation:
            parts.append(f"eval loss {self.evaluation['loss']:.4f} acc {self.evaluation['accuracy']:.4f}")
        for key, value in self.metrics.items():
            if key.startswith("epsilon"):
                parts.append(f"{key.replace('_', ' ')} {value:.4g}")
        parts.append(f"{self.seconds:.2f}s")
        return ", ".join(parts)


@dataclasses.dataclass
class History:
    """Rounds run so far, the run's settings, and why it stopped."""

    config: dict[str, Any]
    rounds: list[RoundRecord] = dataclasses.field(default_factory=list)
    stopped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config, "rounds": [_finite(dataclasses.asdict(r)) for r in self.rounds],
                "stopped": self.stopped}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "History":
        return cls(config=data["config"], rounds=[RoundRecord(**r) for r in data["rounds"]],
                   stopped=data.get("stopped"))

    def save_json(self, path) -> str:
        """Writes the history as JSON, atomically (a crash leaves no half-written file); returns ``path``."""
        return write_atomically(path, json.dumps(self.to_dict(), indent=2))

    def plot(self, path) -> str:
        """Writes a plot of evaluation accuracy per round, with epsilon on a second axis when present, in
        the format of ``path``'s extension (e.g. .png, .pdf, .svg), atomically; returns ``path``."""
        import matplotlib  # pylint: disable=import-outside-toplevel
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

        evaluated = [r for r in self.rounds if r.evaluation]
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        ax.plot([r.round for r in evaluated], [r.evaluation["accuracy"] for r in evaluated], "o-", ms=3,
                color="tab:blue", label="accuracy")
        ax.set_xlabel("round")
        ax.set_ylabel("evaluation accuracy", color="tab:blue")
        ax.set_ylim(0, 1)
        eps_key = next((k for r in self.rounds for k in r.metrics if k.startswith("epsilon")), None)
        if eps_key:
            ax2 = ax.twinx()
            ax2.plot([r.round for r in self.rounds], [r.metrics[eps_key] for r in self.rounds], "-", color="tab:red")
            ax2.set_ylabel(f"epsilon ({eps_key.split('_')[-1]}, delta={self.config.get('target_delta', '?')})",
                           color="tab:red")
        ax.set_title(self.config.get("title", "federated simulation"), fontsize=9)
        fig.tight_layout()
        path = os.fspath(path)
        fd, staging = tempfile.mkstemp(prefix=f".{os.path.basename(path)}-", suffix=os.path.splitext(path)[1],
                                       dir=os.path.dirname(os.path.abspath(path)))
        os.close(fd)
        try:
            fig.savefig(staging, dpi=120)
            os.replace(staging, path)
        finally:
            plt.close(fig)
            if os.path.exists(staging):
                os.unlink(staging)
        return path


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
