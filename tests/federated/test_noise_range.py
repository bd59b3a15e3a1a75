"""The noise z x C of a private round stays within what the float32 model holds: settings that would
overflow it are refused up front, by the one settings check the CLI and the Federated Trainer share."""

import json
import math
import re
import types

import numpy as np
import pytest
from click.testing import CliRunner

from federated.strategies import (
    MAX_CLIPPING_NORM,
    MAX_NOISE_STDDEV,
    DifferentialPrivacyAdaptiveClipping,
    FedAvg,
    check_clipping_norm,
)
from federated.strategies.dp_adaptive_clipping import update_noise_multiplier
from pipelines.cli.main import cli
from pipelines.components.federated_trainer.spec import FederatedTrainingConfig, InvalidFederatedSetting
from privacy.accounting import NOISE_MULTIPLIER_RANGE

CONFIG = {"label_key": "label", "private": True, "noise_multiplier": 1.0, "rounds": 2, "num_classes": 2}


def test_bounds_keep_the_noise_within_float32():
    assert MAX_CLIPPING_NORM * NOISE_MULTIPLIER_RANGE[1] <= MAX_NOISE_STDDEV
    assert np.isfinite(np.float32(40 * MAX_NOISE_STDDEV) ** 2)  # a 40-sigma draw, squared, still fits


@pytest.mark.parametrize("norm", [1e300, math.inf, 2e6, 0.0, -1.0])
def test_cli_refuses_a_clipping_norm_out_of_range(tmp_path, norm):
    result = CliRunner().invoke(
        cli, ["federated", "run", "--dp", "--clipping-norm", str(norm), "--rounds", "1", "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and "--clipping-norm" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("clip", ["fixed", "adaptive"])
def test_trainer_settings_refuse_it_too(clip):
    with pytest.raises(InvalidFederatedSetting, match=r"clipping_norm.*must be in \[1.18\d*e-271, 1e\+06\]"):
        FederatedTrainingConfig.for_trainer({**CONFIG, "clip": clip, "clipping_norm": 1e300})
    assert FederatedTrainingConfig.for_trainer({**CONFIG, "clip": clip, "clipping_norm": 1e6}).clipping_norm == 1e6


def test_largest_noise_keeps_the_model_finite(tmp_path):
    result = CliRunner().invoke(
        cli,
        [
            "federated",
            "run",
            "--dp",
            "--clipping-norm",
            "1e6",
            "--noise-multiplier",
            "1e6",
            "--rounds",
            "2",
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 0, result.output
    rounds = json.loads((tmp_path / "out" / "history.json").read_text())["rounds"]
    assert [r["metrics"]["noise_stddev"] for r in rounds] == [MAX_NOISE_STDDEV] * 2
    assert all(math.isfinite(r["evaluation"]["loss"]) for r in rounds)


def test_adaptive_update_noise_multiplier_is_bounded():
    with pytest.raises(ValueError, match="update noise multiplier is 1.58e\\+06"):
        update_noise_multiplier(1.0, 0.5 + 1e-13)
    assert update_noise_multiplier(1.0, 1.0) == pytest.approx((1 - 0.25) ** -0.5)
    # z_update = 1.001e6 just above the largest (1e6): privacy.compared widens it; '.3g' printed '1e+06, above 1e+06'
    z, z_update = 1e5, 1.001e6
    with pytest.raises(ValueError) as refused:
        update_noise_multiplier(z, 0.5 * (z**-2 - z_update**-2) ** -0.5)
    shown, bound = re.search(r"update noise multiplier is (\S+), above (\S+) \(", str(refused.value)).groups()
    assert float(shown) > float(bound) == 1e6 and float(shown) == pytest.approx(z_update), str(refused.value)


def test_adaptive_clipping_norm_never_grows_past_the_bound():
    strategy = DifferentialPrivacyAdaptiveClipping(
        FedAvg(weighted=False),
        noise_multiplier=1.0,
        target_delta=1e-5,
        initial_clipping_norm=MAX_CLIPPING_NORM,
        target_unclipped_quantile=0.99,
        clipping_learning_rate=5.0,
        clipped_count_stddev=5.0,
        seeded_noise=True,
    )
    ctx = types.SimpleNamespace(
        rng=np.random.default_rng(0),
        population=100,
        sampler=types.SimpleNamespace(expected_clients=lambda population: 10.0),
    )
    total = types.SimpleNamespace(counts=np.array([10, 0]))  # every update clipped: C wants to grow
    norm, _ = strategy.next_clipping_norm(MAX_CLIPPING_NORM, total, ctx)
    assert norm == MAX_CLIPPING_NORM
    with pytest.raises(ValueError, match="clipping_norm must be in"):
        check_clipping_norm(MAX_CLIPPING_NORM * 1.01)
