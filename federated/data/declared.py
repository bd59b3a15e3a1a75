"""Reading private records against a declared spec: no record decides another's features, the feature set,
the client ids or whether the run happens.

Inferring types from the values lets one record decide them for all: one "abc" makes a numeric CSV column
text (and drops it as a feature), one 1.5 makes every integer user id a float ("1" becomes "1.0"), and the
first tf.Example fixes every feature's kind and length. A private run instead reads each record against a
spec fixed before any record is read (column names, kinds and lengths from settings or a schema). A value
that does not conform becomes NaN (a number) or marks its record as not conforming, so
`federated.data.screen` leaves that record out alone after dealing; a record whose client id cannot be read
belongs to no client and is left out before dealing. Nothing is counted or reported.
"""

from __future__ import annotations

import csv
import dataclasses
from typing import Iterable, Sequence

import numpy as np

ACCEPTED = {"number": ("float_list", "int64_list"), "int": ("int64_list",), "float": ("float_list",),
            "bytes": ("bytes_list",), "text": ("bytes_list", "int64_list")}
"""Each declared kind and the tf.Example value lists that conform to it. number, int and float read as
float64; bytes as bytes; text (a client id) as the text written: bytes decoded, or an integer's digits."""


@dataclasses.dataclass(frozen=True)
class Column:
    """A declared column: its name, kind (one of `ACCEPTED`), number of values per record, and the
    tf.Example value lists it accepts (default: the kind's, `ACCEPTED`)."""

    name: str
    kind: str = "number"
    length: int = 1
    accepts: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.kind not in ACCEPTED:
            raise ValueError(f"column {self.name!r}: kind must be one of {', '.join(ACCEPTED)}, got {self.kind!r}")
        if self.kind == "text" and self.length != 1:
            raise ValueError(f"column {self.name!r}: a client id is one value, got length {self.length}")
        if self.accepts is None:
            object.__setattr__(self, "accepts", ACCEPTED[self.kind])


@dataclasses.dataclass(frozen=True)
class Records:
    """Records read against a spec.

    Attributes:
      columns: one array per declared column: float64 ([n] or [n, length]; NaN where a value does not
        conform), object arrays of bytes (None where not conforming) or of str (client ids).
      conforming: [n] bool, every declared value of the record conforms.
      kept: [n] positions of the records read among all records (those without a readable client id left out).
    """

    columns: dict[str, np.ndarray]
    conforming: np.ndarray
    kept: np.ndarray


def read_csv(path: str, spec: Sequence[Column]) -> Records:
    """The declared columns of a CSV file with a header row, each cell read alone: a number cell that is
    not a number (text, empty) is NaN; a row whose field count differs from the header's is left out.

    Raises:
      ValueError: for a file without a header, or a declared column the header lacks or one longer than 1.
    """
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f"{path} needs a header row")
    header, body = rows[0], rows[1:]
    missing = [c.name for c in spec if c.name not in header]
    if missing:
        raise ValueError(f"{path} has no column(s) {missing}; the columns are {sorted(header)}")
    long = [c.name for c in spec if c.length != 1]
    if long:
        raise ValueError(f"{path}: CSV columns hold one value each, but {long} are declared longer")
    kept = np.array([i for i, row in enumerate(body) if len(row) == len(header)], dtype=np.int64)
    columns, conforming = {}, np.ones(len(kept), bool)
    for column in spec:
        j = header.index(column.name)
        cells = [body[i][j] for i in kept]
        if column.kind in ("text", "bytes"):
            columns[column.name] = np.array(cells if column.kind == "text" else [c.encode() for c in cells],
                                            dtype=object)
        else:
            columns[column.name] = np.array([_number(c) for c in cells], dtype=np.float64)
            conforming &= ~np.isnan(columns[column.name])
    return Records(columns, conforming, kept)


def _number(cell: str) -> float:
    try:
        return float(cell)
    except ValueError:
        return float("nan")


def read_examples(records: Iterable[bytes], spec: Sequence[Column]) -> Records:
    """The declared features of serialized tf.Examples, each record read alone: a feature that is missing,
    of another kind or of another length is NaN (bytes: None) in that record only; a record without a
    conforming client id (kind text) is left out. Undeclared features are ignored.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    values: dict[str, list] = {c.name: [] for c in spec}
    conforming, kept = [], []
    for position, raw in enumerate(records):
        features = tf.train.Example.FromString(raw).features.feature
        read = {c.name: _conforming(features, c) for c in spec}
        if any(c.kind == "text" and read[c.name] is None for c in spec):
            continue
        kept.append(position)
        conforming.append(all(v is not None for v in read.values()))
        for c in spec:
            values[c.name].append(read[c.name])
    columns = {}
    for c in spec:
        if c.kind in ("text", "bytes"):
            columns[c.name] = np.array(values[c.name] + [None], dtype=object)[:-1]   # never a 2-D array
        else:
            nan = [float("nan")] * c.length
            array = np.array([nan if v is None else v for v in values[c.name]], dtype=np.float64)
            columns[c.name] = array.reshape(len(array), c.length)[:, 0] if c.length == 1 else \
                array.reshape(len(array), c.length)
    return Records(columns, np.array(conforming, bool), np.array(kept, np.int64))


def _conforming(features, column: Column):
    """The record's value(s) of ``column`` as declared, or None when they do not conform."""
    if column.name not in features:
        return None
    feature = features[column.name]
    kind = feature.WhichOneof("kind")
    if kind not in column.accepts:
        return None
    values = list(getattr(feature, kind).value)
    if len(values) != column.length:
        return None
    if column.kind == "text":
        return values[0].decode("utf-8", "replace") if kind == "bytes_list" else str(values[0])
    if column.kind == "bytes":
        return values[0] if column.length == 1 else values
    return values
