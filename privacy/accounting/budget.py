"""An incremental privacy budget: what training steps or federated rounds have spent so far.

`PrivacyBudget` keeps a run-length ledger of (DpEvent, count) entries and asks a fresh
dp-accounting accountant for epsilon when queried, so the answer is the same whether the events
arrived one by one, in chunks, or across a restart. Its JSON state holds the ledger; a resumed run
loads it and continues. `advance_to` composes by position (the number of units done), so replaying
it after a restart never counts a unit twice.
"""

from __future__ import annotations

import functools
import json
import math
import os
from typing import Any, Iterable

from dp_accounting import dp_event
from dp_accounting.rdp import rdp_privacy_accountant

from privacy import validation
from privacy.accounting.accountants import (
    AccountantKind,
    dp_accounting_version,
    epsilon_of,
    make_accountant,
    rdp_epsilon,
)
from privacy.accounting.events import event_from_json, event_to_json
from privacy.accounting.mechanism import DpSgdMechanism, NeighboringRelation, UnsupportedAccounting
from privacy.atomic_files import write_atomically

STATE_FORMAT = "ppml.privacy_budget/1"
_RDP_ORDERS = rdp_privacy_accountant.DEFAULT_RDP_ORDERS


@functools.lru_cache(maxsize=128)
def _rdp_curve(event: dp_event.DpEvent, relation: NeighboringRelation):
    """RDP at dp-accounting's default orders of one run of ``event`` (a fresh RdpAccountant's)."""
    accountant = make_accountant(AccountantKind.RDP, relation)
    if not accountant.supports(event):
        raise UnsupportedAccounting(f"the RDP accountant cannot analyse {type(event).__name__} under {relation.name}")
    return accountant.compose(event).rdp


class PrivacyBudget:
    """Privacy spent so far, under one neighbouring relation and target delta.

    Args:
      target_delta: delta of the reported (epsilon, delta) guarantee.
      neighboring_relation: relation the events are accounted under.
      group_size: K > 1 reports user-level epsilon for users with at most K records.
      accountants: which accountants `epsilons()` reports ('rdp', 'pld').
    """

    def __init__(
        self,
        *,
        target_delta: float,
        neighboring_relation: NeighboringRelation = NeighboringRelation.ADD_OR_REMOVE_ONE,
        group_size: int = 1,
        accountants: Iterable[AccountantKind | str] = (AccountantKind.RDP, AccountantKind.PLD),
    ):
        self._delta = validation.probability("target_delta", target_delta)
        self._relation = NeighboringRelation(neighboring_relation)
        self._group_size = validation.integer("group_size", group_size, minimum=1)
        self._accountants = tuple(AccountantKind(a) for a in accountants)
        self._ledger: list[list[Any]] = []  # [event, count] pairs, adjacent events distinct
        self._cache: dict[AccountantKind, float] = {}

    @classmethod
    def for_mechanism(cls, mechanism: DpSgdMechanism, target_delta: float, **kwargs) -> "PrivacyBudget":
        """An empty budget set up to account ``mechanism``'s unit events."""
        return cls(
            target_delta=target_delta,
            neighboring_relation=mechanism.neighboring_relation,
            group_size=mechanism.max_examples_per_user or 1,
            **kwargs,
        )

    # --- composing -----------------------------------------------------------------------------
    def compose(self, event: dp_event.DpEvent, count: int = 1) -> "PrivacyBudget":
        """Records ``count`` more runs of ``event``; returns self."""
        count = validation.integer("count", count, minimum=0)
        if not isinstance(event, dp_event.DpEvent):
            raise TypeError(f"event must be a dp_accounting DpEvent, got {type(event).__name__}")
        if count == 0:
            return self
        _append_run(self._ledger, event, count)
        self._cache.clear()
        return self

    def advance_to(self, units: int, event: dp_event.DpEvent) -> int:
        """Composes ``event`` until `units` reaches ``units``; returns how many were added.

        Idempotent: calling it again with the same position adds nothing.
        """
        added = max(0, int(units) - self.units)
        self.compose(event, added)
        return added

    @property
    def units(self) -> int:
        """Total count of events composed (steps, epochs or rounds, as the caller composes them)."""
        return sum(count for _, count in self._ledger)

    @property
    def ledger(self) -> tuple[tuple[dp_event.DpEvent, int], ...]:
        return tuple((event, count) for event, count in self._ledger)

    @property
    def target_delta(self) -> float:
        return self._delta

    @property
    def neighboring_relation(self) -> NeighboringRelation:
        return self._relation

    @property
    def group_size(self) -> int:
        return self._group_size

    @property
    def accountants(self) -> tuple[AccountantKind, ...]:
        return self._accountants

    def dp_event(self) -> dp_event.DpEvent:
        """The whole ledger as one DpEvent."""
        parts = [dp_event.SelfComposedDpEvent(e, c) for e, c in self._ledger]
        if not parts:
            return dp_event.NoOpDpEvent()
        return parts[0] if len(parts) == 1 else dp_event.ComposedDpEvent(parts)

    # --- querying ------------------------------------------------------------------------------
    def epsilon(self, accountant: AccountantKind | str = AccountantKind.RDP) -> float:
        """Epsilon spent so far at `target_delta` (0 when nothing was composed)."""
        kind = AccountantKind(accountant)
        if kind not in self._cache:
            self._cache[kind] = self._epsilon_of(self._ledger, kind)
        return self._cache[kind]

    def epsilons(self) -> dict[str, float | None]:
        """{accountant: epsilon} for the configured accountants; None where unsupported."""
        out: dict[str, float | None] = {}
        for kind in self._accountants:
            try:
                out[kind.value] = self.epsilon(kind)
            except UnsupportedAccounting:
                out[kind.value] = None
        return out

    def epsilon_after(
        self, event: dp_event.DpEvent, count: int = 1, accountant: AccountantKind | str = AccountantKind.RDP
    ) -> float:
        """Epsilon if ``event`` were composed ``count`` more times; the budget is unchanged."""
        ledger = [list(item) for item in self._ledger]
        if count:
            _append_run(ledger, event, count)
        return self._epsilon_of(ledger, AccountantKind(accountant))

    def _epsilon_of(self, ledger, kind: AccountantKind) -> float:
        if not ledger:
            return 0.0
        if kind is AccountantKind.RDP and self._group_size == 1:
            # RDP composes additively: reuse each event's RDP curve (what RdpAccountant would add, count
            # times), so per-step queries cost a conversion, not a recomputation of the whole ledger.
            total = sum(count * self._rdp_curve(event) for event, count in ledger)
            return float(rdp_epsilon(_RDP_ORDERS, total, self._delta)[0])
        accountant = make_accountant(kind, self._relation, self._group_size)
        for event, _ in ledger:
            if not accountant.supports(event):
                raise UnsupportedAccounting(
                    f"the {kind.value.upper()} accountant cannot analyse {type(event).__name__} "
                    f"under {self._relation.name}"
                )
        runs = [dp_event.SelfComposedDpEvent(event, count) for event, count in ledger]
        # composed as accountant.compose(event, count) run by run would be, memoised and PLD's grid checked first
        return epsilon_of(
            runs[0] if len(runs) == 1 else dp_event.ComposedDpEvent(runs),
            target_delta=self._delta,
            accountant=kind,
            relation=self._relation,
            group_size=self._group_size,
        )

    def _rdp_curve(self, event: dp_event.DpEvent):
        try:
            return _rdp_curve(event, self._relation)
        except TypeError:  # unhashable (e.g. ComposedDpEvent holds a list): not cached
            return _rdp_curve.__wrapped__(event, self._relation)

    # --- state ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The state as JSON values. Its ``epsilon`` holds the epsilons already computed (saving never
        computes one: a PLD epsilon costs about a second, and states are saved every epoch or round)."""
        epsilons = {k.value: (v if math.isfinite(v) else None) for k, v in sorted(self._cache.items())}
        return {
            "format": STATE_FORMAT,
            "target_delta": self._delta,
            "neighboring_relation": self._relation.name,
            "group_size": self._group_size,
            "accountants": [a.value for a in self._accountants],
            "units": self.units,
            "ledger": [{"event": event_to_json(e), "count": c} for e, c in self._ledger],
            "epsilon": epsilons,  # informative, those computed so far; recomputed on load
            "dp_accounting_version": dp_accounting_version(),
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> "PrivacyBudget":
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError(f"not a ppml privacy budget state (expected format {STATE_FORMAT!r})")
        try:
            budget = cls(
                target_delta=state["target_delta"],
                neighboring_relation=NeighboringRelation[state["neighboring_relation"]],
                group_size=state["group_size"],
                accountants=state["accountants"],
            )
            for item in state["ledger"]:
                budget.compose(event_from_json(item["event"]), int(item["count"]))
        except (KeyError, TypeError) as err:
            raise ValueError(f"malformed privacy budget state: {err!r}") from None
        if budget.units != state.get("units", budget.units):
            raise ValueError("privacy budget state is inconsistent: 'units' does not match its ledger")
        return budget

    def save(self, path: str | os.PathLike) -> None:
        """Writes the state atomically (a crash leaves the old file or the new one, never half)."""
        write_atomically(path, json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PrivacyBudget":
        with open(path) as f:
            return cls.from_dict(json.load(f))

    def __repr__(self) -> str:
        return (
            f"PrivacyBudget(units={self.units}, target_delta={self._delta:g}, "
            f"relation={self._relation.name}, group_size={self._group_size})"
        )


def _append_run(ledger: list, event: dp_event.DpEvent, count: int) -> None:
    """Adds ``count`` runs of ``event`` to a run-length ``ledger`` of [event, count] pairs."""
    if ledger and ledger[-1][0] == event:
        ledger[-1][1] += count
    else:
        ledger.append([event, count])
