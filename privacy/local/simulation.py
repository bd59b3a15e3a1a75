"""Simulated collection: a population's values through a local oracle, the estimate beside the truth, and the
error against epsilon and population size beside what the variance formula predicts.

The population is a public column (the truth is shown because it is known); its people are drawn with replacement
when a larger or smaller population is asked for (same distribution, a synthetic population).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from privacy.local.frequency_oracle import FrequencyEstimate
from privacy.local.randomness import spawn_seeds


@dataclasses.dataclass(frozen=True)
class Simulation:
    """One collection: the true fractions and the oracle's estimate."""

    truth: np.ndarray
    estimate: FrequencyEstimate

    def to_dict(self):
        errors = self.estimate.frequencies - self.truth
        covered = (self.estimate.lower <= self.truth) & (self.truth <= self.estimate.upper)
        return {
            **self.estimate.to_dict(),
            "truth": self.truth.tolist(),
            "error": errors.tolist(),
            "covered": covered.tolist(),
        }


def draw_population(values: np.ndarray, population: int, seed: int | None) -> np.ndarray:
    """``values`` themselves when ``population`` is their number, else ``population`` draws with replacement."""
    values = np.asarray(values)
    if population == values.size:
        return values
    return values[np.random.default_rng(seed).integers(0, values.size, population)]


def simulate(oracle, values: np.ndarray, *, confidence: float = 0.95, seed: int | None = None) -> Simulation:
    """Every person in ``values`` reports through ``oracle`` (coins from the OS CSPRNG unless ``seed``)."""
    truth = np.bincount(values, minlength=oracle.k) / values.size
    return Simulation(truth=truth, estimate=oracle.estimate(oracle.randomize(values, seed=seed), confidence))


def error_sweep(
    make, values: np.ndarray, *, epsilons, populations, repeats: int = 5, seed: int | None = None
) -> list[dict]:
    """Root-mean-square error of the estimated fractions (over values and ``repeats`` collections) for each
    epsilon x population, beside the formula's sqrt(mean Var) at the true fractions.

    ``make(epsilon)`` builds the oracle; the population draw and each repeat's coins get independent streams of
    ``seed`` (`spawn_seeds`). Rows: epsilon, population, rmse, predicted_rmse.
    """
    rows = []
    population_seed, *coin_seeds = spawn_seeds(seed, 1 + repeats)
    for population in populations:
        people = draw_population(values, int(population), population_seed)
        for epsilon in epsilons:
            oracle = make(epsilon)
            truth = np.bincount(people, minlength=oracle.k) / people.size
            squared = [
                np.mean((simulate(oracle, people, seed=coin_seed).estimate.frequencies - truth) ** 2)
                for coin_seed in coin_seeds
            ]
            rows.append(
                {
                    "epsilon": float(epsilon),
                    "population": int(population),
                    "rmse": float(np.sqrt(np.mean(squared))),
                    "predicted_rmse": float(np.sqrt(np.mean(oracle.variance(truth, people.size)))),
                }
            )
    return rows
