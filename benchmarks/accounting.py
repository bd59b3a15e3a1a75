"""Wall time of RDP and PLD accounting for the TF Privacy MNIST tutorial configuration.

n = 60000, B = 256 (Poisson), sigma = 1.1, delta = 1e-5, for 1, 15 and 60 epochs. Each figure is the
median of --repeats fresh accountings (a new accountant composing the whole run), the way `ppml epsilon`
computes it. Prints a table and writes JSON.

    python benchmarks/accounting.py [--repeats 3] [--out benchmarks/results/accounting.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from privacy.accounting import DpSgdMechanism, compute_epsilon
from results_io import write_results

CONFIG = dict(dataset_size=60000, batch_size=256, noise_multiplier=1.1)
DELTA = 1e-5


def measure(epochs: int, kind: str, repeats: int) -> dict:
    mechanism = DpSgdMechanism.from_epochs(epochs=epochs, **CONFIG)
    times, epsilon = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        epsilon = compute_epsilon(mechanism, DELTA, kind)
        times.append(time.perf_counter() - start)
    return {
        "epochs": epochs,
        "steps": mechanism.steps,
        "accountant": kind,
        "epsilon": epsilon,
        "seconds_median": statistics.median(times),
        "seconds_all": times,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "accounting.json"))
    args = parser.parse_args()

    rows = [measure(e, k, args.repeats) for e in (1, 15, 60) for k in ("rdp", "pld")]
    print(f"{'epochs':>6} {'steps':>6} {'accountant':>10} {'epsilon':>9} {'seconds':>9}")
    for r in rows:
        print(
            f"{r['epochs']:>6} {r['steps']:>6} {r['accountant']:>10} {r['epsilon']:>9.4f} {r['seconds_median']:>9.3f}"
        )
    write_results(
        args.out, {"benchmark": "accounting", "config": {**CONFIG, "delta": DELTA, "sampling": "poisson"}, "rows": rows}
    )
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
