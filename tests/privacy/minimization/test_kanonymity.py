"""k-anonymity and l-diversity against a direct pandas group-by; Mondrian generalization reaches k."""

import math

import pandas as pd
import pytest

from pipelines.datasets import pii_tickets
from privacy.minimization import kanonymity_report, mondrian_generalize
from privacy.minimization.kanonymity import DISCLAIMER, MISSING_LABEL

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
    for before, after in zip(records, out, strict=True):
        lo, _, hi = after["age"].strip("[]").partition(", ")
        assert int(lo) <= before["age"] <= int(hi or lo)
        assert str(before["zip3"]) in after["zip3"].split("|") and before["gender"] in after["gender"].split("|")
        assert {c: v for c, v in after.items() if c not in QI} == {c: v for c, v in before.items() if c not in QI}


def test_fewer_records_than_k_are_all_suppressed(records):
    assert mondrian_generalize(records[:3], QI, 4) == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"quasi_identifiers": []}, "at least one quasi-identifier"),
        ({"quasi_identifiers": ["postcode"]}, r"\['postcode'\] are in no record"),
        ({"quasi_identifiers": QI, "target_k": 0}, "target k 0"),
        ({"quasi_identifiers": QI, "sensitive": "diagnosis"}, r"sensitive column \['diagnosis'\]"),
    ],
)
def test_bad_arguments_name_the_bad_value(records, kwargs, message):
    with pytest.raises(ValueError, match=message):
        kanonymity_report(records, **kwargs)


MISSING_VALUES = [None, float("nan"), (None, ()), "absent"]
"""Missing values as records hold them: None, NaN (a new object each time), an empty feature, no feature."""


def _with_missing(records, every=7):
    """Copies of ``records`` with a missing value (cycling through `MISSING_VALUES`) in each quasi-identifier
    and the sensitive column of every ``every``-th record (offset per column)."""
    out = [dict(r) for r in records]
    for j, column in enumerate(QI + ["product"]):
        for n, i in enumerate(range(j, len(out), every)):
            missing = MISSING_VALUES[n % len(MISSING_VALUES)]
            if missing == "absent":
                del out[i][column]
            else:
                out[i][column] = float("nan") if isinstance(missing, float) else missing
    return out


@pytest.mark.parametrize("qi", [QI, ["age"], ["zip3", "gender"]])
def test_missing_values_form_one_class_per_column_as_a_group_by_that_keeps_them(records, qi):
    noisy = _with_missing(records)
    frame = pd.DataFrame(
        [
            {
                c: (
                    None
                    if (
                        r.get(c) is None or r.get(c) == (None, ()) or (isinstance(r.get(c), float) and math.isnan(r[c]))
                    )
                    else r[c]
                )
                for c in QI + ["product"]
            }
            for r in noisy
        ]
    )
    sizes = frame.groupby(qi, dropna=False).size()
    report = kanonymity_report(noisy, qi, target_k=5, sensitive="product")
    assert (report.k, report.classes, report.rows_below_target) == (sizes.min(), len(sizes), sizes[sizes < 5].sum())
    assert report.l == frame.groupby(qi, dropna=False)["product"].nunique(dropna=False).min()


def test_records_with_a_missing_sensitive_value_have_l_one():
    rows = [{"age": 30, "s": float("nan")} for _ in range(5)] + [{"age": 40, "s": v} for v in "abcde"]
    assert kanonymity_report(rows, ["age"], target_k=5, sensitive="s").l == 1
    assert kanonymity_report([{"age": float("nan")} for _ in range(6)], ["age"], target_k=6).k == 6


@pytest.mark.parametrize("k", [2, 5])
def test_mondrian_generalizes_every_record_with_missing_values(records, k):
    noisy = _with_missing(records)
    out = mondrian_generalize(noisy, QI, k)
    assert len(out) == len(noisy) and kanonymity_report(out, QI, target_k=k).meets_target
    for before, after in zip(noisy, out, strict=True):
        labels = after["age"].split("|")
        if not isinstance(before.get("age"), int):
            assert labels[0] == MISSING_LABEL
        else:
            lo, _, hi = labels[-1].strip("[]").partition(", ")
            assert int(lo) <= before["age"] <= int(hi or lo)  # numeric ranges although some ages are missing
        assert all(isinstance(after[q], str) for q in QI)


def test_a_missing_value_cannot_leave_a_record_raw():
    rows = [{"age": 20 + i, "zip": f"0{2100 + i}"} for i in range(200)]
    rows[17]["age"] = float("nan")
    out = mondrian_generalize(rows, ["age", "zip"], 5)
    assert out[17]["zip"] != "02117" and kanonymity_report(out, ["age", "zip"], target_k=5).k >= 5


def test_labels_keep_precision_and_read_unambiguously():
    rows = [{"x": 12345671 + i, "y": -5 + (i % 2), "z": 0.1 + i} for i in range(4)]
    out = mondrian_generalize(rows, ["x", "y", "z"], 4)
    assert out[0] == {"x": "[12345671, 12345674]", "y": "[-5, -4]", "z": "[0.1, 3.1]"}
