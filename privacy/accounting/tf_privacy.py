"""TF Privacy's `compute_dp_sgd_privacy(n, batch_size, noise_multiplier, epochs, delta)`, for code that calls it."""

from __future__ import annotations

from privacy import validation
from privacy.accounting.accountants import AccountantKind, dp_accounting_version, make_accountant
from privacy.accounting.mechanism import DpSgdMechanism


def compute_dp_sgd_privacy(
    n: int, batch_size: float, noise_multiplier: float, epochs: float, delta: float
) -> tuple[float, float]:
    """(epsilon, optimal RDP order) of DP-SGD under TF Privacy's assumptions; prints the statement.

    The assumptions, which TF Privacy's function made without saying so:

    * Poisson sampling with rate q = batch_size / n: each example joins each batch independently.
      Shuffled or fixed-size batches (what `fit` runs on arrays unless ppml samples them) are not
      covered; `ppml epsilon --sampling shuffle|fixed` accounts them.
    * Add/remove adjacency, per-example clipping (microbatches of several examples move the sum by 2C:
      halve the noise multiplier), and privacy per example (not per user).
    * T = ceil(epochs * n / batch_size) noisy steps, noise std noise_multiplier * C on the summed
      clipped gradients.
    * RDP accounting with dp-accounting's RDP-to-DP conversion, tighter than TF Privacy's older one
      (2.597 instead of 3.01 for its MNIST tutorial). `dp_sgd_report` also gives PLD's figure.
    """
    validation.probability("delta", delta)
    mechanism = DpSgdMechanism.from_epochs(
        dataset_size=n, batch_size=batch_size, noise_multiplier=noise_multiplier, epochs=epochs
    )
    accountant = make_accountant(AccountantKind.RDP).compose(mechanism.dp_event())
    epsilon, order = accountant.get_epsilon_and_optimal_order(delta)
    print(
        f"DP-SGD with sampling rate = {100 * mechanism.sampling_probability:.3g}% and noise_multiplier = "
        f"{noise_multiplier} iterated over {mechanism.steps} steps satisfies differential privacy with eps = "
        f"{epsilon:.3g} and delta = {delta}, assuming Poisson sampling, add/remove adjacency and per-example "
        f"clipping (RDP, dp-accounting {dp_accounting_version()}). The optimal RDP order is {order}."
    )
    return epsilon, order
