"""`ppml encrypted ...` end to end: setup, share-model, three `serve` processes, predict, verify, bench."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from pipelines.cli.main import cli
from privacy.encrypted.processes import free_ports


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, digits_mlp):
    folder = tmp_path_factory.mktemp("cli")
    model, x = digits_mlp
    model.save(folder / "model.keras")
    np.save(folder / "x.npy", x[:20])
    np.savetxt(folder / "x.csv", x[:3], delimiter=",")
    np.save(folder / "y.npy", np.asarray(model.predict(x[:20], verbose=0)).argmax(1))
    return folder, model, x[:20]


def test_setup_share_serve_predict(saved):
    folder, model, x = saved
    dep = folder / "dep"
    ports = free_ports(3)
    parties = [a for p in ports for a in ("--party", f"127.0.0.1:{p}")]
    assert run("encrypted", "setup", "--out", dep, *parties).exit_code == 0
    result = run("encrypted", "share-model", folder / "model.keras", "--deployment", dep)
    assert result.exit_code == 2 and "--input-range LO HI or --calibration FILE" in result.output
    result = run("encrypted", "share-model", folder / "model.keras", "--deployment", dep, "--input-range", 0, 1)
    assert result.exit_code == 0, result.output
    assert all((dep / f"party-{i}" / "model.npz").exists() for i in range(3))
    assert all((dep / f"party-{i}" / "model.npz").stat().st_mode & 0o077 == 0 for i in range(3))  # owner only
    serve = [sys.executable, "-c", "from pipelines.cli.main import cli; cli()", "encrypted", "serve"]
    procs = [subprocess.Popen(serve + ["--party", str(i), "--deployment", str(dep), "--timeout", "10"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, cwd=os.getcwd()) for i in range(3)]
    try:
        assert [p.stdout.readline().strip() for p in procs] == ["ready"] * 3
        result = run("encrypted", "predict", "--input", folder / "x.csv", "--deployment", dep, "--json")
        assert result.exit_code == 0, result.output
        got = json.loads(result.output)
        expected = np.asarray(model.predict(x[:3], verbose=0))
        assert got["labels"] == expected.argmax(1).tolist()
        assert np.abs(np.array(got["outputs"]) - expected).max() <= 1e-3
        assert got["cost"]["rounds"] > 0
        result = run("encrypted", "predict", "--input", folder / "x.npy", "--deployment", dep, "--output", "label",
                     "--out", folder / "labels.npy")
        assert result.exit_code == 0 and np.array_equal(np.load(folder / "labels.npy"), expected.argmax(1).tolist()
                                                        + np.asarray(model.predict(x[3:], verbose=0)).argmax(1).tolist())
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)


def test_verify_reports_agreement_and_passes(saved):
    folder, _, _ = saved
    result = run("encrypted", "verify", folder / "model.keras", folder / "x.npy", "--labels", folder / "y.npy",
                 "--batch-size", "8", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["passed"] and report["examples"] == 20 and report["decision_agreement"] == 1.0
    assert report["max_abs_error"] <= 1e-3 and report["accuracy_difference_points"] == 0.0
    assert report["batch_size"] == 8 and report["rounds_per_batch"] > 0


def test_bad_inputs_are_named(saved, tmp_path):
    folder, _, _ = saved
    result = run("encrypted", "share-model", tmp_path / "missing.keras", "--deployment", tmp_path, "--input-range", 0, 1)
    assert result.exit_code == 2 and "no such file" in result.output
    np.save(tmp_path / "bad.npy", np.zeros((2, 5)))
    result = run("encrypted", "verify", folder / "model.keras", tmp_path / "bad.npy")
    assert result.exit_code == 2 and "shape (2, 5), expected (n,) + (64,)" in result.output
    result = run("encrypted", "predict", "--input", folder / "x.npy", "--deployment", tmp_path / "nowhere")
    assert result.exit_code == 2 and "run `ppml encrypted setup` first" in result.output
    assert run("encrypted", "setup", "--out", tmp_path, "--party", "localhost").exit_code == 2


def test_bench_prints_a_table():
    result = run("encrypted", "bench", "--model", "mlp", "--batch", "1", "--repeats", "1")
    assert result.exit_code == 0
    assert "mlp    in-process       1" in result.output
