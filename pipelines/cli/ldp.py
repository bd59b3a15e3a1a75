"""`ppml ldp simulate`: local differential privacy on a bundled column, the estimate against the truth.

Each simulated person randomizes their own value (`privacy.local`; coins from the OS CSPRNG unless ``--seed``),
the collector estimates the population's fractions from the reports alone, and the table sets the estimate and
its interval beside the true fraction, which is known here because the column is public. Imports neither
TensorFlow nor TFX; every option is checked before anything runs (a bad one: one line, exit 2).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import tempfile

import click
import numpy as np

from pipelines.cli.types import FiniteFloatRange
from privacy.local import MAX_EPSILON, MECHANISMS, SEED_COIN_EPSILON, make_oracle

MAX_POPULATION = 10_000_000
PLOT_EPSILONS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
PLOT_POPULATION_FACTORS = (0.25, 1, 4, 16)
"""--plot: error against these epsilons (at --population) and these multiples of --population (at --epsilon)."""
PLOT_REPEATS = 5
PLOT_MAX_POPULATION = 1_000_000
"""--plot: the sweeps' populations are capped here (a 16 x 10M-person sweep would need about 13 GB and hours)."""


@dataclasses.dataclass(frozen=True)
class Column:
    """A bundled public column: values 0..k-1, one per person."""

    description: str
    labels: tuple[str, ...]
    load: object

    @property
    def k(self) -> int:
        return len(self.labels)


def _diagnosis() -> np.ndarray:
    from sklearn.datasets import load_breast_cancer

    return load_breast_cancer().target.astype(np.int64)


def _digit() -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().target.astype(np.int64)


COLUMNS = {
    "diagnosis": Column(
        "breast cancer diagnosis (scikit-learn's copy of the Wisconsin data, 569 patients; yes = benign)",
        ("no (malignant)", "yes (benign)"),
        _diagnosis,
    ),
    "digit": Column(
        "the digit each of scikit-learn's 1797 handwritten images shows (categorical, k = 10)",
        tuple(str(d) for d in range(10)),
        _digit,
    ),
}
"""--column: a yes/no attribute and a categorical one, both bundled with scikit-learn (no download)."""


def default_mechanism(k: int) -> str:
    """rr (the coin design) for a yes/no column, olh for a categorical one."""
    return "rr" if k == 2 else "olh"


def _check(column: Column, mechanism: str, epsilon: float, plot: str | None) -> None:
    if mechanism == "rr" and column.k != 2:
        raise click.BadParameter(
            f"'rr' is for yes/no columns; this column has k = {column.k} values (use grr, oue or olh)",
            param_hint="'--mechanism'",
        )
    if plot is not None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        formats = FigureCanvasAgg.get_supported_filetypes()
        extension = os.path.splitext(plot)[1].lstrip(".").lower()
        if extension not in formats:
            raise click.BadParameter(
                f"{plot!r} has extension {extension or '(none)'!r}; use one of {', '.join(sorted(formats))}",
                param_hint="'--plot'",
            )
        folder = os.path.dirname(os.path.abspath(plot))
        if not os.path.isdir(folder):
            raise click.BadParameter(f"folder {folder!r} does not exist", param_hint="'--plot'")
        try:
            with tempfile.TemporaryFile(dir=folder):  # a real write: permission bits do not bind root
                pass
        except OSError as err:
            raise click.BadParameter(
                f"folder {folder!r} is not writable ({err.strerror or err})", param_hint="'--plot'"
            ) from None


def _table(column_name: str, column: Column, result: dict) -> str:
    level = f"{result['confidence']:.0%}"
    lines = [
        f"column {column_name}: {column.description}",
        f"mechanism {result['mechanism']}, epsilon {result['epsilon']:.4g}, {result['population']} people; "
        f"guarantee: {result['guarantee']}",
        f"{'value':<16}{'true':>8}{'estimate':>10}{'stderr':>9}  {level + ' interval':<20}{'error':>8}",
    ]
    for i, label in enumerate(column.labels):
        interval = f"[{result['lower'][i]:.4f}, {result['upper'][i]:.4f}]"
        lines.append(
            f"{label:<16}{result['truth'][i]:>8.4f}{result['frequencies'][i]:>10.4f}"
            f"{result['stderr'][i]:>9.4f}  {interval:<20}{result['error'][i]:>+8.4f}"
        )
    lines.append("true fractions are shown because the column is public; a collector sees only the reports")
    return "\n".join(lines)


def _plot(path: str, title: str, by_epsilon: list[dict], by_population: list[dict]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from privacy.atomic_files import write_atomically

    fig, axes = plt.subplots(1, 2, figsize=(9.6, 4.0))
    panels = (
        (axes[0], by_epsilon, "epsilon", f"epsilon (population {by_epsilon[0]['population']})"),
        (axes[1], by_population, "population", f"population (epsilon {by_population[0]['epsilon']:g})"),
    )
    for ax, rows, key, label in panels:
        x = [row[key] for row in rows]
        ax.loglog(x, [row["rmse"] for row in rows], "o", label=f"simulated ({PLOT_REPEATS} collections)")
        ax.loglog(x, [row["predicted_rmse"] for row in rows], "-", label="predicted (variance formula)")
        ax.set_xticks(x, [f"{value:g}" for value in x])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(label)
        ax.set_ylabel("RMSE of the estimated fractions")
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format=os.path.splitext(path)[1].lstrip(".").lower(), dpi=120)
    finally:
        plt.close(fig)
    return write_atomically(path, buffer.getvalue())


@click.group()
def ldp():
    """Local differential privacy: each person randomizes their own answer (no trusted collector)."""


@ldp.command()
@click.option(
    "--column",
    "column_name",
    type=click.Choice(sorted(COLUMNS)),
    default="diagnosis",
    show_default=True,
    help="Bundled public column: diagnosis (yes/no) or digit (k = 10).",
)
@click.option(
    "--mechanism",
    type=click.Choice(list(MECHANISMS)),
    default=None,
    help="rr (yes/no coin design), grr, oue or olh (Wang et al. 2017) [default: rr for a yes/no "
    "column, olh for a categorical one].",
)
@click.option(
    "--epsilon",
    type=FiniteFloatRange(min=0, max=MAX_EPSILON, min_open=True),
    default=SEED_COIN_EPSILON,
    show_default="ln 3, two fair coins",
    help="Per-person epsilon of one report.",
)
@click.option(
    "--population",
    type=click.IntRange(1, MAX_POPULATION),
    default=None,
    help="People who report [default: the column's own]; another number draws that many from the "
    "column with replacement (a synthetic population of the same distribution).",
)
@click.option(
    "--confidence",
    type=FiniteFloatRange(0, 1, min_open=True, max_open=True),
    default=0.95,
    show_default=True,
    help="Level of each value's interval (each on its own, not simultaneous).",
)
@click.option(
    "--seed",
    type=click.IntRange(0),
    default=None,
    help="Research only: seeded coins (reproducible, and invertible by anyone with the seed) [default: the OS CSPRNG].",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
@click.option(
    "--plot",
    default=None,
    type=click.Path(dir_okay=False),
    help="Also write a plot of the error against epsilon and population size (extension sets the format; "
    f"the sweeps' populations are capped at {PLOT_MAX_POPULATION:,}).",
)
def simulate(column_name, mechanism, epsilon, population, confidence, seed, as_json, plot):
    """Collect a bundled column under local DP; print the estimate beside the true fractions.

    \b
    Examples:
      ppml ldp simulate                                  # diagnosis, coin design, epsilon = ln 3
      ppml ldp simulate --column digit --mechanism oue --epsilon 2 --population 100000
      ppml ldp simulate --column digit --plot error.png --json
    """
    from privacy.local.randomness import spawn_seeds
    from privacy.local.simulation import draw_population, error_sweep
    from privacy.local.simulation import simulate as collect

    column = COLUMNS[column_name]
    mechanism = mechanism or default_mechanism(column.k)
    _check(column, mechanism, epsilon, plot)
    values = column.load()
    population = population or values.size
    population_seed, coin_seed, sweep_seed = spawn_seeds(seed, 3)  # independent streams for each consumer
    people = draw_population(values, population, population_seed)
    result = {
        "column": column_name,
        **collect(make_oracle(mechanism, epsilon, column.k), people, confidence=confidence, seed=coin_seed).to_dict(),
        "seeded": seed is not None,
        "guarantee": (
            f"pure {epsilon:g}-local DP per person per report, no trusted collector"
            if seed is None
            else "none: --seed makes the coins replayable (research only)"
        ),
    }
    if plot is not None:

        def make(eps):
            return make_oracle(mechanism, eps, column.k)

        swept = min(population, PLOT_MAX_POPULATION)
        by_epsilon = error_sweep(
            make, values, epsilons=PLOT_EPSILONS, populations=[swept], repeats=PLOT_REPEATS, seed=sweep_seed
        )
        populations = sorted({min(max(1, round(population * f)), PLOT_MAX_POPULATION) for f in PLOT_POPULATION_FACTORS})
        by_population = error_sweep(
            make, values, epsilons=[epsilon], repeats=PLOT_REPEATS, seed=sweep_seed, populations=populations
        )
        result["sweep"] = {"by_epsilon": by_epsilon, "by_population": by_population}
    if not as_json:
        click.echo(_table(column_name, column, result))  # before the plot: a failed write loses nothing
    if plot is not None:
        try:
            result["plot"] = _plot(plot, f"ppml ldp simulate: {column_name}, {mechanism}", by_epsilon, by_population)
        except OSError as err:
            raise click.ClickException(f"--plot: cannot write {plot!r}: {err.strerror or err}") from None
    if as_json:
        click.echo(json.dumps(result, indent=2, allow_nan=False))
    elif plot is not None:
        click.echo(f"plot: {result['plot']}")


COMMANDS = (ldp,)
