"""`ppml epsilon`, `ppml noise`, `ppml epochs`: DP-SGD accounting from the command line.

These commands import dp-accounting only (never TensorFlow), so they start in about a second.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import click

from pipelines.cli.aliases import deprecated_alias
from pipelines.cli.types import TruncatedBatchSize, check, checked
from privacy import validation
from privacy.accounting import (
    DEFAULT_DELTA_RULE,
    MAX_PER_EPOCH_ROWS,
    MAX_STEPS,
    NOISE_MULTIPLIER_RANGE,
    SLACK_TEXT,
    AccountantKind,
    Adjacency,
    DpSgdMechanism,
    NoiseCutoffError,
    PaddingBelowPldFloor,
    PaddingNoiseTooSmall,
    Sampling,
    UnsupportedAccounting,
    calibrate_noise_multiplier,
    compute_epsilon,
    default_delta,
    delta_warning,
    dp_accounting_version,
    dp_sgd_report,
    max_epochs,
    noise_cutoff,
    noisy_padding,
    resolve_adjacency,
    steps_per_epoch,
    truncation,
)
from privacy.accounting.report import added_deltas
from privacy.compared import compared

_ACCOUNTANTS = {
    "rdp": (AccountantKind.RDP,),
    "pld": (AccountantKind.PLD,),
    "both": (AccountantKind.RDP, AccountantKind.PLD),
}


def _bad(option: str, message: str) -> click.BadParameter:
    return click.BadParameter(message, param_hint=f"'{option}'")


def _mechanism_options(*, noise: bool, length: bool):
    """The options that describe a DP-SGD run, shared by the accounting commands."""

    def decorate(fn):
        options = [
            click.option(
                "--n", "dataset_size", type=click.IntRange(min=1), required=True, help="Number of training examples n."
            ),
            click.option(
                "--batch-size",
                type=float,
                callback=checked("--batch-size", validation.positive),
                help="Batch size B (expected size for Poisson sampling).",
            ),
            click.option(
                "--sampling-probability",
                type=float,
                callback=checked("--sampling-probability", validation.probability, one=True),
                help="Sampling probability q = B/n in (0, 1], instead of --batch-size.",
            ),
        ]
        if noise:
            options.append(
                click.option(
                    "--noise-multiplier",
                    type=float,
                    required=True,
                    callback=checked(
                        "--noise-multiplier",
                        validation.number,
                        low=NOISE_MULTIPLIER_RANGE[0],
                        high=NOISE_MULTIPLIER_RANGE[1],
                    ),
                    help="sigma: noise std on the summed clipped gradients is sigma*C (ppml's DP-SGD: "
                    f"sigma*C*(1 + {SLACK_TEXT}), the slack covering the clipped sum's rounding) "
                    f"(in [{NOISE_MULTIPLIER_RANGE[0]:g}, "
                    f"{NOISE_MULTIPLIER_RANGE[1]:g}]).",
                )
            )
        if length:
            options += [
                click.option(
                    "--epochs",
                    type=float,
                    callback=checked("--epochs", validation.positive),
                    help="Passes over the data; steps = ceil(epochs * n / B) (shuffle: ceil(n/B) steps per epoch).",
                ),
                click.option(
                    "--steps", type=int, help=f"Number of noisy steps T, instead of --epochs (at most {MAX_STEPS:.0e})."
                ),
            ]
        options += [
            click.option(
                "--target-delta",
                "delta",
                type=float,
                callback=checked("--target-delta", validation.probability),
                help=f"delta of the guarantee [default: {DEFAULT_DELTA_RULE}].",
            ),
            click.option(
                "--sampling",
                type=click.Choice([s.value for s in Sampling]),
                default="poisson",
                show_default=True,
                help="How batches were formed: poisson (exact analysis), fixed (without replacement), "
                "shuffle (once-per-epoch bound only); fixed and shuffle are analysed under "
                "replace-one adjacency only.",
            ),
            click.option(
                "--num-microbatches",
                "microbatches",
                type=int,
                help="Clip per microbatch (M microbatches per batch): sensitivity doubles unless "
                "each microbatch holds one example.",
            ),
            click.option(
                "--truncated-batch-size",
                type=TruncatedBatchSize(),
                help="Truncated Poisson sampling: a batch drawing more than K examples was cut to a uniformly "
                "random K of them ('default': B + 4 standard deviations of the batch size). Accounted "
                "as dp-accounting's TruncatedSubsampledGaussianDpEvent, by PLD only, per-example "
                "clipping only.",
            ),
            click.option(
                "--adjacency",
                type=click.Choice([a.value for a in Adjacency]),
                help="Neighbouring datasets [default: add-remove for poisson, replace-one for fixed "
                "and shuffle, which have no add-remove analysis].",
            ),
            click.option(
                "--max-examples-per-user",
                type=int,
                help="User-level guarantee by group privacy for users with at most K examples.",
            ),
            click.option("--accountant", type=click.Choice(list(_ACCOUNTANTS)), default="both", show_default=True),
            click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table."),
        ]
        options += [
            deprecated_alias(
                "--delta", "--target-delta", "delta", type=float, callback=checked("--delta", validation.probability)
            ),
            deprecated_alias("--microbatches", "--num-microbatches", "microbatches", type=int),
            deprecated_alias(
                "--sampling-rate",
                "--sampling-probability",
                "sampling_probability",
                type=float,
                callback=checked("--sampling-rate", validation.probability, one=True),
            ),
        ]
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


_NOISY_PADDING = "--batch-size-noise-multiplier"
_noisy_padding_option = click.option(
    _NOISY_PADDING,
    "sigma_c",
    type=float,
    help="Noisy padding (make_private's batch_size_noise_multiplier, in rows): each Poisson step is accounted as "
    "one Gaussian of noise multiplier (sigma^-2 + sigma_c^-2)^-1/2, and the guarantee's delta gains T 2^-50 "
    "(1 + 2^-40) (1 + e^eps) for the clamp at 0 rows. Untruncated Poisson sampling, add-remove, per-example "
    "clipping only.",
)
"""``--batch-size-noise-multiplier`` of `epsilon`, `noise` and `epochs` (checked by `_with_noisy_padding`)."""


def _with_noisy_padding(mechanism: DpSgdMechanism, sigma_c: float | None) -> DpSgdMechanism:
    """``mechanism`` with noisy padding of ``sigma_c`` rows (unchanged for None); a refusal names the option."""
    if sigma_c is None:
        return mechanism
    try:
        return mechanism.replace(batch_size_noise_multiplier=sigma_c)
    except ValueError as err:
        raise _bad(_NOISY_PADDING, str(err)) from None


def _clamp_deltas(result: dict, mechanism: DpSgdMechanism, kind: AccountantKind, steps, epsilon) -> None:
    """Adds what noisy padding's clamp adds to ``kind``'s row's delta after ``steps`` steps at ``epsilon``
    ('clamp_delta_<kind>') and the row's guarantee delta ('guarantee_delta_<kind>'), as a
    report does (`added_deltas`); None where the row has no figure.

    Raises:
      ClampDeltaError: where the clamp's delta is over its share of delta.
    """
    if epsilon is None:
        result[f"clamp_delta_{kind.value}"] = result[f"guarantee_delta_{kind.value}"] = None
        return
    clamp = (
        added_deltas(mechanism.replace(steps=steps), result["delta"], epsilon, None)["clamp_delta"] if steps else 0.0
    )
    result[f"clamp_delta_{kind.value}"] = clamp
    result[f"guarantee_delta_{kind.value}"] = result["delta"] + clamp


def _build_mechanism(
    *,
    dataset_size,
    batch_size,
    sampling_probability,
    noise_multiplier=1.0,
    epochs=None,
    steps=None,
    sampling,
    microbatches,
    adjacency,
    max_examples_per_user,
    truncated_batch_size=None,
    accountant="both",
    need_length=True,
) -> DpSgdMechanism:
    """Checks the options against each other and builds the mechanism; errors name the option."""
    if (batch_size is None) == (sampling_probability is None):
        raise click.UsageError("give exactly one of --batch-size and --sampling-probability")
    if sampling_probability is not None:
        batch_size = sampling_probability * dataset_size
    elif batch_size > dataset_size:
        raise _bad("--batch-size", f"must be <= --n ({dataset_size}), got {batch_size!r}")
    sampling = Sampling(sampling)
    if sampling is not Sampling.POISSON and batch_size != int(batch_size):
        raise _bad(
            "--batch-size" if sampling_probability is None else "--sampling-probability",
            f"{sampling.value} batches need a whole batch size, got {batch_size!r}",
        )
    if sampling is not Sampling.POISSON:
        batch_size = int(batch_size)
    try:
        adjacency = resolve_adjacency(sampling, adjacency)
    except ValueError as err:
        raise _bad("--adjacency", str(err)) from None
    if microbatches is not None:
        check("--num-microbatches", validation.integer, microbatches, minimum=1)
        if microbatches > batch_size:  # under Poisson sampling too: most microbatches would be empty
            shown, bound = compared(microbatches, batch_size, bound_digits=4)
            raise _bad("--num-microbatches", f"must be <= the (expected) batch size {bound}, got {shown}")
    if max_examples_per_user is not None and not 1 <= max_examples_per_user <= dataset_size:
        raise _bad("--max-examples-per-user", f"must be in [1, --n={dataset_size}], got {max_examples_per_user}")
    fields = dict(
        dataset_size=dataset_size,
        batch_size=batch_size,
        noise_multiplier=noise_multiplier,
        sampling=sampling,
        adjacency=adjacency,
        num_microbatches=microbatches,
        max_examples_per_user=max_examples_per_user,
        truncated_batch_size=_truncation(
            truncated_batch_size, dataset_size, batch_size, sampling, microbatches, accountant
        ),
    )
    if not need_length:
        return _mechanism(steps=1, **fields)
    if (epochs is None) == (steps is None):
        raise click.UsageError("give exactly one of --epochs and --steps")
    check("--steps", validation.integer, steps, minimum=1, maximum=MAX_STEPS)
    if epochs is not None:
        per_epoch = steps_per_epoch(dataset_size, batch_size, sampling)
        if epochs * per_epoch > MAX_STEPS:
            raise _bad(
                "--epochs",
                f"{epochs:g} epochs of {per_epoch:.3g} steps are {epochs * per_epoch:.3g} steps, "
                f"more than {MAX_STEPS:.0e}; lower --epochs or raise the batch size",
            )
        return _mechanism(epochs=epochs, **fields)
    return _mechanism(steps=steps, **fields)


def _truncation(value, dataset_size, batch_size, sampling, microbatches, accountant) -> int | None:
    """K of ``--truncated-batch-size`` (None without it), checked against the other options."""
    if value is None:
        return None
    if sampling is not Sampling.POISSON:
        raise _bad("--truncated-batch-size", f"applies to Poisson sampling only, not --sampling {sampling.value}")
    if microbatches is not None:
        raise _bad(
            "--truncated-batch-size",
            "truncated Poisson sampling is analysed for per-example clipping only; drop --num-microbatches",
        )
    if accountant == AccountantKind.RDP.value:
        raise _bad(
            "--accountant",
            "dp-accounting's RDP accountant has no analysis of truncated Poisson sampling "
            "(--truncated-batch-size); use --accountant pld",
        )
    try:
        return truncation.resolve_truncated_batch_size(value, dataset_size, batch_size)
    except ValueError as err:
        raise _bad("--truncated-batch-size", str(err)) from None


def _mechanism(*, epochs=None, **fields) -> DpSgdMechanism:
    """The mechanism of options already checked one by one (a remaining conflict is a usage error)."""
    try:
        if epochs is not None:
            return DpSgdMechanism.from_epochs(epochs=epochs, **fields)
        return DpSgdMechanism(**fields)
    except ValueError as err:
        raise click.UsageError(str(err)) from None


def _emit_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, allow_nan=False))


def _progress(label: str):
    """A progress bar on stderr when it is a terminal (so --json output stays clean), else None."""
    if not sys.stderr.isatty():
        return None
    state = {}

    def update(done: int, total: int) -> None:
        if "bar" not in state:
            state["bar"] = click.progressbar(length=total, label=label, file=sys.stderr)
            state["bar"].__enter__()
        state["bar"].update(1)
        if done == total:
            state["bar"].__exit__(None, None, None)

    return update


@click.command()
@_mechanism_options(noise=True, length=True)
@click.option("--per-epoch", is_flag=True, help="Also print epsilon after every epoch.")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False),
    help="Write a plot of epsilon over epochs to this file (.png, .pdf or .svg).",
)
@click.option(
    "--weights",
    type=int,
    callback=checked("--weights", validation.integer, minimum=1),
    help="The model's trainable weights (noise coordinates per step): the guarantee then adds the delta of ppml's "
    "noise sampler's cut-off (9.42 sigma in float32), counted as one Box-Muller pair per weight (at least the pairs "
    "drawn; with --batch-size-noise-multiplier, Z's pair counts as one more weight), and refuses a cut-off adding more "
    "than 1% of delta. Without it: the untruncated Gaussian's delta.",
)
@_noisy_padding_option
def epsilon(as_json, accountant, delta, per_epoch, plot, weights, sigma_c, **options):
    """Epsilon of a DP-SGD configuration under RDP and PLD accounting.

    \b
    Example (the TF Privacy MNIST tutorial):
      ppml epsilon --n 60000 --batch-size 256 --noise-multiplier 1.1 --epochs 60 --target-delta 1e-5
    """
    if plot is not None:
        check_plot_path(plot)
    mechanism = _with_noisy_padding(_build_mechanism(accountant=accountant, **options), sigma_c)
    want_rows = per_epoch or plot is not None
    if want_rows and mechanism.passes > MAX_PER_EPOCH_ROWS:
        raise _bad(
            "--per-epoch" if per_epoch else "--plot",
            f"epsilon is computed per epoch for at most {MAX_PER_EPOCH_ROWS} epochs, this run has {mechanism.passes}",
        )
    try:
        report = dp_sgd_report(
            mechanism,
            delta=delta,
            accountants=_ACCOUNTANTS[accountant],
            per_epoch=want_rows,
            progress=_progress("accounting each epoch") if want_rows else None,
            noise_draws=None
            if weights is None
            else noise_cutoff.NoiseDraws(noise_cutoff.sampler_radius(), weights + (sigma_c is not None)),
        )
    except NoiseCutoffError as err:
        raise _bad("--weights", str(err)) from None
    except noisy_padding.ClampDeltaError as err:
        raise _bad(_NOISY_PADDING, str(err)) from None
    if plot is not None:
        _plot_epsilon(report, plot)
    if as_json:
        data = report.to_dict()
        if not per_epoch:
            data.pop("per_epoch")
        if plot is not None:
            data["plot"] = plot
        _emit_json(data)
        return
    click.echo((report if per_epoch else dataclasses.replace(report, per_epoch=())).format_text())
    if plot is not None:
        click.echo(f"\n  plot: {plot}")


PLOT_FORMATS = (".png", ".pdf", ".svg")


def check_plot_path(path: str) -> None:
    """Refuses a plot file that cannot be written, before any accounting."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in PLOT_FORMATS:
        raise _bad("--plot", f"must end in {', '.join(PLOT_FORMATS)}, got {path!r}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise _bad("--plot", f"cannot write into {folder}: not a writable folder")


def _plot_epsilon(report, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import MaxNLocator

    m = report.mechanism
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for kind, style in (("rdp", "o-"), ("pld", "s-")):
        points = [(r.epoch, r.epsilon.get(kind)) for r in report.per_epoch if r.epsilon.get(kind) is not None]
        if points:
            ax.plot(*zip(*points, strict=True), style, markersize=3, label=f"{kind.upper()} (dp-accounting)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(bottom=0)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"epsilon at delta = {report.delta:g}")
    ax.set_title(
        f"DP-SGD: n={m.dataset_size}, B={m.batch_size:g}, sigma={m.noise_multiplier:g}, "
        f"{m.sampling.value} sampling, {m.adjacency.value}",
        fontsize=9,
    )
    save_plot(fig, ax, path)


def save_plot(fig, ax, path: str) -> None:
    """Adds the grid and legend to an epsilon-per-epoch plot, writes it to --plot's path and closes it."""
    from matplotlib import pyplot as plt

    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        fig.savefig(path)
    except OSError as err:
        raise _bad("--plot", f"cannot write {path}: {err.strerror or err}") from None
    finally:
        plt.close(fig)


@click.command()
@click.option(
    "--target-epsilon",
    type=float,
    required=True,
    callback=checked("--target-epsilon", validation.positive),
    help="Epsilon to reach at --target-delta.",
)
@_mechanism_options(noise=False, length=True)
@_noisy_padding_option
def noise(target_epsilon, as_json, accountant, delta, sigma_c, **options):
    """Noise multiplier that reaches a target epsilon (dp-accounting calibration).

    \b
    Example:
      ppml noise --target-epsilon 3 --n 60000 --batch-size 256 --epochs 60 --target-delta 1e-5
    """
    mechanism = _with_noisy_padding(_build_mechanism(accountant=accountant, **options), sigma_c)
    delta = default_delta(mechanism.dataset_size) if delta is None else delta
    result = _config_dict(mechanism, delta, target_epsilon)
    result["steps"] = mechanism.steps
    out_of_reach = False  # a PaddingNoiseTooSmall, PaddingBelowPldFloor or ClampDeltaError: exit 2 if no row answers
    for kind in _ACCOUNTANTS[accountant]:
        try:
            sigma = calibrate_noise_multiplier(
                mechanism, target_epsilon=target_epsilon, target_delta=delta, accountant=kind
            )
            eps = compute_epsilon(mechanism.replace(noise_multiplier=sigma), delta, kind)
        except (PaddingNoiseTooSmall, PaddingBelowPldFloor) as err:
            sigma = eps = None
            result.setdefault("unavailable", {})[kind.value] = str(err)
            out_of_reach = True
        except UnsupportedAccounting as err:
            sigma = eps = None
            result.setdefault("unavailable", {})[kind.value] = str(err)
        except ValueError as err:
            raise _bad("--target-epsilon", str(err)) from None
        if sigma_c is not None:  # without noisy padding the JSON and its work are as before it
            try:
                _clamp_deltas(result, mechanism, kind, mechanism.steps, eps)
            except noisy_padding.ClampDeltaError as err:  # as a target out of reach: this row only
                sigma = eps = result[f"clamp_delta_{kind.value}"] = result[f"guarantee_delta_{kind.value}"] = None
                result.setdefault("unavailable", {})[kind.value] = str(err)
                out_of_reach = True
            result[f"effective_noise_multiplier_{kind.value}"] = (
                None if sigma is None else mechanism.replace(noise_multiplier=sigma).effective_noise_multiplier
            )
        result[f"noise_multiplier_{kind.value}"] = sigma
        result[f"epsilon_{kind.value}"] = eps
    if all(result[f"noise_multiplier_{k.value}"] is None for k in _ACCOUNTANTS[accountant]):  # no answer at all
        if out_of_reach:
            raise _bad(_NOISY_PADDING, "; ".join(dict.fromkeys(result["unavailable"].values())))
        raise _bad("--accountant", "; ".join(result["unavailable"].values()))
    if as_json:
        _emit_json(result)
        return
    click.echo(f"Noise multiplier for epsilon <= {target_epsilon:g} at delta = {delta:g}")
    click.echo(
        f"  {mechanism.steps} steps = {mechanism.epochs:.4g} epochs, n = {mechanism.dataset_size}, "
        f"B = {mechanism.batch_size:g}, {_sampling_text(mechanism)}, {mechanism.adjacency.value}"
    )
    padded = sigma_c is not None
    click.echo("")
    click.echo(f"  {'accountant':<11} {'sigma':>9}" + (f" {'sigma_eff':>9}" if padded else "") + f" {'epsilon':>9}")
    for kind in _ACCOUNTANTS[accountant]:
        sigma, eps = result[f"noise_multiplier_{kind.value}"], result[f"epsilon_{kind.value}"]
        if sigma is None:
            click.echo(f"  {kind.value.upper():<11} {'n/a':>9}  {result['unavailable'][kind.value]}")
        elif padded:
            click.echo(
                f"  {kind.value.upper():<11} {sigma:>9.4f} {result[f'effective_noise_multiplier_{kind.value}']:>9.4f} "
                f"{eps:>9.4f}"
            )
        else:
            click.echo(f"  {kind.value.upper():<11} {sigma:>9.4f} {eps:>9.4f}")
    click.echo(
        f"\n  {result['accountant_version']}; sigma is the noise std on the summed clipped gradients / C "
        f"(/ C (1 + {SLACK_TEXT}) in ppml's DP-SGD)."
    )
    _echo_noisy_padding(result, accountant)
    _echo_warnings(result)


@click.command()
@click.option(
    "--target-epsilon",
    type=float,
    required=True,
    callback=checked("--target-epsilon", validation.positive),
    help="Epsilon budget at --target-delta.",
)
@_mechanism_options(noise=True, length=False)
@_noisy_padding_option
def epochs(target_epsilon, as_json, accountant, delta, sigma_c, **options):
    """Epochs (and steps) a noise multiplier affords within a target epsilon.

    \b
    Example:
      ppml epochs --target-epsilon 3 --n 60000 --batch-size 256 --noise-multiplier 1.1 --target-delta 1e-5
    """
    mechanism = _with_noisy_padding(_build_mechanism(accountant=accountant, **options, need_length=False), sigma_c)
    delta = default_delta(mechanism.dataset_size) if delta is None else delta
    result = _config_dict(mechanism, delta, target_epsilon)
    result["noise_multiplier"] = mechanism.noise_multiplier
    result["effective_noise_multiplier"] = mechanism.effective_noise_multiplier
    refused = False  # a ClampDeltaError: as in `noise`, a row's; exit 2 only where no row answers
    for kind in _ACCOUNTANTS[accountant]:
        try:
            whole_epochs, steps = max_epochs(
                mechanism, target_epsilon=target_epsilon, target_delta=delta, accountant=kind
            )
        except UnsupportedAccounting as err:
            whole_epochs = steps = None
            result.setdefault("unavailable", {})[kind.value] = str(err)
        except ValueError as err:
            raise _bad("--target-epsilon", str(err)) from None
        result[f"epochs_{kind.value}"] = whole_epochs
        result[f"steps_{kind.value}"] = steps
        if steps == 0 and mechanism.sampling is not Sampling.SHUFFLE:
            result.setdefault("one_step_epsilon", {})[kind.value] = compute_epsilon(mechanism, delta, kind, steps=1)
        if sigma_c is not None:  # the clamp's delta needs the epsilon the steps afforded spend
            spent = compute_epsilon(mechanism.replace(steps=steps), delta, kind) if steps else None
            result[f"epsilon_{kind.value}"] = spent
            try:
                _clamp_deltas(result, mechanism, kind, steps, 0.0 if steps == 0 else spent)
            except noisy_padding.ClampDeltaError as err:
                for key in ("epochs", "steps", "epsilon", "clamp_delta", "guarantee_delta"):
                    result[f"{key}_{kind.value}"] = None
                result.setdefault("unavailable", {})[kind.value] = str(err)
                refused = True
    if refused and all(result[f"epochs_{k.value}"] is None for k in _ACCOUNTANTS[accountant]):
        raise _bad(_NOISY_PADDING, "; ".join(dict.fromkeys(result["unavailable"].values())))
    if as_json:
        _emit_json(result)
        return
    click.echo(
        f"Training affordable with sigma = {mechanism.noise_multiplier:g} within epsilon "
        f"{target_epsilon:g} at delta = {delta:g}"
    )
    click.echo(
        f"  n = {mechanism.dataset_size}, B = {mechanism.batch_size:g}, {_sampling_text(mechanism)}, "
        f"{mechanism.adjacency.value}"
    )
    click.echo("")
    click.echo(f"  {'accountant':<11} {'epochs':>8} {'steps':>9}")
    for kind in _ACCOUNTANTS[accountant]:
        e, s = result[f"epochs_{kind.value}"], result[f"steps_{kind.value}"]
        if e is None:
            click.echo(f"  {kind.value.upper():<11} {'n/a':>8}  {result['unavailable'][kind.value]}")
        else:
            click.echo(f"  {kind.value.upper():<11} {e:>8} {s:>9}")
    for kind, one_step in result.get("one_step_epsilon", {}).items():
        click.echo(
            f"\n  {kind.upper()}: not one step fits: a single step costs epsilon {one_step:.4g} at delta {delta:g}; "
            f"raise --noise-multiplier or --target-epsilon"
            + (" or --truncated-batch-size" if mechanism.truncated_batch_size else "")
        )
    click.echo(f"\n  whole epochs; {result['accountant_version']}")
    _echo_noisy_padding(result, accountant)
    _echo_warnings(result)


def _sampling_text(mechanism: DpSgdMechanism) -> str:
    """e.g. 'poisson sampling', or 'poisson sampling cut to 320 (TruncatedSubsampledGaussianDpEvent)'."""
    if mechanism.truncated_batch_size is None:
        return f"{mechanism.sampling.value} sampling"
    return (
        f"{mechanism.sampling.value} sampling cut to {mechanism.truncated_batch_size} "
        f"({mechanism.unit_event().__class__.__name__})"
    )


def _echo_noisy_padding(result: dict, accountant: str) -> None:
    """With noisy padding: what it covers (`noisy_padding.covered_rows`, once per effective noise multiplier) and
    each accountant's guarantee delta (its delta plus the clamp's)."""
    sigma_c = result["batch_size_noise_multiplier"]
    if sigma_c is None:
        return
    kinds = [k.value for k in _ACCOUNTANTS[accountant] if result[f"clamp_delta_{k.value}"] is not None]
    by_effective: dict[float, list[str]] = {}
    for kind in kinds:
        effective = result.get(f"effective_noise_multiplier_{kind}", result.get("effective_noise_multiplier"))
        by_effective.setdefault(effective, []).append(kind.upper())
    for effective, names in by_effective.items():
        click.echo(f"  noisy padding ({', '.join(names)}): {noisy_padding.covered_rows(sigma_c, effective)}.")
    if kinds:
        deltas = ", ".join(f"{k.upper()} {result['delta']:g} + {result[f'clamp_delta_{k}']:.3g}" for k in kinds)
        click.echo(f"  guarantee delta (the accountant's plus the clamp's): {deltas}.")


def _echo_warnings(result: dict) -> None:
    for warning in result["warnings"]:
        click.echo(f"  WARNING: {warning}")


def _config_dict(mechanism: DpSgdMechanism, delta: float, target_epsilon: float) -> dict:
    warning = delta_warning(delta, mechanism.dataset_size)
    return {
        "target_epsilon": target_epsilon,
        "delta": delta,
        "dataset_size": mechanism.dataset_size,
        "batch_size": mechanism.batch_size,
        "sampling_probability": mechanism.sampling_probability,
        "sampling": mechanism.sampling.value,
        "adjacency": mechanism.adjacency.value,
        "num_microbatches": mechanism.num_microbatches,
        "max_examples_per_user": mechanism.max_examples_per_user,
        "truncated_batch_size": mechanism.truncated_batch_size,
        "batch_size_noise_multiplier": mechanism.batch_size_noise_multiplier,
        "unit_event": mechanism.unit_event().__class__.__name__,
        "accountant_version": f"dp-accounting {dp_accounting_version()}",
        "warnings": [warning] if warning else [],
    }


COMMANDS = (epsilon, noise, epochs)
