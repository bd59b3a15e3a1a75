"""Partitioners: coverage, seeding, the skew each rule promises, bad settings and persistence."""

import numpy as np
import pytest

from federated.partitioners import (DirichletPartitioner, IidPartitioner, NaturalPartitioner, Partition,
                                    QuantitySkewPartitioner, ShardPartitioner, partitioner_from_dict)

LABELS = np.repeat(np.arange(10), 100)  # 1,000 examples, 10 balanced classes
np.random.default_rng(0).shuffle(LABELS)


def _assert_exact_cover(partition, n):
    flat = np.concatenate(partition.indices)
    np.testing.assert_array_equal(np.sort(flat), np.arange(n))


@pytest.mark.parametrize("partitioner", [
    IidPartitioner(num_clients=7, seed=1),
    DirichletPartitioner(num_clients=20, alpha=0.5, seed=1),
    ShardPartitioner(num_clients=25, shards_per_client=2, seed=1),
    QuantitySkewPartitioner(num_clients=30, alpha=0.3, seed=1),
])
def test_partitions_cover_every_example_once_and_are_seeded(partitioner):
    first = partitioner.partition(LABELS)
    _assert_exact_cover(first, LABELS.size)
    assert first.sizes().min() >= 1
    assert first == partitioner.partition(LABELS)
    reseeded = partitioner_from_dict(dict(partitioner.to_dict(), seed=2)).partition(LABELS)
    assert reseeded != first
    assert partitioner_from_dict(partitioner.to_dict()) == partitioner


def test_iid_sizes_differ_by_at_most_one_and_labels_are_balanced():
    partition = IidPartitioner(num_clients=4, seed=0).partition(LABELS)
    assert set(partition.sizes()) == {250}
    hist = partition.label_histograms()
    # Hypergeometric counts: each is 25 +- 3.9 (sd); 6 sd would be a broken shuffle.
    assert np.all(np.abs(hist - 25) < 24)
    assert hist.sum() == LABELS.size


def test_dirichlet_alpha_controls_label_skew():
    def mean_classes(alpha):
        hist = DirichletPartitioner(num_clients=10, alpha=alpha, seed=3).partition(LABELS).label_histograms()
        return (hist > 0).sum(axis=1).mean()
    # alpha = 0.05 puts almost every class on one or two clients; alpha = 100 gives everyone all 10.
    assert mean_classes(0.05) < 3
    assert mean_classes(100.0) == 10


def test_dirichlet_shares_have_the_dirichlet_mean_and_variance():
    # Each client's share of a class is Beta(alpha, (N-1) alpha): mean 1/N, var (N-1)/(N^2 (N alpha + 1)).
    n_clients, alpha = 5, 1.0
    labels = np.repeat(np.arange(200), 500)   # 200 classes x 500 examples: 1,000 share samples
    hist = DirichletPartitioner(num_clients=n_clients, alpha=alpha, seed=0).partition(labels).label_histograms()
    shares = hist / 500.0
    expected_var = (n_clients - 1) / (n_clients ** 2 * (n_clients * alpha + 1))
    assert abs(shares.mean() - 1 / n_clients) < 1e-3  # shares sum to 1 per class (up to integer cuts)
    assert abs(shares.var() / expected_var - 1) < 0.15  # 1,000 samples: relative SE of var ~ 6%


def test_shards_give_at_most_k_classes_per_client():
    partition = ShardPartitioner(num_clients=50, shards_per_client=2, seed=0).partition(LABELS)
    classes = (partition.label_histograms() > 0).sum(axis=1)
    assert classes.max() <= 2
    assert set(partition.sizes()) == {20}


def test_quantity_skew_skews_sizes_not_labels():
    partition = QuantitySkewPartitioner(num_clients=10, alpha=0.2, seed=0,
                                        min_examples_per_client=5).partition(LABELS)
    sizes = partition.sizes()
    assert sizes.min() >= 5 and sizes.max() > 4 * np.median(sizes)
    biggest = partition.label_histograms()[np.argmax(sizes)]
    assert (biggest > 0).sum() == 10


def test_natural_partition_groups_by_key():
    keys = np.array(["bob", "alice", "bob", "carol", "alice", "bob"])
    partition = NaturalPartitioner().partition(np.array([0, 1, 0, 1, 1, 0]), keys=keys)
    assert partition.client_ids == ("alice", "bob", "carol")
    assert [ix.tolist() for ix in partition.indices] == [[1, 4], [0, 2, 5], [3]]
    with pytest.raises(ValueError, match="needs keys"):
        NaturalPartitioner().partition(LABELS)


@pytest.mark.parametrize("make, message", [
    (lambda: DirichletPartitioner(num_clients=5, alpha=0.0), "alpha must be a finite number > 0, got 0.0"),
    (lambda: DirichletPartitioner(num_clients=5, alpha=-1), "alpha must be"),
    (lambda: ShardPartitioner(num_clients=600, shards_per_client=2).partition(LABELS), "1200 shards"),
    (lambda: IidPartitioner(num_clients=1001).partition(LABELS), "num_clients=1001 exceeds"),
    (lambda: IidPartitioner(num_clients=0).partition(LABELS), "num_clients must be an integer >= 1, got 0"),
    (lambda: DirichletPartitioner(num_clients=500, alpha=0.01, max_attempts=3).partition(LABELS),
     "no Dirichlet"),
    (lambda: Partition(["a", "b"], [np.array([0, 1]), np.array([], np.int64)]), "client 'b' has no examples"),
    (lambda: Partition(["a", "b"], [np.array([0, 1]), np.array([1])]), "more than one client"),
    (lambda: partitioner_from_dict({"name": "zipf"}), "unknown partitioner 'zipf'"),
])
def test_bad_settings_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_save_load_and_summary(tmp_path):
    partition = DirichletPartitioner(num_clients=8, alpha=0.5, seed=0).partition(LABELS)
    partition.save(tmp_path / "p.json")
    loaded = Partition.load(tmp_path / "p.json", labels=LABELS)
    assert loaded == partition
    np.testing.assert_array_equal(loaded.label_histograms(), partition.label_histograms())
    assert loaded.spec == {"name": "dirichlet", "num_clients": 8, "alpha": 0.5, "seed": 0,
                           "min_examples_per_client": 1, "max_attempts": 100}
    text = partition.summary(max_rows=3)
    assert "8 clients, 1000 examples" in text and "5 more clients" in text
    assert " ".join(f"{c:>4}" for c in partition.label_histograms()[0]) in text
