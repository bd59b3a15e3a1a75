"""Client data for simulation: one in-memory dataset and a `Partition` saying which client holds what."""

from __future__ import annotations

import os
from typing import Iterable, Sequence

import numpy as np

from federated.data.examples import dataset_to_numpy, read_tf_examples, stack_features
from federated.data.screen import trainable
from federated.partitioners import Partition, Partitioner
from privacy import validation


class ClientData:
    """Features and labels of all simulated clients.

    Args:
      x: [n, ...] model inputs (float32 after conversion).
      y: [n] integer labels 0..K-1.
      partition: which example indices each client holds.

    Raises:
      ValueError: on mismatched lengths, non-finite features or a partition index out of range.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, partition: Partition):
        x = np.asarray(x, dtype=np.float32)
        y = np.asarray(y)
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x has {x.shape[0]} examples, y has {y.shape[0]}")
        if y.ndim != 1:
            raise ValueError(f"y must be [n] integer labels, got shape {y.shape}")
        if y.size:
            validation.number("labels", y.min().item(), low=0)
        if y.size and y.max() > np.iinfo(np.int32).max:
            raise ValueError(f"labels must fit int32, got {y.max()}")
        if not np.all(np.isfinite(x)):
            raise ValueError("x has NaN or infinite values")
        top = max((int(ix.max()) for ix in partition.indices if ix.size), default=-1)
        if top >= x.shape[0]:
            raise ValueError(f"the partition refers to example {top}, but there are only {x.shape[0]}")
        self.x, self.y = x, y.astype(np.int32)
        self.partition = partition

    # --- constructors ---------------------------------------------------------------------------
    @classmethod
    def from_arrays(
        cls, x, y, partitioner: Partitioner | None = None, *, keys=None, partition: Partition | None = None
    ) -> "ClientData":
        """Splits (x, y) with ``partitioner`` or a given ``partition``.

        ``keys``: client keys of a natural partition, or record keys of a keyed one (default: the
        partitioner's `default_keys`, e.g. each record's content).
        """
        if (partitioner is None) == (partition is None):
            raise ValueError("pass exactly one of partitioner= or partition=")
        if partition is None:
            if keys is None:
                keys = partitioner.default_keys(x, y)
            partition = partitioner.partition(np.asarray(y), keys=keys)
        return cls(x, y, partition)

    @classmethod
    def for_private_run(
        cls,
        x,
        y,
        partitioner: Partitioner,
        *,
        num_classes: int,
        keys=None,
        max_examples_per_client: int | None = None,
        record_keys=None,
        train: np.ndarray | None = None,
    ) -> "ClientData":
        """`from_arrays` for a private run: the records are dealt first, then each record that is not
        `federated.data.screen.trainable` is left out of its client (which stays, possibly empty), so no
        one record's value can refuse the run (`federated.data.screen`).

        ``train``: [n] bool, the records that may train (default: all). The others (e.g. held out for
        evaluation) are dealt too, then left out, so a user all of whose records are held out is still a
        client (an empty one): with one client per user, N counts the users among all records.

        With ``max_examples_per_client`` K, each client keeps only the K dealt training records of smallest
        ``record_keys`` (one bytes key per record, from its content; `capped`), so a client's size never
        decides whether the run happens, and adding or removing one record changes that record's client only.
        """
        train = np.ones(len(y), bool) if train is None else np.asarray(train, bool)
        keep = trainable(x, y, num_classes) & train
        if keys is None:
            keys = partitioner.default_keys(x, y)
        placeholder = np.where(keep, np.asarray(y, np.float64), 0).astype(np.int64)  # left-out records' labels
        partition = partitioner.partition(placeholder, keys=keys)
        if max_examples_per_client is not None:
            keep &= capped(partition, record_keys, max_examples_per_client, among=train)
        return cls(np.asarray(x)[keep], placeholder[keep], partition.select(keep))

    @classmethod
    def from_tf_dataset(
        cls,
        dataset,
        partitioner: Partitioner,
        *,
        features: Sequence[str] | None = None,
        label: str | None = None,
        client_key: str | None = None,
    ) -> "ClientData":
        """From a finite unbatched tf.data dataset of (x, y) tuples or of feature dicts.

        For dict elements name the ``features`` (flattened and concatenated), the ``label`` and, for
        a natural partition, the ``client_key``.
        """
        data = dataset_to_numpy(dataset)
        if isinstance(data, tuple):
            if len(data) != 2:
                raise ValueError(f"tuple elements must be (x, y), got {len(data)} parts")
            return cls.from_arrays(data[0], data[1], partitioner)
        return cls._from_columns(data, partitioner, features, label, client_key)

    @classmethod
    def from_tfrecords(
        cls,
        file_pattern: str | Iterable[str],
        partitioner: Partitioner,
        *,
        features: Sequence[str],
        label: str,
        client_key: str | None = None,
        compression: str | None = "auto",
    ) -> "ClientData":
        """From tf.Example TFRecords, e.g. an ExampleGen split (``<uri>/Split-train/*.gz``)."""
        return cls._from_columns(
            read_tf_examples(file_pattern, compression=compression), partitioner, features, label, client_key
        )

    @classmethod
    def _from_columns(cls, columns, partitioner, features, label, client_key) -> "ClientData":
        if not features or label is None:
            raise ValueError(f"name the input features= and the label= among {sorted(columns)}")
        if label not in columns:
            raise ValueError(f"no label column {label!r}; available: {sorted(columns)}")
        keys = None
        if client_key is not None:
            if client_key not in columns:
                raise ValueError(f"no client key column {client_key!r}; available: {sorted(columns)}")
            keys = columns[client_key]
        return cls.from_arrays(stack_features(columns, features), columns[label], partitioner, keys=keys)

    # --- access ---------------------------------------------------------------------------------
    @property
    def client_ids(self) -> tuple[str, ...]:
        return self.partition.client_ids

    @property
    def num_clients(self) -> int:
        return self.partition.num_clients

    @property
    def num_classes(self) -> int:
        return int(self.y.max()) + 1

    def sizes(self) -> np.ndarray:
        return self.partition.sizes()

    def client(self, position: int) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of the client at ``position`` (0..num_clients-1) in `client_ids` order."""
        ix = self.partition.indices[position]
        return self.x[ix], self.y[ix]

    def summary(self, max_rows: int = 20) -> str:
        return self.partition.summary(max_rows)

    # --- persistence ----------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> None:
        """Writes ``examples.npz`` and ``partition.json`` (sizes, histograms, indices) to ``directory``."""
        os.makedirs(directory, exist_ok=True)
        np.savez(os.path.join(directory, "examples.npz"), x=self.x, y=self.y)
        self.partition.save(os.path.join(directory, "partition.json"))

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "ClientData":
        with np.load(os.path.join(directory, "examples.npz")) as arrays:
            x, y = arrays["x"], arrays["y"]
        return cls(x, y, Partition.load(os.path.join(directory, "partition.json"), labels=y))

    def __repr__(self) -> str:
        return f"ClientData(clients={self.num_clients}, examples={self.x.shape[0]}, input_shape={self.x.shape[1:]})"


def load_digits_split(*, test_fraction: float = 0.25, seed: int = 0):
    """scikit-learn's bundled 8x8 digits (1,797 images, values scaled to [0, 1]), split stratified by label.

    Returns ((x_train, y_train), (x_test, y_test)).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=test_fraction, random_state=seed, stratify=digits.target
    )
    return (x_train, y_train), (x_test, y_test.astype(np.int32))


def load_digits_clients(partitioner: Partitioner, *, test_fraction: float = 0.25, seed: int = 0):
    """The digits training part (`load_digits_split`) as clients: (ClientData, (x_test, y_test))."""
    (x_train, y_train), test = load_digits_split(test_fraction=test_fraction, seed=seed)
    return ClientData.from_arrays(x_train, y_train, partitioner), test


def capped(
    partition: Partition, record_keys: Sequence[bytes], max_examples_per_client: int, among: np.ndarray | None = None
) -> np.ndarray:
    """[n] bool: in each client of ``partition``, its ``max_examples_per_client`` records of smallest key
    (among the records ``among`` marks, default all).

    The order is the records' own keys (ties, i.e. repeated records, by position), never their positions
    or another client's records, so a one-record change moves at most one record in and one out of one client.
    """
    validation.integer("max_examples_per_client", max_examples_per_client, minimum=1)
    if record_keys is None:
        raise ValueError("capping clients needs record_keys (one key per record, from its content)")
    keys = list(record_keys)
    among = np.ones(len(keys), bool) if among is None else among
    keep = np.zeros(len(keys), bool)
    for ix in partition.indices:
        ordered = sorted(ix[among[ix]].tolist(), key=lambda i: (keys[i], i))
        keep[ordered[:max_examples_per_client]] = True
    return keep
