"""Prior events composed once (`PriorEvents`): the same floats as composing them with every candidate.

The reference is the path before it, kept here: every epsilon from a fresh accountant composing
``ComposedDpEvent(prior + [event])``, and every accountant that dp-accounting's `calibrate_dp_mechanism` asks for a
fresh one composing the same; its PLD accountant is dp-accounting's own `PLDAccountant` (no step PLDs shared, so the
product's `SharedPldAccountant` is checked here too). Answers must be equal, not close.
"""

import dp_accounting as dpa
import pytest
from dp_accounting import dp_event

from privacy.accounting import DpSgdMechanism, accountants, calibrate_noise_multiplier, calibration
from privacy.accounting.accountants import AccountantKind, CheckedRdpAccountant, GroupPrivacyAccountant, PriorEvents

PRIOR = [dp_event.GaussianDpEvent(8.0)] * 6 + [
    dp_event.SelfComposedDpEvent(dp_event.GaussianDpEvent(20.0), 3),
    dp_event.GaussianDpEvent(4.0),
]
ADD_REMOVE, REPLACE_ONE = dpa.NeighboringRelation.ADD_OR_REMOVE_ONE, dpa.NeighboringRelation.REPLACE_ONE


@pytest.fixture(autouse=True)
def coarse_pld_grid(monkeypatch):
    """PLD accountants on a grid 10x coarser than the product's (10x fewer values to compose): both paths take it
    from `make_accountant`, and whether they do the same arithmetic in the same order does not depend on it."""
    monkeypatch.setattr(
        accountants, "PLD_VALUE_DISCRETIZATION_INTERVAL", 10 * accountants.PLD_VALUE_DISCRETIZATION_INTERVAL
    )


def _fresh(kind, relation, group_size):
    """The accountant `make_accountant` gave before steps were shared: dp-accounting's PLD or ppml's checked RDP."""
    if AccountantKind(kind) is AccountantKind.PLD:
        inner = dpa.pld.PLDAccountant(relation, accountants.PLD_VALUE_DISCRETIZATION_INTERVAL)
    else:
        inner = CheckedRdpAccountant(neighboring_relation=relation)
    return GroupPrivacyAccountant(inner, group_size) if group_size > 1 else inner


class _Uncached:
    """`PriorEvents`' interface on the previous path: nothing is kept between epsilons."""

    def __init__(self, prior, kind, relation, group_size):
        self.prior, self.kind, self.relation, self.group_size = list(prior), kind, relation, group_size

    def whole(self, events):
        events = [e for e in events if not isinstance(e, dp_event.NoOpDpEvent)]
        return dp_event.ComposedDpEvent(self.prior + events) if self.prior else events[0]

    def epsilon(self, event, target_delta):
        fresh = _fresh(self.kind, self.relation, self.group_size)
        return float(fresh.compose(self.whole([event])).get_epsilon(target_delta))

    def accountant(self):
        return _Replaying(self)


class _Replaying(dpa.PrivacyAccountant):
    """Keeps what it is asked to compose; its epsilon is a fresh accountant's for the prior, then those events."""

    def __init__(self, uncached):
        super().__init__(uncached.relation)
        self._uncached, self._events = uncached, []

    def _maybe_compose(self, event, count, do_compose):
        assert count == 1
        if do_compose:
            self._events.append(event)

    def get_epsilon(self, target_delta):
        u = self._uncached
        return _fresh(u.kind, u.relation, u.group_size).compose(u.whole(self._events)).get_epsilon(target_delta)

    def get_delta(self, target_epsilon):
        raise NotImplementedError


def _uncached(prior, mechanism, kind):
    return _Uncached(prior, kind, mechanism.neighboring_relation, mechanism.max_examples_per_user or 1)


POISSON = dict(dataset_size=2000, batch_size=40, noise_multiplier=1.0, steps=60)
SMALL = dict(dataset_size=200, batch_size=20, noise_multiplier=1.0, steps=4)  # PLD calibrations: seconds each
CASES = {  # (accountant, mechanism, prior, target epsilon, tolerance)
    "rdp-add-remove": ("rdp", POISSON, PRIOR, 2.0, 1e-4),
    "rdp-replace-one-fixed": ("rdp", dict(POISSON, sampling="fixed", adjacency="replace-one"), PRIOR, 3.0, 1e-4),
    "rdp-group-2": ("rdp", dict(POISSON, max_examples_per_user=2), PRIOR, 4.0, 1e-4),
    "rdp-shuffle-group-3": (  # replace-one adjacency, accounted under add-remove (sensitivity in sigma)
        "rdp",
        dict(POISSON, sampling="shuffle", steps=150, max_examples_per_user=3),
        PRIOR,
        8.0,
        1e-4,
    ),
    "rdp-noisy-padding": ("rdp", dict(POISSON, batch_size_noise_multiplier=6.0), PRIOR, 2.0, 1e-4),
    "rdp-no-prior": ("rdp", POISSON, [], 1.0, 1e-4),
    # PLD: a coarse tolerance keeps the searches short.
    "pld-add-remove": ("pld", SMALL, PRIOR, 2.0, 1e-2),
    "pld-replace-one": ("pld", dict(SMALL, adjacency="replace-one"), PRIOR, 5.0, 1e-2),
    "pld-group-2": ("pld", dict(SMALL, max_examples_per_user=2), PRIOR, 4.0, 1e-2),
    "pld-noisy-padding": ("pld", dict(SMALL, batch_size_noise_multiplier=6.0), PRIOR, 2.0, 1e-2),
    "pld-truncated": ("pld", dict(SMALL, dataset_size=60, batch_size=6, truncated_batch_size=9), PRIOR, 3.0, 1e-4),
    "pld-truncated-replace-one": (
        "pld",
        dict(SMALL, dataset_size=60, batch_size=6, truncated_batch_size=9, adjacency="replace-one"),
        PRIOR,
        5.0,
        1e-2,
    ),
    "pld-no-prior": ("pld", SMALL, [], 1.0, 1e-2),
}


@pytest.mark.parametrize("case", CASES)
def test_calibrated_noise_is_the_uncached_one(case, monkeypatch):
    kind, fields, prior, target, tolerance = CASES[case]
    mechanism = DpSgdMechanism(**fields)

    def calibrate():
        return calibrate_noise_multiplier(
            mechanism,
            target_epsilon=target,
            target_delta=1e-5,
            accountant=kind,
            tolerance=tolerance,
            prior_events=prior,
        )

    composed_once = calibrate()
    monkeypatch.setattr(calibration, "_prior_events", _uncached)
    assert composed_once == calibrate()


@pytest.mark.parametrize("kind", ["rdp", "pld"])
@pytest.mark.parametrize("relation", [ADD_REMOVE, REPLACE_ONE])
@pytest.mark.parametrize("group_size", [1, 2])
def test_each_epsilon_is_the_uncached_one_whatever_came_before(kind, relation, group_size):
    """Several events in turn onto one `PriorEvents` (an accountant's state shared between them, or the prior
    composed twice, would show), then the prior alone; each equals the whole composed afresh."""
    prior = PriorEvents(PRIOR, kind, relation, group_size)
    events = [dp_event.SelfComposedDpEvent(dp_event.GaussianDpEvent(s), 5) for s in (3.0, 5.0, 3.0)]
    events.append(dp_event.NoOpDpEvent())
    reference = _Uncached(PRIOR, kind, relation, group_size)
    for event in events:
        assert prior.epsilon(event, 1e-5) == reference.epsilon(event, 1e-5)


@pytest.mark.parametrize("kind", ["rdp", "pld"])
def test_its_accountants_start_with_an_empty_ledger_and_stay_apart(kind):
    """`calibrate_dp_mechanism` refuses an accountant whose ledger is not empty; composing into one of them changes
    neither the next one nor the prior's epsilon."""
    prior = PriorEvents(PRIOR, kind, REPLACE_ONE, 2)
    first = prior.accountant()
    assert isinstance(first.ledger, dp_event.NoOpDpEvent)
    alone = first.get_epsilon(1e-5)
    assert alone == _Uncached(PRIOR, kind, REPLACE_ONE, 2).epsilon(dp_event.NoOpDpEvent(), 1e-5)
    first.compose(dp_event.GaussianDpEvent(1.0))
    assert first.get_epsilon(1e-5) > alone
    assert prior.accountant().get_epsilon(1e-5) == alone
