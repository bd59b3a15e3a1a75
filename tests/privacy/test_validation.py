"""privacy.validation: what each check accepts and returns, and the one-line message of what it refuses."""

import json
import math

import numpy as np
import pytest

from privacy import validation


class SettingError(ValueError):
    pass


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: validation.positive("epsilon", 0), "epsilon must be a finite number > 0, got 0"),
        (lambda: validation.positive("epsilon", -1.5), "epsilon must be a finite number > 0, got -1.5"),
        (lambda: validation.positive("epsilon", math.nan), "epsilon must be a finite number > 0, got nan"),
        (lambda: validation.positive("epsilon", math.inf), "epsilon must be a finite number > 0, got inf"),
        (
            lambda: validation.positive("epsilon", 10**400),
            f"epsilon must be a finite number > 0, got int {str(10**400)[:77]}...",
        ),
        (
            lambda: validation.integer("n", 10**5000, maximum=10),
            "n must be an integer <= 10, got an int too large to show",
        ),
        (
            lambda: validation.positive("epsilon", np.array([[1.0, 2.0], [3.0, 4.0]])),
            "epsilon must be a finite number > 0, got ndarray array([[1., 2.], [3., 4.]])",
        ),
        (lambda: validation.positive("epsilon", True), "epsilon must be a finite number > 0, got True"),
        (lambda: validation.positive("epsilon", "1"), "epsilon must be a finite number > 0, got '1'"),
        (lambda: validation.positive("epsilon", None), "epsilon must be a finite number > 0, got None"),
        (
            lambda: validation.positive("clip", 2e6, maximum=1e6, note="beyond it the noise overflows"),
            "clip must be in (0, 1e+06] (beyond it the noise overflows), got 2000000.0",
        ),
        (lambda: validation.probability("delta", 0), "delta must be in (0, 1), got 0"),
        (lambda: validation.probability("delta", 1), "delta must be in (0, 1), got 1"),
        (lambda: validation.probability("rate", 1.0, zero=True), "rate must be in [0, 1), got 1.0"),
        (lambda: validation.probability("share", 0, one=True), "share must be in (0, 1], got 0"),
        (lambda: validation.number("x", -0.5, low=0), "x must be a finite number >= 0, got -0.5"),
        (lambda: validation.number("x", 3, high=2, high_open=True), "x must be a finite number < 2, got 3"),
        (lambda: validation.number("x", "a"), "x must be a finite number, got 'a'"),
        (lambda: validation.number("sigma", 1e-4, low=1e-3, high=1e6), "sigma must be in [0.001, 1e+06], got 0.0001"),
        (  # a bound that ``:g`` would round to the value it excludes
            lambda: validation.number("b", 256, high=255.9999),
            "b must be a finite number <= 255.9999, got 256",
        ),
        (
            lambda: validation.number("q", 2**-17, low=2**-16),
            "q must be a finite number >= 1.52587890625e-05, got 7.62939453125e-06",
        ),
        (lambda: validation.integer("rounds", 0, minimum=1), "rounds must be an integer >= 1, got 0"),
        (lambda: validation.integer("rounds", 2.0, minimum=1), "rounds must be an integer >= 1, got 2.0"),
        (lambda: validation.integer("rounds", False, minimum=0), "rounds must be an integer >= 0, got False"),
        (lambda: validation.integer("bits", 49, minimum=1, maximum=48), "bits must be an integer in [1, 48], got 49"),
        (lambda: validation.integer("n", 7, maximum=5), "n must be an integer <= 5, got 7"),
        (lambda: validation.integer("n", "3"), "n must be an integer, got '3'"),
        (lambda: validation.integer("n", "1\n2"), "n must be an integer, got '1\\n2'"),
        (
            lambda: validation.choice("sampling", "poison", ("poisson", "shuffle")),
            "sampling must be one of poisson, shuffle, got 'poison'",
        ),
        (lambda: validation.choice("bits", True, (1, 2)), "bits must be one of 1, 2, got True"),
        (lambda: validation.choice("unit", ["example"], ("example",)), "unit must be one of example, got ['example']"),
        (  # an array compares elementwise: one element made it "in" the choices, two a traceback-style error
            lambda: validation.choice("unit", np.array(["user"]), ("example", "user")),
            "unit must be one of example, user, got array(['user'], dtype='<U4')",
        ),
        (
            lambda: validation.choice("unit", np.array(["user", "example"]), ("example", "user")),
            "unit must be one of example, user, got array(['user', 'example'], dtype='<U7')",
        ),
    ],
)
def test_refusals_are_one_line_naming_the_setting_and_the_value(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value) == message


def test_a_module_error_class_is_raised():
    with pytest.raises(SettingError, match=r"^delta must be in \(0, 1\), got 2$"):
        validation.probability("delta", 2, error=SettingError)


def test_bounds_are_inclusive_or_open_as_asked():
    assert validation.number("x", 0, low=0) == 0
    assert validation.number("x", 1, high=1) == 1
    assert validation.probability("p", 0, zero=True) == 0 and validation.probability("p", 1, one=True) == 1
    assert validation.positive("clip", 1e6, maximum=1e6) == 1e6
    assert validation.integer("k", 48, minimum=1, maximum=48) == 48
    assert validation.integer("k", -3) == -3
    assert validation.choice("unit", "user", ("example", "user")) == "user" and validation.choice("b", 2, (1, 2)) == 2


def test_python_numbers_come_back_as_given_and_numpy_ones_as_python_numbers():
    for value in (1, 2.5):
        result = validation.positive("x", value)
        assert result == value and type(result) is type(value)
    for value, kind in ((np.float32(0.25), float), (np.int64(3), float), (np.float64(0.5), float)):
        result = validation.positive("x", value)
        assert type(result) is kind and result == float(value)
    result = validation.integer("n", np.int64(7), minimum=1)
    assert type(result) is int and result == 7
    json.dumps([validation.positive("x", np.float32(0.25)), validation.integer("n", np.int32(3))])
