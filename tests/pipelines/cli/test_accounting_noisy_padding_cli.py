"""`ppml epsilon --batch-size-noise-multiplier`: noisy padding accounted as one Poisson-sampled Gaussian of
(sigma^-2 + sigma_c^-2)^-1/2 per step plus the clamp's delta; epsilon recomputed here from dp-accounting."""

import json
import math

import dp_accounting as dpa
import pytest
from click.testing import CliRunner

from pipelines.cli.main import cli

N, B, SIGMA, STEPS, DELTA = 2000, 40, 1.0, 300, 1e-5
BASE = ["epsilon", "--n", str(N), "--batch-size", str(B), "--noise-multiplier", str(SIGMA), "--steps", str(STEPS)]
BASE += ["--target-delta", str(DELTA)]


def run(*args):
    return CliRunner().invoke(cli, [*BASE, *args], catch_exceptions=False)


def test_epsilon_is_the_joint_gaussians_and_delta_gains_the_clamp():
    result = run("--batch-size-noise-multiplier", "4", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    joint = (SIGMA**-2 + 4.0**-2) ** -0.5
    event = dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(B / N, dpa.GaussianDpEvent(joint)), STEPS)
    pld = dpa.pld.PLDAccountant(value_discretization_interval=1e-4).compose(event).get_epsilon(DELTA)
    rdp = dpa.rdp.RdpAccountant().compose(event).get_epsilon(DELTA)
    assert data["epsilon_pld"] == pytest.approx(pld, rel=1e-12)
    assert data["epsilon_rdp"] == pytest.approx(rdp, rel=1e-12)
    clamp = STEPS * 2.0**-50 * (1 + 2.0**-40) * (1 + math.exp(min(pld, rdp)))
    assert data["clamp_delta"] == pytest.approx(clamp, rel=1e-12)
    assert data["guarantee_delta"] == DELTA + data["clamp_delta"]
    assert data["batch_size_noise_multiplier"] == 4.0 and data["effective_noise_multiplier"] == joint
    plain = json.loads(run("--json").output)
    assert plain["clamp_delta"] == 0.0 and plain["epsilon_pld"] < data["epsilon_pld"]


@pytest.mark.parametrize(
    "args, named",
    [
        (["--batch-size-noise-multiplier", "0"], "got 0.0"),
        (["--batch-size-noise-multiplier", "nan"], "got nan"),
        (["--batch-size-noise-multiplier", "3", "--sampling", "shuffle"], "sampling='shuffle'"),
        (["--batch-size-noise-multiplier", "3", "--truncated-batch-size", "50"], "truncated_batch_size=50"),
        (["--batch-size-noise-multiplier", "3", "--adjacency", "replace-one"], "adjacency='replace-one'"),
    ],
)
def test_refusals_exit_2_with_one_line_naming_the_value(args, named):
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert "--batch-size-noise-multiplier" in result.output and named in result.output, result.output
    assert "Traceback" not in result.output
