"""DP-FedAvg with a fixed clipping norm [McMahan et al. 2018, arXiv 1710.06963]."""

from __future__ import annotations

from federated.strategies._dp_clipping_base import DpClippingBase, check_clipping_norm
from federated.strategies.fedavg import FedAvg


class DifferentialPrivacyFixedClipping(DpClippingBase):
    """Client updates clipped to ``clipping_norm``; noise std ``noise_multiplier * clipping_norm`` on the sum.

    Args:
      strategy: an unweighted FedAvg-family strategy.
      clipping_norm: C > 0, the L2 bound of each client's update.
      noise_multiplier, target_delta, max_epsilon, accountant, seeded_noise: see `DpClippingBase`.
    """

    def __init__(
        self,
        strategy: FedAvg,
        *,
        clipping_norm: float,
        noise_multiplier: float,
        target_delta: float,
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
        self.clipping_norm = check_clipping_norm(clipping_norm)

    def initial_clipping_norm(self):
        return self.clipping_norm

    def to_dict(self):
        return {**super().to_dict(), "clipping_norm": self.clipping_norm}
