"""Empirical privacy audits of trained models (no TensorFlow import).

`loss_threshold_audit` runs the loss-threshold membership-inference attack (Yeom et al. 2018):
training examples tend to have lower loss than held-out ones, and the attack's ROC AUC measures
how much. An AUC near 0.5 means the attack cannot tell members from non-members; it is evidence
(a lower bound on leakage), never a proof of privacy.
"""

from privacy.auditing.losses import per_example_cross_entropy
from privacy.auditing.membership_inference import MembershipAudit, loss_threshold_audit

__all__ = ["MembershipAudit", "loss_threshold_audit", "per_example_cross_entropy"]
