"""Entry point of the `ppml` command."""

from __future__ import annotations

import importlib.metadata

import click

from pipelines.cli import accounting, encrypted, federated, pipeline, report


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(importlib.metadata.version("ppml"), prog_name="ppml")
def cli():
    """ppml: privacy-preserving machine learning for TensorFlow and TFX.

    \b
    Accounting (starts fast: no TensorFlow):
      ppml epsilon     epsilon of a DP-SGD configuration (RDP and PLD)
      ppml noise       noise multiplier for a target epsilon
      ppml epochs      epochs a noise multiplier affords within a target epsilon
    TFX:
      ppml pipeline    run (or compile for Kubeflow v2) the private TFX pipeline
      ppml report      privacy report of a pipeline run, from ML Metadata and the ledger
    Federated learning:
      ppml federated   simulate FedAvg-family training, with client-level DP and secure aggregation
    Encrypted inference:
      ppml encrypted   three-party secret-shared prediction of a Keras model
    """


for module in (accounting, pipeline, report, federated, encrypted):
    for command in module.COMMANDS:
        cli.add_command(command)
