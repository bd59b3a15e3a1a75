"""`ppml pipeline run` and `ppml report` before any pipeline runs: every setting checked into one plan without
importing TFX, bad input in one line naming the option, the flag glossary's old spellings, one run per root."""

import inspect
import json
import math
import os
import subprocess
import sys
import textwrap
import time

import pytest
from click.testing import CliRunner

from pipelines.cli import pipeline as pipeline_cli
from pipelines.cli.main import cli
from pipelines.root_lock import LOCK_FILE, exclusive_root
from tests.privacy.accounting.test_noise_cutoff import largest_clip_recomputed

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
HEAVY = ("tfx", "tensorflow", "apache_beam", "tensorflow_model_analysis", "ml_metadata")


def invoke(*args):
    return CliRunner().invoke(cli, list(args))


def test_a_bad_setting_is_refused_without_importing_tfx(tmp_path):
    root = tmp_path / "root"
    code = textwrap.dedent(f"""
        import atexit, sys
        atexit.register(lambda: print("LOADED", [m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr))
        from pipelines.cli.main import cli
        cli(["pipeline", "run", "--target-epsilon", "-1", "--pipeline-root", {str(root)!r}])
    """)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    seconds = time.monotonic() - start
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, proc.stderr
    assert lines[0].startswith("Error: Invalid value for '--target-epsilon'") and "got -1.0" in lines[0]
    assert lines[1:] == ["LOADED []"]
    assert not root.exists() and seconds < 10


BAD_RUN_OPTIONS = [
    (["--target-epsilon", "-1"], "--target-epsilon"),
    (["--target-epsilon", "0"], "--target-epsilon"),
    (["--target-epsilon", "nan"], "--target-epsilon"),
    (["--target-epsilon", "inf"], "--target-epsilon"),
    (["--target-epsilon", "three"], "--target-epsilon"),
    (["--noise-multiplier", "-0.5", "--preprocessing-epsilon", "1"], "--noise-multiplier"),
    (["--noise-multiplier", "nan", "--preprocessing-epsilon", "1"], "--noise-multiplier"),
    (["--noise-multiplier", "1e7", "--preprocessing-epsilon", "1"], "--noise-multiplier"),  # above its range
    (["--noise-multiplier", "1e40", "--preprocessing-epsilon", "1"], "--noise-multiplier"),  # not the clip's fault
    (["--target-delta", "1.5"], "--target-delta"),
    (["--target-delta", "0"], "--target-delta"),
    (["--target-delta", "nan"], "--target-delta"),
    (["--epochs", "0"], "--epochs"),
    (["--epochs", "inf"], "--epochs"),
    (["--epochs", "x"], "--epochs"),
    (["--batch-size", "0"], "--batch-size"),
    (["--batch-size", "1.5"], "--batch-size"),
    (["--l2-norm-clip", "nan"], "--l2-norm-clip"),
    (["--l2-norm-clip", "-1"], "--l2-norm-clip"),
    (["--l2-norm-clip", "1e-33"], "--l2-norm-clip"),  # sigma C / B below float32's noise range at sigma = 0.05
    (["--trainer-config", '{"l2_norm_clip": 1e-33}'], "--l2-norm-clip"),
    (
        ["--l2-norm-clip", "1e36", "--noise-multiplier", "1000", "--batch-size", "8", "--preprocessing-epsilon", "1"],
        "--l2-norm-clip",
    ),
    (["--l2-norm-clip", "2.48e27"], "--l2-norm-clip"),  # beyond the largest (2.4757e27): a step's sum could overflow
    (["--trainer-config", '{"l2_norm_clip": 1e30}'], "--l2-norm-clip"),
    (["--num-microbatches", "0"], "--num-microbatches"),
    (["--sampling", "random"], "--sampling"),
    (["--trainer", "sgd"], "--trainer"),
    (["--trainer-config", "{not json"], "--trainer-config"),
    (["--trainer-config", "[1, 2]"], "--trainer-config"),
    (["--trainer-config", '{"bach_size": 3}'], "--trainer-config"),
    (["--preprocessing-share", "0"], "--preprocessing-share"),
    (["--preprocessing-share", "1.5"], "--preprocessing-share"),
    (["--preprocessing-epsilon", "-1"], "--preprocessing-epsilon"),
    (["--epsilon-budget", "0"], "--epsilon-budget"),
    (["--epsilon-budget", "inf"], "--epsilon-budget"),
    (["--epsilon-budget", "nan"], "--epsilon-budget"),
    (["--delta-budget", "1"], "--delta-budget"),
    (["--max-membership-auc", "1.5"], "--max-membership-auc"),
    (["--max-membership-auc", "nan"], "--max-membership-auc"),
    (["--min-accuracy", "-0.1"], "--min-accuracy"),
    (["--min-accuracy", "nan"], "--min-accuracy"),
    (["--privacy-unit", "person"], "--privacy-unit"),
    (["--budget-adjacency", "swap"], "--budget-adjacency"),
    (["--budget-adjacency", "replace-one"], "--budget-adjacency"),  # DP-SGD's Poisson sampling: add-remove
    (["--budget-adjacency", "add-remove", "--sampling", "shuffle"], "--budget-adjacency"),  # replace-one
    (["--trainer", "federated", "--privacy-unit", "client", "--budget-adjacency", "add-remove"], "--budget-adjacency"),
    (["--trainer", "pate", "--budget-adjacency", "replace-one"], "--budget-adjacency"),
    (  # the Trainer calibrates z for its client-level figure, the gate checks a record-level one
        [
            "--trainer",
            "federated",
            "--trainer-config",
            '{"max_examples_per_client": 90, "budget_unit": "client"}',
            "--budget-adjacency",
            "replace-one",
        ],
        "--budget-adjacency",
    ),
    (  # the Trainer would calibrate z for the add-remove figure, the gate checks the replaced-record one
        [
            "--trainer",
            "federated",
            "--trainer-config",
            '{"max_examples_per_client": 90, "budget_unit": "example", "budget_adjacency": "add-remove"}',
            "--budget-adjacency",
            "replace-one",
        ],
        "--budget-adjacency",
    ),
    (["--encrypted-examples", "0"], "--encrypted-examples"),
    (["--runner", "flink"], "--runner"),
    (["--trainer", "federated", "--batch-size", "8"], "--batch-size"),
    (["--trainer", "federated", "--encrypted-check"], "encrypted check"),
    (["--delta", "1e-5", "--target-delta", "1e-5"], "--delta"),
    (["--truncated-batch-size", "31"], "--truncated-batch-size"),  # below B = 32
    (["--truncated-batch-size", "many"], "--truncated-batch-size"),
    (["--truncated-batch-size", "40", "--sampling", "shuffle"], "--truncated-batch-size"),
    (["--truncated-batch-size", "40", "--num-microbatches", "4"], "--truncated-batch-size"),
    (["--truncated-batch-size", "40", "--no-dp"], "--truncated-batch-size"),
    (["--truncated-batch-size", "40", "--trainer-config", '{"accountant": "rdp"}'], "--trainer-config"),
    (["--trainer", "federated", "--truncated-batch-size", "40"], "--truncated-batch-size"),
    (["--trainer-config", '{"batch_size_noise_multiplier": 3}'], "'batch_size_noise_multiplier'"),  # no skip_padding
    (
        ["--trainer-config", '{"skip_padding": true, "batch_size_noise_multiplier": 3}', "--sampling", "fixed"],
        "'batch_size_noise_multiplier'",
    ),
    (["--trainer-config", '{"skip_padding": true}', "--no-dp"], "'skip_padding'"),
    (["--trainer", "pate", "--target-epsilon", "3"], "--target-epsilon"),
    (["--trainer", "pate", "--noise-multiplier", "1"], "--noise-multiplier"),
    (["--trainer", "pate", "--preprocessing-share", "0.5"], "--preprocessing-share"),
    (["--trainer", "pate", "--preprocessing-epsilon", "1"], "preprocessing_epsilon"),
    (["--trainer", "pate", "--epochs", "3"], "--epochs"),
    (["--trainer", "pate", "--no-dp"], "--dp"),
    (["--trainer", "pate", "--encrypted-check"], "encrypted_check"),
    (["--trainer", "pate", "--compare-non-private"], "compare_non_private"),
    (["--trainer", "pate", "--privacy-unit", "user"], "--privacy-unit"),
    (["--trainer", "pate", "--target-delta", "2"], "--target-delta"),
    (["--trainer", "pate", "--trainer-config", '{"teachers": 1}'], "'teachers'"),
    (["--trainer", "pate", "--trainer-config", '{"teachers": 200000}'], "'teachers'"),
    (["--trainer", "pate", "--trainer-config", '{"sigma": 0}'], "'sigma'"),
    (["--trainer", "pate", "--trainer-config", '{"sigma1": -1}'], "'sigma1'"),
    (["--trainer", "pate", "--trainer-config", '{"sigma": 1e9}'], "'sigma'"),
    (["--trainer", "pate", "--trainer-config", '{"threshold": "nan"}'], "'threshold'"),
    (["--trainer", "pate", "--trainer-config", '{"max_answered": 0}'], "'max_answered'"),
    (["--trainer", "pate", "--trainer-config", '{"aggregator": "lnmax"}'], "'aggregator'"),
    (["--trainer", "pate", "--trainer-config", '{"aggregator": "gnmax", "sigma1": 2}'], "'sigma1'"),
    (["--trainer", "pate", "--trainer-config", '{"public_split": "train"}'], "'public_split'"),
    (["--trainer", "pate", "--trainer-config", '{"public_split": "eval"}'], "'public_split'"),
    (["--trainer", "pate", "--trainer-config", '{"holder_key": "mean_radius"}'], "'feature_keys'"),
    (["--trainer", "pate", "--trainer-config", '{"holder_key": "id"}'], "--privacy-unit"),
    (["--trainer", "pate", "--trainer-config", '{"holder_key": "id"}', "--privacy-unit", "user"], "min_accuracy"),
    (["--trainer", "pate", "--trainer-config", '{"sigmaa": 2}'], "did you mean 'sigma'"),
]


def test_truncated_batch_size_reaches_the_trainer_config_with_the_pld_accountant():
    """The side-by-side non-private Trainer drops it (it trains on shuffled batches)."""
    context = pipeline_cli.run.make_context("run", ["--truncated-batch-size", "default", "--compare-non-private"])
    plan_options = inspect.signature(pipeline_cli._plan).parameters
    plan = pipeline_cli._plan(**{k: v for k, v in context.params.items() if k in plan_options})
    assert plan.trainer_config["truncated_batch_size"] == "default" and plan.trainer_config["accountant"] == "pld"
    assert "truncated_batch_size" not in plan.non_private_trainer_config


def test_noisy_padding_reaches_the_private_trainer_config_only():
    """Through --trainer-config, as make_private names it; the side-by-side non-private Trainer drops both keys."""
    padding = {"skip_padding": True, "batch_size_noise_multiplier": 3.0}
    args = ["--trainer-config", json.dumps(padding), "--compare-non-private"]
    context = pipeline_cli.run.make_context("run", args)
    plan_options = inspect.signature(pipeline_cli._plan).parameters
    plan = pipeline_cli._plan(**{k: v for k, v in context.params.items() if k in plan_options})
    assert {k: plan.trainer_config[k] for k in padding} == padding
    assert not set(padding) & set(plan.non_private_trainer_config)


def test_the_budget_adjacency_reaches_the_gate_and_a_per_example_federated_trainer_calibrates_for_it():
    """--budget-adjacency is the gate's (the plan's) relation; a budget per example stated replace-one is met by a
    keyed Federated Trainer's replaced-record figure, so the Trainer calibrates z for that figure; a Trainer whose
    ledger accounts the relation (Poisson DP-SGD, add-remove) takes it as it is; without the flag nothing is set."""
    plan_options = inspect.signature(pipeline_cli._plan).parameters

    def plan_of(*args):
        with pipeline_cli.run.make_context("run", list(args)) as context:
            return pipeline_cli._plan(**{k: v for k, v in context.params.items() if k in plan_options})

    keyed = ("--trainer", "federated", "--trainer-config", '{"max_examples_per_client": 90}')
    federated = plan_of(*keyed, "--budget-adjacency", "replace-one")
    assert federated.gate.budget_adjacency == "replace-one"
    assert federated.trainer_config["budget_unit"] == "example"
    assert federated.trainer_config["budget_adjacency"] == "replace-one"
    assert "budget_adjacency" not in federated.non_private_trainer_config
    assert plan_of("--budget-adjacency", "add-remove").gate.budget_adjacency == "add-remove"
    assert plan_of(*keyed).gate.budget_adjacency is None and "budget_adjacency" not in plan_of(*keyed).trainer_config


@pytest.mark.parametrize("args, option", BAD_RUN_OPTIONS, ids=[" ".join(a) for a, _ in BAD_RUN_OPTIONS])
def test_bad_pipeline_run_options_are_one_line_exit_2_and_write_nothing(args, option, tmp_path, no_tfx):
    root = tmp_path / "root"
    result = invoke("pipeline", "run", *args, "--pipeline-root", str(root))
    assert result.exit_code == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("Error: ") and option in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not root.exists()


def test_a_clip_beyond_the_largest_is_refused_naming_the_flag(tmp_path, no_tfx):
    """--l2-norm-clip just above the largest a float32 step's noisy sum stays finite at (recomputed in
    test_noise_cutoff) is exit 2 in one line naming the flag and the largest, before TFX; the largest itself passes
    every check (the run would import TFX: `no_tfx` stops it there)."""
    largest = largest_clip_recomputed()
    for clip, refused in ((math.nextafter(largest, math.inf), True), (largest, False)):
        root = tmp_path / f"root-{refused}"
        result = invoke("pipeline", "run", "--l2-norm-clip", repr(clip), "--pipeline-root", str(root))
        if refused:
            assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1, result.stderr
            assert "'--l2-norm-clip'" in result.stderr and f"must be at most {largest!r}" in result.stderr
        else:
            assert "TFX would be imported" in str(result.exception), (result.exception, result.stderr)


def test_a_pipeline_root_that_cannot_be_a_folder_is_refused_in_one_line(tmp_path, no_tfx):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for root, exit_code in ((a_file, 2), (a_file / "sub", 2), ("/proc/ppml-root", 2)):
        result = invoke("pipeline", "run", "--pipeline-root", str(root))
        assert result.exit_code == exit_code, (root, result.stderr)
        assert len(result.stderr.splitlines()) == 1 and "'--pipeline-root'" in result.stderr, result.stderr
    assert a_file.read_text() == "x"


@pytest.mark.parametrize("content", [None, b"", b"not a database", b"SQLite format"])
def test_bad_report_roots_are_one_line(content, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    if content is not None:
        (root / "metadata.sqlite").write_bytes(content)
    result = invoke("report", "--pipeline-root", str(root))
    assert result.exit_code == (1 if content is None else 2), result.stderr
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    assert ("no ML Metadata" if content is None else "'--pipeline-root'") in result.stderr
    assert sorted(os.listdir(root)) == ([] if content is None else ["metadata.sqlite"])


def test_report_refuses_a_file_as_its_root(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    result = invoke("report", "--pipeline-root", str(a_file))
    assert result.exit_code == 2 and "'--pipeline-root'" in result.stderr and "is a file" in result.stderr


@pytest.mark.parametrize(
    "old, new, setting, value",
    [
        (["--delta", "1e-6"], ["--target-delta", "1e-6"], "delta", 1e-6),
        (["--no-private"], ["--no-dp"], "private", False),
        (["--private"], ["--dp"], "private", True),
    ],
)
def test_old_spellings_set_the_same_plan_and_warn(old, new, setting, value, monkeypatch):
    plans, resolve = [], pipeline_cli._plan

    def plan_only(**options):
        plans.append(resolve(**options))
        raise SystemExit(0)

    monkeypatch.setattr(pipeline_cli, "_plan", plan_only)
    old_name, new_name = (old[0], new[0]) if setting == "delta" else ("--private/--no-private", "--dp/--no-dp")
    with pytest.warns(DeprecationWarning, match=f"{old_name} is deprecated .*: use {new_name}$"):
        with_old = invoke("pipeline", "run", *old, "--pipeline-root", "unused")
    with_new = invoke("pipeline", "run", *new, "--pipeline-root", "unused")
    assert with_old.exit_code == with_new.exit_code == 0, (with_old.stderr, with_new.stderr)
    assert with_old.stderr.startswith(f"warning: {old_name} is deprecated") and with_new.stderr == ""
    assert plans[0] == plans[1] and plans[0].trainer_config.get(setting, True) == value


def test_the_delta_budgets_help_asks_1_01_x_the_target_of_float32_noise_only():
    """--delta-budget's help: a budget equal to the target delta refuses DP-SGD's float32 noise (its cut-off adds
    ~3e-15 at 1e-5) but not a small model's DP-FedAvg float64 noise (its cut-off is lost in rounding), so the help
    does not say every DP model needs 1.01 x."""
    import numpy as np

    from pipelines import privacy_ledger
    from pipelines.components.federated_trainer.spec import FederatedTrainingConfig
    from privacy import PrivacyBudget
    from privacy.accounting import DpSgdMechanism, NoiseDraws
    from privacy.accounting.noise_cutoff import sampler_radius

    help_text = " ".join(invoke("pipeline", "run", "--help").output.split())
    option = help_text[help_text.index("--delta-budget FLOAT") : help_text.index("--privacy-unit")].replace("- ", "-")
    assert "a budget equal to the target refuses a cut-off that adds anything a float holds" in option
    assert "as DP-SGD's float32 noise's does: give 1.01 x it" in option and "needs" not in option
    m = DpSgdMechanism(dataset_size=60_000, batch_size=256, noise_multiplier=1.1, steps=1000)
    dp_sgd = privacy_ledger.PrivacyLedger.for_dp_sgd(
        m, l2_norm_clip=1.0, delta=1e-5, noise_draws=NoiseDraws(sampler_radius("float32"), 5000)
    )
    assert 1e-5 < dp_sgd.delta <= 1.01e-5
    settings = {"label_key": "y", "num_clients": 10, "rounds": 2, "private": True, "target_epsilon": 3.0}
    plan = FederatedTrainingConfig.for_trainer({**settings, "num_classes": 2}).plan(10)
    fm = plan.mechanism
    budget = PrivacyBudget.for_mechanism(fm, plan.delta).compose(fm.unit_event(), fm.units())
    draws = plan.strategy().noise_draws([np.zeros((5, 3)), np.zeros(3)])
    fedavg = plan.ledger(budget, rounds=2, trainer={}, noise_draws=draws)
    assert draws.radius == sampler_radius("float64") and 0 < fedavg.cutoff_delta and fedavg.delta == plan.delta


def test_help_names_the_glossary_and_hides_the_old_spellings():
    help_text = invoke("pipeline", "run", "--help").output
    assert "--target-delta" in help_text and "--dp / --no-dp" in help_text
    assert "Total passes over the training data" in help_text and "local epochs" in help_text
    assert "--delta " not in help_text and "--private" not in help_text


LOCKED_RUN = """
import sys, time
from pipelines.root_lock import exclusive_root
with exclusive_root(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_second_run_on_a_held_root_is_one_line_and_a_killed_holder_leaves_no_stale_lock(tmp_path):
    root = tmp_path / "root"
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCKED_RUN, str(root)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                "from pipelines.cli.main import cli; cli()",
                "pipeline",
                "run",
                "--pipeline-root",
                str(root),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.splitlines() == [
            f"Error: {root} is in use by another `ppml pipeline run` (pid "
            f"{holder.pid}); wait for it to end or give another --pipeline-root"
        ]
        assert sorted(os.listdir(root)) == [LOCK_FILE]  # the second run wrote nothing
    finally:
        holder.kill()  # SIGKILL: the kernel releases the lock
        holder.wait()
    with exclusive_root(str(root)):
        assert (root / LOCK_FILE).read_text() == f"{os.getpid()}\n"


def test_the_pipeline_root_and_what_the_run_writes_are_owner_only(tmp_path, monkeypatch):
    """`ppml pipeline run` creates its root 0700 and runs with umask 077 (whatever the caller's), so TFX's files
    are 0600; an existing root open to others is closed with a one-line warning; compile does the same to a local
    root."""
    written = {}

    def fake_tfx():  # stands in for the run: what it writes under the root, with the process' umask
        path = os.path.join(written["root"], "Stage", "out")
        os.makedirs(os.path.dirname(path))
        with open(path, "w") as f:
            f.write("exact statistics")
        raise AssertionError("stop before TFX")

    monkeypatch.setattr(pipeline_cli, "import_tfx", fake_tfx)
    previous = os.umask(0o022)
    try:
        for root, existing_mode in ((tmp_path / "new", None), (tmp_path / "old", 0o755)):
            if existing_mode is not None:
                root.mkdir(mode=existing_mode)
                root.chmod(existing_mode)
            written["root"] = str(root)
            result = CliRunner().invoke(cli, ["pipeline", "run", "--pipeline-root", str(root)])
            assert isinstance(result.exception, AssertionError), result.output
            assert ("readable by others (mode 755)" in result.output) == (existing_mode is not None), result.output
            modes = {
                os.path.relpath(os.path.join(d, n), root): os.stat(os.path.join(d, n)).st_mode & 0o777
                for d, dirs, files in os.walk(root)
                for n in dirs + files
            }
            assert os.stat(root).st_mode & 0o777 == 0o700
            assert modes == {"Stage": 0o700, os.path.join("Stage", "out"): 0o600, LOCK_FILE: 0o600}, modes
        assert os.umask(0o022) == 0o022  # the caller's umask is back after the run
        compiled = tmp_path / "compiled"
        monkeypatch.setattr(pipeline_cli, "import_tfx", lambda: (_ for _ in ()).throw(AssertionError("stop")))
        CliRunner().invoke(
            cli,
            [
                "pipeline",
                "compile",
                "--kubeflow-v2",
                str(tmp_path / "p.json"),
                "--pipeline-root",
                str(compiled),
                "--data-root",
                str(tmp_path),
                "--serving-model-dir",
                "gs://b/s",
            ],
        )
        assert os.stat(compiled).st_mode & 0o777 == 0o700
    finally:
        os.umask(previous)


def test_several_pushed_models_of_one_root_are_said_to_compose(tmp_path):
    """serving_model/ keeps every pushed version: with two, the run warns that their epsilons add up."""
    from pipelines.plan import PipelineLayout

    layout = PipelineLayout(str(tmp_path))
    assert layout.composition_warning() is None  # no serving_model yet
    os.makedirs(os.path.join(layout.serving_model_dir, "1796505722"))
    assert layout.composition_warning() is None  # one model: its ledger is the whole story
    os.makedirs(os.path.join(layout.serving_model_dir, "1796509999"))
    warning = layout.composition_warning()
    assert "holds 2 pushed models" in warning and "epsilons add up" in warning and "1796505722" in warning


def test_ppml_minimize_writes_its_root_owner_only_too(tmp_path, monkeypatch):
    """`ppml minimize` copies the raw tickets into its root and runs ExampleGen there: root 0700, files 0600."""

    def stop():
        raise AssertionError("stop before TFX")

    monkeypatch.setattr(pipeline_cli, "import_tfx", stop)
    previous = os.umask(0o022)
    try:
        root = tmp_path / "minimize"
        result = CliRunner().invoke(cli, ["minimize", "--scrub-pii", "--pipeline-root", str(root)])
        assert isinstance(result.exception, AssertionError), result.output
    finally:
        os.umask(previous)
    open_to_others = [
        os.path.join(d, n)
        for d, dirs, files in os.walk(root)
        for n in dirs + files
        if os.stat(os.path.join(d, n)).st_mode & 0o077
    ]
    assert os.stat(root).st_mode & 0o777 == 0o700 and open_to_others == [], open_to_others
    assert os.listdir(os.path.join(root, "data"))  # the raw copy was written, owner-only


FAILING_TRAINER = """
import sys
from types import SimpleNamespace
from pipelines.cli import pipeline as pipeline_cli
from pipelines.cli.main import cli
RECORD = "17.99,10.38,122.8,1001.0,0.1184"

def run(tfx_pipeline, runner, progress):
    progress(SimpleNamespace(stage="Trainer", state="running", index=6, total=8, seconds=0.0))
    raise ValueError(f"could not convert row {RECORD!r} to float")

module = SimpleNamespace(bundled_pipeline=lambda root, plan, enable_cache: None)
pipeline_cli.import_tfx = lambda: (module, SimpleNamespace(run=run))
cli(["pipeline", "run", *sys.argv[1:]])
"""


def test_a_failing_stage_of_a_private_run_prints_no_record_value(tmp_path, python_subprocess):
    """A Trainer failure whose message quotes a training record, in a real process: under --dp the terminal gets
    the stage, the exception type and the owner-only log's path, never the value (the log keeps the message and
    traceback); --no-dp prints the message as before."""
    record = "17.99,10.38,122.8,1001.0,0.1184"
    for flag, shown in (("--dp", False), ("--no-dp", True)):
        root = tmp_path / flag.strip("-")
        argv = [flag, "--pipeline-root", str(root)]
        proc = python_subprocess(f"import sys; sys.argv[1:] = {argv!r}\n" + FAILING_TRAINER, check=False)
        terminal = proc.stdout + proc.stderr
        assert proc.returncode == 1, terminal
        [line] = [line for line in terminal.splitlines() if line.startswith("Error: ")]
        assert line.startswith("Error: Trainer failed: ValueError"), terminal
        assert (record in terminal) == shown and "Traceback" not in terminal, terminal
        [log] = (root / "logs").iterdir()
        assert f"full log in {log}" in terminal and os.stat(log).st_mode & 0o077 == 0
        assert record in log.read_text() and "Traceback" in log.read_text()
        if not shown:
            assert "message withheld here under --dp: it may quote training records" in line, line


def _schema(path, columns, kinds=None):
    kinds = kinds or {}
    path.write_text("".join(f'feature {{ name: "{c}" type: {kinds.get(c, "FLOAT")} }}\n' for c in columns))
    return str(path)


def test_a_schema_file_is_checked_before_tfx_and_reaches_the_pipeline(tmp_path, monkeypatch):
    """--schema-file: a schema typing every bundled column reaches the plan the pipeline is built from (which then
    imports it instead of inferring it, test_federated_trainer) and declares the DP Trainer's schema public; a
    missing, unparsable or incomplete one, or one typing a numeric column BYTES, is one line naming the option,
    exit 2, before TFX is imported."""
    columns = pipeline_cli._bundled_columns()
    built = {}

    def fake_tfx():
        def bundled_pipeline(root, plan, enable_cache):
            built["plan"] = plan
            raise AssertionError("stop before TFX")

        return type("Module", (), {"bundled_pipeline": staticmethod(bundled_pipeline)}), None

    monkeypatch.setattr(pipeline_cli, "import_tfx", fake_tfx)
    good = _schema(tmp_path / "good.pbtxt", columns, {columns[-1]: "INT"})
    result = CliRunner().invoke(cli, ["pipeline", "run", "--schema-file", good, "--pipeline-root", str(tmp_path / "r")])
    assert isinstance(result.exception, AssertionError), result.output
    assert built["plan"].schema_file == good and built["plan"].trainer_config["public_schema"] is True

    def refuse():
        raise AssertionError("the settings passed the checks: TFX would be imported")

    monkeypatch.setattr(pipeline_cli, "import_tfx", refuse)
    (tmp_path / "broken.pbtxt").write_text("feature { name: ")
    cases = {
        str(tmp_path / "none.pbtxt"): "no file",
        str(tmp_path / "broken.pbtxt"): "is not a tf.metadata Schema in text format",
        _schema(tmp_path / "short.pbtxt", columns[1:]): f"has no feature {columns[0]!r}",
        _schema(tmp_path / "bytes.pbtxt", columns, {columns[2]: "BYTES"}): f"numeric column {columns[2]!r} BYTES",
        _schema(tmp_path / "untyped.pbtxt", columns, {columns[3]: "TYPE_UNKNOWN"}): "no type for the features",
    }
    for path, message in cases.items():
        result = invoke("pipeline", "run", "--schema-file", path, "--pipeline-root", str(tmp_path / "r2"))
        assert result.exit_code == 2 and "--schema-file" in result.output and message in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
    code = textwrap.dedent(f"""
        import atexit, sys
        atexit.register(lambda: print("LOADED", [m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr))
        from pipelines.cli.main import cli
        cli(["pipeline", "run", "--schema-file", {str(tmp_path / "short.pbtxt")!r}, "--pipeline-root", "r3"])
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.splitlines()[1:] == ["LOADED []"], proc.stderr


VERBOSE_FAILING_TRAINER = FAILING_TRAINER.replace(
    "    raise ValueError",
    "    import logging\n"
    "    logging.getLogger('apache_beam').error(f'cannot process {RECORD!r}')\n"
    "    raise ValueError",
)


def test_verbose_is_refused_where_a_library_record_could_quote_a_training_record(tmp_path, python_subprocess):
    """--verbose prints the libraries' records as they are (here Beam's ERROR record quoting a row): under --dp
    (the default) and --scrub-pii it is one line naming the option, exit 2, before anything runs or is written;
    with --no-dp it still prints them."""
    record = "17.99,10.38,122.8,1001.0,0.1184"
    for flags, refused in ((["--dp"], True), (["--no-dp", "--scrub-pii"], True), (["--no-dp"], False)):
        root = tmp_path / "-".join(flag.strip("-") for flag in flags)
        argv = [*flags, "--verbose", "--pipeline-root", str(root)]
        proc = python_subprocess(f"import sys; sys.argv[1:] = {argv!r}\n" + VERBOSE_FAILING_TRAINER, check=False)
        terminal = proc.stdout + proc.stderr
        assert (record in terminal) != refused, terminal
        if refused:
            assert proc.returncode == 2 and "--verbose prints what TFX" in terminal and not root.exists(), terminal
        else:
            assert proc.returncode == 1, terminal


def test_compile_checks_the_schema_file_columns_too(tmp_path, monkeypatch):
    """ppml pipeline compile builds the bundled trainer too: a --schema-file leaving out a column it reads is one
    line naming the option, exit 2, before TFX is imported (as for run)."""

    def refuse():
        raise AssertionError("the settings passed the checks: TFX would be imported")

    monkeypatch.setattr(pipeline_cli, "import_tfx", refuse)
    columns = pipeline_cli._bundled_columns()
    short = _schema(tmp_path / "short.pbtxt", columns[1:])
    result = invoke(
        "pipeline", "compile", "--kubeflow-v2", str(tmp_path / "p.json"), "--pipeline-root", str(tmp_path / "r"),
        "--data-root", str(tmp_path), "--serving-model-dir", str(tmp_path / "s"), "--schema-file", short,
    )  # fmt: skip
    assert result.exit_code == 2 and f"has no feature {columns[0]!r}" in result.output, result.output
    assert "--schema-file" in result.output and len(result.output.strip().splitlines()) == 1, result.output
