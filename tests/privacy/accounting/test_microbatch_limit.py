"""More microbatches than the (expected) batch holds examples are refused, under every sampling."""

import pytest
from click.testing import CliRunner

from pipelines.cli.main import cli
from privacy.accounting import DpSgdMechanism


@pytest.mark.parametrize("sampling", ["poisson", "fixed", "shuffle"])
def test_mechanism_refuses_more_microbatches_than_the_batch(sampling):
    common = dict(dataset_size=1000, batch_size=50, noise_multiplier=1.0, steps=10, sampling=sampling)
    with pytest.raises(ValueError, match="num_microbatches=51 exceeds the (expected )?batch size 50"):
        DpSgdMechanism(num_microbatches=51, **common)
    assert DpSgdMechanism(num_microbatches=50, **common).num_microbatches == 50


@pytest.mark.parametrize("command", ["epsilon", "epochs"])
def test_cli_refuses_more_microbatches_than_the_expected_batch(command):
    length = ["--steps", "10"] if command == "epsilon" else ["--target-epsilon", "3"]
    result = CliRunner().invoke(
        cli,
        [
            command,
            "--n",
            "1000",
            "--batch-size",
            "50",
            "--noise-multiplier",
            "1.0",
            "--num-microbatches",
            "51",
            *length,
        ],
    )
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and "--num-microbatches" in result.output and "51" in result.output
