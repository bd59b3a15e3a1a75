"""`ppml audit`: a one-run empirical privacy audit of Keras DP-SGD (`make_private`) on the bundled digits.

Trains a small private model once with canaries (`privacy.auditing.dp_sgd_audit`), then prints the epsilon the
run's accounting claims beside the one-run lower bound (`--estimator`: the f-DP bound of Mahloujifar, Melis &
Chaudhuri 2024, against the mu-GDP curve by default (every row in every step) or the (eps, delta) curve (with
`--batch-size`), or the counting bound of Steinke, Nasr & Jagielski 2023). A bound above the claim means the claim
is false at the stated confidence; a bound below it is evidence, not proof, that it holds.
"""

from __future__ import annotations

import json

import click

from pipelines.cli.accounting import check_plot_path, save_plot
from pipelines.cli.types import checked
from privacy import validation
from privacy.auditing.canaries import MAX_CANARIES
from privacy.auditing.dp_sgd_audit import FAULTS, KINDS, AuditPlan, check_data
from privacy.auditing.one_run import ESTIMATORS, MIN_CANARIES

_DEFAULTS = AuditPlan()


@click.command()
@click.option(
    "--kind",
    type=click.Choice(KINDS),
    default=_DEFAULTS.kind,
    show_default=True,
    help="white-box: Dirac gradient canaries on a dedicated weight slot (score = the slot weight); "
    "black-box: mislabelled held-out digits (score = minus the loss; needs --batch-size).",
)
@click.option(
    "--num-canaries",
    type=click.IntRange(MIN_CANARIES, MAX_CANARIES),
    default=_DEFAULTS.num_canaries,
    show_default=True,
    help="Canaries m, each included with probability 1/2 (black-box: at most the 450 held-out digits; the "
    "default 10,000 is what catches --fault clip-2x; a step's rows x m is at most 150 million: without --batch-size, "
    "m <= 11,592).",
)
@click.option("--epochs", type=click.IntRange(min=1), default=_DEFAULTS.epochs, show_default=True)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=_DEFAULTS.batch_size,
    help="Expected batch size B of Poisson sampling (the run's N counts the included canaries). Default: every row "
    "in every step (sampling probability 1, white-box only: an excluded canary stays as a row of zeros, so B = N = the "
    "digits + m whatever the bits, and the run is mu-GDP with mu = sqrt(epochs) / sigma).",
)
@click.option(
    "--l2-norm-clip",
    type=float,
    default=_DEFAULTS.l2_norm_clip,
    show_default=True,
    callback=checked("--l2-norm-clip", validation.positive),
    help="C.",
)
@click.option(
    "--noise-multiplier",
    type=float,
    default=_DEFAULTS.noise_multiplier,
    show_default=True,
    callback=checked("--noise-multiplier", validation.positive),
    help="sigma, as declared and accounted.",
)
@click.option(
    "--learning-rate",
    type=float,
    default=_DEFAULTS.learning_rate,
    show_default=True,
    callback=checked("--learning-rate", validation.positive),
)
@click.option(
    "--delta",
    type=float,
    default=_DEFAULTS.delta,
    show_default=True,
    callback=checked("--delta", validation.probability),
    help="Delta of the claimed epsilon and of the bound.",
)
@click.option(
    "--confidence",
    type=float,
    default=_DEFAULTS.confidence,
    show_default=True,
    callback=checked("--confidence", validation.probability),
    help="Confidence of the lower bound.",
)
@click.option(
    "--fault",
    type=click.Choice(FAULTS),
    default=_DEFAULTS.fault,
    show_default=True,
    help="Inject a known bug to check the audit: clip-2x/clip-4x clip at 2C/4C while claiming C; "
    "no-noise adds none while claiming sigma. All three are caught in the default configuration (clip-2x: "
    "simulated 200 of 200, real runs in the README); with the former Poisson defaults (--num-canaries 2000 "
    "--batch-size 1200 --noise-multiplier 6.5 --epochs 5) clip-2x is not.",
)
@click.option(
    "--estimator",
    type=click.Choice(ESTIMATORS),
    default=None,
    help="The bound: f-dp-gaussian (the mu-GDP trade-off: only at sampling probability 1, the default there), f-dp "
    "(the (eps, delta) trade-off, sound for any claim; the default with --batch-size), counting (Steinke et al. "
    "2023), f-dp-claimed (f-DP against the claimed Poisson-sampled Gaussian's own trade-off curve, from PLD: about "
    "10 PLDs a bound; only where the data size does not depend on the canary bits: not with --batch-size).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False),
    help="Write a plot of the lower bound and the claimed epsilon per epoch (.png, .pdf or .svg).",
)
def audit(as_json, plot, **options):
    """Audit DP-SGD empirically in one training run: canaries, then a lower bound on epsilon.

    The bound holds with the stated confidence over the secret canary bits and the run's noise; the per-epoch
    bounds in --plot are each valid on their own, and the verdict uses the last epoch only.
    """
    if plot is not None:
        check_plot_path(plot)
    try:
        plan = AuditPlan(**options)
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    from federated.data import load_digits_split

    (x, y), (x_pool, y_pool) = load_digits_split()
    try:
        check_data(plan, x, y, x_pool)
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    _quiet_accounting_warnings()
    from privacy.auditing.dp_sgd_audit import run_dp_sgd_audit

    try:
        result = run_dp_sgd_audit(plan, x, y, x_pool, y_pool)
    except ValueError as err:  # a diverged run (the message names no canary) or accounting refused
        raise click.UsageError(str(err)) from None
    if plot is not None:
        _plot(result, plot)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    final, plan = result.final, result.plan  # the plan that ran: its batch size made explicit
    accountant = result.claim_accountant
    verdict = (
        f"CLAIM REFUTED: the lower bound exceeds the {accountant.upper()} epsilon"
        if result.violated
        else "consistent: the lower bound does not exceed the claimed epsilon (evidence, not proof)"
    )
    full_batch = result.dataset_size == plan.batch_size == len(y) + plan.num_canaries
    rows = (
        f"{plan.num_canaries} canary rows (each canary included with probability 1/2, else a row of zeros)"
        if full_batch
        else f"the included canaries (each of {plan.num_canaries} with probability 1/2)"
    )
    claims = ", ".join(f"{kind.upper()} {value:.3f}" for kind, value in result.claims[-1].items())
    lines = [
        f"One-run audit of DP-SGD on digits ({plan.kind} canaries, fault: {plan.fault})",
        f"  training rows      {len(y)} digits + {rows} (bits kept secret)",
        f"  claimed epsilon    {result.claimed_epsilon[-1]:.3f} at delta {plan.delta:g}, the smallest ppml reports "
        f"({claims}; sigma {plan.noise_multiplier:g}, {plan.epochs} epochs, B {plan.batch_size})",
        f"  lower bound        {result.lower_bound[-1]:.2f} at {plan.confidence:.0%} confidence "
        f"({final['num_correct']}/{final['num_guesses']} guesses right of {final['num_canaries']} canaries, "
        f"{final['estimator']} bound, thresholds by {final['strategy']} over {final['pairs_tried']} pairs)",
        f"  verdict            {verdict}",
        f"  time               {result.seconds:.1f} s",
    ]
    click.echo("\n".join(lines))


def _quiet_accounting_warnings() -> None:
    from absl import logging

    logging.set_verbosity(logging.ERROR)  # dp-accounting's RDP order warnings, one per epoch


def _plot(result, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    epochs = range(1, len(result.lower_bound) + 1)
    plan = result.plan
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    ax.plot(epochs, result.claimed_epsilon, "o-", markersize=3, label="claimed epsilon (smallest of RDP, PLD)")
    ax.plot(
        epochs, result.lower_bound, "s-", markersize=3, label=f"one-run lower bound ({plan.confidence:.0%} confidence)"
    )
    ax.set_ylim(bottom=0)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"epsilon at delta = {plan.delta:g}")
    ax.set_title(
        f"DP-SGD audit on digits: {plan.kind}, {plan.num_canaries} canaries, sigma={plan.noise_multiplier:g},"
        f" fault={plan.fault}",
        fontsize=9,
    )
    save_plot(fig, ax, path)


COMMANDS = (audit,)
