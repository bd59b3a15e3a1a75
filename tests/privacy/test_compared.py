import math

import numpy as np
import pytest

from privacy.accounting import DpSgdMechanism, delta_warning, dp_sgd_report
from privacy.accounting.noise_cutoff import NoiseCutoff, NoiseDraws, sampler_radius
from privacy.compared import MAX_DIGITS, compared


def _order(a, b):
    return (a > b) - (a < b)


def test_a_delta_a_float32_cut_off_raised_above_its_budget_prints_above_it():
    """1e-5 plus the cut-off's delta (float32 noise, 1000 steps of 5000 pairs, recomputed here from
    `NoiseCutoff`) is above a budget of 1e-5 by ~3e-13: at 4 digits both print 1e-05; `compared` widens the value
    until it prints above, and `delta_warning` at n = 1e5 no longer says 'delta=1e-05 is not below 1/n=1e-05'."""
    mechanism = DpSgdMechanism(dataset_size=100_000, batch_size=256, noise_multiplier=1.1, steps=1000)
    added = NoiseCutoff.for_mechanism(mechanism, NoiseDraws(sampler_radius("float32"), 5000)).added_delta(1e-5)
    delta = 1e-5 + added
    assert 0 < added < 1e-10 and f"{delta:.4g}" == "1e-05"
    shown, bound = compared(delta, 1e-5)
    assert bound == "1e-05" and shown != bound and float(shown) > float(bound)
    assert shown == f"{delta:.{len(shown.split('e')[0]) - 1}g}"  # the value rounded, not another number
    assert f"{delta:.{len(shown.split('e')[0]) - 2}g}" == "1e-05"  # one digit fewer would print equal
    warning = delta_warning(delta, 100_000)
    assert warning.startswith(f"delta={shown} is not below 1/n=1e-05:")


@pytest.mark.parametrize(
    "value, bound, expected",
    [
        (0.5123, 3.0, ("0.5123", "3")),  # far apart: 4 digits for the value, the bound as given
        (3.0, 3.0, ("3", "3")),  # equal prints equal
        (2.99996, 3.0, ("2.99996", "3")),  # "3 <= 3" at 4 digits: widened until it prints below
        (1.23456, 1.2346, ("1.23456", "1.2346")),  # .4g gave 1.235 > 1.2346: a passing value printed above
        (math.inf, 3.0, ("inf", "3")),
        (-math.inf, 0.8, ("-inf", "0.8")),
    ],
)
def test_examples(value, bound, expected):
    assert compared(value, bound) == expected


def test_printed_numbers_order_as_the_values_for_adjacent_and_random_floats():
    """Neighbouring floats (one ulp apart), and random pairs near each other, print in their order, equal only
    when equal; no printed number has more than 17 significant digits."""
    rng = np.random.default_rng(0)
    bounds = np.concatenate([10.0 ** rng.uniform(-12, 3, 300), [1e-5, 0.1, 1.0, 3.0]])
    for bound in bounds:
        bound = float(bound)
        for value in (
            float(np.nextafter(bound, math.inf)),
            float(np.nextafter(bound, -math.inf)),
            bound,
            bound * (1 + float(rng.normal()) * 1e-6),
            bound * (1 + float(rng.normal()) * 1e-12),
        ):
            shown, bound_shown = compared(value, bound)
            assert _order(float(shown), float(bound_shown)) == _order(value, bound), (value, bound)
            assert len(shown.split("e")[0].replace(".", "").replace("-", "").lstrip("0")) <= MAX_DIGITS


@pytest.mark.parametrize(
    "value, bound, expected",
    [
        (100.0, 99.0, ("100.00", "99.00")),  # the encrypted gate's percentages, two decimals as before
        (99.5 - 1e-9, 99.5, ("99.499999999", "99.500000000")),  # '99.50 % (needs >= 99.50 %)' would fail equal
        (99.5, 99.5, ("99.50", "99.50")),
    ],
)
def test_fixed_decimals_widen_the_same_way(value, bound, expected):
    assert compared(value, bound, digits=2, bound_digits=2, fixed=True) == expected


def test_fixed_decimals_separate_the_smallest_neighbours():
    """Fixed decimals cannot stop at 17 (5e-324 prints as 0.000... there): they widen until the exact expansions
    differ."""
    tiny = 5e-324
    shown, bound = compared(tiny, 0.0, digits=2, bound_digits=2, fixed=True)
    assert float(shown) == tiny and float(bound) == 0.0


def test_numpy_scalars_compare_as_python_floats():
    """numpy's comparisons return numpy booleans, which do not subtract: `compared` (and `delta_warning`, given a
    numpy delta or dataset size at or above 1/n, as on main before it used `compared`) prints them as floats."""
    assert compared(np.float64(2.99996), 3.0) == ("2.99996", "3")
    assert compared(np.float32(0.5), np.float64(0.25), digits=2, bound_digits=2, fixed=True) == ("0.50", "0.25")
    expected = delta_warning(0.05, 50)
    assert expected.startswith("delta=0.05 is not below 1/n=0.02:")
    assert delta_warning(np.float64(0.05), 50) == delta_warning(0.05, np.int64(50)) == expected
    mechanism = DpSgdMechanism(dataset_size=50, batch_size=10, noise_multiplier=1.0, steps=10)
    assert expected in dp_sgd_report(mechanism, delta=np.float64(0.05), accountants=("rdp",)).warnings
