"""Local DP: estimation error of the frequency oracles against epsilon beside the variance formula, and local
against central DP-FedAvg on digits at the same epsilon.

Part 1 (numpy only): the digit column of scikit-learn's digits (k = 10; the yes/no diagnosis for rr), a
population drawn from it with replacement, each oracle at each epsilon collected ``--repeats`` times with seeded
coins (measuring only); the RMSE of the estimated fractions beside sqrt(mean Var) from the oracle's formula.

Part 2: the digits clients (IID, keyed) trained with FedAvg without DP, with central DP-FedAvg and with local DP,
each with z calibrated for the same target epsilon and delta by the Federated Trainer's plan (central: client
level, uniform sampling, replace-one; local: per client, a client sent in every round), fixed clipping C = 1,
the same seed; the final accuracy on the held-out digits. Noise from the OS CSPRNG, as a release would use.

    make run ARGS='python benchmarks/local_dp.py'
    make run ARGS='python benchmarks/local_dp.py --epsilons 1 4 --rounds 10 --skip-federated'
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


from results_io import machine_info, write_results


def processor_name() -> str:
    """The CPU's model name (/proc/cpuinfo), else what `results_io.machine_info` records."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return machine_info()["processor"]


def oracle_errors(epsilons, population: int, repeats: int) -> list[dict]:
    from sklearn.datasets import load_breast_cancer, load_digits

    from privacy.local import make_oracle
    from privacy.local.simulation import error_sweep

    columns = {"rr": (load_breast_cancer().target, 2)}
    columns.update({m: (load_digits().target, 10) for m in ("grr", "oue", "olh")})
    rows = []
    for mechanism, (values, k) in columns.items():
        for row in error_sweep(
            lambda eps, m=mechanism, k=k: make_oracle(m, eps, k),
            values,
            epsilons=epsilons,
            populations=[population],
            repeats=repeats,
            seed=0,
        ):
            rows.append({"mechanism": mechanism, "k": k, **row, "ratio": row["rmse"] / row["predicted_rmse"]})
    return rows


def federated_accuracy(epsilon: float, rounds: int, clients: int, fraction: float) -> list[dict]:
    import federated as fl
    from federated.data import load_digits_clients
    from federated.models import DenseModel
    from pipelines.components.federated_trainer.spec import FederatedTrainingConfig

    rows = []
    for trust_model in (None, "central", "local"):
        settings = {
            "label_key": "label",
            "num_clients": clients,
            "rounds": rounds,
            "fraction": fraction,
            "hidden_units": [],
            "execution": "numpy",
            "client_learning_rate": 0.3,
        }
        if trust_model:
            settings.update(private=True, trust_model=trust_model, target_epsilon=epsilon, delta=1e-3)
        config = FederatedTrainingConfig.from_custom_config(settings)
        data, test = load_digits_clients(config.partitioner())
        plan = config.plan(data.num_clients)
        strategy = plan.strategy()
        sim = fl.FederatedSimulation(
            DenseModel(64, 10, (), seed=0),
            data,
            strategy,
            rounds=rounds,
            sampler=config.sampler(),
            seed=0,
            execution="numpy",
            evaluation=test,
        )
        history = sim.run()
        metrics = history.rounds[-1].metrics
        epsilon_reached = next((v for k, v in metrics.items() if k.startswith("epsilon")), None)
        rows.append(
            {
                "trust_model": trust_model or "none",
                "target_epsilon": epsilon if trust_model else None,
                "noise_multiplier": plan.noise_multiplier,
                "epsilon": epsilon_reached,
                "accuracy": history.rounds[-1].evaluation["accuracy"],
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epsilons", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0])
    parser.add_argument("--population", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--fl-epsilon", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--fraction", type=float, default=0.2)
    parser.add_argument("--skip-federated", action="store_true")
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "results", "local_dp.json"))
    args = parser.parse_args()
    processor = processor_name()
    oracles = oracle_errors(args.epsilons, args.population, args.repeats)
    print(f"Frequency oracles: {args.population} people, {args.repeats} collections each ({processor})\n")
    print(f"{'mechanism':>9} {'k':>3} {'epsilon':>8} {'RMSE':>9} {'predicted':>10} {'ratio':>6}")
    for r in oracles:
        print(
            f"{r['mechanism']:>9} {r['k']:>3} {r['epsilon']:>8g} {r['rmse']:>9.5f} {r['predicted_rmse']:>10.5f} "
            f"{r['ratio']:>6.3f}"
        )
    payload = {"benchmark": "local_dp", "population": args.population, "repeats": args.repeats, "oracles": oracles}
    if not args.skip_federated:
        runs = federated_accuracy(args.fl_epsilon, args.rounds, args.clients, args.fraction)
        print(
            f"\nDigits, {args.clients} clients, {args.fraction:g} a round, {args.rounds} rounds, linear model, "
            f"target epsilon {args.fl_epsilon:g} at delta 1e-3 ({processor})\n"
        )
        print(
            f"{'trust model':>11} {'z':>8} {'epsilon':>8} {'accuracy':>9}   (epsilon: central, the run's; local, "
            f"the worst client's)"
        )
        for r in runs:
            z = "-" if r["noise_multiplier"] is None else f"{r['noise_multiplier']:.4g}"
            eps = "-" if r["epsilon"] is None else f"{r['epsilon']:.3g}"
            print(f"{r['trust_model']:>11} {z:>8} {eps:>8} {r['accuracy']:>9.4f}")
        payload.update(
            federated={
                "epsilon": args.fl_epsilon,
                "rounds": args.rounds,
                "clients": args.clients,
                "fraction": args.fraction,
                "runs": runs,
            }
        )
    write_results(args.output, payload)
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
