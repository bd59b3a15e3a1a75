"""Strategies by name, for command lines and pipeline settings: a FedAvg-family algorithm, and its
client-level DP wrapper."""

from __future__ import annotations

from federated.client import ClientConfig
from federated.strategies.dp_adaptive_clipping import DifferentialPrivacyAdaptiveClipping
from federated.strategies.dp_fixed_clipping import DifferentialPrivacyFixedClipping
from federated.strategies.fedadagrad import FedAdagrad
from federated.strategies.fedadam import FedAdam
from federated.strategies.fedavg import FedAvg
from federated.strategies.fedavgm import FedAvgM
from federated.strategies.fedyogi import FedYogi
from privacy import validation

SERVER_OPTIMIZERS = ("sgd", "avgm", "adam", "yogi", "adagrad")
DEFAULT_SERVER_LEARNING_RATES = {"sgd": 1.0, "avgm": 1.0, "adam": 1e-2, "yogi": 1e-2, "adagrad": 1e-2}
"""Model averaging (sgd, avgm); Reddi et al.'s starting point for the adaptive optimizers."""
CLIPPING = ("fixed", "adaptive")


def build_strategy(
    server_optimizer: str,
    client: ClientConfig,
    *,
    weighted: bool = True,
    server_learning_rate: float | None = None,
    server_momentum: float = 0.9,
) -> FedAvg:
    """FedAvg (``sgd``), FedAvgM (``avgm``) or FedAdam/FedYogi/FedAdagrad.

    ``server_learning_rate`` defaults to `DEFAULT_SERVER_LEARNING_RATES` (1 for sgd and avgm, 0.01 for the
    adaptive optimizers).
    """
    validation.choice("server_optimizer", server_optimizer, SERVER_OPTIMIZERS)
    rate = server_learning_rate or DEFAULT_SERVER_LEARNING_RATES[server_optimizer]
    if server_optimizer in ("adam", "yogi", "adagrad"):
        cls = {"adam": FedAdam, "yogi": FedYogi, "adagrad": FedAdagrad}[server_optimizer]
        return cls(client, server_learning_rate=rate, weighted=weighted)
    if server_optimizer == "avgm":
        return FedAvgM(client, server_momentum=server_momentum, server_learning_rate=rate, weighted=weighted)
    return FedAvg(client, server_learning_rate=rate, weighted=weighted)


def with_client_dp(
    strategy: FedAvg,
    *,
    clip: str,
    clipping_norm: float,
    noise_multiplier: float,
    target_delta: float,
    target_quantile: float = 0.5,
    clipped_count_stddev: float | None = None,
    max_epsilon: float | None = None,
    accountant: str = "rdp",
    seeded_noise: bool = False,
):
    """``strategy`` wrapped in DP-FedAvg with fixed clipping (norm ``clipping_norm``) or adaptive
    clipping (initial norm ``clipping_norm``, towards ``target_quantile``, count noise
    ``clipped_count_stddev``)."""
    common = dict(
        noise_multiplier=noise_multiplier,
        target_delta=target_delta,
        max_epsilon=max_epsilon,
        accountant=accountant,
        seeded_noise=seeded_noise,
    )
    if clip == "fixed":
        return DifferentialPrivacyFixedClipping(strategy, clipping_norm=clipping_norm, **common)
    if clip == "adaptive":
        return DifferentialPrivacyAdaptiveClipping(
            strategy,
            initial_clipping_norm=clipping_norm,
            target_unclipped_quantile=target_quantile,
            clipped_count_stddev=clipped_count_stddev,
            **common,
        )
    raise ValueError(f"clip must be one of {', '.join(CLIPPING)}, got {clip!r}")
