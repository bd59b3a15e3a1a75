"""DP-FedAvg with adaptive quantile clipping [Andrew, Thakkar, McMahan & Ramaswamy 2021, arXiv 1905.03871].

The clipping norm tracks a target quantile gamma of the client update norms. Each client also
reports b_i = 1[||delta_i|| <= C]; the server forms the private estimate
    b = (sum_i (b_i - 1/2) + N(0, sigma_b^2)) / m + 1/2
(m the expected clients per round) and updates geometrically, C <- C exp(-eta_C (b - gamma)).
A client without examples reports [0, 0] (not counted at all), so emptying a client, the only way to take
its data out when N is a public setting, moves the centred count as removing it does.
The centred count has add/remove sensitivity 1/2, so the round is one Gaussian mechanism with
noise multiplier z when the update noise uses z_update = (z^-2 - (2 sigma_b)^-2)^(-1/2)
(Andrew et al., Sec. 3.1); this needs 2 sigma_b > z.
"""

from __future__ import annotations

import math

import numpy as np

from federated.strategies._dp_clipping_base import (
    MAX_CLIPPING_NORM,
    MIN_CLIPPING_NORM,
    DpClippingBase,
    check_clipping_norm,
)
from federated.strategies.fedavg import FedAvg
from privacy import validation
from privacy.accounting import NOISE_MULTIPLIER_RANGE
from privacy.compared import compared


class DifferentialPrivacyAdaptiveClipping(DpClippingBase):
    """Adaptive clipping to a DP estimate of an update-norm quantile.

    Args:
      strategy: an unweighted FedAvg-family strategy.
      noise_multiplier: z > 0 for the whole round (update sum and clipped count together).
      initial_clipping_norm: C_0 > 0 (TFF's default 0.1).
      target_unclipped_quantile: gamma in (0, 1), the fraction of updates to leave unclipped.
      clipping_learning_rate: eta_C > 0 of the geometric update.
      clipped_count_stddev: sigma_b, the noise std of the count; default m / 20 (TFF's 0.05 x clients).
      target_delta, max_epsilon, accountant, seeded_noise: see `DpClippingBase`.
    """

    def __init__(
        self,
        strategy: FedAvg,
        *,
        noise_multiplier: float,
        target_delta: float,
        initial_clipping_norm: float = 0.1,
        target_unclipped_quantile: float = 0.5,
        clipping_learning_rate: float = 0.2,
        clipped_count_stddev: float | None = None,
        max_epsilon: float | None = None,
        accountant: str = "rdp",
        seeded_noise: bool = False,
    ):
        super().__init__(
            strategy,
            noise_multiplier=noise_multiplier,
            target_delta=target_delta,
            max_epsilon=max_epsilon,
            accountant=accountant,
            seeded_noise=seeded_noise,
        )
        validation.probability("target_unclipped_quantile", target_unclipped_quantile)
        validation.positive("clipping_learning_rate", clipping_learning_rate)
        if clipped_count_stddev is not None:
            validation.positive("clipped_count_stddev", clipped_count_stddev)
        self.initial_norm = check_clipping_norm(initial_clipping_norm)
        self.target_unclipped_quantile = float(target_unclipped_quantile)
        self.clipping_learning_rate = float(clipping_learning_rate)
        self.clipped_count_stddev = clipped_count_stddev

    range_headroom = 4.0

    def initial_clipping_norm(self):
        return self.initial_norm

    def count_stddev(self, ctx) -> float:
        if self.clipped_count_stddev is not None:
            return float(self.clipped_count_stddev)
        return default_count_stddev(ctx.sampler.expected_clients(ctx.population))

    def update_noise_multiplier(self, ctx):
        return update_noise_multiplier(self.noise_multiplier, self.count_stddev(ctx))

    def clip_counts(self, norm, clipping_norm):
        return np.array([1, int(norm <= clipping_norm)], np.int64)  # [client, unclipped]

    def next_clipping_norm(self, clipping_norm, total, ctx):
        clients, unclipped = (0, 0) if total is None else (int(total.counts[-2]), int(total.counts[-1]))
        noisy = (unclipped - clients / 2.0) + float(self.gaussian(ctx, self.count_stddev(ctx), 1)[0])
        estimate = noisy / ctx.sampler.expected_clients(ctx.population) + 0.5
        step = -self.clipping_learning_rate * (estimate - self.target_unclipped_quantile)
        updated = clipping_norm * math.exp(min(step, 700.0))
        updated = min(max(updated, MIN_CLIPPING_NORM), MAX_CLIPPING_NORM)  # z x C stays in float32; C keeps precision
        return updated, {"unclipped_fraction_estimate": estimate}

    def to_dict(self):
        return {
            **super().to_dict(),
            "initial_clipping_norm": self.initial_norm,
            "target_unclipped_quantile": self.target_unclipped_quantile,
            "clipping_learning_rate": self.clipping_learning_rate,
            "clipped_count_stddev": self.clipped_count_stddev,
        }


COUNT_STDDEV_SHARE = 0.05
"""The default clipped-count noise: sigma_b = this x the expected clients per round (TFF's default)."""


def default_count_stddev(expected_clients: float) -> float:
    """sigma_b = `COUNT_STDDEV_SHARE` x the expected clients per round (TFF's default)."""
    return COUNT_STDDEV_SHARE * expected_clients


def update_noise_multiplier(noise_multiplier: float, count_stddev: float) -> float:
    """z_update = (z^-2 - (2 sigma_b)^-2)^(-1/2), the share of the round's z left for the update sum.

    Raises:
      ValueError: when 2 sigma_b <= z (the count alone would spend the round's budget), or z_update exceeds
        the largest noise multiplier ppml accounts (its noise z_update x C could overflow the float32 model).
    """
    advice = "sample more clients per round, raise clipped_count_stddev, or clip fixed"
    if 2.0 * count_stddev <= noise_multiplier:
        raise ValueError(
            f"clipped_count_stddev={count_stddev:g} is too small for noise_multiplier="
            f"{noise_multiplier:g}: adaptive clipping needs it above noise_multiplier / 2 = "
            f"{noise_multiplier / 2:g} ({advice})"
        )
    z_update = (noise_multiplier**-2 - (2.0 * count_stddev) ** -2) ** -0.5
    if not z_update <= NOISE_MULTIPLIER_RANGE[1]:
        shown, bound = compared(z_update, NOISE_MULTIPLIER_RANGE[1], digits=3)
        raise ValueError(
            f"clipped_count_stddev={count_stddev:g} is so close to noise_multiplier / 2 = "
            f"{noise_multiplier / 2:g} that the update noise multiplier is {shown}, above {bound} ({advice})"
        )
    return z_update
