"""The simulation loop: learning, non-finite updates, checkpoint/resume, and DP accounting per round."""

import json
import os

import dp_accounting
import numpy as np
import pytest
from dp_accounting import dp_event

from federated.client import EXECUTIONS, ClientConfig
from federated.data import ClientData
from federated.sampling import PoissonSampler, UniformSampler
from federated.simulation import CheckpointError, FederatedSimulation
from federated.strategies import DifferentialPrivacyAdaptiveClipping, DifferentialPrivacyFixedClipping, FedAvg

from .conftest import linear_model

CLIENT = ClientConfig(local_epochs=1, batch_size=10, learning_rate=0.3)


def test_fedavg_learns_digits(digits_iid):
    data, test = digits_iid
    history = FederatedSimulation(
        linear_model, data, FedAvg(CLIENT), rounds=6, sampler=UniformSampler(0.5), seed=0, evaluation=test, eval_every=3
    ).run()
    assert [bool(r.evaluation) for r in history.rounds] == [False, False, True, False, False, True]
    assert history.rounds[-1].evaluation["accuracy"] > 0.85  # softmax regression on digits reaches ~0.95
    assert all(r.sampled == 10 and r.reported == 10 for r in history.rounds)


@pytest.mark.parametrize("execution", ["sequential", "numpy"])
def test_nonfinite_updates_are_dropped_and_counted(digits_iid, execution):
    base, test = digits_iid
    x = base.x.copy()
    x[base.partition.indices[3]] *= 1e38  # client 3's loss overflows: its update is NaN
    data = ClientData(x, base.y, base.partition)
    sim = FederatedSimulation(
        linear_model,
        data,
        FedAvg(CLIENT),
        rounds=2,
        sampler=UniformSampler(1.0),
        seed=0,
        evaluation=test,
        execution=execution,
    )
    history = sim.run()
    assert [(r.reported, r.nonfinite) for r in history.rounds] == [(19, 1), (19, 1)]
    assert all(np.all(np.isfinite(w)) for w in sim.state.weights)
    assert history.rounds[-1].evaluation["accuracy"] > 0.5


def _dp_sim(data, rounds, checkpoint_dir=None, **kwargs):
    """Seeded noise (the research option): a resumed run can then equal an uninterrupted one bitwise."""
    strategy = DifferentialPrivacyAdaptiveClipping(
        FedAvg(CLIENT, weighted=False),
        noise_multiplier=0.8,
        target_delta=1e-4,
        initial_clipping_norm=0.5,
        seeded_noise=True,
        **kwargs,
    )
    return FederatedSimulation(
        linear_model,
        data,
        strategy,
        rounds=rounds,
        sampler=PoissonSampler(0.5),
        seed=7,
        checkpoint_dir=checkpoint_dir,
        dropout_rate=0.1,
    )


def test_dp_noise_and_sample_come_from_the_csprng_by_default(digits_iid):
    data, _ = digits_iid
    strategy = DifferentialPrivacyFixedClipping(
        FedAvg(CLIENT, weighted=False), clipping_norm=1.0, noise_multiplier=1.0, target_delta=1e-3
    )
    assert not strategy.seeded_noise and strategy.secret_randomness and strategy.to_dict()["seeded_noise"] is False
    runs = [
        FederatedSimulation(linear_model, data, strategy, rounds=1, sampler=PoissonSampler(0.5), seed=0)
        for _ in range(2)
    ]
    for sim in runs:
        sim.run()
    assert runs[0].state.weights[0].tobytes() != runs[1].state.weights[0].tobytes()  # same seed, other noise


def test_resume_continues_exactly_without_double_counting(digits_iid, tmp_path):
    data, _ = digits_iid
    straight = _dp_sim(data, 4)
    straight.run()
    first = _dp_sim(data, 2, checkpoint_dir=str(tmp_path))
    first.run()
    resumed = _dp_sim(data, 4, checkpoint_dir=str(tmp_path))
    history = resumed.run()
    assert [r.round for r in history.rounds] == [1, 2, 3, 4]
    for a, b in zip(resumed.state.weights, straight.state.weights, strict=True):
        assert a.tobytes() == b.tobytes()
    assert resumed.state.scalars == straight.state.scalars
    assert resumed.state.budget.units == 4
    assert resumed.state.budget.epsilon() == straight.state.budget.epsilon()
    again = _dp_sim(data, 4, checkpoint_dir=str(tmp_path))
    assert again.run().rounds == history.rounds and again.state.budget.units == 4  # nothing more to run
    with pytest.raises(ValueError, match="different settings"):
        _dp_sim(data, 4, checkpoint_dir=str(tmp_path), target_unclipped_quantile=0.7).run()


def test_a_checkpoint_with_the_settings_names_of_an_earlier_release_is_refused_as_such(digits_iid, tmp_path):
    """ClientConfig's epochs and PoissonSampler's probability were renamed: such a checkpoint is refused in one
    line saying it is from an earlier release and naming the old keys (not "different settings")."""
    data, _ = digits_iid

    def sim():
        return FederatedSimulation(
            linear_model, data, FedAvg(CLIENT), rounds=1, sampler=PoissonSampler(0.5), checkpoint_dir=str(tmp_path)
        )

    sim().run()
    path = tmp_path / "latest" / "state.json"
    meta = json.loads(path.read_text())
    meta["settings"]["strategy"]["client"]["epochs"] = meta["settings"]["strategy"]["client"].pop("local_epochs")
    meta["settings"]["sampler"]["probability"] = meta["settings"]["sampler"].pop("sampling_probability")
    path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError) as refused:
        sim().run()
    assert str(refused.value) == (
        f"the checkpoint in {tmp_path} was written by an earlier ppml release (its settings name "
        f"strategy.client.epochs (now local_epochs), sampler.probability (now sampling_probability)); this release "
        f"cannot resume it: use another checkpoint_dir"
    )


def _rdp_epsilon(event, rounds, delta, relation):
    accountant = dp_accounting.rdp.RdpAccountant(neighboring_relation=relation)
    return accountant.compose(event, rounds).get_epsilon(delta)


def test_dp_fedavg_epsilon_is_the_accountants_every_round(digits_iid):
    data, _ = digits_iid  # 20 clients
    strategy = DifferentialPrivacyFixedClipping(
        FedAvg(CLIENT, weighted=False), clipping_norm=1.0, noise_multiplier=1.1, target_delta=1e-3
    )
    poisson = FederatedSimulation(linear_model, data, strategy, rounds=3, sampler=PoissonSampler(0.25), seed=1)
    history = poisson.run()
    event = dp_event.PoissonSampledDpEvent(0.25, dp_event.GaussianDpEvent(1.1))
    add_remove = dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE
    for record in history.rounds:
        assert record.metrics["epsilon_rdp"] == pytest.approx(
            _rdp_epsilon(event, record.round, 1e-3, add_remove), rel=1e-12
        )
        assert record.train_loss is None  # client losses are not private: not recorded under DP
    pld = dp_accounting.pld.PLDAccountant(add_remove, value_discretization_interval=1e-4).compose(event, 3)
    assert poisson.state.budget.epsilon("pld") == pytest.approx(pld.get_epsilon(1e-3), rel=1e-9)

    fixed = FederatedSimulation(linear_model, data, strategy, rounds=2, sampler=UniformSampler(0.25), seed=1)
    fixed.run()
    # Fixed-size samples of m = 5 of N = 20 clients: sampled without replacement, replace-one adjacency.
    event = dp_event.SampledWithoutReplacementDpEvent(20, 5, dp_event.GaussianDpEvent(1.1 / 2))
    assert fixed.state.budget.epsilon() == pytest.approx(
        _rdp_epsilon(event, 2, 1e-3, dp_accounting.NeighboringRelation.REPLACE_ONE), rel=1e-12
    )
    assert fixed.state.budget.epsilons()["pld"] is None  # no PLD analysis of this sampling


def test_max_epsilon_stops_before_exceeding(digits_iid):
    data, _ = digits_iid
    strategy = DifferentialPrivacyFixedClipping(
        FedAvg(CLIENT, weighted=False), clipping_norm=1.0, noise_multiplier=1.0, target_delta=1e-3, max_epsilon=3.0
    )
    sim = FederatedSimulation(linear_model, data, strategy, rounds=50, sampler=PoissonSampler(0.2), seed=0)
    history = sim.run()
    assert 0 < len(history.rounds) < 50 and "max_epsilon=3" in history.stopped
    assert sim.state.budget.epsilon() <= 3.0
    event = dp_event.PoissonSampledDpEvent(0.2, dp_event.GaussianDpEvent(1.0))
    assert sim.state.budget.epsilon_after(event) > 3.0


def test_beam_runner_and_worker_threads_equal_in_process_bitwise(digits_dirichlet, tmp_path):
    from federated.aggregation import SecureAggregation
    from federated.simulation import BeamRunner, InProcessRunner

    data, test = digits_dirichlet  # 40 clients of unequal sizes
    client = ClientConfig(local_epochs=1, batch_size=8, learning_rate=0.2)

    def run(runner, **kwargs):
        sim = FederatedSimulation(
            linear_model,
            data,
            FedAvg(client),
            rounds=2,
            sampler=UniformSampler(0.5),
            seed=5,
            chunk_size=4,
            runner=runner,
            dropout_rate=0.1,
            evaluation=test,
            **kwargs,
        )
        return sim, sim.run()

    def outcome(history):
        return [(r.sampled, r.reported, r.dropped, r.train_loss, r.evaluation) for r in history.rounds]

    for kwargs in ({}, {"aggregation": SecureAggregation(clipping_range=64.0, bits=24, modulus_bits=40)}):
        local, local_history = run(InProcessRunner(workers=1), **kwargs)
        others = [run(InProcessRunner(workers=3), **kwargs), run(BeamRunner(temp_location=str(tmp_path)), **kwargs)]
        for sim, history in others:
            for a, b in zip(local.state.weights, sim.state.weights, strict=True):
                assert a.tobytes() == b.tobytes()
            assert outcome(history) == outcome(local_history)
    assert local_history.rounds[0].sampled == 20
    assert os.listdir(tmp_path) == []  # the client data file Beam's workers read is deleted at the end


def test_auto_execution_picks_the_cheaper_estimate_compilation_included(digits_iid):
    data, _ = digits_iid
    sim = FederatedSimulation(linear_model, data, FedAvg(CLIENT), rounds=1, seed=0, execution="auto", chunk_size=4)
    history = sim.run()
    costs = history.config["execution_costs_s"]
    assert set(costs) == set(EXECUTIONS) and all(c > 0 for c in costs.values())  # numpy covers the model
    assert sim.execution == min(costs, key=costs.get) == history.config["execution"]


def test_empty_clients_of_a_keyed_partition_send_zero_updates(digits_iid):
    """A fixed, public N can exceed the clients that hold data: empty ones take part and change nothing."""
    from federated.partitioners import KeyedPartitioner
    from federated.simulation.round import RoundPlan, client_keys

    base, test = digits_iid
    data = ClientData.from_arrays(base.x[:30], base.y[:30], KeyedPartitioner(num_clients=60, seed=0))
    assert (data.sizes() == 0).sum() > 20
    for strategy in (
        FedAvg(CLIENT),
        DifferentialPrivacyFixedClipping(
            FedAvg(CLIENT, weighted=False), clipping_norm=1.0, noise_multiplier=0.5, target_delta=1e-3
        ),
    ):
        sim = FederatedSimulation(
            linear_model,
            data,
            strategy,
            rounds=2,
            sampler=UniformSampler(0.5),
            seed=0,
            evaluation=test,
            execution="numpy",
        )
        history = sim.run()
        assert all(r.sampled == r.reported == 30 for r in history.rounds)
        assert [r.nonfinite for r in history.rounds] == ([None] * 2 if strategy.private else [0, 0])
        assert all(np.all(np.isfinite(w)) for w in sim.state.weights)

    def drawn_client(seed):  # the one client round 1 samples, as the simulation draws it
        plan = RoundPlan.make(
            seed=seed,
            round_index=1,
            sampler=UniformSampler(1 / 60),
            population=60,
            dropout_rate=0.0,
            chunk_size=8,
            client_keys=client_keys(data.client_ids),
        )
        return int(plan.positions[0])

    seeds = {size > 0: seed for seed in range(40) for size in [data.sizes()[drawn_client(seed)]]}
    assert set(seeds) == {True, False}
    for holds_data, seed in seeds.items():
        sim = FederatedSimulation(
            linear_model, data, FedAvg(CLIENT), rounds=1, sampler=UniformSampler(1 / 60), seed=seed, execution="numpy"
        )
        sim.start()
        initial = [w.copy() for w in sim.state.weights]
        record = sim.run().rounds[0]
        assert (record.sampled, record.reported) == (1, 1)
        unchanged = all(a.tobytes() == b.tobytes() for a, b in zip(initial, sim.state.weights, strict=True))
        assert unchanged is not holds_data  # an empty client's round leaves the weights exactly


def test_rounds_that_sample_no_client_leave_the_weights(digits_iid):
    data, _ = digits_iid
    sim = FederatedSimulation(linear_model, data, FedAvg(CLIENT), rounds=2, sampler=PoissonSampler(1e-9), seed=0)
    sim.start()
    initial = [w.copy() for w in sim.state.weights]
    history = sim.run()
    assert [(r.sampled, r.metrics) for r in history.rounds] == [(0, {"skipped": True})] * 2
    assert all(np.array_equal(a, b) for a, b in zip(initial, sim.state.weights, strict=True))


def test_beam_writes_the_client_data_into_a_folder_only_its_user_can_open(digits_iid, tmp_path):
    """The pickles Beam's workers read hold the clients' private data (they were 0644 in the shared /tmp): 0600
    whatever the umask, in a 0700 folder."""
    import stat
    import tempfile

    from federated.simulation import BeamRunner

    data, _ = digits_iid
    umask = os.umask(0o022)  # a common default: files 0644 unless written owner-only
    try:
        for runner, base in ((BeamRunner(temp_location=str(tmp_path)), str(tmp_path)), (BeamRunner(), None)):
            uri = runner._reference(data, runner._directory()).uri
            folder = os.path.dirname(uri)
            assert os.path.dirname(folder) == (base or tempfile.gettempdir())
            assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700 and stat.S_IMODE(os.stat(uri).st_mode) == 0o600
            runner.close()
            assert not os.path.exists(folder)
    finally:
        os.umask(umask)
    assert os.listdir(tmp_path) == []


def test_beam_worker_processes_equal_the_in_process_run_bitwise(digits_dirichlet, tmp_path):
    """DirectRunner with two worker processes (multi_processing): each trains its chunks in its own
    interpreter, and the aggregate is independent of which worker trained what."""
    from federated.models import DenseModel
    from federated.simulation import BeamRunner, InProcessRunner

    data, test = digits_dirichlet
    client = ClientConfig(local_epochs=1, batch_size=8, learning_rate=0.2)

    def run(runner):
        sim = FederatedSimulation(
            DenseModel(64, 10),
            data,
            FedAvg(client),
            rounds=2,
            sampler=UniformSampler(0.5),
            seed=5,
            chunk_size=4,
            runner=runner,
            evaluation=test,
        )
        return sim, sim.run()

    local, local_history = run(InProcessRunner(workers=1))
    workers = BeamRunner(
        ["--runner=DirectRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2"],
        temp_location=str(tmp_path),
    )
    beam, beam_history = run(workers)
    assert BeamRunner(["--temp_location=/shared/tmp"]).temp_location == "/shared/tmp"  # where workers read
    assert all(a.tobytes() == b.tobytes() for a, b in zip(local.state.weights, beam.state.weights, strict=True))
    assert [(r.reported, r.train_loss, r.evaluation) for r in beam_history.rounds] == [
        (r.reported, r.train_loss, r.evaluation) for r in local_history.rounds
    ]


def test_private_runs_over_one_client_per_user_sample_uniformly(digits_iid):
    """N counted from the data (one client per key) is released by every private run: only replace-one
    adjacency (uniform sampling) holds it fixed; add/remove (Poisson) is refused, a keyed N is a setting."""
    from federated.partitioners import NaturalPartitioner

    base, _ = digits_iid
    data = ClientData.from_arrays(base.x, base.y, NaturalPartitioner(), keys=np.arange(len(base.y)) % 12)
    strategy = DifferentialPrivacyFixedClipping(
        FedAvg(CLIENT, weighted=False), clipping_norm=1.0, noise_multiplier=1.0, target_delta=1e-3
    )
    with pytest.raises(ValueError, match="with one client per user, N is the number of users in the data"):
        FederatedSimulation(linear_model, data, strategy, rounds=1, sampler=PoissonSampler(0.5))
    FederatedSimulation(linear_model, data, strategy, rounds=1, sampler=UniformSampler(0.5))
    FederatedSimulation(linear_model, data, FedAvg(CLIENT), rounds=1, sampler=PoissonSampler(0.5))
    FederatedSimulation(linear_model, base, strategy, rounds=1, sampler=PoissonSampler(0.5))


def test_a_retried_beam_write_replaces_the_earlier_attempts_file_owner_only(tmp_path):
    """A runner may run a bundle again (a retry after a worker failure, or a second attempt after a partial write):
    the write of a round's result must replace the earlier attempt's file, still 0600, not fail on it."""
    import stat

    from federated.simulation import beam

    path = str(tmp_path / "aggregate.pkl")
    beam._write_private(path, b"an attempt cut short")
    beam._write_private(path, b"the retry")
    with open(path, "rb") as f:
        assert f.read() == b"the retry"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and os.listdir(tmp_path) == ["aggregate.pkl"]
