"""Wall time of RDP and PLD accounting for the TF Privacy MNIST tutorial configuration.

n = 60000, B = 256 (Poisson), sigma = 1.1, delta = 1e-5, for 1, 15 and 60 epochs. Each figure is the
median of --repeats fresh accountings (a new accountant composing the whole run), the way `ppml epsilon`
computes it. Prints a table and writes JSON.

    python benchmarks/accounting.py [--repeats 3] [--out benchmarks/results/accounting.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

from privacy.accounting import DpSgdMechanism, compute_epsilon, dp_accounting_version

CONFIG = dict(dataset_size=60000, batch_size=256, noise_multiplier=1.1)
DELTA = 1e-5


def measure(epochs: int, kind: str, repeats: int) -> dict:
    mechanism = DpSgdMechanism.from_epochs(epochs=epochs, **CONFIG)
    times, epsilon = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        epsilon = compute_epsilon(mechanism, DELTA, kind)
        times.append(time.perf_counter() - start)
    return {"epochs": epochs, "steps": mechanism.steps, "accountant": kind, "epsilon": epsilon,
            "seconds_median": statistics.median(times), "seconds_all": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "accounting.json"))
    args = parser.parse_args()

    rows = [measure(e, k, args.repeats) for e in (1, 15, 60) for k in ("rdp", "pld")]
    print(f"{'epochs':>6} {'steps':>6} {'accountant':>10} {'epsilon':>9} {'seconds':>9}")
    for r in rows:
        print(f"{r['epochs']:>6} {r['steps']:>6} {r['accountant']:>10} {r['epsilon']:>9.4f} {r['seconds_median']:>9.3f}")
    result = {"benchmark": "accounting", "config": {**CONFIG, "delta": DELTA, "sampling": "poisson"},
              "dp_accounting_version": dp_accounting_version(), "python": platform.python_version(),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "rows": rows}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
