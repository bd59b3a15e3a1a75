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
