"""What Poisson batches cost over fixed ones, by expected batch size: rows per step and epsilon of each padding.

A fixed batch of B examples runs B rows. A Poisson step draws m ~ Binomial(n, q), q = B / n, and runs, per padding
(`privacy.keras.make_private` / `poisson_batches`):

* padded: the sampler's padded size, the (1 - 1e-9) quantile of m (the default; duration inside the guarantee);
* truncated: K = B + 4 standard deviations of m (``truncated_batch_size="default"``), larger batches cut to a
  random K (accounted by dp-accounting's TruncatedSubsampledGaussianDpEvent);
* noisy: m + max(0, ceil(mu + Z)) rows, Z ~ N(0, sigma_c^2), rounded up to a multiple of 32 (``skip_padding=True``,
  ``batch_size_noise_multiplier=sigma_c``; accounted as one Gaussian of sigma_eff, `privacy.accounting.noisy_padding`);
* skip: m rounded up to a multiple of 32 (``skip_padding=True`` alone: the batch size shows in the step's duration,
  outside the guarantee).

For each B it prints the expected rows per step over B (exact, from the distributions: the step's cost where a
row's cost does not depend on its content) and the PLD epsilon at delta for the same noise multiplier and epochs.
A padding's rows over B bound its step's time over a fixed step's from above where the step's cost is rows times a
constant plus a fixed part (noise, optimizer); `dp_sgd_speed.py --batch-size B` measures the steps themselves.

    make run ARGS='python benchmarks/poisson_padding.py [--batch-sizes 256 512 1024 2048 4096]'
"""

from __future__ import annotations

import argparse
import math
import os

import numpy as np
from scipy import stats

os.environ.setdefault("TF_USE_LEGACY_KERAS", "0")  # privacy.keras.sampling imports TensorFlow

from privacy.accounting import DpSgdMechanism, compute_epsilon, noisy_padding, truncation
from privacy.keras.sampling import default_max_batch_size
from results_io import write_results

N, SIGMA, EPOCHS, DELTA, SIGMA_C = 60000, 1.1, 60, 1e-5, 4.0
MULTIPLE = noisy_padding.PADDED_ROWS_MULTIPLE


def _round_up(rows: np.ndarray, limit: int) -> np.ndarray:
    return np.minimum(limit, np.maximum(1, -(-rows // MULTIPLE)) * MULTIPLE)


def expected_rows(batch: float) -> dict:
    """E[rows per step] of each padding at expected batch size ``batch`` (exact sums over m's and Z's pmfs)."""
    q = batch / N
    limit = default_max_batch_size(N, batch)
    m = np.arange(limit + 1)
    pm = stats.binom.pmf(m, N, q)
    mu = noisy_padding.padding_offset(SIGMA_C)
    j = np.arange(int(mu + 20 * SIGMA_C) + 1)  # padding rows max(0, ceil(mu + Z)): P(j) = P(j - 1 < mu + Z <= j)
    pj = np.diff(stats.norm.cdf(np.concatenate([[-np.inf], j]), loc=mu, scale=SIGMA_C))
    noisy = np.add.outer(m, j)
    cap = truncation.default_truncated_batch_size(N, batch)
    return {
        "padded": float(limit),
        "truncated": float(cap),
        "noisy": float(np.sum(np.outer(pm, pj) * _round_up(noisy, limit))),
        "skip": float(np.sum(pm * _round_up(m, limit))),
        "truncated_cut_probability": float(stats.binom.sf(cap, N, q)),
    }


def epsilons(batch: float) -> dict:
    """PLD epsilon at `DELTA` of the untruncated, truncated and noisy-padding runs (same sigma, `EPOCHS`)."""
    base = DpSgdMechanism.from_epochs(dataset_size=N, batch_size=batch, epochs=EPOCHS, noise_multiplier=SIGMA)
    cap = truncation.default_truncated_batch_size(N, batch)
    runs = {
        "padded": base,
        "truncated": base.replace(truncated_batch_size=cap),
        "noisy": base.replace(batch_size_noise_multiplier=SIGMA_C),
    }
    return {name: compute_epsilon(mechanism, DELTA, "pld") for name, mechanism in runs.items()} | {"steps": base.steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "poisson_padding.json"))
    args = parser.parse_args()
    rows = []
    for batch in args.batch_sizes:
        rows.append({"batch_size": batch, "std": math.sqrt(batch * (1 - batch / N)), **expected_rows(batch)})
        rows[-1]["epsilon"] = epsilons(batch)
    print(
        f"n = {N}, sigma = {SIGMA}, {EPOCHS} epochs, delta = {DELTA:g}, sigma_c = {SIGMA_C:g}; rows per step over B "
        "(epsilon, PLD)"
    )
    print(f"{'B':>5} {'sd':>5} {'padded':>15} {'truncated':>15} {'noisy':>15} {'skip (uncovered)':>16} {'cut/step':>9}")
    for r in rows:
        b, e = r["batch_size"], r["epsilon"]
        print(
            f"{b:>5} {r['std']:>5.1f} {r['padded'] / b:>6.3f} ({e['padded']:.3f}) {r['truncated'] / b:>6.3f} "
            f"({e['truncated']:.3f}) {r['noisy'] / b:>6.3f} ({e['noisy']:.3f}) {r['skip'] / b:>16.3f} "
            f"{r['truncated_cut_probability']:>9.1e}"
        )
    write_results(
        args.out,
        {
            "benchmark": "poisson_padding",
            "config": {"dataset_size": N, "noise_multiplier": SIGMA, "epochs": EPOCHS, "delta": DELTA},
            "batch_size_noise_multiplier": SIGMA_C,
            "rows_multiple": MULTIPLE,
            "rows": rows,
        },
    )
    print(f"JSON: {args.out}")


if __name__ == "__main__":
    main()
