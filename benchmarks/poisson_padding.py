"""What Poisson batches cost over fixed ones, by expected batch size: rows per step and epsilon of each padding.

A fixed batch of B examples runs B rows. A Poisson step draws m ~ Binomial(n, q), q = B / n, and runs, per padding
(`privacy.keras.make_private` / `poisson_batches`):

* padded: the sampler's padded size, the (1 - 1e-9) quantile of m (the default; duration inside the guarantee);
* truncated: K = B + 4 standard deviations of m (``truncated_batch_size="default"``), larger batches cut to a
  random K (accounted by dp-accounting's TruncatedSubsampledGaussianDpEvent);
* noisy: m + max(0, ceil(mu + Z)) rows, Z ~ N(0, sigma_c^2), rounded up to a multiple of `NOISY_ROWS_MULTIPLE`
  (``skip_padding=True``, ``batch_size_noise_multiplier=sigma_c``; accounted as one Gaussian of sigma_eff,
  `privacy.accounting.noisy_padding`), for each sigma_c of ``--batch-size-noise-multipliers``;
* skip: m rounded up to a multiple of `PADDED_ROWS_MULTIPLE` (``skip_padding=True`` alone: the batch size shows in
  the step's duration, outside the guarantee).

For each B it prints the expected rows per step over B (exact, from the distributions: the step's cost where a
row's cost does not depend on its content) and the PLD epsilon at delta for the same noise multiplier and epochs.
A padding's rows over B bound its step's time over a fixed step's from above where the step's cost is rows times a
constant plus a fixed part (noise, optimizer); `dp_sgd_speed.py --batch-size B` and `noisy_padding_ab.py` measure
the steps themselves.

    make run ARGS='python benchmarks/poisson_padding.py [--batch-sizes 256 1024] [--batch-size-noise-multipliers 2 3 4]'
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

N, SIGMA, EPOCHS, DELTA = 60000, 1.1, 60, 1e-5
SIGMA_CS = (4.0,)  # the default --batch-size-noise-multipliers


def rows_pmf(batch: float, sigma_c: float | None, multiple: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows a step with ``skip_padding`` runs at expected batch size ``batch`` and their probabilities (exact,
    from the pmfs of m and of the padding): min(limit, roundup(m, ``multiple``)) alone, with noisy padding's
    ``sigma_c`` min(limit, roundup(m + max(0, ceil(mu + Z)), ``multiple``)), at least ``multiple`` rows (as
    `privacy.keras.train_step.without_padding`), limit the sampler's padded size."""
    q = batch / N
    limit = default_max_batch_size(N, batch)
    m = np.arange(limit + 1)
    pm = stats.binom.pmf(m, N, q)
    if sigma_c is None:
        sizes, probs = m, pm
    else:
        mu = noisy_padding.padding_offset(sigma_c)
        j = np.arange(int(mu + 20 * sigma_c) + 1)  # padding rows max(0, ceil(mu + Z)): P(j) = P(j - 1 < mu + Z <= j)
        pj = np.diff(stats.norm.cdf(np.concatenate([[-np.inf], j]), loc=mu, scale=sigma_c))
        sizes, probs = np.add.outer(m, j).ravel(), np.outer(pm, pj).ravel()
    rows = np.minimum(limit, np.maximum(1, -(-sizes // multiple)) * multiple)
    values = np.unique(rows)
    return values, np.bincount(np.searchsorted(values, rows), weights=probs, minlength=len(values))


def expected_rows(batch: float, sigma_cs=SIGMA_CS) -> dict:
    """E[rows per step] of each padding at expected batch size ``batch`` (noisy padding's for each of
    ``sigma_cs``, by sigma_c)."""
    cap = truncation.default_truncated_batch_size(N, batch)

    def mean(sigma_c, multiple):
        values, probs = rows_pmf(batch, sigma_c, multiple)
        return float(np.sum(values * probs))

    return {
        "padded": float(default_max_batch_size(N, batch)),
        "truncated": float(cap),
        "noisy": {sigma_c: mean(sigma_c, noisy_padding.NOISY_ROWS_MULTIPLE) for sigma_c in sigma_cs},
        "skip": mean(None, noisy_padding.PADDED_ROWS_MULTIPLE),
        "truncated_cut_probability": float(stats.binom.sf(cap, N, batch / N)),
    }


def epsilons(batch: float, sigma_cs=SIGMA_CS) -> dict:
    """PLD epsilon at `DELTA` of the untruncated, truncated and noisy-padding runs (same sigma, `EPOCHS`; the noisy
    ones by sigma_c)."""
    base = DpSgdMechanism.from_epochs(dataset_size=N, batch_size=batch, epochs=EPOCHS, noise_multiplier=SIGMA)
    cap = truncation.default_truncated_batch_size(N, batch)
    return {
        "padded": compute_epsilon(base, DELTA, "pld"),
        "truncated": compute_epsilon(base.replace(truncated_batch_size=cap), DELTA, "pld"),
        "noisy": {
            sigma_c: compute_epsilon(base.replace(batch_size_noise_multiplier=sigma_c), DELTA, "pld")
            for sigma_c in sigma_cs
        },
        "steps": base.steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096])
    parser.add_argument("--batch-size-noise-multipliers", type=float, nargs="+", default=list(SIGMA_CS))
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "poisson_padding.json"))
    args = parser.parse_args()
    sigma_cs = args.batch_size_noise_multipliers
    rows = []
    for batch in args.batch_sizes:
        rows.append({"batch_size": batch, "std": math.sqrt(batch * (1 - batch / N)), **expected_rows(batch, sigma_cs)})
        rows[-1]["epsilon"] = epsilons(batch, sigma_cs)
    print(
        f"n = {N}, sigma = {SIGMA}, {EPOCHS} epochs, delta = {DELTA:g}; rows per step over B (epsilon, PLD), rounded "
        f"up to a multiple of {noisy_padding.NOISY_ROWS_MULTIPLE} (noisy) and {noisy_padding.PADDED_ROWS_MULTIPLE} "
        "(skip)"
    )
    noisy = "".join(f" {f'noisy {sigma_c:g}':>15}" for sigma_c in sigma_cs)
    print(f"{'B':>5} {'sd':>5} {'padded':>15} {'truncated':>15}{noisy} {'skip (uncovered)':>16} {'cut/step':>9}")
    for r in rows:
        b, e = r["batch_size"], r["epsilon"]
        noisy = "".join(f" {r['noisy'][c] / b:>6.3f} ({e['noisy'][c]:.3f})" for c in sigma_cs)
        print(
            f"{b:>5} {r['std']:>5.1f} {r['padded'] / b:>6.3f} ({e['padded']:.3f}) {r['truncated'] / b:>6.3f} "
            f"({e['truncated']:.3f}){noisy} {r['skip'] / b:>16.3f} {r['truncated_cut_probability']:>9.1e}"
        )
    write_results(
        args.out,
        {
            "benchmark": "poisson_padding",
            "config": {"dataset_size": N, "noise_multiplier": SIGMA, "epochs": EPOCHS, "delta": DELTA},
            "batch_size_noise_multipliers": sigma_cs,
            "rows_multiple": {"noisy": noisy_padding.NOISY_ROWS_MULTIPLE, "skip": noisy_padding.PADDED_ROWS_MULTIPLE},
            "rows": rows,
        },
    )
    print(f"JSON: {args.out}")


if __name__ == "__main__":
    main()
