"""Calibration: the noise for a target epsilon, and the training a given noise affords.

Both searches are dp-accounting's `calibrate_dp_mechanism` (Brent's method with a guarantee that
the returned value meets the target); ppml only supplies the event family and a finite bracket.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import dp_accounting
from dp_accounting import dp_event

from privacy import validation
from privacy.accounting.accountants import AccountantKind, PriorEvents, epsilon_of, make_accountant
from privacy.accounting.mechanism import (
    NOISE_MULTIPLIER_RANGE,
    PLD_MAX_EPSILON,
    PLD_MAX_UNITS,
    PLD_MIN_STEP_NOISE,
    DpSgdMechanism,
    Sampling,
    UnsupportedAccounting,
)

MIN_NOISE_MULTIPLIER = 0.05
"""Calibration searches sigma in `CALIBRATED_RANGE`."""

CALIBRATED_RANGE = (MIN_NOISE_MULTIPLIER, NOISE_MULTIPLIER_RANGE[1])
"""[lowest, highest]: every noise multiplier `calibrate_noise_multiplier` may return (or it raises)."""


class PaddingNoiseTooSmall(ValueError):
    """With noisy padding each step's noise multiplier stays below sigma_c however large sigma is: a target that
    steps of sigma_c itself miss is out of reach (`calibrate_noise_multiplier`)."""


class PaddingBelowPldFloor(UnsupportedAccounting):
    """With noisy padding of ``batch_size_noise_multiplier`` sigma_c at or below PLD's per-step floor, every step's
    noise multiplier is below it however large sigma is: PLD is not asked (`calibrate_noise_multiplier`); the
    setting to change is sigma_c (or the accountant)."""


def calibrate_noise_multiplier(
    mechanism: DpSgdMechanism,
    *,
    target_epsilon: float,
    target_delta: float,
    accountant: AccountantKind | str = AccountantKind.RDP,
    tolerance: float = 1e-4,
    prior_events: Sequence[dp_event.DpEvent] = (),
) -> float:
    """Smallest noise multiplier (within ``tolerance``) whose epsilon is <= ``target_epsilon``.

    ``mechanism.noise_multiplier`` is ignored; every other field is kept. ``prior_events`` (e.g. the
    releases of private preprocessing) are composed before the run, under the mechanism's relation, so
    that the returned sigma makes everything together meet the target.

    With noisy padding (``mechanism.batch_size_noise_multiplier``, sigma_c) the steps are accounted at
    sigma_eff = (sigma^-2 + sigma_c^-2)^-1/2 (`DpSgdMechanism.effective_noise_multiplier`); the returned sigma is the
    gradient noise's, and the clamp's delta (`noisy_padding.clamp_delta`) comes on top of ``target_delta``.

    Raises:
      ValueError: when the target is out of reach (e.g. the prior events alone exceed it);
        `PaddingNoiseTooSmall` where steps of noise multiplier sigma_c alone miss it.
      UnsupportedAccounting: where the accountant has no analysis of the mechanism; `PaddingBelowPldFloor` where
        PLD is asked with a sigma_c at or below its per-step floor.
    """
    kind = _check(mechanism, target_epsilon, target_delta, accountant)
    _check_pld_target(mechanism, kind, target_epsilon)
    prior = list(prior_events)
    prior_of = functools.cache(lambda k: _prior_events(prior, mechanism, k))  # per accountant kind, composed once
    if prior and prior_of(kind).epsilon(dp_event.NoOpDpEvent(), target_delta) >= target_epsilon:
        raise ValueError(
            f"the {len(prior)} prior events alone spend epsilon >= {target_epsilon} at delta "
            f"{target_delta:g}; nothing is left for training"
        )
    floor = _lowest_noise_multiplier(mechanism, kind)
    if mechanism.batch_size_noise_multiplier is not None:
        _check_padding_noise(mechanism, kind, target_epsilon, target_delta, prior_of)

    def run(sigma: float) -> dp_event.DpEvent:  # the run's own event, composed after the prior
        return mechanism.replace(noise_multiplier=sigma).dp_event()

    @functools.cache
    def epsilon_gap(sigma: float) -> float:
        return prior_of(kind).epsilon(run(sigma), target_delta) - target_epsilon

    lo = hi = max(
        floor,
        _rdp_hint(
            kind,
            mechanism,
            lambda: calibrate_noise_multiplier(
                mechanism,
                target_epsilon=target_epsilon,
                target_delta=target_delta,
                accountant=AccountantKind.RDP,
                tolerance=1e-2,
                prior_events=prior,
            ),
        )
        or 1.0,
    )
    highest = CALIBRATED_RANGE[1]
    while _gap_or_refuse(epsilon_gap, hi, target_epsilon, kind) > 0:
        lo, hi = hi, hi * 2
        if hi > highest:
            raise ValueError(f"no noise multiplier up to {highest:g} reaches epsilon {target_epsilon}")
    if lo == hi:  # the starting sigma already suffices: walk down to bracket the answer
        while lo > floor and epsilon_gap(lo) <= 0:
            hi, lo = lo, max(lo * 0.8, floor)
        if epsilon_gap(lo) <= 0 and floor > MIN_NOISE_MULTIPLIER:
            raise UnsupportedAccounting(
                f"epsilon {target_epsilon:g} is met even with noise multiplier {floor:.3g}, "
                f"below which PLD is not asked to account these steps; the RDP accountant "
                f"covers it"
            )
        if epsilon_gap(lo) <= 0:
            raise ValueError(
                f"epsilon {target_epsilon} is met even with noise multiplier {floor:g}; the target is "
                f"too loose to calibrate"
            )
    return dp_accounting.calibrate_dp_mechanism(
        prior_of(kind).accountant,
        run,
        target_epsilon,
        target_delta,
        bracket_interval=dp_accounting.ExplicitBracketInterval(lo, hi),
        tol=tolerance,
    )


def max_units(
    mechanism: DpSgdMechanism,
    *,
    target_epsilon: float,
    target_delta: float,
    accountant: AccountantKind | str = AccountantKind.RDP,
) -> int:
    """Largest number of unit events (steps; epochs under shuffling) within ``target_epsilon``.

    ``mechanism.steps`` is ignored. Returns 0 when even one unit exceeds the target.
    """
    kind = _check(mechanism, target_epsilon, target_delta, accountant)
    _check_pld_target(mechanism, kind, target_epsilon)
    reason = mechanism.pld_step_noise_reason() if kind is AccountantKind.PLD else None
    if reason:
        raise UnsupportedAccounting(reason)
    unit = mechanism.unit_event()

    def epsilon_gap(units: int) -> float:
        return _epsilon(dp_event.SelfComposedDpEvent(unit, units), mechanism, kind, target_delta) - target_epsilon

    if epsilon_gap(1) > 0:
        return 0
    limit = PLD_MAX_UNITS if kind is AccountantKind.PLD and mechanism.sampling is Sampling.POISSON else 2**40
    hint = _rdp_hint(
        kind,
        mechanism,
        lambda: max_units(
            mechanism, target_epsilon=target_epsilon, target_delta=target_delta, accountant=AccountantKind.RDP
        ),
    )
    hi = min(2 * hint, limit) if hint and hint <= limit and epsilon_gap(hint) <= 0 else 2
    while epsilon_gap(hi) <= 0:
        if hi >= limit:
            if kind is AccountantKind.PLD:
                raise UnsupportedAccounting(
                    f"more than {limit:.0e} steps fit in epsilon {target_epsilon:g}, more "
                    f"than PLD composes here; the RDP accountant covers it"
                )
            raise ValueError(f"more than 2**40 units fit in epsilon {target_epsilon}")
        hi = min(hi * 2, limit)
    units = dp_accounting.calibrate_dp_mechanism(
        lambda: make_accountant(kind, mechanism.neighboring_relation, mechanism.max_examples_per_user or 1),
        lambda u: dp_event.SelfComposedDpEvent(unit, u),
        target_epsilon,
        target_delta,
        bracket_interval=dp_accounting.ExplicitBracketInterval(hi // 2, hi),
        discrete=True,
    )
    while epsilon_gap(units + 1) <= 0:  # within tol=1 of the optimum: close the gap
        units += 1
    return int(units)


def max_epochs(
    mechanism: DpSgdMechanism,
    *,
    target_epsilon: float,
    target_delta: float,
    accountant: AccountantKind | str = AccountantKind.RDP,
) -> tuple[int, int]:
    """(whole epochs, steps) affordable within ``target_epsilon``; see `max_units`."""
    units = max_units(mechanism, target_epsilon=target_epsilon, target_delta=target_delta, accountant=accountant)
    if mechanism.sampling is Sampling.SHUFFLE:
        return units, math.floor(units * mechanism.epoch_length)
    return math.floor(units / mechanism.epoch_length + 1e-9), units


def _gap_or_refuse(epsilon_gap, sigma: float, target_epsilon: float, kind: AccountantKind) -> float:
    """``epsilon_gap(sigma)``; where the accountant cannot vouch for an epsilon at ``sigma`` (RDP's numerical
    floor), the target is out of its reach: no larger sigma is tried, so the search never lands there."""
    try:
        return epsilon_gap(sigma)
    except UnsupportedAccounting as err:
        raise UnsupportedAccounting(
            f"epsilon {target_epsilon:g} is not reached before noise multiplier {sigma:.4g}, where {err}"
        ) from None


def _check_pld_target(mechanism: DpSgdMechanism, kind: AccountantKind, target_epsilon: float) -> None:
    if kind is AccountantKind.PLD and mechanism.sampling is Sampling.POISSON and target_epsilon > PLD_MAX_EPSILON:
        raise UnsupportedAccounting(
            f"PLD is not asked for epsilons above {PLD_MAX_EPSILON:g} (its grid needs minutes "
            f"and gigabytes); the RDP accountant covers it"
        )


def _lowest_noise_multiplier(mechanism: DpSgdMechanism, kind: AccountantKind) -> float:
    """Where the search stops going down: MIN_NOISE_MULTIPLIER, or PLD's floor for Poisson-sampled steps (the sigma
    whose step noise, sigma_eff with noisy padding, is PLD's least: see pld_step_noise_reason)."""
    if kind is not AccountantKind.PLD or mechanism.sampling is not Sampling.POISSON:
        return MIN_NOISE_MULTIPLIER
    step_floor = PLD_MIN_STEP_NOISE * mechanism.pld_step_move
    sigma_c = mechanism.batch_size_noise_multiplier
    if sigma_c is None:
        return max(MIN_NOISE_MULTIPLIER, step_floor)
    if sigma_c <= step_floor:
        raise PaddingBelowPldFloor(
            f"PLD is not asked to account a noise multiplier below {step_floor:g} per step, and with "
            f"batch_size_noise_multiplier {sigma_c:g} every step's is below {sigma_c:g}; the RDP accountant covers it"
        )
    return max(MIN_NOISE_MULTIPLIER, (step_floor**-2 - sigma_c**-2) ** -0.5 * (1 + 1e-9))


def _check_padding_noise(mechanism: DpSgdMechanism, kind: AccountantKind, target_epsilon, target_delta, prior_of):
    """Refuses (`PaddingNoiseTooSmall`) a target that the run with steps of noise multiplier sigma_c, the limit of
    sigma_eff as sigma grows, does not undercut. RDP (milliseconds) first: below the target there, PLD is taken to
    reach it too (otherwise the search itself says no sigma reaches it); above it, PLD decides unless RDP's epsilon
    is beyond `PLD_MAX_EPSILON`. ``prior_of(kind)``: the prior events' `PriorEvents` for that accountant."""
    sigma_c = mechanism.batch_size_noise_multiplier
    limit = mechanism.replace(noise_multiplier=sigma_c, batch_size_noise_multiplier=None).dp_event()
    try:
        epsilon, by = prior_of(AccountantKind.RDP).epsilon(limit, target_delta), AccountantKind.RDP
    except UnsupportedAccounting:  # RDP's numerical floor: an epsilon near 0
        return
    if epsilon >= target_epsilon and kind is AccountantKind.PLD and epsilon <= PLD_MAX_EPSILON:
        epsilon, by = prior_of(kind).epsilon(limit, target_delta), kind
    if epsilon >= target_epsilon:
        raise PaddingNoiseTooSmall(
            f"batch_size_noise_multiplier {sigma_c:g} is too small for epsilon {target_epsilon:g} at delta "
            f"{target_delta:g}: however large sigma, each step's noise multiplier stays below {sigma_c:g}, where "
            f"the {mechanism.steps} steps already spend epsilon {epsilon:.4g} ({by.value}); raise it, or the target"
        )


def _rdp_hint(kind: AccountantKind, mechanism: DpSgdMechanism, rdp_answer):
    """For PLD, the fast RDP answer as a starting point of the bracket search (PLD is usually tighter)."""
    if kind is AccountantKind.PLD and mechanism.unsupported_reason("rdp") is None:
        try:
            return rdp_answer()
        except (UnsupportedAccounting, PaddingNoiseTooSmall):  # beyond RDP's reach: PLD searches on its own
            return None
    return None


def _check(mechanism: DpSgdMechanism, target_epsilon: float, target_delta: float, accountant) -> AccountantKind:
    kind = AccountantKind(accountant)
    validation.positive("target_epsilon", target_epsilon)
    validation.probability("target_delta", target_delta)
    reason = mechanism.unsupported_reason(kind.value)  # PLD's cost limits are kept by the searches themselves
    if reason:
        raise UnsupportedAccounting(reason)
    return kind


def _prior_events(prior, mechanism: DpSgdMechanism, kind: AccountantKind) -> PriorEvents:
    return PriorEvents(prior, kind, mechanism.neighboring_relation, mechanism.max_examples_per_user or 1)


def _epsilon(event, mechanism: DpSgdMechanism, kind: AccountantKind, delta: float) -> float:
    return epsilon_of(
        event,
        target_delta=delta,
        accountant=kind,
        relation=mechanism.neighboring_relation,
        group_size=mechanism.max_examples_per_user or 1,
    )
