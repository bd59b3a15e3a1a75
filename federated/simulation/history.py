"""What a simulation reports per round, as JSON and as a PNG."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from typing import Any

from federated.strategies.dp_local import TRUST_MODEL as LOCAL_TRUST_MODEL
from privacy.atomic_files import write_atomically

OUTSIDE_GUARANTEE = {
    "evaluation": (
        "held-out private rows, not DP",
        "evaluation loss and accuracy are exact functions of rows held out of the private data set, "
        "released without noise",
    ),
    "epsilon": (
        "seeded noise: no guarantee",
        "the noise and the client samples were drawn from the recorded seed, which anyone can replay: the "
        "epsilon describes the mechanism, not a released model",
    ),
    "clients": (
        "N: users with a readable id",
        "N, the number of users, counts the client ids read from at least one row or record; a row or "
        "record whose id cannot be read (a CSV line that cannot be parsed, a record that is not a tf.Example "
        "or lacks the id) belongs to no user, so replacing a user by one all of whose rows are such changes N",
    ),
    "classes": (
        "classes from private labels",
        "the model's number of outputs is 1 + the largest label of the private data, read without noise "
        "(name the number of classes to keep it out)",
    ),
}
"""What a private run reports outside its DP guarantee: key -> (short tag shown beside the value, reason)."""


@dataclasses.dataclass(frozen=True)
class RoundRecord:
    """One round's outcome, as the (trusted) server of the simulation sees it.

    Under DP the guarantee covers the model, the clipping norm and what derives from them; the epsilon
    is the accountant's. A private run records no exact fact of the clients' data: ``nonfinite``,
    ``train_loss`` and ``seconds`` are None, and the aggregation report leaves out its data-dependent
    entries (secure aggregation's ``clipped_coordinates``). The client counts it keeps depend only on
    the public N, the sampler and the dropout draws. What it reports outside the guarantee is listed in
    the history's ``config["outside_guarantee"]`` and tagged in `History.line` and the plot.

    Attributes:
      round: 1-based index.
      sampled / reported / dropped: client counts. Without DP a client whose local update is not finite
        does not report (sampled = reported + dropped + nonfinite); under DP it reports a zero update and
        every other client its clipped update (sampled = reported + dropped).
      nonfinite: clients whose update or loss was not finite (None under DP: a fact of their data).
      evaluation: central evaluation after the round ({"loss", "accuracy"}), or {} when not evaluated.
      train_loss: the round's local training loss as TFF defines it: every batch's mean loss, taken with
        the weights before its step, weighted by the batch's examples, over all reporting clients (None
        under DP).
      metrics: the strategy's round metrics (clipping norm, epsilon, ...).
      aggregation: the aggregation's report (secure aggregation cost), or {}.
      seconds: wall time of the round (None under DP: it depends on the clients' data sizes).
    """

    round: int
    sampled: int
    reported: int
    dropped: int
    nonfinite: int | None
    evaluation: dict
    train_loss: float | None
    metrics: dict
    aggregation: dict
    seconds: float | None


@dataclasses.dataclass
class History:
    """Rounds run so far, the run's settings, and why it stopped."""

    config: dict[str, Any]
    rounds: list[RoundRecord] = dataclasses.field(default_factory=list)
    stopped: str | None = None

    def tags(self) -> dict[str, str]:
        """Short tags of what this run reports outside its DP guarantee (`OUTSIDE_GUARANTEE`), by key."""
        return {key: OUTSIDE_GUARANTEE[key][0] for key in self.config.get("outside_guarantee", {})}

    def line(self, record: RoundRecord) -> str:
        """A one-line progress message for ``record``, each value outside the DP guarantee tagged."""
        tags = self.tags()
        parts = [f"round {record.round}: {record.reported}/{record.sampled} clients"]
        if record.dropped or record.nonfinite:
            parts.append(
                f"dropped {record.dropped}"
                if record.nonfinite is None
                else f"dropped {record.dropped}, non-finite {record.nonfinite}"
            )
        if record.train_loss is not None:
            parts.append(f"train loss {record.train_loss:.4f}")
        if record.evaluation:
            parts.append(
                f"eval loss {record.evaluation['loss']:.4f} acc {record.evaluation['accuracy']:.4f}"
                + (f" ({tags['evaluation']})" if "evaluation" in tags else "")
            )
        for key, value in record.metrics.items():
            if key.startswith("epsilon"):
                tag = f" ({tags['epsilon']})" if "epsilon" in tags else ""
                parts.append(f"{key.replace('_', ' ')} {value:.4g}{tag}")
        if record.seconds is not None:
            parts.append(f"{record.seconds:.2f}s")
        return ", ".join(parts)

    def axis_labels(self) -> tuple[str, str | None]:
        """The plot's axis labels: evaluation accuracy, and epsilon (None without), each tagged when outside
        the DP guarantee."""
        tags = self.tags()
        accuracy = "evaluation accuracy" + (f"\n({tags['evaluation']})" if "evaluation" in tags else "")
        eps_key = self._epsilon_key()
        if eps_key is None:
            return accuracy, None
        epsilon = f"epsilon ({eps_key.split('_')[-1]}, delta={self.config.get('target_delta', '?')})"
        if (self.config.get("strategy") or {}).get("trust_model") == LOCAL_TRUST_MODEL:
            epsilon = f"worst client's {epsilon}, local DP"
        return accuracy, epsilon + (f"\n({tags['epsilon']})" if "epsilon" in tags else "")

    def _epsilon_key(self) -> str | None:
        return next((k for r in self.rounds for k in r.metrics if k.startswith("epsilon")), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "rounds": [_finite(dataclasses.asdict(r)) for r in self.rounds],
            "stopped": self.stopped,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "History":
        return cls(
            config=data["config"], rounds=[RoundRecord(**r) for r in data["rounds"]], stopped=data.get("stopped")
        )

    def save_json(self, path) -> str:
        """Writes the history as JSON, atomically (a crash leaves no half-written file); returns ``path``."""
        return write_atomically(path, json.dumps(self.to_dict(), indent=2))

    def plot(self, path) -> str:
        """Writes a plot of evaluation accuracy per round, with epsilon on a second axis when present, in
        the format of ``path``'s extension (e.g. .png, .pdf, .svg), atomically; returns ``path``."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        evaluated = [r for r in self.rounds if r.evaluation]
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        ax.plot(
            [r.round for r in evaluated],
            [r.evaluation["accuracy"] for r in evaluated],
            "o-",
            ms=3,
            color="tab:blue",
            label="accuracy",
        )
        ax.set_xlabel("round")
        accuracy_label, epsilon_label = self.axis_labels()
        ax.set_ylabel(accuracy_label, color="tab:blue")
        ax.set_ylim(0, 1)
        eps_key = self._epsilon_key()
        if eps_key:
            ax2 = ax.twinx()
            ax2.plot([r.round for r in self.rounds], [r.metrics[eps_key] for r in self.rounds], "-", color="tab:red")
            ax2.set_ylabel(epsilon_label, color="tab:red")
        ax.set_title(self.config.get("title", "federated simulation"), fontsize=9)
        fig.tight_layout()
        path = os.fspath(path)
        fd, staging = tempfile.mkstemp(
            prefix=f".{os.path.basename(path)}-",
            suffix=os.path.splitext(path)[1],
            dir=os.path.dirname(os.path.abspath(path)),
        )
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
