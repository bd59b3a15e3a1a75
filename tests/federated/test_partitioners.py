"""Partitioners: coverage, seeding, the skew each rule promises, bad settings and persistence."""

import numpy as np
import pytest

from federated.partitioners import (
    DirichletPartitioner,
    IidPartitioner,
    NaturalPartitioner,
    Partition,
    QuantitySkewPartitioner,
    ShardPartitioner,
    partitioner_from_dict,
)

LABELS = np.repeat(np.arange(10), 100)  # 1,000 examples, 10 balanced classes
np.random.default_rng(0).shuffle(LABELS)


def _assert_exact_cover(partition, n):
    flat = np.concatenate(partition.indices)
    np.testing.assert_array_equal(np.sort(flat), np.arange(n))


@pytest.mark.parametrize(
    "partitioner",
    [
        IidPartitioner(num_clients=7, seed=1),
        DirichletPartitioner(num_clients=20, alpha=0.5, seed=1),
        ShardPartitioner(num_clients=25, shards_per_client=2, seed=1),
        QuantitySkewPartitioner(num_clients=30, alpha=0.3, seed=1),
    ],
)
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
    labels = np.repeat(np.arange(200), 500)  # 200 classes x 500 examples: 1,000 share samples
    hist = DirichletPartitioner(num_clients=n_clients, alpha=alpha, seed=0).partition(labels).label_histograms()
    shares = hist / 500.0
    expected_var = (n_clients - 1) / (n_clients**2 * (n_clients * alpha + 1))
    assert abs(shares.mean() - 1 / n_clients) < 1e-3  # shares sum to 1 per class (up to integer cuts)
    assert abs(shares.var() / expected_var - 1) < 0.15  # 1,000 samples: relative SE of var ~ 6%


def test_shards_give_at_most_k_classes_per_client():
    partition = ShardPartitioner(num_clients=50, shards_per_client=2, seed=0).partition(LABELS)
    classes = (partition.label_histograms() > 0).sum(axis=1)
    assert classes.max() <= 2
    assert set(partition.sizes()) == {20}


def test_quantity_skew_skews_sizes_not_labels():
    partition = QuantitySkewPartitioner(num_clients=10, alpha=0.2, seed=0, min_examples_per_client=5).partition(LABELS)
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


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: DirichletPartitioner(num_clients=5, alpha=0.0), "alpha must be a finite number > 0, got 0.0"),
        (lambda: DirichletPartitioner(num_clients=5, alpha=-1), "alpha must be"),
        (lambda: ShardPartitioner(num_clients=600, shards_per_client=2).partition(LABELS), "1200 shards"),
        (lambda: IidPartitioner(num_clients=1001).partition(LABELS), "num_clients=1001 exceeds"),
        (lambda: IidPartitioner(num_clients=0).partition(LABELS), "num_clients must be an integer >= 1, got 0"),
        (lambda: DirichletPartitioner(num_clients=500, alpha=0.01, max_attempts=3).partition(LABELS), "no Dirichlet"),
        (lambda: Partition(["a", "b"], [np.array([0, 1]), np.array([], np.int64)]), "client 'b' has no examples"),
        (lambda: Partition(["a", "b"], [np.array([0, 1]), np.array([1])]), "more than one client"),
        (lambda: partitioner_from_dict({"name": "zipf"}), "unknown partitioner 'zipf'"),
    ],
)
def test_bad_settings_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_save_load_and_summary(tmp_path):
    partition = DirichletPartitioner(num_clients=8, alpha=0.5, seed=0).partition(LABELS)
    partition.save(tmp_path / "p.json")
    loaded = Partition.load(tmp_path / "p.json", labels=LABELS)
    assert loaded == partition
    np.testing.assert_array_equal(loaded.label_histograms(), partition.label_histograms())
    assert loaded.spec == {
        "name": "dirichlet",
        "num_clients": 8,
        "alpha": 0.5,
        "seed": 0,
        "min_examples_per_client": 1,
        "max_attempts": 100,
    }
    text = partition.summary(max_rows=3)
    assert "8 clients, 1000 examples" in text and "5 more clients" in text
    assert " ".join(f"{c:>4}" for c in partition.label_histograms()[0]) in text


def _clients_as_records(partitioner, x, y):
    """Each client's examples as a set of (features, label) records: comparable across data sets."""
    from federated.data import ClientData

    data = ClientData.from_arrays(x, y, partitioner)
    return [{(tuple(data.x[i]), int(data.y[i])) for i in ix} for ix in data.partition.indices]


def _differing_clients(a, b):
    return [k for k, (left, right) in enumerate(zip(a, b, strict=True)) if left != right]


@pytest.mark.parametrize("rule", ["iid", "quantity", "dirichlet"])
def test_keyed_partition_under_a_one_record_change_differs_in_exactly_one_client(rule):
    """A neighbouring data set (one record added, or removed, anywhere in the file) changes one client."""
    from federated.partitioners import KeyedPartitioner

    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(600, 5)).astype(np.float32), rng.integers(0, 6, 600)
    partitioner = KeyedPartitioner(num_clients=30, rule=rule, alpha=0.3, seed=9)
    base = _clients_as_records(partitioner, x, y)
    assert sum(map(len, base)) == 600
    for position in (0, 317, 599):  # first, middle, last record of the file
        removed = _clients_as_records(partitioner, np.delete(x, position, 0), np.delete(y, position))
        assert len(_differing_clients(base, removed)) == 1
        record = rng.normal(size=(1, 5)).astype(np.float32)
        added = _clients_as_records(partitioner, np.insert(x, position, record, 0), np.insert(y, position, 2))
        assert len(_differing_clients(base, added)) == 1
    flipped_y = y.copy()
    flipped_y[10] = (y[10] + 1) % 6  # a replaced record (new label): it may move, at most two clients change
    assert 1 <= len(_differing_clients(base, _clients_as_records(partitioner, x, flipped_y))) <= 2


def test_cut_partitions_re_deal_every_client_under_a_one_record_change():
    """Why the Federated Trainer and the CLI under DP use keyed partitions: cutting a shuffle re-deals."""
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(600, 5)).astype(np.float32), rng.integers(0, 6, 600)
    base = _clients_as_records(IidPartitioner(num_clients=30, seed=9), x, y)
    removed = _clients_as_records(IidPartitioner(num_clients=30, seed=9), x[1:], y[1:])
    assert len(_differing_clients(base, removed)) > 20
    flipped = y.copy()
    flipped[0] = (y[0] + 1) % 6
    dirichlet = DirichletPartitioner(num_clients=30, alpha=0.5, seed=9)
    flipped_clients = _clients_as_records(dirichlet, x, flipped)
    assert len(_differing_clients(_clients_as_records(dirichlet, x, y), flipped_clients)) > 20


def test_keyed_shares_follow_the_rule_and_clients_may_be_empty():
    from federated.partitioners import KeyedPartitioner

    labels = np.repeat(np.arange(4), 5000)
    keys = np.arange(labels.size)
    iid = KeyedPartitioner(num_clients=10, rule="iid", seed=1).partition(labels, keys=keys)
    # Multinomial(20000, 1/10) sizes: sd 42; 6 sd would be a broken hash.
    assert np.all(np.abs(iid.sizes() - 2000) < 255)
    skewed = KeyedPartitioner(num_clients=10, rule="dirichlet", alpha=0.05, seed=1).partition(labels, keys=keys)
    assert ((skewed.label_histograms() > 0).sum(axis=1)).mean() < 3
    for label in range(4):  # each class's split follows its shares p_c: chi-square at p > 1e-6
        p = KeyedPartitioner(num_clients=10, rule="dirichlet", alpha=0.05, seed=1).shares(label)
        observed = skewed.label_histograms()[:, label]
        expected = 5000 * p
        kept = expected > 5
        assert np.all(observed[~kept] <= 40)
        statistic = np.sum((observed[kept] - expected[kept]) ** 2 / expected[kept])
        from scipy import stats

        assert stats.chi2.sf(statistic, max(1, kept.sum() - 1)) > 1e-6
    sparse = KeyedPartitioner(num_clients=50, seed=0).partition(labels[:20], keys=keys[:20])
    assert sparse.num_clients == 50 and sparse.sizes().min() == 0 and sparse.sizes().sum() == 20
    with pytest.raises(ValueError, match="needs one key per example"):
        KeyedPartitioner(num_clients=5).partition(labels)
    assert partitioner_from_dict(KeyedPartitioner(num_clients=5, rule="quantity").to_dict()).rule == "quantity"
