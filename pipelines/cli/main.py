"""Entry point of the `ppml` command."""

from __future__ import annotations

import importlib.metadata

import click

from pipelines.cli import accounting


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(importlib.metadata.version("ppml"), prog_name="ppml")
def cli():
    """ppml: privacy-preserving machine learning for TensorFlow and TFX.

    \b
    Accounting (no TensorFlow needed):
      ppml epsilon   epsilon of a DP-SGD configuration (RDP and PLD)
      ppml noise     noise multiplier for a target epsilon
      ppml epochs    epochs a noise multiplier affords within a target epsilon
    """


for command in accounting.COMMANDS:
    cli.add_command(command)
for command in importlib.import_module("pipelines.cli.pipeline").COMMANDS: cli.add_command(command)
for command in importlib.import_module("pipelines.cli.report").COMMANDS: cli.add_command(command)
for command in importlib.import_module("pipelines.cli.encrypted").COMMANDS: cli.add_command(command)
for command in importlib.import_module("pipelines.cli.federated").COMMANDS: cli.add_command(command)
