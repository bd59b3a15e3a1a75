"""Clients per second of FedAvg rounds: ppml in-process (sequential, vectorized, numpy, auto), ppml on Beam's
DirectRunner, and Flower's simulation with a compiled client, side by side in one run.

Workload (McMahan et al. 2017; goals and anchors in benchmarks/README.md): synthetic MNIST-shaped
data, 600 examples per client, E = 1, B = 10 (60 SGD steps per client), the 2NN (2x200 ReLU, 199,210
parameters) and the linear 784 -> 10 model. Round 1 (tracing, XLA compilation, Flower's Ray start)
is excluded from the rates and reported apart. ppml's in-process rows also give CPU seconds per client
(all threads), which is what to read on a shared machine: on an idle machine with W cores the rate
approaches min(W, workers) / cpu_s. Flower runs in another interpreter (``--flower-python``, with flwr and
TensorFlow installed; see benchmarks/README.md); when it cannot run, the table says why. Prints a
table and writes JSON to benchmarks/results/federated_throughput.json.

    make run ARGS='python benchmarks/federated_throughput.py [--clients-per-round 16] [--rounds 3]
                   [--flower-python /tmp/flwr-venv/bin/python]'
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from federated import ClientConfig, ClientData, FedAvg, FederatedSimulation, UniformSampler
from federated.client import EXECUTIONS
from federated.models import DenseModel
from federated.partitioners import IidPartitioner
from federated.simulation import InProcessRunner
from results_io import machine_info, write_results

GOALS = {"2nn": 15.0, "linear": 500.0}  # clients/s on 2 cores (benchmarks/README.md)
ANCHORS = {
    "2nn": "benchmarks/README.md, this machine kind: compiled loop 12-19, TFF 0.87 8.5, Flower+Ray 3.0-3.2",
    "linear": "benchmarks/README.md: compiled loop 87-216, vectorized 233-530, TFF 10.9, Flower+Ray 7.6-8.5",
}
BEAM_ARGS = ["--runner=DirectRunner", "--direct_running_mode=in_memory", "--direct_num_workers=1"]


def _data(num_clients: int) -> ClientData:
    rng = np.random.default_rng(0)
    x = rng.random((600 * num_clients, 784), dtype=np.float32)
    y = rng.integers(0, 10, 600 * num_clients)
    return ClientData.from_arrays(x, y, IidPartitioner(num_clients=num_clients, seed=0))


def _ppml(model_fn, data, clients_per_round, rounds, execution, runner, chunk_size) -> dict:
    strategy = FedAvg(ClientConfig(local_epochs=1, batch_size=10, learning_rate=0.05))
    sim = FederatedSimulation(
        model_fn,
        data,
        strategy,
        rounds=rounds + 1,
        execution=execution,
        seed=0,
        sampler=UniformSampler(clients_per_round / data.num_clients),
        chunk_size=chunk_size,
        runner=runner,
    )
    cpu = []
    history = sim.run(lambda record: cpu.append(time.process_time()) and None)
    timed = history.rounds[1:]
    clients = sum(r.reported for r in timed)
    out = {
        "clients_per_s": clients / sum(r.seconds for r in timed),
        "first_round_s": history.rounds[0].seconds,
        "execution": sim.execution,
    }
    if not isinstance(runner, InProcessRunner):
        return out
    return {
        **out,
        "cpu_s_per_client": (cpu[-1] - cpu[0]) / clients,
        "auto_costs_s": history.config.get("execution_costs_s") or None,
    }


def _flower(python: str | None, model: str, clients_per_round: int, rounds: int) -> tuple[dict | None, str | None]:
    """Runs benchmarks/federated_flower.py under ``python``; (result, None) or (None, why it did not run)."""
    if not python:
        return None, "Flower not run: pass --flower-python (an interpreter with flwr[simulation] and tensorflow)"
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "federated_flower.py")
    try:
        proc = subprocess.run(
            [python, script, "--model", model, "--clients-per-round", str(clients_per_round), "--rounds", str(rounds)],
            capture_output=True,
            text=True,
            timeout=1800,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return None, f"Flower could not run ({type(err).__name__}: {err})"
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return None, f"Flower could not run (exit {proc.returncode}: {tail[0][:200]})"
    return json.loads(lines[-1]), None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients-per-round", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (after one warm-up round)")
    parser.add_argument("--workers", type=int, default=None, help="in-process threads (default: CPUs, at most 4)")
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="clients per vectorized/numpy call (default: clients per round / workers, a power of two)",
    )
    parser.add_argument("--skip-beam", action="store_true")
    parser.add_argument("--flower-python", default=None, help="interpreter with flwr[simulation] and tensorflow")
    parser.add_argument("--models", default="2nn,linear")
    parser.add_argument(
        "--out", default=os.path.join(os.path.dirname(__file__), "results", "federated_throughput.json")
    )
    args = parser.parse_args()
    runner = InProcessRunner(args.workers)
    chunk = args.chunk_size or max(1, args.clients_per_round // runner.workers)
    chunk = 1 << (chunk.bit_length() - 1)  # a power of two: by default one chunk per worker
    data = _data(args.clients_per_round * 2)
    load_before = os.getloadavg()
    rows, notes = [], set()
    for name in args.models.split(","):
        model_fn = DenseModel(784, 10, (200, 200) if name == "2nn" else ())
        row = {"model": name, "goal_clients_per_s": GOALS[name], "anchors": ANCHORS[name]}
        for execution in ("auto",) + EXECUTIONS:  # auto first: its estimate includes compiling
            row[f"ppml_{execution}"] = _ppml(
                model_fn, data, args.clients_per_round, args.rounds, execution, runner, chunk
            )
        if not args.skip_beam:
            from federated.simulation.beam import BeamRunner

            row["ppml_beam_direct"] = _ppml(
                model_fn, data, args.clients_per_round, args.rounds, "sequential", BeamRunner(BEAM_ARGS), chunk
            )
        row["flower"], note = _flower(args.flower_python, name, args.clients_per_round, args.rounds)
        if note:
            notes.add(note)
        best = max(row[f"ppml_{e}"]["clients_per_s"] for e in EXECUTIONS)  # auto re-measures one of these
        row["best_vs_goal"] = best / GOALS[name]
        rows.append(row)
    load = {"before": load_before, "after": os.getloadavg()}
    _print(rows, args, runner, chunk, load, notes)
    write_results(
        args.out,
        {
            "rows": rows,
            "notes": sorted(notes),
            "clients_per_round": args.clients_per_round,
            "chunk_size": chunk,
            "workers": runner.workers,
            "timed_rounds": args.rounds,
            "load_average": load,
        },
    )
    print("wrote", args.out)


def _print(rows, args, runner, chunk, load, notes):
    columns = [f"ppml_{e}" for e in EXECUTIONS + ("auto",)] + ["ppml_beam_direct", "flower"]
    machine = machine_info()
    print(
        f"clients/s, {args.clients_per_round} clients per round (chunks of {chunk}, {runner.workers} workers), "
        f"600 examples each, E=1, B=10; {machine['cpus']} CPUs ({machine['processor']}), "
        f"load average {load['before'][0]:.1f} before, {load['after'][0]:.1f} after"
    )
    print(f"{'model':<8}" + "".join(f"{c:>18}" for c in columns) + f"{'goal':>8}{'best/goal':>11}")
    for row in rows:
        cells = "".join(f"{row[c]['clients_per_s']:>18.1f}" if row.get(c) else f"{'n/a':>18}" for c in columns)
        print(f"{row['model']:<8}{cells}{row['goal_clients_per_s']:>8.0f}{row['best_vs_goal']:>11.2f}")
        cpu = ", ".join(f"{e} {row['ppml_' + e]['cpu_s_per_client'] * 1e3:.1f}" for e in EXECUTIONS)
        first = ", ".join(f"{c.replace('ppml_', '')} {row[c]['first_round_s']:.1f}" for c in columns if row.get(c))
        print(f"{'':8}CPU ms per client: {cpu}; auto chose {row['ppml_auto']['execution']}; first round s: {first}")
        print(f"{'':8}anchors ({row['anchors']})")
    for note in sorted(notes):
        print("note:", note)


if __name__ == "__main__":
    main()
