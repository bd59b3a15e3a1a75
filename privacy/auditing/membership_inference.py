"""Loss-threshold membership inference (Yeom et al., "Privacy Risk in Machine Learning", CSF 2018).

The attacker guesses "member" when an example's loss is at most a threshold tau. Sweeping tau gives
an ROC curve of members (training examples) against non-members (held-out examples of the same
distribution); its area is the probability that a random member has lower loss than a random
non-member (ties count one half), i.e. the Mann-Whitney statistic. The standard error is DeLong's
(DeLong, DeLong & Clarke-Pearson 1988), from the placement values of each score.

A differentially private model bounds any attack's ROC: TPR <= e^eps * FPR + delta. A measured AUC
near 0.5 is consistent with privacy but does not prove it: the audit is a lower bound on leakage.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np
from scipy import stats

from privacy import validation

ATTACK = "loss-threshold membership inference (Yeom et al. 2018)"
FPR_LEVELS = (0.01, 0.1)
"""False-positive rates at which the attack's true-positive rate is reported."""


@dataclasses.dataclass(frozen=True)
class MembershipAudit:
    """Result of a membership-inference audit.

    Attributes:
      auc: ROC AUC of the attack, in [0, 1]; 0.5 is chance.
      auc_standard_error: DeLong standard error of `auc`.
      advantage: membership advantage max_tau (TPR - FPR) (Yeom et al. Def. 4), in [0, 1].
      tpr_at_fpr: {fpr level: highest TPR of a threshold whose FPR is at most that level}.
      num_members: training examples attacked.
      num_nonmembers: held-out examples attacked.
      mean_member_loss: mean loss of the members, in the loss's units (nats for cross-entropy).
      mean_nonmember_loss: mean loss of the non-members.
    """

    auc: float
    auc_standard_error: float
    advantage: float
    tpr_at_fpr: dict[float, float]
    num_members: int
    num_nonmembers: int
    mean_member_loss: float
    mean_nonmember_loss: float
    attack: str = ATTACK

    @property
    def auc_ci95(self) -> tuple[float, float]:
        """Normal-approximation 95% confidence interval of `auc`, clipped to [0, 1]."""
        half = 1.959963984540054 * self.auc_standard_error
        return max(0.0, self.auc - half), min(1.0, self.auc + half)

    def to_dict(self) -> dict[str, Any]:
        low, high = self.auc_ci95
        return {
            "attack": self.attack,
            "auc": self.auc,
            "auc_standard_error": self.auc_standard_error,
            "auc_ci95": [low, high],
            "advantage": self.advantage,
            "tpr_at_fpr": {f"{level:g}": tpr for level, tpr in self.tpr_at_fpr.items()},
            "num_members": self.num_members,
            "num_nonmembers": self.num_nonmembers,
            "mean_member_loss": self.mean_member_loss,
            "mean_nonmember_loss": self.mean_nonmember_loss,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MembershipAudit":
        try:
            return cls(
                auc=float(data["auc"]),
                auc_standard_error=float(data["auc_standard_error"]),
                advantage=float(data["advantage"]),
                tpr_at_fpr={float(k): float(v) for k, v in data["tpr_at_fpr"].items()},
                num_members=int(data["num_members"]),
                num_nonmembers=int(data["num_nonmembers"]),
                mean_member_loss=float(data["mean_member_loss"]),
                mean_nonmember_loss=float(data["mean_nonmember_loss"]),
                attack=str(data.get("attack", ATTACK)),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"malformed membership audit: {err!r}") from None

    def format_text(self) -> str:
        low, high = self.auc_ci95
        tprs = ", ".join(f"TPR {tpr:.3f} at FPR <= {level:g}" for level, tpr in self.tpr_at_fpr.items())
        return "\n".join(
            [
                f"Membership-inference audit: {self.attack}",
                f"  examples           {self.num_members} members (train), "
                f"{self.num_nonmembers} non-members (held out)",
                f"  mean loss          members {self.mean_member_loss:.4f}, non-members {self.mean_nonmember_loss:.4f}",
                f"  attack AUC         {self.auc:.4f} (95% CI {low:.3f}-{high:.3f}; 0.5 = chance)",
                f"  advantage          {self.advantage:.4f} (max TPR - FPR); {tprs}",
            ]
        )


def loss_threshold_audit(
    member_losses: Sequence[float], nonmember_losses: Sequence[float], *, fpr_levels: Sequence[float] = FPR_LEVELS
) -> MembershipAudit:
    """Attacks with "member iff loss <= tau" and measures the attack over all thresholds tau.

    Args:
      member_losses: per-example losses of training examples (the model saw them).
      nonmember_losses: per-example losses of held-out examples from the same distribution.
      fpr_levels: false-positive rates in (0, 1) at which to report the true-positive rate.

    Raises:
      ValueError: if either set is empty or holds a loss that is NaN or infinite.
    """
    members = _losses("member_losses", member_losses)
    nonmembers = _losses("nonmember_losses", nonmember_losses)
    for level in fpr_levels:
        validation.probability("fpr_levels", level)
    m, n = len(members), len(nonmembers)
    # Membership score: lower loss = more likely a member.
    combined = stats.rankdata(np.concatenate([-members, -nonmembers]))
    member_ranks, nonmember_ranks = combined[:m], combined[m:]
    auc = (member_ranks.sum() - m * (m + 1) / 2) / (m * n)
    # DeLong placements: V10_i = P(member i beats a random non-member), V01_j likewise.
    v10 = (member_ranks - stats.rankdata(-members)) / n
    v01 = 1.0 - (nonmember_ranks - stats.rankdata(-nonmembers)) / m
    variance = (np.var(v10, ddof=1) / m if m > 1 else 0.0) + (np.var(v01, ddof=1) / n if n > 1 else 0.0)
    tpr, fpr = _roc(members, nonmembers)
    return MembershipAudit(
        auc=float(auc),
        auc_standard_error=float(math.sqrt(variance)),
        advantage=float(np.max(tpr - fpr)),
        tpr_at_fpr={float(level): float(np.max(tpr[fpr <= level])) for level in fpr_levels},
        num_members=m,
        num_nonmembers=n,
        mean_member_loss=float(members.mean()),
        mean_nonmember_loss=float(nonmembers.mean()),
    )


def _roc(members: np.ndarray, nonmembers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TPR and FPR of "member iff loss <= tau" for tau = -inf and every distinct loss."""
    thresholds = np.unique(np.concatenate([members, nonmembers]))
    tpr = np.searchsorted(np.sort(members), thresholds, side="right") / len(members)
    fpr = np.searchsorted(np.sort(nonmembers), thresholds, side="right") / len(nonmembers)
    return np.concatenate([[0.0], tpr]), np.concatenate([[0.0], fpr])


def _losses(name: str, values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise ValueError(f"{name} is empty: the audit needs at least one example of each kind")
    bad = ~np.isfinite(array)
    if bad.any():
        raise ValueError(
            f"{name} holds {int(bad.sum())} non-finite losses (first at index {int(np.argmax(bad))}: {array[bad][0]!r})"
        )
    return array
