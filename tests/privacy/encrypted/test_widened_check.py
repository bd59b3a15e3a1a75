"""The servers' default input check: the declared bounds widened outward to a window one comparison checks.

Properties over random models and bounds (seeded): the window is the 2^k grid values centred on each feature's
declared bounds (computed here from the spans, independently of `InputBounds.widened`); the servers compute the
fixed-point model bit for bit on any input in it, refuse one grid step outside it, and the client still refuses
inputs outside the declared bounds. A window holding more than twice some feature's declared grid values, or a model
whose widened box could wrap, falls back to the exact check; bundles without the checked bounds (written before them)
are checked on their declared bounds exactly.
"""

import json
import re

import numpy as np
import pytest

from privacy.encrypted import (
    InProcessCluster,
    InputBounds,
    InputOutOfBounds,
    LogitsOutOfRange,
    ModelRangeError,
    simulate,
)
from privacy.encrypted.model.plan import Activation, Architecture, Dense, ModelPlan
from privacy.encrypted.model.ranges import RangePlan, analyse
from privacy.encrypted.model.ring import FixedPoint, as_ring, as_signed
from privacy.encrypted.protocol import kernels
from privacy.encrypted.protocol.client import encode_input
from privacy.encrypted.protocol.input_check import CheckedBounds, InputCheck, bound_bits, power_of_two_span
from privacy.encrypted.protocol.shares import AShare, reconstruct, share
from tests.privacy.encrypted.test_properties import random_plan


def _window(lo_steps: np.ndarray, hi_steps: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """The expected window in grid steps: 2^k values, k the bits of the widest span, the extra split evenly
    (one more above where it is odd)."""
    spans = hi_steps - lo_steps
    k = max(int(spans.max()).bit_length(), 1)
    lo = lo_steps - ((2**k - 1 - spans) // 2)
    return lo, lo + 2**k - 1, k


def _served(cluster, rows: np.ndarray) -> list:
    """The parties' results for encoded rows shared without the client's check."""
    return cluster.run_shares(share(as_ring(rows)), "logits")


@pytest.mark.parametrize("seed", range(10))
def test_encrypted_equals_plaintext_anywhere_in_the_checked_window_and_one_step_outside_is_refused(seed):
    rng = np.random.default_rng(5000 + seed)
    plan = random_plan(rng)
    shape = plan.architecture.input_shape
    frac_bits = int(rng.integers(2, 13))
    step = 2.0**-frac_bits
    lo_steps = np.rint(rng.uniform(-2, 1, size=shape) / step).astype(np.int64)  # each feature its own lo
    # spans within the rule: the window holds 2^k = 4 * 2^bits values (k the bits of the widest span, 3 * 2^bits),
    # at most twice each feature's span + 1 >= 2 * 2^bits declared values; the last feature sits on the limit
    hi_steps = lo_steps + rng.integers(2 ** (frac_bits + 1) - 1, 3 * 2**frac_bits + 1, size=shape)
    hi_steps.flat[0] = lo_steps.flat[0] + 3 * 2**frac_bits  # one span of 3: never a power of two less one
    hi_steps.flat[-1] = lo_steps.flat[-1] + 2 ** (frac_bits + 1) - 1  # one on the limit: exactly twice
    bounds = InputBounds.declared(lo_steps * step, hi_steps * step, shape, frac_bits=frac_bits)
    cluster = InProcessCluster(plan, bounds, allow_logits=True)
    fixed, ranges = cluster.fixed, cluster.ranges
    assert ranges.fallback is None and ranges.checked_bounds is not None  # small models: the window is proven

    lo, hi, k = _window(lo_steps, hi_steps)
    assert np.array_equal(ranges.checked_bounds.lo, lo * step) and np.array_equal(ranges.checked_bounds.hi, hi * step)
    checked = ranges.server_bounds.encoded(fixed)
    assert power_of_two_span(*checked) and bound_bits(*checked) == k  # one comparison of k bits
    exact_window = InputBounds.declared(lo * step, hi * step, shape, frac_bits=frac_bits, input_check="exact")
    assert ranges.ops == analyse(plan.architecture, plan.encode(fixed), exact_window, fixed).ops
    assert ranges.input_bounds.lo.tolist() == (lo_steps * step).tolist()  # the client keeps the declared bounds
    assert np.all(hi - lo + 1 <= 2 * (hi_steps - lo_steps + 1)) and np.any(hi - lo + 1 == 2 * (hi_steps - lo_steps + 1))
    said = ranges.describe_check()
    assert said.startswith("the servers check the declared input bounds widened to [") and len(said) < 300, said
    assert said.endswith("(one comparison per value)"), said

    rows = rng.integers(lo, hi + 1, size=(8,) + shape)
    rows[0], rows[1] = lo, hi  # the window's corners
    results = _served(cluster, rows)
    assert all(r.refused is None for r in results)
    got = as_signed(reconstruct([np.asarray(r.values, dtype=np.uint64) for r in results]))
    sim = simulate(plan.architecture, plan.encode(fixed), encode_input(rows * step, shape, fixed), fixed)
    assert np.array_equal(got, sim.logits.point)  # the fixed-point model on those inputs, bit for bit

    for edge, delta in ((lo, -1), (hi, 1)):  # one grid step outside the window, in a random feature
        row = np.array([edge])
        row.flat[int(rng.integers(row.size))] += delta
        refused = [r for r in _served(cluster, row) if r.refused is not None]
        assert refused and all(r.values is None for r in refused) and "outside the bounds" in refused[0].refused

    outside = np.array([lo_steps * step])  # inside the window, one step outside the declared bounds
    outside.flat[0] -= step
    with pytest.raises(InputOutOfBounds, match="refused before sharing"):
        cluster.predict(outside)
    assert all(r.refused is None for r in _served(cluster, np.rint(outside / step).astype(np.int64)))


def _edge_plan() -> ModelPlan:
    """Dense(1) on one feature with kernel 0.8 * 2^21, ReLU, Dense(1): over [0, 1] the hidden truncation needs 53
    bits (re-run probability 2^-10, the limit), over its window [-0.5 + 2^-16, 1.5] 54 (2^-9)."""
    architecture = Architecture((1,), (Dense("h", 1), Activation("r", "relu"), Dense("out", 1)))
    return ModelPlan(
        architecture, {"h": (np.array([[0.8 * 2**21]]), np.zeros(1)), "out": (np.ones((1, 1)), np.zeros(1))}
    )


def test_a_window_the_analysis_cannot_prove_falls_back_to_the_exact_check():
    plan, fixed = _edge_plan(), FixedPoint(16)
    declared = InputBounds.declared(0, 1, (1,))
    window = declared.widened(fixed)
    assert (window.lo[0], window.hi[0]) == (-0.5 + 2**-16, 1.5)
    with pytest.raises(ModelRangeError, match="re-run"):
        analyse(plan.architecture, plan.encode(fixed), window, fixed)

    cluster = InProcessCluster(plan, declared, allow_logits=True)
    ranges = cluster.ranges
    assert ranges.checked_bounds is None and "re-run" in ranges.fallback and "widened bounds" in ranges.fallback
    # public: which limit, not the window's re-run probability (2^-9) or bits, which the plan does not reveal
    assert ranges.fallback == "over the widened bounds a query's re-run probability would exceed the limit"
    assert ranges.describe_check().startswith("the servers check the declared input bounds [0.0, 1.0] exactly: ")
    assert ranges.to_dict()["input_check_fallback"] == ranges.fallback and "checked_bounds" not in ranges.to_dict()
    assert [op.bits for op in ranges.ops if op.kind == "trunc"] == [53]  # the declared box's plan
    for value, accepted in ((0, True), (2**16, True), (-1, False), (2**16 + 1, False)):  # exact [0, 1]
        results = _served(cluster, np.array([[value]]))
        assert all(r.refused is None for r in results) == accepted, value
    assert not InProcessCluster(plan, InputBounds.declared(0, 1, (1,), input_check="exact")).ranges.fallback


def test_bundles_without_the_checked_bounds_are_checked_on_their_declared_bounds(tmp_path):
    """A bundle header as written before the checked bounds (no "checked_bounds") loads, and its parties check
    the declared bounds exactly: one step past them (inside the window a new bundle checks) is refused."""
    from privacy.encrypted.protocol.model_shares import PartyModel

    plan = ModelPlan(Architecture((2,), (Dense("out", 2),)), {"out": (np.eye(2), np.zeros(2))})
    cluster = InProcessCluster(plan, InputBounds.declared(0, 1, (2,), frac_bits=8), allow_logits=True)
    assert cluster.ranges.to_dict()["checked_bounds"] == {"lo": -0.49609375, "hi": 1.5, "frac_bits": 8}
    past = np.array([[257, 0]])  # 1 + 2^-8: inside the window
    assert all(r.refused is None for r in _served(cluster, past))

    old = []
    for model in cluster.models:
        model.save(str(tmp_path / f"m{model.index}.npz"))
        with np.load(tmp_path / f"m{model.index}.npz") as data:
            arrays = dict(data)
        header = json.loads(bytes(arrays["header"]).decode())
        del header["ranges"]["checked_bounds"]
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        np.savez(tmp_path / f"old{model.index}.npz", **arrays)
        old.append(PartyModel.load(str(tmp_path / f"old{model.index}.npz")))
    assert old[0].ranges.checked_bounds is None and old[0].ranges.server_bounds == old[0].ranges.input_bounds
    cluster.models = old
    refused = [r for r in _served(cluster, past) if r.refused is not None]
    assert refused and "outside the bounds" in refused[0].refused
    assert all(r.refused is None for r in _served(cluster, np.array([[256, 0]])))


def test_input_check_choices_and_contradictions_are_refused_in_one_line():
    for kwargs, why in (
        ({"input_check": "closed"}, "input_check must be one of widened, exact, half-open, not 'closed'"),
        ({"input_check": "exact", "half_open": True}, "contradicts input_check 'exact'"),
    ):
        with pytest.raises(ValueError, match=why):
            InputBounds.declared(0, 1, (2,), **kwargs)
    assert InputBounds.declared(0, 1, (2,), half_open=True).input_check == "half-open"
    with pytest.raises(ValueError, match="cannot be half-open"):
        InputBounds.from_data(np.zeros((2, 2)), (2,), input_check="half-open")
    written = InProcessCluster(_edge_plan(), InputBounds.declared(0, 1, (1,))).ranges.to_dict()
    with pytest.raises(ValueError, match="input_check_fallback must be a string, not 3"):
        RangePlan.from_dict(dict(written, input_check_fallback=3), (1,))


def test_logits_refused_over_the_window_name_the_window_not_the_declared_bounds():
    """Review case: logits that need 64 bits over the declared box (already too many to release) and 65 over its
    window, which the servers check: the refusal names the bits of the bounds they were computed for."""
    plan = ModelPlan(
        Architecture((2,), (Dense("out", 2),)), {"out": (np.full((2, 2), 2.0**30), np.full(2, 2.0**30))}
    )  # logits 2^30 (x0 + x1 + 1): below 2^32 (2^64 in 2f bits) on the declared box, above on its window
    fixed, lo = FixedPoint(16), 1.5 - 2.0**-10 - 2.0**-12
    exact = InputBounds.declared(lo, lo + 2.0**-10, (2,), input_check="exact")
    assert analyse(plan.architecture, plan.encode(fixed), exact, fixed).output_bits == 64
    widened = analyse(plan.architecture, plan.encode(fixed), InputBounds.declared(lo, lo + 2.0**-10, (2,)), fixed)
    assert widened.checked_bounds is not None and widened.output_bits == 65
    with pytest.raises(LogitsOutOfRange, match="^for the widened bounds the servers check the logits can need 65 bits"):
        widened.check_logits_release()
    with pytest.raises(LogitsOutOfRange, match="^for the declared input bounds the logits can need 64 bits"):
        InProcessCluster(plan, exact, allow_logits=True)


_ONES = ModelPlan(Architecture((2,), (Dense("out", 1),)), {"out": (np.ones((2, 1)), np.zeros(1))})


def _fallback_cluster(lo, hi) -> InProcessCluster:
    """A cluster serving Dense(1) of ones on two features declared in [lo, hi] (default check, 16-bit inputs)."""
    return InProcessCluster(_ONES, InputBounds.declared(lo, hi, (2,)), allow_logits=True)


def _refused_past_the_declared_bounds(cluster, lo_steps, hi_steps) -> None:
    """The servers serve the declared corners and refuse one grid step past them, in each feature at each end."""
    assert all(r.refused is None for r in _served(cluster, np.array([lo_steps, hi_steps])))
    for edge, delta in ((lo_steps, -1), (hi_steps, 1)):
        for feature in range(2):
            row = np.array([edge])
            row[0, feature] += delta
            refused = [r for r in _served(cluster, row) if r.refused is not None]
            assert refused and "outside the bounds" in refused[0].refused, (edge, delta, feature)


@pytest.mark.parametrize(
    "hi, feature",
    (
        ([1, 1000], 0),  # [0, 1] beside [0, 1000]: was served over [-511.5 + 2^-16, 512.5]
        ([1, 0], 1),  # a constant 0 beside [0, 1]: was served over [-1 + 2^-16, 1]
        ([1, 1 - 2**-15], 1),  # 2^16 - 1 values beside [0, 1]'s window of 2^17: just past twice
    ),
)
def test_a_window_more_than_doubling_a_features_declared_values_falls_back_to_the_exact_check(hi, feature):
    """Product rule (review F2): the window (2^k values, k from the widest span) may hold at most twice a feature's
    declared grid values (span + 1); past that the servers check the declared bounds exactly, and say why publicly
    (the feature and the rule, no counts). The explicit input_check="widened" is the same rule."""
    cluster = _fallback_cluster([0, 0], hi)
    ranges = cluster.ranges
    reason = (
        f"over the widened bounds feature ({feature},) would hold more than twice the grid values declared for it "
        "(declared spans differ too much; equal spans keep the widened check)"
    )
    assert ranges.checked_bounds is None and ranges.fallback == reason
    assert ranges.describe_check().endswith(" exactly: " + reason)
    assert ranges.to_dict()["input_check_fallback"] == reason and "checked_bounds" not in ranges.to_dict()
    fixed = cluster.fixed
    explicit = InputBounds.declared([0, 0], hi, (2,), input_check="widened")
    same = analyse(_ONES.architecture, _ONES.encode(fixed), explicit, fixed)
    assert same.checked_bounds is None and same.fallback == reason and same.ops == ranges.ops
    with pytest.raises(ValueError, match=rf"^the widened bounds would give feature \({feature},\) 2\^\d+ grid values"):
        explicit.widened(fixed)
    hi_steps = np.rint(np.array(hi) * 2**16).astype(np.int64)
    _refused_past_the_declared_bounds(cluster, np.zeros(2, dtype=np.int64), hi_steps)


def test_spans_that_at_most_double_every_features_declared_values_are_widened():
    """[0, 1] (2^16 + 1 values) beside [0, 1 - 2^-16] (2^16): a window of 2^17 values is exactly twice the
    narrower's, so both are checked widened, each within twice its declared values; one step past the window is
    refused, one step past the declared bounds served (the client itself refuses it)."""
    cluster = _fallback_cluster([0, 0], [1, 1 - 2**-16])
    ranges = cluster.ranges
    assert ranges.fallback is None
    lo, hi = (np.rint(b * 2**16).astype(np.int64) for b in (ranges.checked_bounds.lo, ranges.checked_bounds.hi))
    assert lo.tolist() == [-(2**15) + 1, -(2**15)] and hi.tolist() == [2**16 + 2**15, 2**16 + 2**15 - 1]
    assert ranges.describe_check() == (
        "the servers check the declared input bounds widened to [-0.5 to -0.4999847412109375 per feature, "
        "1.4999847412109375 to 1.5 per feature] (one comparison per value)"
    )
    _refused_past_the_declared_bounds(cluster, lo, hi)  # the window's edges are what the servers hold to
    one_step = InputBounds.declared([0, 0], [2**-16, 0], (2,)).widened(cluster.fixed)  # a constant: 1 value, window 2
    assert one_step.lo.tolist() == [0, 0] and one_step.hi.tolist() == [2**-16, 2**-16]
    assert all(r.refused is None for r in _served(cluster, np.array([[-1, 2**16]])))  # past the declared bounds


def test_a_headroom_fallback_names_the_layer_not_the_windows_bits():
    """Review case: label comparisons of 61 bits over [0, 1] and 62 over its window (logit 1.4 * 2^28 x0): the
    public fallback reason names the layer (public) and the limit, not the 62 bits (which would say more about the
    weights than the plan)."""
    plan = ModelPlan(
        Architecture((2,), (Dense("out", 2),)), {"out": (np.array([[1.4 * 2.0**28, 0], [0, 0]]), np.zeros(2))}
    )
    fixed = FixedPoint(16)
    declared = analyse(
        plan.architecture, plan.encode(fixed), InputBounds.declared(0, 1, (2,), input_check="exact"), fixed
    )
    with pytest.raises(ModelRangeError, match="can need 62 bits"):
        analyse(plan.architecture, plan.encode(fixed), InputBounds.declared(0, 1, (2,)).widened(fixed), fixed)
    ranges = analyse(plan.architecture, plan.encode(fixed), InputBounds.declared(0, 1, (2,)), fixed)
    assert ranges.checked_bounds is None and ranges.ops == declared.ops
    assert ranges.fallback == "over the widened bounds the values of layer 'label' could leave the ring's headroom"


def test_a_logits_fallback_says_which_limit_not_the_windows_bits():
    """Logits 2^30 (x0 + x1 + 1) of 63 bits over the declared box (2f = 32 fractional bits) and 64 over its window:
    the servers check the declared bounds, so released logits fit; the public reason gives the limit only."""
    plan = ModelPlan(Architecture((2,), (Dense("out", 2),)), {"out": (np.full((2, 2), 2.0**30), np.full(2, 2.0**30))})
    fixed, lo = FixedPoint(16), 0.5 - 2.0**-10 - 2.0**-12
    bounds = InputBounds.declared(lo, lo + 2.0**-10, (2,))
    assert analyse(plan.architecture, plan.encode(fixed), bounds.widened(fixed), fixed).output_bits == 64
    ranges = InProcessCluster(plan, bounds, allow_logits=True).ranges
    assert ranges.checked_bounds is None and ranges.output_bits == 63
    assert ranges.fallback == "over the widened bounds the logits could need more than 63 bits"


def test_an_input_share_of_another_example_shape_is_refused_before_the_kernel():
    """The opener's kernel repeats the bounds over the flat batch (lo[i % width]), so a (4, 3) share against (2, 3)
    bounds would pass it silently (shown below); InputCheck refuses the shape first, naming both."""
    lo = as_ring(np.arange(6, dtype=np.int64).reshape(2, 3))
    bounds = CheckedBounds.of(lo, lo + np.uint64(7))
    zeros = np.zeros((4, 3), np.uint64)
    out = [np.empty(12, np.uint64) for _ in range(3)]
    kernels.opener_split(zeros.reshape(-1), zeros.reshape(-1), bounds.lo.reshape(-1), bounds.span.reshape(-1), 3, *out)
    riders = []
    party = type("Party", (), {"add_rider": lambda self, rider: riders.append(rider)})()
    with pytest.raises(ValueError, match=re.escape("example shape (3,) is not the checked bounds' (2, 3)")):
        InputCheck(party, AShare(zeros, zeros), bounds)
    assert riders == []
    InputCheck(party, AShare(np.zeros((4, 2, 3), np.uint64), np.zeros((4, 2, 3), np.uint64)), bounds)
    assert len(riders) == 1
