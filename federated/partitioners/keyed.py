"""Keyed partitions: each example's client is fixed by the seed, the example's key and its label alone.

The other rules here cut the whole (shuffled or sorted) dataset into parts, so adding or removing one
example re-deals every client, and a client-level guarantee then says nothing about examples. Here
example i goes to client

    k(i) = F_{label(i)}^-1(u_i),   u_i = BLAKE2b_seed(key_i) / 2^64 in [0, 1),

where F_c is the cumulative distribution of class c's shares over the N clients, fixed by the seed
before any data is seen:

* ``iid``: every share 1/N (sizes and labels IID);
* ``quantity``: shares q ~ Dirichlet(alpha) over the clients, the same for every class (sizes skewed,
  labels IID; Li et al. 2022);
* ``dirichlet``: class c's shares p_c ~ Dirichlet(alpha), drawn from (seed, c) (label skew; Hsu et al. 2019).

Adding or removing one example changes exactly one client's data; replacing one (or changing its
label) changes at most two. N is a public setting, so a client may be empty (it sends a zero update).
A key is a stable record id, or the record's content (`content_keys`: its features and label). Hash
the record as it was collected, before any data-dependent preprocessing (a z-score's mean and
standard deviation move with every record, and with them every transformed record's content).

`keyed_hold_out` sets rows aside for evaluation the same way (a hash salted apart from the
partition's), so adding or removing one record moves no other record between training and evaluation.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import ClassVar, Mapping

import numpy as np

from federated.partitioners.base import Partitioner, client_names
from privacy import validation

RULES = ("iid", "quantity", "dirichlet")


@dataclasses.dataclass(frozen=True)
class KeyedPartitioner(Partitioner):
    """A rule of `RULES` applied example by example, by key.

    Args:
      num_clients: N, the (public) number of clients, empty ones included.
      rule: iid | quantity | dirichlet.
      alpha: Dirichlet concentration > 0 (quantity, dirichlet).
      seed: seed of the shares and of the key hash.
    """

    num_clients: int
    rule: str = "iid"
    alpha: float = 0.5
    seed: int = 0
    name: ClassVar[str] = "keyed"
    allows_empty_clients: ClassVar[bool] = True

    def __post_init__(self):
        object.__setattr__(self, "num_clients", validation.integer("num_clients", self.num_clients, minimum=1))
        validation.choice("rule", self.rule, RULES)
        object.__setattr__(self, "alpha", validation.positive("alpha", self.alpha))
        validation.integer("seed", self.seed, minimum=0, maximum=2**64 - 1)

    def default_keys(self, x, y):
        return content_keys(x, y)

    def _split(self, labels, keys):
        if keys is None:
            raise ValueError("the keyed partitioner needs one key per example (a record id, or content_keys(x, y))")
        if len(keys) != labels.size:
            raise ValueError(f"{len(keys)} keys for {labels.size} examples: one key per example needed")
        u = self.uniforms(keys)
        clients = np.empty(labels.size, np.int64)
        for c in np.unique(labels):
            members = labels == c
            cumulative = np.cumsum(self.shares(int(c)))
            clients[members] = np.minimum(np.searchsorted(cumulative, u[members], side="right"), self.num_clients - 1)
        order = np.argsort(clients, kind="stable")
        indices = np.split(order, np.cumsum(np.bincount(clients, minlength=self.num_clients))[:-1])
        return indices, client_names(self.num_clients)

    def shares(self, label: int) -> np.ndarray:
        """[N] probabilities that an example of class ``label`` goes to each client (data-independent)."""
        n = self.num_clients
        if self.rule == "iid":
            return np.full(n, 1.0 / n)
        rng = np.random.default_rng([self.seed] if self.rule == "quantity" else [self.seed, label])
        return rng.dirichlet(np.full(n, float(self.alpha)))

    def uniforms(self, keys) -> np.ndarray:
        """u_i in [0, 1): the keyed hash of each key."""
        return keyed_uniforms(keys, self.seed)


def keyed_uniforms(keys, seed: int, *, salt: bytes = b"") -> np.ndarray:
    """u_i in [0, 1): BLAKE2b of each key, keyed by ``seed``; another ``salt`` (at most 16 bytes) gives
    draws independent of the unsalted ones."""
    secret = seed.to_bytes(16, "big", signed=False)
    return (
        np.array(
            [
                int.from_bytes(hashlib.blake2b(_key_bytes(k), digest_size=8, key=secret, salt=salt).digest(), "big")
                for k in keys
            ],
            np.float64,
        )
        / 2.0**64
    )


def keyed_hold_out(keys, *, fraction: float, seed: int) -> np.ndarray:
    """[n] bool: record i is held out iff its keyed hash (salted apart from `KeyedPartitioner`'s) is below
    ``fraction``, a function of the seed and its key alone: adding or removing one record moves no other."""
    validation.probability("fraction", fraction)
    return keyed_uniforms(keys, seed, salt=b"hold-out") < fraction


def content_keys(x, y) -> list[bytes]:
    """One key per example: its features (float32) and label (int64) as bytes."""
    with np.errstate(over="ignore", invalid="ignore"):  # a record beyond float32, or a NaN label, keys as it casts
        x = np.ascontiguousarray(np.asarray(x, np.float32).reshape(len(x), -1))
        y = np.asarray(y).astype(np.int64)
    return [row.tobytes() + label.tobytes() for row, label in zip(x, y, strict=True)]


def record_keys(columns: Mapping[str, np.ndarray]) -> list[bytes]:
    """One key per record of named columns (e.g. tf.Example features as ExampleGen wrote them): every
    column's name and the record's value in it, so equal records, and only they, share a key."""
    names = sorted(columns)
    if not names:
        raise ValueError("no columns to key records by")
    count = len(columns[names[0]])
    parts = []
    for name in names:
        column = np.asarray(columns[name])
        if len(column) != count:
            raise ValueError(f"column {name!r} has {len(column)} values, {names[0]!r} {count}")
        if column.dtype == object:
            values = [
                _key_bytes(v) if isinstance(v, (bytes, str)) or v is None else repr(list(v)).encode() for v in column
            ]
        else:
            rows = column.reshape(count, int(np.prod(column.shape[1:])))  # no record: [0, d]
            values = [row.tobytes() for row in np.ascontiguousarray(rows)]
        tag = name.encode() + column.dtype.str.encode()
        parts.append([len(tag).to_bytes(4, "big") + tag + len(v).to_bytes(4, "big") + v for v in values])
    return [b"".join(row) for row in zip(*parts, strict=True)]


def _key_bytes(key) -> bytes:
    if isinstance(key, bytes):
        return key
    if isinstance(key, np.generic):
        key = key.item()
    return str(key).encode() if isinstance(key, str) else repr(key).encode()
