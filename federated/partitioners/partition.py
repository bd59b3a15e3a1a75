"""The result of partitioning: which examples each client holds, with per-client label counts.

A `Partition` is plain data (index arrays plus the partitioner's settings), so it can be printed,
saved as JSON and loaded back to rebuild exactly the same clients.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, Sequence

import numpy as np

FORMAT = "ppml.federated.partition/1"


class Partition:
    """Per-client example indices into one dataset.

    Args:
      client_ids: one name per client, unique.
      indices: one int array per client, indices into the partitioned dataset; every client is
        non-empty and no index appears twice.
      labels: the labels the partition was made from (for label histograms), or None.
      spec: the partitioner's settings (``Partitioner.to_dict()``), recorded for provenance.
      allow_empty: clients may hold no examples, all of them included (keyed partitions of a fixed, public N).

    Raises:
      ValueError: on an empty client (unless allowed), a repeated index or mismatched lengths, naming
        the client.
    """

    def __init__(
        self,
        client_ids: Sequence[str],
        indices: Sequence[np.ndarray],
        *,
        labels: np.ndarray | None = None,
        spec: Mapping[str, Any] | None = None,
        allow_empty: bool = False,
    ):
        if len(client_ids) != len(indices):
            raise ValueError(f"{len(client_ids)} client ids for {len(indices)} index arrays")
        if len(set(client_ids)) != len(client_ids):
            raise ValueError("client ids must be unique")
        if not client_ids:
            raise ValueError("a partition needs at least one client")
        self._ids = tuple(str(c) for c in client_ids)
        self._indices = tuple(np.asarray(ix, dtype=np.int64) for ix in indices)
        for cid, ix in zip(self._ids, self._indices, strict=True):
            if ix.ndim != 1 or (ix.size == 0 and not allow_empty):
                raise ValueError(f"client {cid!r} has no examples; every client needs at least one")
        flat = np.concatenate(self._indices)
        if flat.size == 0 and not allow_empty:
            raise ValueError("a partition needs at least one example")
        if flat.size and flat.min() < 0:
            raise ValueError("example indices must be >= 0")
        if np.unique(flat).size != flat.size:
            raise ValueError("an example is assigned to more than one client")
        if labels is not None:
            labels = np.asarray(labels)
            if flat.size and flat.max() >= labels.shape[0]:
                raise ValueError(f"index {int(flat.max())} is out of range for {labels.shape[0]} labels")
        self._labels = labels
        self._spec = dict(spec or {})
        self._allow_empty = bool(allow_empty)

    @property
    def client_ids(self) -> tuple[str, ...]:
        return self._ids

    @property
    def indices(self) -> tuple[np.ndarray, ...]:
        return self._indices

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self._spec)

    @property
    def num_clients(self) -> int:
        return len(self._ids)

    def sizes(self) -> np.ndarray:
        """Examples per client, in client order."""
        return np.array([ix.size for ix in self._indices], dtype=np.int64)

    def num_classes(self) -> int:
        if self._labels is None:
            raise ValueError("this partition was made without labels; it has no label histograms")
        return int(self._labels.max()) + 1

    def label_histograms(self) -> np.ndarray:
        """[num_clients, num_classes] example counts per label (labels are 0..K-1 integers)."""
        k = self.num_classes()
        return np.stack([np.bincount(self._labels[ix], minlength=k) for ix in self._indices])

    def summary(self, max_rows: int = 20) -> str:
        """A table of per-client sizes and label histograms (first ``max_rows`` clients)."""
        sizes = self.sizes()
        name = self._spec.get("name", "partition")
        lines = [
            f"{name}: {self.num_clients} clients, {int(sizes.sum())} examples, per client "
            f"min {sizes.min()} / median {np.median(sizes):g} / max {sizes.max()}"
        ]
        hist = self.label_histograms() if self._labels is not None else None
        if hist is not None:
            classes = (hist > 0).sum(axis=1)
            lines.append(
                f"classes per client: min {classes.min()} / median {np.median(classes):g} / max {classes.max()}"
            )
        header = f"{'client':>12} {'size':>7}" + ("  label histogram" if hist is not None else "")
        lines.append(header)
        for row, (cid, size) in enumerate(zip(self._ids, sizes, strict=True)):
            if row == max_rows:
                lines.append(f"... {self.num_clients - max_rows} more clients")
                break
            text = f"{cid:>12} {size:>7}"
            if hist is not None:
                text += "  " + " ".join(f"{c:>4}" for c in hist[row])
            lines.append(text)
        return "\n".join(lines)

    def select(self, keep) -> "Partition":
        """The partition of the records where ``keep`` ([n] bool) holds, renumbered in order; every client
        stays, empty ones too."""
        keep = np.asarray(keep, bool)
        position = np.cumsum(keep) - 1
        return Partition(
            self._ids,
            [position[ix[keep[ix]]] for ix in self._indices],
            labels=None if self._labels is None else self._labels[keep],
            spec=self._spec,
            allow_empty=True,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": FORMAT,
            "spec": self._spec,
            "allow_empty": self._allow_empty,
            "clients": [
                {"id": cid, "size": int(ix.size), "indices": ix.tolist()}
                for cid, ix in zip(self._ids, self._indices, strict=True)
            ],
        }
        if self._labels is not None:
            for client, hist in zip(out["clients"], self.label_histograms(), strict=True):
                client["label_histogram"] = hist.tolist()
        return out

    def save(self, path: str | os.PathLike) -> None:
        """Writes sizes, label histograms and indices as JSON."""
        with open(path, "w") as f:
            json.dump(self.to_dict(), f)

    @classmethod
    def load(cls, path: str | os.PathLike, labels: np.ndarray | None = None) -> "Partition":
        with open(path) as f:
            data = json.load(f)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{os.fspath(path)!r} is not a ppml partition file (format {FORMAT!r})")
        clients = data["clients"]
        return cls(
            [c["id"] for c in clients],
            [np.asarray(c["indices"], np.int64) for c in clients],
            labels=labels,
            spec=data.get("spec"),
            allow_empty=bool(data.get("allow_empty", False)),
        )

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, Partition)
            and self._ids == other._ids
            and all(np.array_equal(a, b) for a, b in zip(self._indices, other._indices, strict=True))
        )

    def __repr__(self) -> str:
        return f"Partition({self._spec.get('name', '?')}, clients={self.num_clients}, examples={self.sizes().sum()})"
