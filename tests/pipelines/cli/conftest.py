"""Fixtures of the CLI tests."""

import pytest

from pipelines.cli import pipeline as pipeline_cli


@pytest.fixture
def no_tfx(monkeypatch):
    """Any case that gets past the checks fails here instead of importing TFX and running a pipeline."""

    def refuse():
        raise AssertionError("the settings passed the checks: TFX would be imported")

    monkeypatch.setattr(pipeline_cli, "import_tfx", refuse)
