"""Entry point of the `ppml` command, and its one error boundary.

Commands check their options and raise click's usage errors (exit 2) themselves. What they cannot
foresee from the options alone, the machine refusing a file or memory, reaches this boundary and
becomes one line on stderr and exit 1, never a traceback. Anything else is a defect of ppml and keeps
its traceback.
"""

from __future__ import annotations

import importlib.metadata
import sys

import click

from pipelines.cli import accounting, audit, encrypted, federated, ldp, minimize, pate, pipeline, report


def environment_failure(err: BaseException) -> str | None:
    """The one-line message for a failure of the environment (files, memory), or None for anything else."""
    if isinstance(err, OSError):
        what = err.strerror or type(err).__name__
        where = f": {err.filename}" if err.filename else ""
        return f"{what}{where}" if err.strerror else f"{what}{where}: {err}"
    if isinstance(err, MemoryError):  # numpy's ArrayMemoryError included
        detail = f" ({err})" if str(err) else ""
        return f"not enough memory{detail}; use smaller settings"
    return None


class _Ppml(click.Group):
    """The `ppml` group: every error it ends with is one line on stderr.

    Usage errors (exit 2) name the option and point to the command's --help; environment failures
    from any command exit 1 (`environment_failure`).
    """

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (OSError, MemoryError) as err:
            raise click.ClickException(environment_failure(err)) from None

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click.UsageError as err:
            hint = f" (see '{err.ctx.command_path} --help')" if err.ctx is not None else ""
            click.echo(f"Error: {err.format_message()}{hint}", err=True)
            sys.exit(err.exit_code)
        except click.ClickException as err:
            click.echo(f"Error: {err.format_message()}", err=True)
            sys.exit(err.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=_Ppml, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(importlib.metadata.version("ppml"), prog_name="ppml")
def cli():
    """ppml: privacy-preserving machine learning for TensorFlow and TFX.

    \b
    Accounting (starts fast: no TensorFlow):
      ppml epsilon     epsilon of a DP-SGD configuration (RDP and PLD)
      ppml noise       noise multiplier for a target epsilon
      ppml epochs      epochs a noise multiplier affords within a target epsilon
    Auditing:
      ppml audit       a DP-SGD run with canaries: a measured lower bound on epsilon beside the claim
    TFX:
      ppml pipeline    run (or compile for Kubeflow v2) the private TFX pipeline
      ppml report      privacy report of a pipeline run, from ML Metadata and the ledger
      ppml minimize    PII scrubbing and k-anonymity report of CSV data, without training
    Federated learning:
      ppml federated   simulate FedAvg-family training, with client-level DP and secure aggregation
    Encrypted inference:
      ppml encrypted   three-party secret-shared prediction of a Keras model
    Local differential privacy:
      ppml ldp         each person randomizes their own answer: simulate collection and estimation
    PATE (teachers on disjoint private partitions label public data by a noisy vote):
      ppml pate        train teachers and a student, or compute the aggregation's epsilon
    """


for module in (accounting, audit, pipeline, report, minimize, federated, encrypted, ldp, pate):
    for command in module.COMMANDS:
        cli.add_command(command)
