"""ClientData from numpy, tf.data and (ExampleGen-style, gzipped) TFRecords, and its persistence."""

import numpy as np
import pytest
import tensorflow as tf

from federated.data import ClientData, load_digits_clients
from federated.partitioners import IidPartitioner, NaturalPartitioner


def test_from_arrays_gives_each_client_its_rows():
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    y = np.arange(10) % 3
    data = ClientData.from_arrays(x, y, IidPartitioner(num_clients=3, seed=0))
    for position in range(3):
        cx, cy = data.client(position)
        ix = data.partition.indices[position]
        np.testing.assert_array_equal(cx, x[ix])
        np.testing.assert_array_equal(cy, y[ix])
    with pytest.raises(ValueError, match="x has 10 examples, y has 9"):
        ClientData.from_arrays(x, y[:9], IidPartitioner(num_clients=3))
    with pytest.raises(ValueError, match="NaN"):
        ClientData.from_arrays(np.full((10, 2), np.nan), y, IidPartitioner(num_clients=3))
    with pytest.raises(ValueError, match="labels must be a finite number >= 0, got -1"):
        ClientData(x, y - 1, data.partition)  # the partitioners check too; a given partition skips them


def test_from_tf_dataset_tuples_and_dicts():
    x = np.random.default_rng(0).normal(size=(12, 3)).astype(np.float32)
    y = np.arange(12) % 2
    users = np.array([b"u1", b"u2", b"u3"] * 4)
    from_tuples = ClientData.from_tf_dataset(
        tf.data.Dataset.from_tensor_slices((x, y)), IidPartitioner(num_clients=4, seed=0)
    )
    np.testing.assert_array_equal(from_tuples.x, x)
    dicts = tf.data.Dataset.from_tensor_slices({"a": x[:, :2], "b": x[:, 2], "label": y, "user": users})
    natural = ClientData.from_tf_dataset(
        dicts, NaturalPartitioner(), features=["a", "b"], label="label", client_key="user"
    )
    assert natural.client_ids == ("u1", "u2", "u3")
    np.testing.assert_allclose(natural.client(1)[0], x[1::3])


def test_from_gzipped_tfrecords_like_examplegen(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=30)
    path = str(tmp_path / "data_tfrecord-00000-of-00001.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for row, label in zip(x, y, strict=True):
            feature = {
                "pixels": tf.train.Feature(float_list=tf.train.FloatList(value=row[:3])),
                "extra": tf.train.Feature(float_list=tf.train.FloatList(value=row[3:])),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                "writer": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"w%d" % (label % 2)])),
            }
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    data = ClientData.from_tfrecords(
        str(tmp_path / "*.gz"), NaturalPartitioner(), features=["pixels", "extra"], label="label", client_key="writer"
    )
    np.testing.assert_allclose(data.x, x, rtol=1e-7)
    assert data.client_ids == ("w0", "w1")
    np.testing.assert_array_equal(data.client(0)[1] % 2, 0)
    with pytest.raises(ValueError, match="no client key column 'user'"):
        ClientData.from_tfrecords(path, NaturalPartitioner(), features=["pixels"], label="label", client_key="user")
    with pytest.raises(ValueError, match="no TFRecord files match"):
        ClientData.from_tfrecords(str(tmp_path / "nothing*"), NaturalPartitioner(), features=["x"], label="y")


def test_save_load_round_trip_and_digits(tmp_path):
    data, (x_test, y_test) = load_digits_clients(IidPartitioner(num_clients=5, seed=0))
    assert data.x.shape[1] == 64 and data.num_classes == 10 and x_test.shape[0] == 450
    data.save(tmp_path / "clients")
    loaded = ClientData.load(tmp_path / "clients")
    np.testing.assert_array_equal(loaded.x, data.x)
    assert loaded.partition == data.partition
    np.testing.assert_array_equal(loaded.partition.label_histograms(), data.partition.label_histograms())


@pytest.mark.parametrize("bad", ["nan", "inf", "1e300", "label 3", "label -1", "label nan"])
def test_a_private_run_leaves_each_record_it_cannot_train_on_out_of_its_client_alone(bad):
    """Neighbours differing by one bad record give the same clients (a keyed partition's, and one client per
    user, where the bad record's user stays, empty if it had no other record)."""
    from federated.partitioners import KeyedPartitioner

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 3)), (rng.integers(0, 3, 60)).astype(np.float64)
    users = np.array([f"u{i % 7}" for i in range(60)] + ["only-bad"])
    row, label = np.zeros((1, 3)), 1.0
    if bad.startswith("label"):
        label = float(bad.split()[1])
    else:
        row[0, 1] = float(bad)
    x_bad, y_bad = np.concatenate([x, row]), np.append(y, label)
    for partitioner, keys in ((KeyedPartitioner(num_clients=8, seed=3), None), (NaturalPartitioner(), users)):
        clean = ClientData.for_private_run(x, y, partitioner, num_classes=3, keys=None if keys is None else keys[:60])
        plus = ClientData.for_private_run(x_bad, y_bad, partitioner, num_classes=3, keys=keys)
        np.testing.assert_array_equal(plus.x, clean.x)
        np.testing.assert_array_equal(plus.y, clean.y)
        extra = set(plus.client_ids) - set(clean.client_ids)
        assert extra == (set() if keys is None else {"only-bad"})
        assert all(
            np.array_equal(plus.partition.indices[plus.client_ids.index(c)], ix)
            for c, ix in zip(clean.client_ids, clean.partition.indices, strict=True)
        )
        assert all(plus.sizes()[plus.client_ids.index(c)] == 0 for c in extra)
    if bad != "label 3":  # without DP: refused (label 3: by the model's classes, FederatedTrainingConfig)
        with pytest.raises(ValueError, match="NaN|labels"):
            ClientData.from_arrays(x_bad, y_bad, KeyedPartitioner(num_clients=8, seed=3))


@pytest.mark.parametrize("natural", [False, True])
def test_a_private_run_caps_each_client_at_k_records_by_record_key(natural):
    """Neighbours: one client at K records vs the same client at K + 1 (one record added). Both runs happen, the
    client keeps K records in both (differing by at most one in and one out), every other client is unchanged."""
    from federated.partitioners import KeyedPartitioner, record_keys

    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(80, 3)), rng.integers(0, 2, 80).astype(np.float64)
    users = np.array([f"u{i % 6}" for i in range(80)])
    partitioner = NaturalPartitioner() if natural else KeyedPartitioner(num_clients=6, seed=5)
    rkeys = record_keys({"x": x, "y": y})
    base = ClientData.from_arrays(x, y, partitioner, keys=users if natural else rkeys)
    target = int(np.argmax(base.sizes()))
    k = int(base.sizes()[target])
    client = base.partition.indices[target]
    row = x[client[:1]] + 0.5  # a new record; redeal until it lands in the target client
    for shift in np.arange(0.5, 50, 0.5):
        row = x[client[:1]] + shift
        x1, y1 = np.concatenate([x, row]), np.append(y, y[client[0]])
        keys1 = np.append(users, users[client[0]]) if natural else record_keys({"x": x1, "y": y1})
        plus_all = ClientData.from_arrays(x1, y1, partitioner, keys=keys1)
        if plus_all.sizes()[plus_all.client_ids.index(base.client_ids[target])] == k + 1:
            break
    else:
        pytest.fail("no added record landed in the target client")
    at_k = ClientData.for_private_run(
        x, y, partitioner, num_classes=2, keys=users if natural else rkeys, max_examples_per_client=k, record_keys=rkeys
    )
    over = ClientData.for_private_run(
        x1,
        y1,
        partitioner,
        num_classes=2,
        keys=keys1,
        max_examples_per_client=k,
        record_keys=record_keys({"x": x1, "y": y1}),
    )
    assert at_k.client_ids == over.client_ids and at_k.sizes().max() == over.sizes().max() == k
    name = base.client_ids[target]
    for position, cid in enumerate(at_k.client_ids):
        a, b = at_k.client(position), over.client(over.client_ids.index(cid))
        rows_a, rows_b = {r.tobytes() for r in a[0]}, {r.tobytes() for r in b[0]}
        if cid == name:
            assert len(rows_a) == len(rows_b) == k and len(rows_a - rows_b) <= 1
        else:
            assert rows_a == rows_b
    smaller = ClientData.for_private_run(
        x,
        y,
        partitioner,
        num_classes=2,
        keys=users if natural else rkeys,
        max_examples_per_client=k - 1,
        record_keys=rkeys,
    )
    assert smaller.sizes().max() == k - 1
    with pytest.raises(ValueError, match="record_keys"):
        ClientData.for_private_run(
            x, y, partitioner, num_classes=2, keys=users if natural else rkeys, max_examples_per_client=k
        )
