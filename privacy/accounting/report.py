"""Privacy reports for DP-SGD: epsilon under RDP and PLD with everything needed to read it.

A report always states the sampling scheme, the adjacency, the sensitivity (microbatching), the
accountant and the dp-accounting version, as "How to DP-fy ML" (Ponomareva et al. 2023, Sec. 5.3)
asks. The text form is for people; `PrivacyReport.to_dict()` is the stable JSON form.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from fractions import Fraction
from typing import Any, Callable, Sequence

from privacy import validation
from privacy.accounting import noisy_padding
from privacy.accounting.accountants import AccountantKind, accountant_description, dp_accounting_version, epsilon_of
from privacy.accounting.events import event_to_json
from privacy.accounting.mechanism import Adjacency, DpSgdMechanism, Sampling, UnsupportedAccounting
from privacy.accounting.noise_cutoff import NoiseCutoff, NoiseDraws
from privacy.compared import compared

REPORT_FORMAT = "ppml.privacy_report/2"
MAX_PER_EPOCH_ROWS = 1000
"""Most per-epoch rows a report computes (each is one accounting; about a second with PLD)."""

_SAMPLING_TEXT = {
    Sampling.POISSON: "poisson (each example joins each batch independently with probability q)",
    Sampling.FIXED: "fixed (B examples drawn without replacement at every step; n is public)",
    Sampling.SHUFFLE: "shuffle (shuffle-and-iterate: no tight analysis is known, see the note)",
}
_ADJACENCY_TEXT = {
    Adjacency.ADD_REMOVE: "add-remove (neighbouring datasets differ by one example added or removed)",
    Adjacency.REPLACE_ONE: "replace-one (neighbouring datasets differ by one example replaced)",
}


DEFAULT_DELTA_RULE = "the largest power of ten at most 1/(2n)"
"""How `default_delta` picks delta (for help texts): never close enough to 1/n for `delta_warning`."""


def default_delta(dataset_size: int) -> float:
    """The largest power of ten at most 1/(2n) (n = 60000: 1e-6), computed exactly: 10^-k for the
    number of digits k of 2n - 1."""
    return 10.0 ** -len(str(2 * dataset_size - 1))


def compute_epsilon(
    mechanism: DpSgdMechanism,
    target_delta: float,
    accountant: AccountantKind | str = AccountantKind.RDP,
    *,
    steps: int | None = None,
) -> float:
    """Epsilon of ``mechanism`` (or its first ``steps`` steps) at ``target_delta``.

    Raises:
      UnsupportedAccounting: when the accountant has no analysis for this sampling/adjacency.
    """
    kind = AccountantKind(accountant)
    reason = mechanism.unsupported_reason(kind.value) or mechanism.cost_reason(kind.value, target_delta)
    if reason:
        raise UnsupportedAccounting(reason)
    return epsilon_of(
        mechanism.dp_event(steps),
        target_delta=target_delta,
        accountant=kind,
        relation=mechanism.neighboring_relation,
        group_size=mechanism.max_examples_per_user or 1,
    )


@dataclasses.dataclass(frozen=True)
class EpochRow:
    epoch: int
    steps: int
    epsilon: dict[str, float | None]


@dataclasses.dataclass(frozen=True)
class PrivacyReport:
    """The (epsilon, delta) guarantee of one DP-SGD configuration, with its context."""

    mechanism: DpSgdMechanism
    delta: float
    delta_is_default: bool
    epsilon: dict[str, float | None]  # accountant -> epsilon (None: unavailable)
    unavailable: dict[str, str]  # accountant -> why
    per_epoch: tuple[EpochRow, ...] = ()
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    noise_cutoff: NoiseCutoff | None = None
    """The noise sampler's cut-off, where the run's noise is known (`noise_cutoff`): the guarantee is then
    (epsilon, delta + its added delta). None: the report is of the untruncated Gaussian mechanism."""

    @property
    def accountant_version(self) -> str:
        return f"dp-accounting {dp_accounting_version()}"

    @property
    def guarantee_epsilon(self) -> float:
        """The guarantee's epsilon: the smallest of the accountants' (inf where none has an analysis)."""
        return _guarantee_epsilon(self.epsilon)

    @property
    def added_delta(self) -> float:
        """What the noise's cut-off (0 where it is not known) and noisy padding's clamp (`noisy_padding.clamp_delta`)
        add to `delta` at `guarantee_epsilon` (`added_deltas`)."""
        return math.fsum(added_deltas(self.mechanism, self.delta, self.guarantee_epsilon, self.noise_cutoff).values())

    @property
    def clamp_delta(self) -> float:
        """T p (1 + e^eps) at `guarantee_epsilon` with noisy padding, else 0."""
        return added_deltas(self.mechanism, self.delta, self.guarantee_epsilon, None)["clamp_delta"]  # no cut-off work

    @property
    def guarantee_delta(self) -> float:
        """The guarantee's delta: the accountants' `delta` plus `added_delta`."""
        return self.delta + self.added_delta

    def to_dict(self) -> dict[str, Any]:
        m = self.mechanism
        return {
            "format": REPORT_FORMAT,
            "epsilon_rdp": _finite_or_none(self.epsilon.get("rdp")),
            "epsilon_pld": _finite_or_none(self.epsilon.get("pld")),
            "delta": self.delta,
            "delta_is_default": self.delta_is_default,
            "steps": m.steps,
            "epochs": m.epochs,
            "dataset_size": m.dataset_size,
            "batch_size": m.batch_size,
            "sampling_probability": m.sampling_probability,
            "noise_multiplier": m.noise_multiplier,
            "sampling": m.sampling.value,
            "adjacency": m.adjacency.value,
            "num_microbatches": m.num_microbatches,
            "truncated_batch_size": m.truncated_batch_size,
            "batch_size_noise_multiplier": m.batch_size_noise_multiplier,
            "effective_noise_multiplier": m.effective_noise_multiplier,
            "clamp_delta": self.clamp_delta,
            "sensitivity": m.sensitivity,
            "max_examples_per_user": m.max_examples_per_user,
            "privacy_unit": "user" if m.max_examples_per_user else "example",
            "accountants": {k: accountant_description(k) for k in self.epsilon},
            "unavailable": dict(self.unavailable),
            "accountant_version": self.accountant_version,
            "dp_event": event_to_json(m.dp_event()),
            "neighboring_relation": m.neighboring_relation.name,
            "per_epoch": [
                {
                    "epoch": r.epoch,
                    "steps": r.steps,
                    **{f"epsilon_{k}": _finite_or_none(v) for k, v in r.epsilon.items()},
                }
                for r in self.per_epoch
            ],
            "notes": list(self.notes),
            "warnings": list(self.warnings),
            "noise_cutoff": None
            if self.noise_cutoff is None
            else self.noise_cutoff.to_dict(self.delta, self.guarantee_epsilon),
            "guarantee_delta": self.guarantee_delta,
        }

    def format_text(self) -> str:
        m = self.mechanism
        unit = "user" if m.max_examples_per_user else "example"
        batch = f"{m.batch_size:g} expected" if m.sampling is Sampling.POISSON else f"{m.batch_size:g}"
        if m.num_microbatches is None:
            clipping = f"per example; sensitivity {m.sensitivity:g} C"
            if m.truncated_batch_size is not None and m.adjacency is Adjacency.ADD_REMOVE:
                clipping += " (C, or 2 C when an added example pushes another out of a cut batch)"
        else:
            clipping = f"{m.num_microbatches} microbatches; sensitivity {m.sensitivity:g} C"
        delta = f"{self.delta:g}"
        if self.delta_is_default:
            delta += f" (default: {DEFAULT_DELTA_RULE} = {1 / (2 * m.dataset_size):.3g})"
        rows = [
            ("dataset size n", f"{m.dataset_size} examples (treated as public: see the notes)"),
            ("batch size B", f"{batch} (sampling probability q = {m.sampling_probability:.6g})"),
            (
                "noise multiplier",
                f"{m.noise_multiplier:g} (noise std {m.noise_multiplier:g} x C on the summed clipped gradients)",
            ),
            ("training", f"{m.steps} steps = {m.epochs:.4g} epochs"),
            ("sampling", _SAMPLING_TEXT[m.sampling]),
            ("adjacency", _ADJACENCY_TEXT[m.adjacency]),
            *(
                [
                    (
                        "truncation",
                        f"batches of more than {m.truncated_batch_size} cut to a random "
                        f"{m.truncated_batch_size} of them (probability {m.truncation_probability:.3g} per "
                        f"step), accounted as dp-accounting's TruncatedSubsampledGaussianDpEvent",
                    )
                ]
                if m.truncated_batch_size is not None
                else []
            ),
            *(
                [
                    (
                        "noisy padding",
                        f"batch-size noise multiplier {m.batch_size_noise_multiplier:g} rows (mean padding "
                        f"{noisy_padding.mean_padding(m.batch_size_noise_multiplier):.1f} rows before the cap): one "
                        f"Gaussian with the noisy sum, effective noise multiplier {m.effective_noise_multiplier:.4g}; "
                        f"clamp delta {self.clamp_delta:.3g}",
                    )
                ]
                if m.batch_size_noise_multiplier is not None
                else []
            ),
            ("clipping", clipping),
        ]
        if m.max_examples_per_user:
            rows.append(("privacy unit", f"user, at most {m.max_examples_per_user} examples each (group privacy)"))
        rows.append(("delta", delta))
        lines = ["DP-SGD privacy report", ""]
        lines += [f"  {k:<18} {v}" for k, v in rows]
        lines += ["", f"  {'accountant':<11} {'epsilon':>9}  analysis"]
        for kind, eps in self.epsilon.items():
            shown = "n/a" if eps is None else ("inf" if math.isinf(eps) else f"{eps:.4f}")
            description = self.unavailable.get(kind) or accountant_description(kind)
            lines.append(f"  {kind.upper():<11} {shown:>9}  {description}")
        lines.append("")
        best = [e for e in self.epsilon.values() if e is not None]
        if best:
            cut = "" if m.truncated_batch_size is None else f" cut to {m.truncated_batch_size} per batch"
            shown = (
                f"{self.delta:g}"
                if self.noise_cutoff is None and m.batch_size_noise_multiplier is None
                else f"{self.delta:g} + {self.added_delta:.3g}"
            )
            lines.append(
                f"  Guarantee: ({min(best):.4g}, {shown})-DP per {unit}, {m.adjacency.value} "
                f"adjacency, {m.sampling.value} sampling{cut}; {self.accountant_version}."
            )
        if self.per_epoch:
            kinds = list(self.epsilon)
            lines += ["", "  " + f"{'epoch':>6} {'steps':>8} " + " ".join(f"{'eps ' + k.upper():>10}" for k in kinds)]
            for r in self.per_epoch:
                vals = " ".join(
                    f"{'n/a' if r.epsilon.get(k) is None else format(r.epsilon[k], '.4f'):>10}" for k in kinds
                )
                lines.append(f"  {r.epoch:>6} {r.steps:>8} {vals}")
        if self.noise_cutoff is not None:
            lines.append(f"  noise cut-off: {self.noise_cutoff.describe(self.delta, self.guarantee_epsilon)}")
        for note in self.notes:
            lines.append(f"  note: {note}")
        for warning in self.warnings:
            lines.append(f"  WARNING: {warning}")
        return "\n".join(lines)


def added_deltas(
    mechanism: DpSgdMechanism | None, delta: float, epsilon: float, noise_cutoff: NoiseCutoff | None
) -> dict[str, float]:
    """Every part that ``mechanism``'s samplers add to the accountants' ``delta`` at ``epsilon``, by name: the noise
    sampler's cut-off ('cutoff_delta'; 0 where ``noise_cutoff`` is None, not known) and noisy padding's clamp
    ('clamp_delta', `noisy_padding.clamp_delta`; 0 without it, or without a DP-SGD ``mechanism``: None). The
    guarantee's delta is ``delta`` plus their sum (a report's `guarantee_delta`, a privacy ledger's delta).

    Raises:
      NoiseCutoffError, ClampDeltaError: where one exceeds its share of ``delta``.
    """
    cutoff = 0.0 if noise_cutoff is None else noise_cutoff.check(delta, epsilon)
    clamp = (
        0.0
        if mechanism is None or mechanism.batch_size_noise_multiplier is None
        else noisy_padding.check_clamp_delta(mechanism.steps, epsilon, delta)
    )
    return {"cutoff_delta": cutoff, "clamp_delta": clamp}


def _guarantee_epsilon(epsilon: dict[str, float | None]) -> float:
    """The smallest epsilon of those computed (each accountant's is a valid bound); inf where there is none."""
    return min((e for e in epsilon.values() if e is not None), default=math.inf)


def dp_sgd_report(
    mechanism: DpSgdMechanism,
    *,
    delta: float | None = None,
    accountants: Sequence[AccountantKind | str] = (AccountantKind.RDP, AccountantKind.PLD),
    per_epoch: bool = False,
    progress: Callable[[int, int], None] | None = None,
    noise_draws: NoiseDraws | None = None,
) -> PrivacyReport:
    """Builds the report; ``delta=None`` uses `default_delta(n)`.

    Args:
      noise_draws: what the sampler that drew the noise drew (cut-off radius, Box-Muller pairs per step): the
        guarantee then adds the cut-off's delta (`privacy.accounting.noise_cutoff`), and a cut-off adding more
        than its `MAX_ADDED_FRACTION` of delta raises `NoiseCutoffError`.
      per_epoch: also report epsilon after each whole epoch (one accounting per epoch; PLD takes
        about a second each for long runs).
      progress: called as ``progress(done, total)`` while per-epoch rows are computed.
    """
    delta_is_default = delta is None
    delta = default_delta(mechanism.dataset_size) if delta is None else delta
    validation.probability("delta", delta)
    if per_epoch and mechanism.passes > MAX_PER_EPOCH_ROWS:
        raise ValueError(f"per-epoch rows are computed for at most {MAX_PER_EPOCH_ROWS} epochs, got {mechanism.passes}")
    kinds = [AccountantKind(a) for a in accountants]
    epsilon: dict[str, float | None] = {}
    unavailable: dict[str, str] = {}
    for kind in kinds:
        try:
            epsilon[kind.value] = compute_epsilon(mechanism, delta, kind)
        except UnsupportedAccounting as err:
            epsilon[kind.value] = None
            unavailable[kind.value] = str(err)
    rows = _per_epoch_rows(mechanism, delta, kinds, epsilon, progress) if per_epoch else ()
    cutoff = None if noise_draws is None else NoiseCutoff.for_mechanism(mechanism, noise_draws)
    added_deltas(mechanism, delta, _guarantee_epsilon(epsilon), cutoff)  # refuses a part over its share of delta
    return PrivacyReport(
        mechanism=mechanism,
        delta=delta,
        delta_is_default=delta_is_default,
        epsilon=epsilon,
        unavailable=unavailable,
        per_epoch=rows,
        notes=tuple(_notes(mechanism, epsilon)),
        warnings=tuple(_warnings(mechanism, delta)),
        noise_cutoff=cutoff,
    )


def _per_epoch_rows(mechanism, delta, kinds, final, progress) -> tuple[EpochRow, ...]:
    whole = math.floor(mechanism.epochs + 1e-9)
    epochs = list(range(1, whole + 1))
    if not epochs or mechanism.steps_for(epochs[-1]) < mechanism.steps:
        epochs.append(None)  # the final, partial epoch
    rows = []
    for i, epoch in enumerate(epochs):
        steps = mechanism.steps if epoch is None else mechanism.steps_for(epoch)
        eps = {}
        for kind in kinds:
            if final[kind.value] is None:
                eps[kind.value] = None
            elif steps == mechanism.steps:
                eps[kind.value] = final[kind.value]
            else:
                eps[kind.value] = compute_epsilon(mechanism, delta, kind, steps=steps)
        rows.append(EpochRow(epoch=epoch if epoch is not None else mechanism.passes, steps=steps, epsilon=eps))
        if progress:
            progress(i + 1, len(epochs))
    return tuple(rows)


def _notes(m: DpSgdMechanism, epsilon) -> list[str]:
    notes = [
        f"dataset size: n = {m.dataset_size} is treated as public (it sets the sampling probability q = B/n and "
        f"the steps of an epoch); epsilon does not cover it, and neighbours under add-remove differ in it."
    ]
    if m.sampling is Sampling.SHUFFLE:
        length = (
            f"{m.steps_per_epoch} steps per epoch"
            if m.steps_per_epoch
            else f"an epoch counted as floor(n/B) = {m.epoch_length:g} steps, which never undercounts"
        )
        notes.append(
            f"shuffled batches: epsilon composes the Gaussian mechanism once per epoch started "
            f"({m.passes} times; {length}). Do not compare it with Poisson numbers: for shuffling, "
            f"the Poisson analysis can underestimate epsilon (Chua et al., ICML 2024)."
        )
    if m.microbatches_hold_several_examples and m.sampling is Sampling.POISSON:
        notes.append(
            "microbatching: a microbatch of several examples is clipped as a mean, which one example "
            "joining it can move by 2C; accounted with noise multiplier sigma/2."
        )
    if m.adjacency is Adjacency.REPLACE_ONE:
        notes.append(
            f"replace-one: the summed clipped gradients with an example x and with its replacement x' are "
            f"at most {m.sensitivity:g}C apart ({_replace_one_distance(m)}); that is the sensitivity "
            f"accounted."
        )
    if m.max_examples_per_user:
        notes.append(
            f"user level: group privacy over {m.max_examples_per_user} examples, "
            f"(k*eps, delta*sum_(i<k) e^(i*eps)) with the example-level delta searched so that "
            f"the user-level delta is met."
        )
        if any(e is not None and math.isinf(e) for e in epsilon.values()):
            notes.append("user level: the group-privacy bound diverges for this configuration (inf).")
    if m.batch_size_noise_multiplier is not None:
        notes.append(
            f"noisy padding: {noisy_padding.covered_rows(m.batch_size_noise_multiplier, m.effective_noise_multiplier)}."
        )
    return notes


def _replace_one_distance(m: DpSgdMechanism) -> str:
    """Why x and x' move one step's sum by at most `m.sensitivity` C."""
    if m.sampling is not Sampling.POISSON:
        return "x' takes x's slot, and its example or microbatch moves by at most 2C"
    if m.per_side == 2:
        return "each moves the sum without either by up to 2C, its microbatch's mean flipping"
    return "each contributes at most C"


def delta_below_one_over_n(delta: float, n: int) -> bool:
    """Whether ``delta`` is below 1/n for ``n`` privacy units: the one rule of every delta check in ppml (a delta
    not below 1/n is refused by the trainers, a problem at the Evaluator, and what `delta_warning` says).

    Decided exactly (``delta`` is a float, a rational; n x delta is not rounded), except that the float nearest
    1/n, which ``1 / n`` gives and which any config or program writing delta = 1/n holds, counts as 1/n: a delta
    meant as 1/n is refused for every n, whichever way 1/n rounds (the float nearest 1/49 is below 1/49, the one
    nearest 1/3 too), and nothing at or above 1/n passes. Rounded n x delta is not this rule: ``delta * n >= 1``
    refuses the float nearest 1/3 but not the one nearest 1/49. (``delta >= 1 / n`` in floats is, but only by an
    argument about rounding.) nan and +inf are not below."""
    delta, n = float(delta), operator.index(n)
    if not math.isfinite(delta):
        return delta < 0
    return delta != 1 / n and Fraction(delta) * n < 1


DELTA_WARNING_FRACTION = 0.5
"""`delta_warning` speaks up once n * delta exceeds this (1/(2n) is the largest delta commonly used)."""


def delta_warning(delta: float, dataset_size: int, unit: str = "example") -> str | None:
    """Why ``delta`` is too large for ``dataset_size`` privacy units (examples, users, clients), or None.

    A mechanism that publishes each unit's data in full with probability delta is (0, delta)-DP, so
    delta near 1/n allows about n * delta units in the clear (`default_delta` stays at 1/(2n) or below).
    """
    share = delta * dataset_size
    if not delta_below_one_over_n(delta, dataset_size):
        shown, bound = compared(delta, 1 / dataset_size, digits=6, bound_digits=3)
        return (
            f"delta={shown} is not below 1/n={bound}: a mechanism that publishes a random "
            f"{unit} in full meets this delta. Use delta < 1/n."
        )
    if share > DELTA_WARNING_FRACTION:
        shown, _ = compared(delta, 1 / dataset_size, bound_digits=17)  # both below 1/n as printed (0.9996/n, not 1/n)
        below, _ = compared(share, 1, digits=3)
        return (
            f"delta={shown} is {below}/n (n={dataset_size} {unit}s), close to 1/n: a mechanism that "
            f"publishes each {unit} in full with probability delta meets it, {share:.2g} {unit}s in the clear on "
            f"average. Prefer delta <= 1/(2n) = {1 / (2 * dataset_size):.3g} or smaller."
        )
    return None


def _warnings(m: DpSgdMechanism, delta: float) -> list[str]:
    warning = delta_warning(delta, m.dataset_size)
    return [warning] if warning else []


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
