"""Canaries for one-run audits of Keras DP-SGD: the bits, the rows, the Dirac gradient of a white-box canary through
`make_private`'s clipping, and end-to-end audits that catch deliberately broken training."""

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from privacy.auditing import canaries, keras_canaries
from privacy.auditing.canaries import MAX_SLOT_GRADIENTS
from privacy.auditing.dp_sgd_audit import (
    DIVERGED,
    AuditPlan,
    AuditResult,
    check_data,
    estimator_for,
    full_batch_resolved,
    run_dp_sgd_audit,
    sound_estimators,
)
from privacy.auditing.one_run import ESTIMATORS

FAULT_CONFIGURATION = dict(kind="white-box", num_canaries=2000, epochs=5, batch_size=1200, noise_multiplier=6.5)
"""The former defaults (README, by flags): epsilon about 1.06 by RDP and 0.96 by PLD at delta 1e-5 on
digits; no noise and a 4x clip are caught (12 of 12 trial runs of clip-4x gave bounds 1.33-2.05 against RDP claims
1.05-1.08)."""


@pytest.fixture(scope="module")
def digits():
    from federated.data import load_digits_split

    return load_digits_split()


def test_inclusion_bits_are_fair_and_fresh():
    bits = canaries.inclusion_bits(20000)
    assert bits.dtype == bool and bits.shape == (20000,)
    assert stats.binomtest(int(bits.sum()), 20000, 0.5).pvalue > 1e-4
    assert not np.array_equal(bits, canaries.inclusion_bits(20000))
    with pytest.raises(ValueError, match="num_canaries must be an integer >= 1, got 0"):
        canaries.inclusion_bits(0)


def test_canary_repr_withholds_the_bits_and_training_data_holds_exactly_the_included():
    pool_x, pool_y = np.arange(200, dtype=np.float32).reshape(100, 2), np.arange(100) % 10
    drawn = canaries.mislabelled_canaries(pool_x, pool_y, 60, 10)
    assert "True" not in repr(drawn) and "withheld" in repr(drawn)
    original = {tuple(row): label for row, label in zip(pool_x, pool_y, strict=True)}
    assert all(
        original[tuple(row)] != label for row, label in zip(drawn.x, drawn.y, strict=True)
    )  # always a wrong label
    x, y = np.zeros((30, 2), np.float32) - 1, np.zeros(30, np.int64)
    x_all, y_all = drawn.training_data(x, y)
    assert len(y_all) == 30 + drawn.included.sum()
    assert {tuple(r) for r in x_all if r[0] >= 0} == {tuple(r) for r in drawn.x[drawn.included]}


def _audited_model(num_canaries=4, num_classes=3, features=5):
    base = tf.keras.Sequential(
        [
            tf.keras.Input(shape=(features,)),
            tf.keras.layers.Dense(4, activation="relu"),
            tf.keras.layers.Dense(num_classes),
        ]
    )
    return keras_canaries.with_dirac_slot(base, features, num_canaries, num_classes)


def test_a_dirac_canary_gradient_touches_only_its_own_coordinate_and_real_rows_never_touch_the_slot():
    model = _audited_model()
    rows = canaries.dirac_slot_rows(5, 4)
    real = canaries.with_empty_slot(np.random.default_rng(0).normal(size=(3, 5)))
    loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    slot = model.get_layer("dirac_canary_head").slot_weights
    for i in range(4):
        with tf.GradientTape() as tape:
            value = loss(rows.y[i : i + 1], model(rows.x[i : i + 1]))
        grads = tape.gradient(value, model.trainable_variables)
        for variable, grad in zip(model.trainable_variables, grads, strict=True):
            dense = np.zeros(variable.shape) if grad is None else tf.convert_to_tensor(grad).numpy()
            if variable is slot:
                expected = np.zeros(4)
                expected[i] = keras_canaries.AMPLITUDE * (1 / 3 - 1)
                np.testing.assert_allclose(dense, expected, rtol=1e-5)
            else:
                assert not dense.any(), variable.name
    with tf.GradientTape() as tape:
        value = loss(np.zeros(3, np.int64), model(real))
    assert not tf.convert_to_tensor(tape.gradient(value, slot)).numpy().any()
    np.testing.assert_allclose(model(rows.x).numpy(), 0.0)  # a canary's logits are 0 whatever w is


@pytest.mark.parametrize("sampling", ["fixed", "poisson"])
def test_one_private_step_moves_an_included_canary_by_exactly_the_clip_norm(sampling):
    """Through make_private's clipping: one step, no noise, every row sampled (a batch of all 8 rows, or Poisson
    with q = 8 / 8 = 1); the slot weight of every canary moves by lr * C / B exactly (its clipped gradient is
    -C e_i). A clip at 2C would double the move."""
    from privacy.keras import make_private

    model = _audited_model()
    rows = canaries.dirac_slot_rows(5, 4)
    x = np.concatenate([canaries.with_empty_slot(np.ones((4, 5))), rows.x])
    y = np.concatenate([np.zeros(4, np.int64), rows.y])
    make_private(
        model, l2_norm_clip=0.5, noise_multiplier=0.0, expected_batch_size=8, dataset_size=8, sampling=sampling, seed=1
    )
    model.compile(
        optimizer=tf.keras.optimizers.SGD(2.0), loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    np.testing.assert_allclose(keras_canaries.white_box_scores(model), 2.0 * 0.5 / 8, rtol=1e-5)


def test_dirac_rows_carry_one_id_column_whatever_the_number_of_canaries():
    """O(m) memory: canary i is [0, ..., 0, i + 1], a real row ends in 0 (was an m-wide one-hot: O(m^2))."""
    rows = canaries.dirac_slot_rows(5, 100000)
    assert rows.x.shape == (100000, 6) and not rows.x[:, :5].any()
    np.testing.assert_array_equal(rows.x[:, 5], np.arange(1, 100001))
    assert canaries.with_empty_slot(np.ones((3, 5))).shape == (3, 6)
    with pytest.raises(ValueError, match=r"num_canaries must be an integer in \[1, 100000\], got 100001"):
        canaries.dirac_slot_rows(5, 100001)


@pytest.mark.parametrize("fault", ["none", "no-noise", "clip-4x"])
def test_white_box_audit_stays_below_an_honest_claim_and_catches_a_broken_run(digits, fault):
    (x, y), _ = digits
    plan = AuditPlan(fault=fault, **FAULT_CONFIGURATION)
    result = run_dp_sgd_audit(plan, x, y)
    claimed = result.claimed_epsilon[-1]
    assert result.steps == 10 and result.claims[-1]["rdp"] == pytest.approx(1.06, abs=0.05)
    assert result.claim_accountant == "pld" and claimed == pytest.approx(0.96, abs=0.05)
    assert result.violated == (fault != "none"), (result.lower_bound, claimed)
    assert result.final_split["num_canaries"] == 1000 and result.final_split["strategy"] == "split"
    if fault == "none":
        assert result.final_split["epsilon_lower_bound"] <= claimed


def test_black_box_audit_scores_every_canary_and_stays_below_an_honest_claim(digits):
    (x, y), (x_pool, y_pool) = digits
    plan = dict(kind="black-box", num_canaries=400, epochs=4, batch_size=256, noise_multiplier=1.0)
    honest = run_dp_sgd_audit(AuditPlan(**plan), x, y, x_pool, y_pool)
    assert honest.lower_bound[-1] <= honest.claimed_epsilon[-1]
    assert honest.final["num_canaries"] == 400 and len(honest.lower_bound) == 4


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(kind="grey-box"), "kind must be one of white-box, black-box"),
        (dict(fault="clip-3x"), "fault must be one of"),
        (dict(num_canaries=0), "num_canaries must be an integer >= 1"),
        (
            dict(num_canaries=1),
            r"num_canaries must be an integer in \[32, 100000\] \(fewer give the bound too few guesses",
        ),
        (dict(num_canaries=31), r"num_canaries must be an integer in \[32, 100000\]"),
        (dict(num_canaries=100001), r"more take too much memory\), got 100001"),
        (dict(noise_multiplier=float("nan")), "noise_multiplier must be a finite number > 0"),
        (dict(delta=0.0), "delta must be in"),
        (dict(noise_multiplier=1e-4), "noise_multiplier must be in"),
        (dict(l2_norm_clip=3000.0, fault="clip-2x"), r"l2_norm_clip must be in \(0, 2500\] \(for white-box"),
        (dict(kind="black-box", num_canaries=400), "batch_size: black-box canaries need Poisson sampling"),
    ],
)
def test_bad_plans_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AuditPlan(**kwargs)


def test_the_default_plan_is_a_fixed_size_full_batch_bounded_by_the_gaussian_curve():
    """No batch_size: B = N = n + m whatever the bits (sampling rate 1), so f-dp-gaussian is sound and the default;
    an explicit batch size is a Poisson run, whose N counts the included canaries."""
    plan, fixed_size = full_batch_resolved(AuditPlan(), 1347, fixed_size=False)
    assert (plan.batch_size, fixed_size) == (1347 + 10_000, True)
    assert estimator_for(AuditPlan(), 1347, fixed_size=False) == "f-dp-gaussian"
    assert sound_estimators(AuditPlan(), 1347, fixed_size=False) == ESTIMATORS
    poisson = AuditPlan(batch_size=1200)
    assert full_batch_resolved(poisson, 1347, fixed_size=False) == (poisson, False)
    assert estimator_for(poisson, 1347, fixed_size=False) == "f-dp"


def test_an_unaccountable_run_is_refused_before_training(digits):
    """sigma 1e6 with B 2: dp-accounting's RDP curve is numerically broken, so no epsilon could be claimed; refused
    by check_data (which run_dp_sgd_audit calls first), for the plan alone, not the bits."""
    (x, y), (x_pool, _) = digits
    plan = AuditPlan(num_canaries=32, epochs=1, batch_size=2, noise_multiplier=1e6)
    with pytest.raises(
        ValueError,
        match=r"^cannot account this run \(noise_multiplier 1e\+06, batch_size 2, "
        r"674 steps\): dp-accounting's RDP accountant is numerically unstable",
    ):
        check_data(plan, x, y, x_pool)


@pytest.mark.parametrize(
    ("kwargs", "rows_per_step"),
    [(dict(num_canaries=20_000), 1347 + 20_000), (dict(num_canaries=100_000), 1347 + 100_000)],
)
def test_a_step_too_large_for_memory_is_refused_before_training(digits, kwargs, rows_per_step):
    """Each private step holds rows x canaries per-example slot gradients: the full-batch default makes that
    (n + m) x m, 40 GB of float32 at the 100,000 canaries the plan accepts. Refused by check_data (the CLI's exit 2)
    above MAX_SLOT_GRADIENTS; the default (11,347 x 10,000) and the former Poisson defaults stay accepted."""
    (x, y), (x_pool, _) = digits
    product = rows_per_step * kwargs["num_canaries"]
    assert product > MAX_SLOT_GRADIENTS
    with pytest.raises(ValueError, match=rf"^num_canaries: a step of {rows_per_step} rows holds {product:,} "):
        check_data(AuditPlan(**kwargs), x, y, x_pool)
    check_data(AuditPlan(), x, y, x_pool)
    check_data(AuditPlan(**FAULT_CONFIGURATION), x, y, x_pool)
    check_data(AuditPlan(num_canaries=100_000, batch_size=1347), x, y, x_pool)  # Poisson: 1,347 x 100,000


@pytest.mark.parametrize("kind", ["white-box", "black-box"])
def test_a_diverged_run_raises_one_message_that_names_no_canary(digits, kind):
    (x, y), (x_pool, y_pool) = digits
    plan = AuditPlan(
        kind=kind,
        num_canaries=50,
        epochs=1,
        batch_size=512,
        learning_rate=1e38,
        l2_norm_clip=1000.0,
        noise_multiplier=1.0,
    )
    with pytest.raises(ValueError) as raised:
        run_dp_sgd_audit(plan, x, y, x_pool, y_pool)
    assert str(raised.value) == DIVERGED


def test_the_verdict_tests_the_smallest_epsilon_ppml_reports():
    """A bound between PLD's epsilon and RDP's refutes the PLD report, so the run is a violation; the claim and
    its accountant are the PLD ones."""
    result = AuditResult(
        plan=AuditPlan(),
        claims=({"rdp": 1.2, "pld": 1.1}, {"rdp": 1.053, "pld": 0.957}),
        lower_bound=(0.5, 1.0),
        final={},
        final_split={},
        compared={},
        dataset_size=2347,
        steps=10,
        seconds=1.0,
    )
    assert result.claimed_epsilon == (1.1, 0.957) and result.claim_accountant == "pld" and result.violated
    assert result.to_dict()["claim_accountant"] == "pld"
