"""One-run privacy audits of DP-SGD on digits: the lower bound against the claimed epsilon at claims 1, 2, 4, 8.

For each target epsilon (delta 1e-5) and each canary kind, sigma is calibrated (RDP) for the expected training
size (1,347 digits plus half the canaries), one private training run with canaries (`privacy.auditing.
dp_sgd_audit.run_dp_sgd_audit`) is made, and the run's RDP epsilon and claimed epsilon (the smallest ppml
reports, RDP or PLD, for its realised size and steps), the one-run lower bound (95 %, Bonferroni over the
guess counts; the run's default estimator, and for full-batch the f-DP bound against the claimed mechanism's own
curve, asked for there) and its ratio to the claim are printed, with the bounds of the same scores under each
estimator sound for the run (`privacy.auditing.one_run.ESTIMATORS`: counting, f-DP with the (eps, delta) trade-off,
at sampling probability 1 f-DP with the mu-GDP trade-off, and for full-batch the claimed curve's; the Poisson runs' data
size counts the included canaries, so the claimed curve is refused there), the bound under the held-out-half
threshold choice ("split"), and the time taken.
White-box: 2,000 Dirac canaries, expected batch 1,200, 5 epochs; black-box: 450 mislabelled held-out digits,
expected batch 256, 10 epochs; full-batch: 2,000 Dirac canaries, every one of the 1,347 rows (zero stand-ins, as the
Evaluator's audit) and canaries in each of 5 steps (`audit_mechanism`, sampling probability 1).
The noise and the bits come from the OS CSPRNG: rerunning gives other figures.

    make run ARGS='python benchmarks/privacy_audit.py'
    make run ARGS='python benchmarks/privacy_audit.py --epsilons 2 --kinds white-box'
"""

from __future__ import annotations

import argparse
import os
import platform

os.environ.setdefault("TF_USE_LEGACY_KERAS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import logging

from federated.data import load_digits_split
from privacy.accounting import DpSgdMechanism, calibrate_noise_multiplier
from privacy.auditing.dp_sgd_audit import AuditPlan, audit_mechanism, run_dp_sgd_audit
from privacy.auditing.one_run import ESTIMATORS
from results_io import write_results

SETTINGS = {
    "white-box": dict(num_canaries=2000, batch_size=1200, epochs=5),
    "black-box": dict(num_canaries=450, batch_size=256, epochs=10),
    "full-batch": dict(num_canaries=2000, steps=5),
}
DELTA = 1e-5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 2.0, 4.0, 8.0])
    parser.add_argument("--kinds", nargs="+", choices=tuple(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "results", "privacy_audit.json"))
    args = parser.parse_args()
    logging.set_verbosity(logging.ERROR)
    (x, y), (x_pool, y_pool) = load_digits_split()
    rows = []
    for kind in args.kinds:
        setting = SETTINGS[kind]
        if kind == "full-batch":
            n, batch_size, steps = len(y), len(y), setting["steps"]
        else:
            n, batch_size = len(y) + setting["num_canaries"] // 2, setting["batch_size"]
            steps = setting["epochs"] * max(1, round(n / batch_size))  # Poisson epochs of round(n / B)
        for target in args.epsilons:
            mechanism = DpSgdMechanism(dataset_size=n, batch_size=batch_size, noise_multiplier=1.0, steps=steps)
            sigma = calibrate_noise_multiplier(mechanism, target_epsilon=target, target_delta=DELTA)
            if kind == "full-batch":
                result = audit_mechanism(
                    DpSgdMechanism(dataset_size=n, batch_size=n, noise_multiplier=sigma, steps=steps),
                    l2_norm_clip=1.0,
                    delta=DELTA,
                    num_canaries=setting["num_canaries"],
                    estimator="f-dp-claimed",  # its PLDs (about 10 a bound) are spent only where asked for
                )
            else:
                result = run_dp_sgd_audit(
                    AuditPlan(kind=kind, noise_multiplier=sigma, delta=DELTA, **setting), x, y, x_pool, y_pool
                )
            row = {
                "kind": kind,
                "target_epsilon": target,
                "noise_multiplier": sigma,
                "claimed_epsilon": result.claimed_epsilon[-1],
                "claim_accountant": result.claim_accountant,
                "claimed_rdp": result.claims[-1]["rdp"],
                "lower_bound": result.lower_bound[-1],
                "ratio": result.lower_bound[-1] / result.claimed_epsilon[-1],
                "estimator": result.final["estimator"],
                "bounds": result.compared,
                "lower_bound_split": result.final_split["epsilon_lower_bound"],
                "seconds": result.seconds,
                "steps": result.steps,
                "guesses": result.final["num_guesses"],
                "correct": result.final["num_correct"],
                "num_canaries": setting["num_canaries"],
                "batch_size": result.plan.batch_size,
            }
            rows.append(row)
            print(
                f"  {kind} target {target:g}: claim {row['claimed_epsilon']:.3f}, bound {row['lower_bound']:.2f} "
                f"({row['seconds']:.1f} s)",
                flush=True,
            )
    processor = _processor()
    print(
        f"\nOne-run audits of DP-SGD on digits, delta {DELTA:g}, 95 % confidence; {os.cpu_count()} CPUs ({processor})"
    )
    print(
        f"{'canaries':>10} {'m':>5} {'target':>7} {'sigma':>7} {'rdp':>7} {'claimed':>11} {'bound':>6} {'ratio':>6} "
        f"{'right/guesses':>14} " + " ".join(f"{name:>13}" for name in ESTIMATORS) + f" {'split':>6} {'time s':>7}"
    )
    for row in rows:
        print(
            f"{row['kind']:>10} {row['num_canaries']:>5} {row['target_epsilon']:>7g} {row['noise_multiplier']:>7.3f} "
            f"{row['claimed_rdp']:>7.3f} {row['claimed_epsilon']:>7.3f} {row['claim_accountant']:>3} "
            f"{row['lower_bound']:>6.2f} {row['ratio']:>6.2f} "
            f"{str(row['correct']) + '/' + str(row['guesses']):>14} "
            + " ".join(
                f"{row['bounds'][name]:>13.2f}" if name in row["bounds"] else f"{'-':>13}" for name in ESTIMATORS
            )
            + f" {row['lower_bound_split']:>6.2f} "
            f"{row['seconds']:>7.1f}"
        )
    write_results(
        args.output,
        {"benchmark": "privacy_audit", "delta": DELTA, "confidence": 0.95, "processor_model": processor, "rows": rows},
    )
    print(f"\nwrote {args.output}")


def _processor() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
