"""The `ppml` group's error boundary: environment failures become one line and exit 1, defects keep their
traceback."""

import subprocess
import sys

import click
import numpy as np
import pytest
from click.testing import CliRunner

from pipelines.cli.main import _Ppml, cli


def group_raising(err: BaseException) -> click.Group:
    group = _Ppml()

    @group.command()
    def fail():
        raise err

    return group


@pytest.mark.parametrize(
    "err, line",
    [
        (PermissionError(13, "Permission denied", "/proc/out.json"), "Error: Permission denied: /proc/out.json"),
        (IsADirectoryError(21, "Is a directory", "history.json"), "Error: Is a directory: history.json"),
        (OSError("device is gone"), "Error: OSError: device is gone"),
        (MemoryError(), "Error: not enough memory; use smaller settings"),
    ],
)
def test_environment_failures_become_one_line_and_exit_1(err, line):
    result = CliRunner().invoke(group_raising(err), ["fail"])
    assert result.exit_code == 1
    assert result.output.strip() == line


def test_numpy_out_of_memory_names_the_allocation():
    try:
        np.empty(2**42, dtype=np.float64)  # 32 TiB
    except MemoryError as err:
        caught = err
    result = CliRunner().invoke(group_raising(caught), ["fail"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.startswith("Error: not enough memory (Unable to allocate")
    assert len(result.output.splitlines()) == 1


def test_a_defect_keeps_its_traceback():
    result = CliRunner().invoke(group_raising(KeyError("bug")), ["fail"])
    assert isinstance(result.exception, KeyError)


def test_the_real_command_writes_one_line_on_stderr(tmp_path):
    target = tmp_path / "folder.png"
    target.mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from pipelines.cli.main import cli; cli()",
            "epsilon",
            "--n",
            "1000",
            "--batch-size",
            "50",
            "--noise-multiplier",
            "1",
            "--steps",
            "10",
            "--plot",
            str(target),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"Error: Invalid value for '--plot': File '{target}' is a directory. (see '-c epsilon --help')"
    ]


def test_usage_errors_are_one_line_naming_the_option_and_exit_2():
    result = CliRunner().invoke(cli, ["epsilon", "--n", "x"])
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        "Error: Invalid value for '--n': 'x' is not a valid integer range. (see 'cli epsilon --help')"
    ]
    result = CliRunner().invoke(cli, ["no-such-command"])
    assert result.exit_code == 2 and result.output.splitlines() == [
        "Error: No such command 'no-such-command'. (see 'cli --help')"
    ]


def test_help_and_version_still_exit_0():
    assert CliRunner().invoke(cli, ["--version"]).exit_code == 0
    assert CliRunner().invoke(cli, ["epsilon", "--help"]).exit_code == 0
