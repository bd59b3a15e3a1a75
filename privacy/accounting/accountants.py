"""dp-accounting's RDP and PLD accountants, and group privacy on top of either.

ppml does not re-derive privacy analyses: every epsilon comes from `dp_accounting.rdp.RdpAccountant`
or `dp_accounting.pld.PLDAccountant`. The one analysis added is `GroupPrivacyAccountant`, which turns an
example-level guarantee into a user-level one for users with at most K examples. The rest only saves work and
gives dp-accounting's own floats: `epsilon_of`'s memo, `SharedPldAccountant` (one-event PLDs built once) and
`PriorEvents` (fixed events composed once).
"""

from __future__ import annotations

import contextlib
import copy
import enum
import functools
import importlib.metadata
import json
import logging
import math
import threading

import dp_accounting
import numpy as np
from dp_accounting import dp_event
from dp_accounting.rdp import rdp_privacy_accountant

from privacy import validation
from privacy.accounting.events import event_from_json, event_to_json
from privacy.accounting.pld_grid import PLD_VALUE_DISCRETIZATION_INTERVAL, gaussian_grid_values, grid_reason

NeighboringRelation = dp_accounting.NeighboringRelation

EPSILON_MEMO_SIZE = 4096
"""Most epsilons `epsilon_of` keeps in memory (a PLD epsilon costs up to seconds; a memoised one, a float)."""

SHARED_PLD_MEMO_SIZE = 8
"""Most one-event PLDs `SharedPldAccountant` keeps in memory."""
SHARED_PLD_MAX_VALUES = 2 * 10**6
"""Largest grid of a kept PLD as `_shared` estimates it from the event's Gaussian (16 MB a float64 array; at the
product's grid, noise multiplier about 0.1 and above under add-remove, 0.2 under replace-one): so the kept PLDs hold
at most a few hundred MB. A Poisson-sampled step of noise multiplier 1 takes about 1 MB, one of 0.1 about 23 MB.
Events needing more are built every time."""


class UnsupportedAccounting(ValueError):
    """No analysis of this mechanism exists in the requested accountant, or none it can vouch for."""


class AccountantKind(str, enum.Enum):
    RDP = "rdp"
    PLD = "pld"


def dp_accounting_version() -> str:
    """The installed dp-accounting version, as reported in every privacy report."""
    return importlib.metadata.version("dp-accounting")


def accountant_description(kind: AccountantKind | str) -> str:
    kind = AccountantKind(kind)
    if kind is AccountantKind.RDP:
        return "dp_accounting.rdp.RdpAccountant (default orders, dp-accounting's RDP-to-DP conversion)"
    return f"dp_accounting.pld.PLDAccountant (pessimistic, value discretization {PLD_VALUE_DISCRETIZATION_INTERVAL:g})"


def make_accountant(
    kind: AccountantKind | str,
    relation: NeighboringRelation = NeighboringRelation.ADD_OR_REMOVE_ONE,
    group_size: int = 1,
) -> dp_accounting.PrivacyAccountant:
    """A fresh accountant; with ``group_size > 1`` its epsilon is for groups of that size."""
    kind = AccountantKind(kind)
    if kind is AccountantKind.RDP:
        accountant = CheckedRdpAccountant(neighboring_relation=relation)
    else:
        accountant = SharedPldAccountant(
            neighboring_relation=relation, value_discretization_interval=PLD_VALUE_DISCRETIZATION_INTERVAL
        )
    if group_size > 1:
        return GroupPrivacyAccountant(accountant, group_size)
    return accountant


def rdp_epsilon(orders, rdp, delta: float) -> tuple[float, float]:
    """(epsilon, optimal order) of an RDP curve at ``delta``, by dp-accounting's conversion.

    dp-accounting turns a negative Renyi divergence (numerical cancellation at huge noise multipliers or tiny
    sampling probabilities) into epsilon 0 with a log warning: refused here, the curve cannot be trusted. Its KL
    branch reports 0 at an order whose divergence r has 1 - e^-r < delta^2; that 0 is a true bound and is
    kept: the divergence at any order >= 1 is at least the KL divergence, and the total variation distance is
    at most sqrt(1 - e^-KL) (Bretagnolle-Huber), so it is below delta and (0, delta)-DP holds.

    Raises:
      UnsupportedAccounting: when any order's divergence is negative or NaN.
    """
    _check_rdp_curve(orders, rdp)
    epsilon, order = rdp_privacy_accountant.compute_epsilon(orders, rdp, delta)
    return float(epsilon), float(order)


def _check_rdp_curve(orders, rdp) -> None:
    rdp = np.asarray(rdp, dtype=float)
    bad = np.isnan(rdp) | (rdp < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise UnsupportedAccounting(
            f"dp-accounting's RDP accountant is numerically unstable here (Renyi divergence {rdp[i]:.3g} at order "
            f"{orders[i]:g}: the noise is too large or the sampling too sparse for its precision), so it cannot "
            f"vouch for any epsilon"
        )


class _RdpOrderExcluded(logging.Filter):
    """Drops dp-accounting's absl warning that an RDP order did not converge and is left out of epsilon: it
    depends on public numbers only and leaving an order out can only raise epsilon, but it came in bursts of a
    hundred lines per epsilon (e.g. between a federated run's round lines)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("_compute_log_a_frac failed to converge")


_RDP_ORDER_EXCLUDED = _RdpOrderExcluded()
_COMPOSING = 0  # RDP compositions running now, in all threads
_COMPOSING_LOCK = threading.Lock()


class CheckedRdpAccountant(dp_accounting.rdp.RdpAccountant):
    """dp-accounting's RdpAccountant whose epsilon and delta are refused where its RDP curve is numerically
    broken (see `rdp_epsilon`), and whose compositions drop the excluded-order warning (`_RdpOrderExcluded`, on
    the absl logger while composing only)."""

    def _maybe_compose(self, event: dp_event.DpEvent, count: int, do_compose: bool):
        global _COMPOSING
        absl = logging.getLogger("absl")
        with _COMPOSING_LOCK:  # on while any composition, nested or in another thread, runs
            _COMPOSING += 1
            absl.addFilter(_RDP_ORDER_EXCLUDED)
        try:
            return super()._maybe_compose(event, count, do_compose)
        finally:
            with _COMPOSING_LOCK:
                _COMPOSING -= 1
                if not _COMPOSING:
                    absl.removeFilter(_RDP_ORDER_EXCLUDED)

    def get_epsilon_and_optimal_order(self, target_delta: float) -> tuple[float, float]:
        return rdp_epsilon(self._orders, self._rdp, target_delta)

    def get_epsilon(self, target_delta: float) -> float:
        return self.get_epsilon_and_optimal_order(target_delta)[0]

    def get_delta_and_optimal_order(self, target_epsilon: float) -> tuple[float, float]:
        _check_rdp_curve(self._orders, self._rdp)
        return super().get_delta_and_optimal_order(target_epsilon)

    def get_delta(self, target_epsilon: float) -> float:
        return self.get_delta_and_optimal_order(target_epsilon)[0]


class SharedPldAccountant(dp_accounting.pld.PLDAccountant):
    """dp-accounting's PLDAccountant whose PLD of one event, a Gaussian release (e.g. private preprocessing) or a
    DP-SGD step (a Poisson-sampled or truncated subsampled Gaussian), is built once per process and shared between
    compositions (the `SHARED_PLD_MEMO_SIZE` latest, of grids up to `SHARED_PLD_MAX_VALUES`).

    Every epsilon is the float dp-accounting's own accountant gives: each PLD comes from the call dp-accounting
    makes with the same arguments, PLDs are never changed in place (composing makes a new one), and it is then
    self-composed and composed exactly as there. Its gain: per-epoch epsilons, step-count searches, resumed ledgers
    and every figure over a pipeline's preprocessing releases re-compose the same events (building a PLD is most of
    a PLD epsilon's time)."""

    def _maybe_compose(self, event: dp_event.DpEvent, count: int, do_compose: bool):
        relation, interval = self.neighboring_relation, self._value_discretization_interval
        if do_compose and isinstance(event, dp_event.GaussianDpEvent) and _shared(event, relation, interval):
            # dp-accounting composes count Gaussians as one of standard deviation sigma / sqrt(count)
            gaussian = dp_event.GaussianDpEvent(event.noise_multiplier / math.sqrt(count))
            if _shared(gaussian, relation, interval):
                self._pld = self._pld.compose(_one_event_pld(gaussian, relation, interval, _types(gaussian)))
                return None
        elif do_compose and _shared(event, relation, interval):
            pld = _one_event_pld(event, relation, interval, _types(event))
            self._pld = self._pld.compose(pld.self_compose(count))
            return None
        return super()._maybe_compose(event, count, do_compose)


def _shared(event: dp_event.DpEvent, relation: NeighboringRelation, interval: float) -> bool:
    """Whether `_one_event_pld` builds ``event``'s PLD and keeps it: dp-accounting's other branches (zero noise, zero
    sampling probability), events that cannot be a key (e.g. a numpy array in a field) and grids over
    `SHARED_PLD_MAX_VALUES` are left to it."""
    try:
        hash(event)
    except TypeError:
        return False
    if isinstance(event, dp_event.GaussianDpEvent):
        sigma, shareable = event.noise_multiplier, True
    elif isinstance(event, dp_event.PoissonSampledDpEvent) and isinstance(event.event, dp_event.GaussianDpEvent):
        sigma, shareable = event.event.noise_multiplier, event.sampling_probability != 0
    elif isinstance(event, dp_event.TruncatedSubsampledGaussianDpEvent):
        sigma = event.noise_multiplier
        shareable = event.sampling_probability != 0 and event.truncated_batch_size != 0 and event.dataset_size != 0
        relation = NeighboringRelation.REPLACE_ONE  # its loss spans a sensitivity-2 Gaussian's under either relation
    else:
        return False
    return shareable and sigma > 0 and gaussian_grid_values(sigma, relation, interval) <= SHARED_PLD_MAX_VALUES


def _types(event: dp_event.DpEvent) -> tuple[type, ...]:
    """The types of a shared event's numbers, part of its memo key: events compare equal across types (0.25 ==
    numpy.float32(0.25), 100 == 100.0) whose PLDs dp-accounting builds differently (a Poisson-sampled Gaussian of
    float32 sampling probability 0.25 and noise 1.5 has another epsilon than the float64 one)."""
    if isinstance(event, dp_event.GaussianDpEvent):
        return (type(event.noise_multiplier),)
    if isinstance(event, dp_event.PoissonSampledDpEvent):
        return type(event.sampling_probability), type(event.event.noise_multiplier)
    fields = (event.dataset_size, event.sampling_probability, event.truncated_batch_size, event.noise_multiplier)
    return tuple(type(value) for value in fields)


@functools.lru_cache(maxsize=SHARED_PLD_MEMO_SIZE)
def _one_event_pld(event: dp_event.DpEvent, relation: NeighboringRelation, interval: float, types: tuple):
    """The PLD of one Gaussian, Poisson-sampled Gaussian or truncated subsampled Gaussian event, built as
    `PLDAccountant._maybe_compose` builds it (dp-accounting 0.6.0); ``types``, its `_types`, only tell apart
    equal events of other number types (e.g. numpy.float32) in the memo."""
    pld = dp_accounting.pld.privacy_loss_distribution
    if isinstance(event, dp_event.GaussianDpEvent):
        return pld.from_gaussian_mechanism(
            standard_deviation=event.noise_multiplier,
            value_discretization_interval=interval,
            neighboring_relation=relation,
        )
    if isinstance(event, dp_event.PoissonSampledDpEvent):
        return pld.from_gaussian_mechanism(
            standard_deviation=event.event.noise_multiplier,
            value_discretization_interval=interval,
            sampling_prob=event.sampling_probability,
            neighboring_relation=relation,
        )
    return pld.from_truncated_subsampled_gaussian_mechanism(
        dataset_size=event.dataset_size,
        sampling_probability=event.sampling_probability,
        truncated_batch_size=event.truncated_batch_size,
        noise_multiplier=event.noise_multiplier,
        value_discretization_interval=interval,
        neighboring_relation=relation,
    )


def group_delta(epsilon: float, delta: float, group_size: int) -> float:
    """delta for groups of ``group_size`` under an (epsilon, delta) guarantee for one record.

    Chaining the guarantee along k neighbouring datasets gives
    (k * epsilon, delta * sum_{i<k} e^{i * epsilon}) (Dwork & Roth 2014, Thm 2.2 and its proof).
    """
    if epsilon == 0:
        return group_size * delta
    if group_size * epsilon > 700:  # e^700 is near the float64 limit
        return math.inf
    return delta * math.expm1(group_size * epsilon) / math.expm1(epsilon)


class GroupPrivacyAccountant(dp_accounting.PrivacyAccountant):
    """Wraps an accountant; `get_epsilon` bounds groups of ``group_size`` records.

    For a target group delta, it searches the record-level delta' that minimises
    ``group_size * epsilon(delta')`` subject to ``group_delta(epsilon(delta'), delta') <= delta``.
    Every returned value satisfies the constraint (it is checked), so the search only affects
    tightness, never validity. Returns inf when no record-level delta' down to 1e-300 works.
    """

    def __init__(self, inner: dp_accounting.PrivacyAccountant, group_size: int):
        super().__init__(inner.neighboring_relation)
        validation.integer("group_size", group_size, minimum=1)
        self._inner = inner
        self._group_size = group_size

    @property
    def group_size(self) -> int:
        return self._group_size

    def _maybe_compose(self, event: dp_event.DpEvent, count: int, do_compose: bool):
        return self._inner._maybe_compose(event, count, do_compose)

    def get_epsilon(self, target_delta: float) -> float:
        k = self._group_size
        eps = self._inner.get_epsilon

        def feasible(log_delta: float) -> bool:
            e = eps(math.exp(log_delta))
            return math.isfinite(e) and group_delta(e, math.exp(log_delta), k) <= target_delta

        hi = math.log(target_delta / k)
        if feasible(hi):  # only when epsilon(delta / k) == 0
            return k * eps(math.exp(hi))
        lo = hi
        while not feasible(lo):
            lo -= math.log(10.0)
            if lo < math.log(1e-300):
                return math.inf
        for _ in range(40):  # bisection in log(delta'); lo stays feasible
            mid = (lo + hi) / 2
            if feasible(mid):
                lo = mid
            else:
                hi = mid
        return k * eps(math.exp(lo))

    def get_delta(self, target_epsilon: float) -> float:
        k = self._group_size
        record_epsilon = target_epsilon / k
        return min(1.0, group_delta(record_epsilon, self._inner.get_delta(record_epsilon), k))


def epsilon_of(
    event: dp_event.DpEvent,
    *,
    target_delta: float,
    accountant: AccountantKind | str,
    relation: NeighboringRelation = NeighboringRelation.ADD_OR_REMOVE_ONE,
    group_size: int = 1,
) -> float:
    """Epsilon of one event at ``target_delta`` from a fresh accountant.

    Memoised in this process (the `EPSILON_MEMO_SIZE` latest): each (event, delta, accountant, relation, group
    size) is composed once, however often a ledger is loaded, split into parts or reported. The key holds the
    event's JSON form (`event_to_json`: its class name and every field, floats exactly) and the figure is composed
    from the event read back from that key; an event is memoised only where that read-back equals it (the same
    dp_event classes, the same fields), so a memoised figure is always the one of the events asked about. Other
    events (a class of another module, even one named like a dp_event class; numpy integers in a field) are
    composed every time.
    """
    kind, relation = AccountantKind(accountant), NeighboringRelation(relation)
    group_size = validation.integer("group_size", group_size, minimum=1)
    try:
        key = json.dumps(event_to_json(event), sort_keys=True)
        if event_from_json(json.loads(key)) != event:  # attrs equality: same classes, same fields
            raise ValueError("not read back as itself")
    except (TypeError, ValueError):
        return _composed_epsilon(event, float(target_delta), kind, relation, group_size)
    return _memoised_epsilon(key, float(target_delta), kind, relation, group_size)


@functools.lru_cache(maxsize=EPSILON_MEMO_SIZE)
def _memoised_epsilon(
    key: str, delta: float, kind: AccountantKind, relation: NeighboringRelation, group_size: int
) -> float:
    return _composed_epsilon(event_from_json(json.loads(key)), delta, kind, relation, group_size)


def _composed_epsilon(
    event: dp_event.DpEvent, delta: float, kind: AccountantKind, relation: NeighboringRelation, group_size: int
) -> float:
    with _grid_refused(event, kind, relation):
        return float(make_accountant(kind, relation, group_size).compose(event).get_epsilon(delta))


@contextlib.contextmanager
def _grid_refused(event: dp_event.DpEvent, kind: AccountantKind, relation: NeighboringRelation):
    """Raises UnsupportedAccounting for a PLD grid too large to compose (`pld_grid.grid_reason`, checked first;
    a MemoryError that numpy raises before allocating a grid past the estimate is reported the same way)."""
    reason = grid_reason(event, relation) if kind is AccountantKind.PLD else None
    if reason:
        raise UnsupportedAccounting(reason)
    try:
        yield
    except MemoryError:
        raise UnsupportedAccounting(
            f"the {kind.value.upper()} accountant's grid for these events does not fit in memory (noise too small "
            f"for its discretisation)"
        ) from None


class PriorEvents:
    """Fixed events composed once (on first use), for the epsilons of those events followed by another.

    `epsilon` equals ``epsilon_of(ComposedDpEvent(prior + [event]), ...)`` bit for bit: dp-accounting composes a
    ComposedDpEvent part by part in its order, so composing ``event`` onto a copy of the composed prior does the same
    arithmetic (PLD's pairwise convolutions, RDP's sums, group privacy's search on top). It is not memoised.
    """

    def __init__(
        self,
        prior,
        kind: AccountantKind | str,
        relation: NeighboringRelation = NeighboringRelation.ADD_OR_REMOVE_ONE,
        group_size: int = 1,
    ):
        self._prior = dp_event.ComposedDpEvent(list(prior))
        self._kind, self._relation = AccountantKind(kind), NeighboringRelation(relation)
        self._group_size = validation.integer("group_size", group_size, minimum=1)
        self._composed: dp_accounting.PrivacyAccountant | None = None

    def accountant(self) -> dp_accounting.PrivacyAccountant:
        """A new accountant that holds the prior events and whose ledger is empty (as `calibrate_dp_mechanism` asks
        of a fresh one); what it composes leaves this object and every other one it returned unchanged."""
        if self._composed is None:
            with _grid_refused(self._prior, self._kind, self._relation):
                self._composed = make_accountant(self._kind, self._relation, self._group_size).compose(self._prior)
        return _AfterPrior(copy.deepcopy(self._composed))

    def epsilon(self, event: dp_event.DpEvent, target_delta: float) -> float:
        """Epsilon at ``target_delta`` of the prior events, then ``event`` (NoOpDpEvent: of the prior alone)."""
        accountant = self.accountant()
        with _grid_refused(event, self._kind, self._relation):
            return float(accountant.compose(event).get_epsilon(target_delta))


class _AfterPrior(dp_accounting.PrivacyAccountant):
    """A copy of an accountant that composed the prior events, with a ledger of its own that starts empty."""

    def __init__(self, composed: dp_accounting.PrivacyAccountant):
        super().__init__(composed.neighboring_relation)
        self._inner = composed

    def _maybe_compose(self, event: dp_event.DpEvent, count: int, do_compose: bool):
        return self._inner._maybe_compose(event, count, do_compose)

    def get_epsilon(self, target_delta: float) -> float:
        return self._inner.get_epsilon(target_delta)

    def get_delta(self, target_epsilon: float) -> float:
        return self._inner.get_delta(target_epsilon)
