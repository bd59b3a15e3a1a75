"""k-anonymity and l-diversity against a direct pandas group-by; Mondrian generalization reaches k."""

import pandas as pd
import pytest

from pipelines.datasets import pii_tickets
from privacy.minimization import kanonymity_report, mondrian_generalize
from privacy.minimization.kanonymity import DISCLAIMER

QI = list(pii_tickets.QUASI_IDENTIFIERS)


@pytest.fixture(scope="module")
def records():
    return pii_tickets.load()[0]


@pytest.mark.parametrize("qi", [QI, ["zip3", "gender"], ["age"]])
def test_k_l_and_share_below_target_equal_a_direct_group_by(records, qi):
    frame = pd.DataFrame(records)
    sizes = frame.groupby(qi).size()
    report = kanonymity_report(records, qi, target_k=5, sensitive="product")
    assert report.k == sizes.min()
    assert report.classes == len(sizes)
    assert list(report.smallest_classes) == sorted(sizes)[:5]
    assert report.rows_below_target == sizes[sizes < 5].sum()
    assert report.share_below_target == pytest.approx(sizes[sizes < 5].sum() / len(frame))
    assert report.l == frame.groupby(qi)["product"].nunique().min()
    assert report.meets_target == (sizes.min() >= 5)
    assert "no privacy guarantee" in report.to_dict()["disclaimer"] and "differential privacy" in DISCLAIMER


@pytest.mark.parametrize("k", [2, 5, 20])
def test_mondrian_generalization_reaches_k_and_covers_the_original_values(records, k):
    assert kanonymity_report(records, QI, target_k=k).k < k
    out = mondrian_generalize(records, QI, k)
    assert len(out) == len(records)
    assert pd.DataFrame(out).groupby(QI).size().min() >= k
    assert kanonymity_report(out, QI, target_k=k).meets_target
    for before, after in zip(records, out):
        lo, _, hi = after["age"].partition("-")
        assert int(lo) <= before["age"] <= int(hi or lo)
        assert str(before["zip3"]) in after["zip3"].split("|") and before["gender"] in after["gender"].split("|")
        assert {c: v for c, v in after.items() if c not in QI} == {c: v for c, v in before.items() if c not in QI}


def test_fewer_records_than_k_are_all_suppressed(records):
    assert mondrian_generalize(records[:3], QI, 4) == []


@pytest.mark.parametrize("kwargs, message", [
    ({"quasi_identifiers": []}, "at least one quasi-identifier"),
    ({"quasi_identifiers": ["postcode"]}, r"\['postcode'\] are not in the records"),
    ({"quasi_identifiers": QI, "target_k": 0}, "target k 0"),
    ({"quasi_identifiers": QI, "sensitive": "diagnosis"}, "sensitive column 'diagnosis'"),
])
def test_bad_arguments_name_the_bad_value(records, kwargs, message):
    with pytest.raises(ValueError, match=message):
        kanonymity_report(records, **kwargs)
