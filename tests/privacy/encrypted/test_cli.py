"""`ppml encrypted ...` end to end: setup, share-model, three `serve` processes, predict, verify, bench."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from pipelines.cli.main import cli
from privacy.encrypted.network.processes import free_ports


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
    # Pixels are multiples of 1/16: 4 fractional bits hold them exactly, and the parties check 5-bit spans.
    result = run(
        "encrypted",
        "share-model",
        folder / "model.keras",
        "--deployment",
        dep,
        "--input-range",
        0,
        1,
        "--input-frac-bits",
        4,
    )
    assert result.exit_code == 0, result.output
    assert all((dep / f"party-{i}" / "model.npz").exists() for i in range(3))
    assert all((dep / f"party-{i}" / "model.npz").stat().st_mode & 0o077 == 0 for i in range(3))  # owner only
    serve = [sys.executable, "-c", "from pipelines.cli.main import cli; cli()", "encrypted", "serve"]
    procs = [
        subprocess.Popen(
            serve + ["--party", str(i), "--deployment", str(dep), "--timeout", "10"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=os.getcwd(),
        )
        for i in range(3)
    ]
    try:
        assert [p.stdout.readline().strip() for p in procs] == ["ready"] * 3
        result = run("encrypted", "predict", "--input", folder / "x.csv", "--deployment", dep, "--json")
        assert result.exit_code == 0, result.output
        got = json.loads(result.output)
        expected = np.asarray(model.predict(x[:3], verbose=0))
        assert got["labels"] == expected.argmax(1).tolist() and got["outputs"] is None  # labels by default
        assert got["cost"]["rounds"] > 0
        # The model was shared without --allow-logits: the client cannot ask for more (one line, exit 2).
        result = run("encrypted", "predict", "--input", folder / "x.csv", "--deployment", dep, "--output", "logits")
        assert result.exit_code == 2 and "only labels" in result.output and "Traceback" not in result.output
        result = run(
            "encrypted", "predict", "--input", folder / "x.npy", "--deployment", dep, "--out", folder / "labels.npy"
        )
        want = expected.argmax(1).tolist() + np.asarray(model.predict(x[3:], verbose=0)).argmax(1).tolist()
        assert result.exit_code == 0 and np.array_equal(np.load(folder / "labels.npy"), want)
        assert (folder / "labels.npy").stat().st_mode & 0o077 == 0  # the client's secret: owner only
        # One certificate per client: a second client works, a revoked one is refused, the first still works.
        assert run("encrypted", "add-client", "bob", "--deployment", dep).exit_code == 0
        assert (
            run("encrypted", "predict", "--input", folder / "x.csv", "--deployment", dep, "--client", "bob").exit_code
            == 0
        )
        assert run("encrypted", "revoke-client", "bob", "--deployment", dep).exit_code == 0
        result = run("encrypted", "predict", "--input", folder / "x.csv", "--deployment", dep, "--client", "bob")
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert (
            run(
                "encrypted", "predict", "--input", folder / "x.csv", "--deployment", dep, "--client", "client"
            ).exit_code
            == 0
        )
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)


def test_verify_reports_agreement_and_passes(saved):
    folder, _, _ = saved
    result = run(
        "encrypted",
        "verify",
        folder / "model.keras",
        folder / "x.npy",
        "--labels",
        folder / "y.npy",
        "--batch-size",
        "8",
        "--json",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["passed"] and report["examples"] == 20 and report["decision_agreement"] == 1.0
    assert report["max_abs_error"] <= 1e-3 and report["accuracy_difference_points"] == 0.0
    assert report["batch_size"] == 8 and report["rounds_per_batch"] > 0


def test_verify_half_open_checks_the_bounds_share_model_half_open_serves(saved):
    """`verify --input-range 0 1 --half-open` runs what `share-model --half-open` deploys: the parties check [0, 1 -
    2^-16] (one comparison per value: the bytes of verifying with [0, 1 - 2^-16] declared, fewer than [0, 1]'s two)
    and a 1.0 in DATA is served as 1 - 2^-16 (declared [0, 1 - 2^-16] refuses it). Without --input-range it is
    refused, naming the option."""
    folder, _, x = saved
    top, below = folder / "x_top.npy", folder / "x_below.npy"
    np.save(top, np.where(x == x.max(), 1.0, x))
    np.save(below, np.minimum(x, 1 - 2.0**-16))

    def verified(data, *bounds):
        return run("encrypted", "verify", folder / "model.keras", data, "--batch-size", 20, "--json", *bounds)

    result = verified(top, "--input-range", 0, 1, "--half-open")
    assert result.exit_code == 0, result.output
    half_open = json.loads(result.output)
    assert half_open["passed"] and half_open["max_abs_error"] <= 1e-3
    assert verified(top, "--input-range", 0, 1 - 2.0**-16).exit_code == 2
    checked, closed = (
        json.loads(verified(below, "--input-range", 0, hi, "--input-check", "exact").output) for hi in (1 - 2.0**-16, 1)
    )
    assert half_open["bytes_per_batch"] == checked["bytes_per_batch"] < closed["bytes_per_batch"]
    refused = run("encrypted", "verify", folder / "model.keras", top, "--half-open")
    assert refused.exit_code == 2 and "--half-open" in refused.output


def test_verify_input_frac_bits_checks_the_precision_share_model_serves(saved):
    """`verify --input-frac-bits 8` runs what `share-model --input-frac-bits 8` deploys: the parties check 9-bit
    spans (fewer bytes per batch than at the model's 16 bits, fewer again half-open) and the outputs stay within the
    fixed-point error of the rounded inputs; more bits than the model's, or bounds off the 2^-8 grid, are refused
    naming the option."""
    folder, _, x = saved
    pixels = folder / "x_pixels.npy"
    np.save(pixels, np.round(x * 255) / 255)

    def verified(*options):
        return run("encrypted", "verify", folder / "model.keras", pixels, "--batch-size", 20, "--json", *options)

    reports = [
        json.loads(verified("--input-range", 0, 1, *options).output)
        for options in ((), ("--input-frac-bits", 8), ("--input-frac-bits", 8, "--half-open"))
    ]
    assert all(report["passed"] and report["max_abs_error"] <= 1e-2 for report in reports), reports
    assert reports[0]["bytes_per_batch"] > reports[1]["bytes_per_batch"] > reports[2]["bytes_per_batch"]
    for options, named in (
        (("--input-frac-bits", 17), "--input-frac-bits"),
        (("--input-range", 0, 0.999, "--input-frac-bits", 8), "--input-range"),
    ):
        refused = verified(*options)
        assert refused.exit_code == 2 and named in refused.output and "Traceback" not in refused.output, refused.output


def test_verify_checks_labels_when_the_logits_cannot_be_released(bad_files, tmp_path):
    """Logits of about 2^31 may not be released (they could wrap the ring), labels can: `verify` checks the model
    for the labels-only release policy, as the pipeline's gate does, instead of refusing it."""
    x = np.ones((4, 2))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.zeros(4, dtype=np.int64))
    args = ("encrypted", "verify", bad_files / "wrap.keras", tmp_path / "x.npy", "--labels", tmp_path / "y.npy")
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["output"] == "label" and report["labels_only"].startswith("labels only: the logits can need")
    assert report["passed"] and report["decision_agreement"] == 1.0 and report["max_abs_error"] is None
    text = run(*args)
    assert text.exit_code == 0 and text.output.startswith("labels only:") and "PASS" in text.output


@pytest.fixture(scope="module")
def bad_files(saved, tmp_path_factory):
    """Files that are wrong in every way the commands should name."""
    import keras

    folder = tmp_path_factory.mktemp("bad")
    (folder / "garbage.keras").write_bytes(b"not a model")
    keras.Sequential([keras.layers.Dense(2)]).save(folder / "unbuilt.keras")
    wrap = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])  # logits of about 2^31 on inputs of 1
    wrap.set_weights([np.array([[2.0**30, 2.0**30], [1.0, -1.0]]), np.full(2, 2.0**30)])
    wrap.save(folder / "wrap.keras")
    np.save(folder / "wrong_shape.npy", np.zeros((2, 5)))
    np.save(folder / "nan.npy", np.array([[np.nan] * 64]))
    np.save(folder / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(folder / "outside.npy", np.full((2, 64), 5.0))
    np.save(folder / "float_labels.npy", np.full(20, 0.5))
    np.save(folder / "short_labels.npy", np.zeros(3))
    (folder / "text.csv").write_text("a,b,c\n")
    (folder / "corrupt.npz").write_bytes(b"PK\x03\x04 truncated")
    (folder / "a_folder").mkdir()
    for name, body in {
        "port": {"parties": [{"host": "127.0.0.1", "port": 70000}] * 3},
        "nested": {"parties": [[[[]]]]},
        "two": {"parties": [{"host": "h", "port": 1}] * 2},
    }.items():
        (folder / name).mkdir()
        (folder / name / "deployment.json").write_text(json.dumps(body))
    dep = folder / "dep"
    assert run("encrypted", "setup", "--out", dep).exit_code == 0
    assert (
        run("encrypted", "share-model", saved[0] / "model.keras", "--deployment", dep, "--input-range", 0, 1).exit_code
        == 0
    )
    (dep / "party-1" / "broken.npz").write_bytes(b"garbage")
    return folder


def test_share_model_half_open_writes_the_checked_bounds(saved, tmp_path):
    """`share-model --input-range 0 1 --input-frac-bits 4 --half-open`: the bundles (and so what the parties tell
    clients) hold [0, 15/16], checked with one comparison of 4 bits per value."""
    from privacy.encrypted.model.ring import as_signed
    from privacy.encrypted.protocol.input_check import residues_per_value
    from privacy.encrypted.protocol.model_shares import PartyModel

    dep = tmp_path / "dep"
    assert run("encrypted", "setup", "--out", dep).exit_code == 0
    args = ("--input-range", 0, 1, "--input-frac-bits", 4, "--half-open")
    result = run("encrypted", "share-model", saved[0] / "model.keras", "--deployment", dep, *args)
    assert result.exit_code == 0, result.output
    model = PartyModel.load(str(dep / "party-2" / "model.npz"))
    assert model.public_info()["ranges"]["input_bounds"] == {"lo": 0.0, "hi": 0.9375, "frac_bits": 4, "half_open": True}
    lo, hi = model.ranges.input_bounds.encoded(model.fixed)
    assert as_signed(hi).max() == 15 and residues_per_value(lo, hi) == 4


@pytest.mark.parametrize("choice", [(), ("--input-check", "widened"), ("--input-check", "exact")])
def test_share_model_says_which_bounds_the_servers_check_and_the_bundles_record_both(saved, tmp_path, choice):
    """By default (and with --input-check widened) [0, 1] at 8 bits is served with the servers checking the window
    [-127/256, 1.5] (one comparison of 9 bits), recorded beside the declared bounds and printed; --input-check exact
    keeps [0, 1] (two comparisons) and records no checked bounds."""
    from pipelines.cli.encrypted import INPUT_CHECKS as CLI_CHOICES
    from privacy.encrypted.model.ranges import INPUT_CHECKS
    from privacy.encrypted.protocol.input_check import residues_per_value
    from privacy.encrypted.protocol.model_shares import PartyModel

    assert CLI_CHOICES == INPUT_CHECKS
    dep = tmp_path / "dep"
    assert run("encrypted", "setup", "--out", dep).exit_code == 0
    args = ("--input-range", 0, 1, "--input-frac-bits", 8, *choice)
    result = run("encrypted", "share-model", saved[0] / "model.keras", "--deployment", dep, *args)
    assert result.exit_code == 0, result.output
    info = PartyModel.load(str(dep / "party-1" / "model.npz")).public_info()["ranges"]
    assert info["input_bounds"] == {"lo": 0.0, "hi": 1.0, "frac_bits": 8}
    model = PartyModel.load(str(dep / "party-2" / "model.npz"))
    if "exact" in choice:
        assert "checked_bounds" not in info and "input_check_fallback" not in info
        assert result.output.strip().splitlines()[-1] == "the servers check the declared input bounds [0.0, 1.0]"
        assert residues_per_value(*model.ranges.server_bounds.encoded(model.fixed)) == 2 * 9 + 1
    else:
        assert info["checked_bounds"] == {"lo": -127 / 256, "hi": 1.5, "frac_bits": 8}
        assert "widened to [-0.49609375, 1.5] (one comparison per value)" in result.output.strip().splitlines()[-1]
        assert residues_per_value(*model.ranges.server_bounds.encoded(model.fixed)) == 9


def test_share_model_says_when_the_servers_fall_back_to_the_exact_check(tmp_path):
    """A model sized so [0, 1] passes the analysis and its window [-0.5 + 2^-16, 1.5] does not (a hidden truncation
    of 53 bits over [0, 1], 54 over the window: re-run probability 2^-9, above the limit): share-model succeeds,
    prints that the servers check [0, 1] exactly and why, and the bundles record the reason, not a window."""
    import keras

    from privacy.encrypted.protocol.model_shares import PartyModel

    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, activation="relu"), keras.layers.Dense(1)])
    model.set_weights([np.array([[0.8 * 2**21]]), np.zeros(1), np.ones((1, 1)), np.zeros(1)])
    model.save(tmp_path / "edge.keras")
    dep = tmp_path / "dep"
    assert run("encrypted", "setup", "--out", dep).exit_code == 0
    result = run("encrypted", "share-model", tmp_path / "edge.keras", "--deployment", dep, "--input-range", 0, 1)
    assert result.exit_code == 0, result.output
    said = result.output.strip().splitlines()[-1]
    assert said.startswith("the servers check the declared input bounds [0.0, 1.0] exactly: ") and "re-run" in said
    info = PartyModel.load(str(dep / "party-0" / "model.npz")).public_info()["ranges"]
    assert "checked_bounds" not in info and "re-run" in info["input_check_fallback"]


def test_share_model_with_a_constant_calibrated_feature_checks_the_declared_bounds_exactly(saved, tmp_path):
    """Calibration bounds from digits whose border pixels are 0 in every example: the widened window (one width, from
    the widest span) would hold far more than twice a constant pixel's one value, so the servers check the declared
    bounds exactly; share-model prints why, naming the first such pixel (the public reason: no counts), and the
    bundles record it instead of a window."""
    from privacy.encrypted.protocol.model_shares import PartyModel

    folder, _, x = saved
    spans = x.max(0) - x.min(0)
    assert spans.min() == 0 and spans.max() >= 2 / 16
    first = int(np.argmin(spans))  # the first constant pixel
    dep = tmp_path / "dep"
    assert run("encrypted", "setup", "--out", dep).exit_code == 0
    args = ("--calibration", folder / "x.npy", "--input-frac-bits", 4)
    result = run("encrypted", "share-model", folder / "model.keras", "--deployment", dep, *args)
    assert result.exit_code == 0, result.output
    reason = (
        f"over the widened bounds feature ({first},) would hold more than twice the grid values declared for it "
        "(declared spans differ too much; equal spans keep the widened check)"
    )
    lo, hi = (f"{float(b.min())!r} to {float(b.max())!r} per feature" for b in (x.min(0), x.max(0)))
    said = result.output.strip().splitlines()[-1]
    assert said == f"the servers check the declared input bounds [{lo}, {hi}] exactly: {reason}"
    info = PartyModel.load(str(dep / "party-0" / "model.npz")).public_info()["ranges"]
    assert "checked_bounds" not in info and info["input_check_fallback"] == reason


def test_reshare_renews_the_three_bundles_in_place(saved, tmp_path):
    """`reshare` after `share-model`: the three files get one new model id (echoed), stay mode 0600 and reload."""
    import os
    import stat

    from privacy.encrypted.protocol.model_shares import PartyModel

    dep = tmp_path / "dep"
    assert run("encrypted", "setup", "--out", dep).exit_code == 0
    assert (
        run("encrypted", "share-model", saved[0] / "model.keras", "--deployment", dep, "--input-range", 0, 1).exit_code
        == 0
    )
    paths = [dep / f"party-{i}" / "model.npz" for i in range(3)]
    old = PartyModel.load(str(paths[0])).model_id
    result = run("encrypted", "reshare", "--deployment", dep)
    ids = {PartyModel.load(str(path)).model_id for path in paths}
    assert result.exit_code == 0 and len(ids) == 1 and old not in ids and ids.pop() in result.output
    assert all(stat.S_IMODE(os.stat(path).st_mode) == 0o600 for path in paths)


def test_a_bundle_with_weight_shares_its_architecture_lacks_is_refused_so_reshare_exits_2(tmp_path):
    """Extra weight arrays in party 0's bundle (a layer its architecture does not have) are refused when it is
    loaded: `ppml encrypted reshare` then exits 2 naming --deployment, where it stopped with a KeyError
    traceback on the layer the other bundles lack; nothing is written."""
    from privacy.encrypted.model.plan import Architecture, Dense, ModelPlan
    from privacy.encrypted.model.ranges import InputBounds
    from privacy.encrypted.model.ring import FixedPoint
    from privacy.encrypted.network.processes import model_path, save_model_shares
    from privacy.encrypted.protocol.model_shares import PartyModel

    plan = ModelPlan(Architecture((3,), (Dense("out", 2),)), {"out": (np.ones((3, 2)), np.zeros(2))})
    for i in range(3):
        os.makedirs(os.path.dirname(model_path(str(tmp_path), i)))
    paths = save_model_shares(plan, str(tmp_path), FixedPoint(16), InputBounds.declared(0, 1, (3,)))
    with np.load(paths[0]) as data:
        arrays = dict(data)
    arrays.update({f"ghost/{part}/{c}": np.zeros(2, np.uint64) for part in ("kernel", "bias") for c in "ab"})
    np.savez(paths[0], **arrays)
    with pytest.raises(ValueError, match=r"weight shares for layers its architecture lacks: \['ghost'\]"):
        PartyModel.load(paths[0])
    before = [open(path, "rb").read() for path in paths]
    result = run("encrypted", "reshare", "--deployment", tmp_path)
    assert result.exit_code == 2 and "--deployment" in result.output and "ghost" in result.output, result.output
    assert [open(path, "rb").read() for path in paths] == before


BAD = [  # (command line, the option or argument the one-line error must name)
    ("setup --valid-days 1000000", "--valid-days"),
    ("setup --valid-days inf", "--valid-days"),
    ("setup --party localhost", "--party"),
    ("setup --party 127.0.0.1:70000", "--party"),
    ("setup --party 127.0.0.1:1 --party 127.0.0.1:2", "--party"),
    ("setup --client 'bad name!'", "--client"),
    ("setup --out {bad}/garbage.keras", "--out"),
    ("share-model {bad}/missing.keras --input-range 0 1", "MODEL"),
    ("share-model {saved}/model.keras", "--input-range"),
    ("share-model {saved}/model.keras --input-range 0 1 --calibration {saved}/x.npy", "--calibration"),
    ("share-model {saved}/model.keras --input-range 1 0", "--input-range"),
    ("share-model {saved}/model.keras --input-range nan 1", "--input-range"),
    ("share-model {saved}/model.keras --input-range 0 1e300", "--input-range"),
    ("share-model {bad}/garbage.keras --input-range 0 1", "MODEL"),
    ("share-model {bad}/unbuilt.keras --input-range 0 1", "MODEL"),
    ("share-model {saved}/model.keras --input-range 0 1 --frac-bits 40", "--frac-bits"),
    ("share-model {saved}/model.keras --input-range 0 1 --input-frac-bits 17", "--input-frac-bits"),
    ("share-model {saved}/model.keras --input-range 0 1 --input-frac-bits -1", "--input-frac-bits"),
    ("share-model {saved}/model.keras --input-range 0.3 1 --input-frac-bits 0", "--input-range"),
    ("share-model {saved}/model.keras --input-range 0.10000076293945313 0.10000381469726563", "--input-range"),
    ("share-model {saved}/model.keras --calibration {saved}/x.npy --half-open", "--half-open"),
    ("share-model {saved}/model.keras --input-range 0 0.75 --half-open", "--half-open"),
    ("share-model {saved}/model.keras --input-range 0 1 --input-frac-bits 0 --half-open", "--half-open"),
    ("verify {saved}/model.keras {saved}/x.npy --input-range 0 0.75 --half-open", "--half-open"),
    ("share-model {saved}/model.keras --input-range 0 1 --half-open --input-check exact", "--half-open"),
    ("verify {saved}/model.keras {saved}/x.npy --input-range 0 1 --half-open --input-check widened", "--half-open"),
    ("share-model {saved}/model.keras --input-range 0 1 --input-check closed", "--input-check"),
    ("share-model {saved}/model.keras --calibration {saved}/x.npy --input-check half-open", "--input-check"),
    ("share-model {saved}/model.keras --input-range 0 0.75 --input-check half-open", "--input-check"),
    ("verify {saved}/model.keras {saved}/x.npy --input-check half-open", "--input-check"),
    ("share-model {saved}/model.keras --calibration {bad}/missing.npy", "--calibration"),
    ("share-model {saved}/model.keras --calibration {bad}/wrong_shape.npy", "--calibration"),
    ("share-model {bad}/wrap.keras --input-range 1 1 --allow-logits --deployment {bad}/dep", "--allow-logits"),
    ("serve --party 0 --deployment {bad}/dep --timeout inf", "--timeout"),
    ("serve --party 0 --deployment {bad}/dep --timeout -1", "--timeout"),
    ("serve --party 0 --deployment {bad}/dep --idle-timeout nan", "--idle-timeout"),
    ("serve --party 3 --deployment {bad}/dep", "--party"),
    ("serve --party 0 --deployment {bad}/nowhere", "--deployment"),
    ("reshare --deployment {bad}/nowhere", "--deployment"),
    ("serve --party 0 --deployment {bad}/port", "--deployment"),
    ("serve --party 0 --deployment {bad}/nested", "--deployment"),
    ("serve --party 0 --deployment {bad}/two", "--deployment"),
    ("serve --party 1 --deployment {bad}/dep --model {bad}/dep/party-1/broken.npz", "--model"),
    ("serve --party 1 --deployment {bad}/dep --model {bad}/dep/party-0/model.npz", "--model"),
    ("serve --party 0 --deployment {bad}/dep --memory-budget 0", "--memory-budget"),
    ("predict --input {bad}/missing.npy --deployment {bad}/dep", "--input"),
    ("predict --input {bad}/text.csv --deployment {bad}/dep", "--input"),
    ("predict --input {bad}/nan.npy --deployment {bad}/dep", "--input"),
    ("predict --input {bad}/objects.npy --deployment {bad}/dep", "--input"),
    ("predict --input {bad}/corrupt.npz --deployment {bad}/dep", "--input"),
    ("predict --input {bad}/a_folder --deployment {bad}/dep", "--input"),
    ("predict --input {saved}/x.npy --deployment {bad}/dep --out {bad}/a_folder", "--out"),
    ("predict --input {saved}/x.npy --deployment {bad}/dep --timeout inf", "--timeout"),
    ("predict --input {saved}/x.npy --deployment {bad}/dep --timeout nan", "--timeout"),
    ("predict --input {saved}/x.npy --deployment {bad}/nowhere", "--deployment"),
    ("predict --input {saved}/x.npy --deployment {bad}/dep --client nobody", "--client"),
    ("verify {saved}/model.keras {bad}/missing.npy", "DATA"),
    ("verify {saved}/model.keras {bad}/wrong_shape.npy", "DATA"),
    ("verify {saved}/model.keras {bad}/outside.npy --input-range 0 1", "DATA"),
    ("verify {bad}/garbage.keras {saved}/x.npy", "MODEL"),
    ("verify {saved}/model.keras {saved}/x.npy --labels {bad}/float_labels.npy", "--labels"),
    ("verify {saved}/model.keras {saved}/x.npy --labels {bad}/short_labels.npy", "--labels"),
    ("verify {saved}/model.keras {saved}/x.npy --batch-size 0", "--batch-size"),
    ("verify {saved}/model.keras {saved}/x.npy --n 0", "--n"),
    ("verify {saved}/model.keras {saved}/x.npy --min-agreement 2", "--min-agreement"),
    ("verify {saved}/model.keras {saved}/x.npy --min-agreement nan", "--min-agreement"),
    ("verify {saved}/model.keras {saved}/x.npy --max-accuracy-drop nan", "--max-accuracy-drop"),
    ("verify {saved}/model.keras {saved}/x.npy --max-accuracy-drop inf", "--max-accuracy-drop"),
    ("verify {saved}/model.keras {saved}/x.npy --input-range 1 0", "--input-range"),
    ("verify {saved}/model.keras {saved}/x.npy --input-range 0 1e300", "--input-range"),  # beyond the ring
    ("verify {saved}/model.keras {saved}/x.npy --input-range -1e6 1e6", "--input-range"),  # overflows inside
    ("bench --batch 0", "--batch"),
    ("bench --batch 1000000000", "--batch"),
    ("bench --repeats 0", "--repeats"),
    ("bench --model resnet", "--model"),
    ("add-client 'bad name!' --deployment {bad}/dep", "NAME"),
    ("add-client client --deployment {bad}/dep", "NAME"),
    ("add-client carol --deployment {bad}/nowhere", "--deployment"),
    ("revoke-client nobody --deployment {bad}/dep", "NAME"),
]


@pytest.mark.parametrize("line, option", BAD, ids=[line for line, _ in BAD])
def test_bad_inputs_end_in_one_line_naming_the_option(saved, bad_files, line, option):
    import shlex

    before = sorted(p for p in bad_files.rglob("*"))
    args = shlex.split(line.format(saved=saved[0], bad=bad_files))
    result = CliRunner().invoke(cli, ["encrypted"] + args)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    error = result.output.strip().splitlines()[-1]
    assert error.startswith("Error: ") and option in error, error
    assert result.stderr.count("\n") == 1, result.stderr  # that line only
    assert sorted(p for p in bad_files.rglob("*")) == before  # nothing written


def test_bench_prints_a_table():
    result = run("encrypted", "bench", "--model", "mlp", "--batch", "1", "--repeats", "1")
    assert result.exit_code == 0
    assert "mlp    in-process       1" in result.output
