"""ppml's RDP compositions drop dp-accounting's excluded-order warning, only while composing and only that one."""

import logging

import dp_accounting as dpa
import pytest

from privacy.accounting import PrivacyBudget, accountants, epsilon_of

# q = 0.1, z = 0.5: dp-accounting's RDP accountant logs 'failed to converge ... Excluding this order' for 6 orders.
STEP = dpa.PoissonSampledDpEvent(0.1, dpa.GaussianDpEvent(0.5))
EXCLUDED = "_compute_log_a_frac failed to converge"


def _excluded(caplog):
    return [r for r in caplog.records if str(r.msg).startswith(EXCLUDED)]


def test_dp_accounting_alone_logs_the_excluded_orders_and_ppml_does_not(caplog):
    caplog.set_level(logging.WARNING, logger="absl")
    dpa.rdp.RdpAccountant().compose(dpa.SelfComposedDpEvent(STEP, 2))
    assert len(_excluded(caplog)) >= 6  # the nuisance: per epsilon asked
    caplog.clear()
    raw = dpa.rdp.RdpAccountant().compose(dpa.SelfComposedDpEvent(STEP, 3)).get_epsilon(1e-5)
    caplog.clear()
    accountants._memoised_epsilon.cache_clear()  # composed here, not memoised by another test
    assert epsilon_of(dpa.SelfComposedDpEvent(STEP, 3), target_delta=1e-5, accountant="rdp") == pytest.approx(raw)
    budget = PrivacyBudget(target_delta=1e-5, group_size=2).compose(STEP, 4)
    assert budget.epsilon("rdp") > 0
    assert _excluded(caplog) == []
    assert logging.getLogger("absl").filters == []  # scoped: nothing left on the logger


def test_other_absl_warnings_still_pass(caplog):
    from privacy.accounting.accountants import _RdpOrderExcluded

    assert _RdpOrderExcluded().filter(logging.LogRecord("absl", logging.WARNING, "", 0, "another warning", None, None))


def test_a_composition_in_another_thread_keeps_the_filter_until_it_ends(caplog, monkeypatch):
    """Thread A starts composing, B starts while A holds the filter, A ends, then B logs the excluded-order
    warning: it is still dropped (the filter stays while any composition runs) and removed after both."""
    import threading

    caplog.set_level(logging.WARNING, logger="absl")
    a_inside, b_inside, a_done = threading.Event(), threading.Event(), threading.Event()

    def compose(self, event, count, do_compose):
        if threading.current_thread().name == "A":
            a_inside.set()
            b_inside.wait(10)
        else:
            b_inside.set()
            a_done.wait(10)
            logging.getLogger("absl").warning(EXCLUDED + " (from B)")

    monkeypatch.setattr(dpa.rdp.RdpAccountant, "_maybe_compose", compose)

    def run_a():
        accountants.make_accountant("rdp").compose(STEP)
        a_done.set()

    a = threading.Thread(target=run_a, name="A")
    b = threading.Thread(target=lambda: accountants.make_accountant("rdp").compose(STEP), name="B")
    a.start()
    assert a_inside.wait(10)
    b.start()
    a.join(10)
    b.join(10)
    assert a_done.is_set() and not a.is_alive() and not b.is_alive()
    assert _excluded(caplog) == []
    assert logging.getLogger("absl").filters == []
