"""Wall time of the TFX pipeline with the DP Trainer vs the same pipeline without DP, and the utility cost.

Both variants run the full 8 stages (CsvExampleGen ... Pusher) on the bundled breast-cancer data through
`ppml pipeline run`, each in a fresh process and a fresh pipeline root (no cache), alternating the order
over --repeats rounds so that machine load affects both alike. Reports the median wall time of each
stage and of the whole process (best of the repeats: other load on a shared machine only adds time),
the private/non-private ratios (goal: whole pipeline <= 1.2x), and accuracy, AUC and the
membership-inference AUC of each model at the chosen epsilon. Only the Trainer differs between the two
pipelines, so the table also gives the ratio with the DP cost counted in the Trainer stage alone
(non-private pipeline + private Trainer - non-private Trainer), which other load cannot inflate.

    python benchmarks/pipeline_overhead.py [--target-epsilon 3] [--repeats 1] \\
        [--out benchmarks/results/pipeline_overhead.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

from results_io import write_results

STAGES = (
    "CsvExampleGen",
    "StatisticsGen",
    "SchemaGen",
    "ExampleValidator",
    "Transform",
    "Trainer",
    "Evaluator",
    "Pusher",
)
_STAGE_LINE = re.compile(r"^\[\d+/\d+\] (\S+) (complete|cached) \(([\d.]+) s\)$")


def run_variant(private: bool, target_epsilon: float, workdir: str) -> dict:
    """One fresh run of the pipeline; returns stage seconds, total seconds and the report."""
    root = tempfile.mkdtemp(prefix="private-" if private else "non-private-", dir=workdir)
    command = [
        sys.executable,
        "-c",
        "from pipelines.cli.main import cli; cli()",
        "pipeline",
        "run",
        "--dp" if private else "--no-dp",
        "--target-epsilon",
        str(target_epsilon),
        "--epsilon-budget",
        str(target_epsilon),
        "--pipeline-root",
        root,
        "--json",
    ]
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"pipeline run failed:\n{proc.stderr[-4000:]}")
    stages = {m.group(1): float(m.group(3)) for line in proc.stderr.splitlines() if (m := _STAGE_LINE.match(line))}
    report = json.loads(proc.stdout)
    return {
        "private": private,
        "process_seconds": seconds,
        "pipeline_seconds": sum(stages.values()),
        "stage_seconds": stages,
        "utility": report["utility"],
        "blessed": report["gate"]["blessed"],
        "membership_auc": report["membership_audit"]["auc"],
        "epsilon": None
        if report["privacy"] is None
        else {"rdp": report["privacy"]["epsilon_rdp"], "pld": report["privacy"]["epsilon_pld"]},
        "delta": None if report["privacy"] is None else report["privacy"]["delta"],
    }


def _best(runs: list[dict], key) -> float:
    return min(key(r) for r in runs)


def _median(runs: list[dict], key) -> float:
    return statistics.median(key(r) for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target-epsilon", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "pipeline_overhead.json"))
    args = parser.parse_args()

    runs: dict[bool, list[dict]] = {True: [], False: []}
    with tempfile.TemporaryDirectory(prefix="ppml-bench-") as workdir:
        for i in range(args.repeats):
            for private in (True, False) if i % 2 == 0 else (False, True):
                runs[private].append(run_variant(private, args.target_epsilon, workdir))
                print(f"round {i + 1}: {'private' if private else 'non-private'} done", file=sys.stderr)

    rows = []
    print(f"{'stage':<18} {'non-private s':>14} {'private s':>10} {'ratio':>7}")
    for stage in STAGES + ("pipeline", "process"):

        def seconds(r, stage=stage):
            if stage == "pipeline":
                return r["pipeline_seconds"]
            return r["process_seconds"] if stage == "process" else r["stage_seconds"].get(stage, 0.0)

        plain, private = _best(runs[False], seconds), _best(runs[True], seconds)
        ratio = private / plain if plain > 0 else None
        rows.append({"stage": stage, "non_private_seconds": plain, "private_seconds": private, "ratio": ratio})
        print(f"{stage:<18} {plain:>14.1f} {private:>10.1f} {'' if ratio is None else f'{ratio:.2f}x':>7}")
    by_stage = {r["stage"]: r for r in rows}
    trainer_cost = by_stage["Trainer"]["private_seconds"] - by_stage["Trainer"]["non_private_seconds"]
    trainer_only_ratio = (by_stage["pipeline"]["non_private_seconds"] + trainer_cost) / by_stage["pipeline"][
        "non_private_seconds"
    ]
    print(f"{'pipeline, DP cost in Trainer only':<34} {trainer_only_ratio:.2f}x")
    utility = {}
    print(f"\n{'metric':<24} {'non-private':>12} {'private':>10} {'difference':>11}")
    for metric in ("binary_accuracy", "auc", "binary_crossentropy"):
        plain = _median(runs[False], lambda r, m=metric: r["utility"][m])
        private = _median(runs[True], lambda r, m=metric: r["utility"][m])
        utility[metric] = {"non_private": plain, "private": private, "difference": private - plain}
        print(f"{metric:<24} {plain:>12.4f} {private:>10.4f} {private - plain:>+11.4f}")
    mia = {
        "non_private": _median(runs[False], lambda r: r["membership_auc"]),
        "private": _median(runs[True], lambda r: r["membership_auc"]),
    }
    print(
        f"{'membership_inference_auc':<24} {mia['non_private']:>12.4f} {mia['private']:>10.4f} "
        f"{mia['private'] - mia['non_private']:>+11.4f}"
    )
    epsilon = runs[True][0]["epsilon"]
    print(
        f"\nprivate model: epsilon RDP {epsilon['rdp']:.3f}, PLD {epsilon['pld']:.3f} at delta "
        f"{runs[True][0]['delta']:g}; whole pipeline {by_stage['pipeline']['ratio']:.2f}x the non-private one "
        f"({trainer_only_ratio:.2f}x counting the Trainer's difference only; goal <= 1.2x)"
    )
    write_results(
        args.out,
        {
            "benchmark": "pipeline_overhead",
            "target_epsilon": args.target_epsilon,
            "repeats": args.repeats,
            "timing": "best of the repeats",
            "stages": rows,
            "trainer_only_ratio": trainer_only_ratio,
            "utility": utility,
            "membership_inference_auc": mia,
            "epsilon": epsilon,
            "delta": runs[True][0]["delta"],
            "runs": runs[True] + runs[False],
        },
    )
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
