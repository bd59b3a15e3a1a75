"""Empirical privacy audits of trained models (no TensorFlow import).

`loss_threshold_audit` runs the loss-threshold membership-inference attack (Yeom et al. 2018):
training examples tend to have lower loss than held-out ones, and the attack's ROC AUC measures
how much. An AUC near 0.5 means the attack cannot tell members from non-members; it is evidence
(a lower bound on leakage), never a proof of privacy.

`audit_one_run` turns per-canary scores and the canaries' secret inclusion bits into a lower bound on
epsilon from a single training run (Steinke, Nasr & Jagielski 2023): at the stated confidence, the run
is not (eps, delta)-DP for any eps below the bound. Its `estimator` is the counting bound of that paper or the f-DP
bound of Mahloujifar, Melis & Chaudhuri 2024 (`privacy.auditing.f_dp_one_run`), against the (eps, delta) or the
mu-GDP trade-off curve, or against the claimed DP-SGD mechanism's own curve (`privacy.auditing.claimed_curve`).

`run_dp_sgd_audit(AuditPlan(...), x, y, build_model=...)` audits a Keras model of yours: one `make_private`
training run with canaries, the claimed epsilons and the bound (TensorFlow is imported when it runs).
"""

from privacy.auditing.dp_sgd_audit import AuditPlan, AuditResult, run_dp_sgd_audit
from privacy.auditing.losses import per_example_cross_entropy
from privacy.auditing.membership_inference import MembershipAudit, loss_threshold_audit
from privacy.auditing.one_run import OneRunAudit, audit_one_run

__all__ = [
    "AuditPlan",
    "AuditResult",
    "MembershipAudit",
    "OneRunAudit",
    "audit_one_run",
    "loss_threshold_audit",
    "per_example_cross_entropy",
    "run_dp_sgd_audit",
]
