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

import codecs
import csv
import dataclasses
from typing import Iterable, Sequence

import numpy as np

from privacy import validation

ACCEPTED = {
    "number": ("float_list", "int64_list"),
    "int": ("int64_list",),
    "float": ("float_list",),
    "bytes": ("bytes_list",),
    "text": ("bytes_list", "int64_list"),
}
"""Each declared kind and the tf.Example value lists that conform to it. number, int and float read as
float64; bytes as bytes; text (a client id) as the text written: bytes decoded, or an integer's digits."""


NUMBER_OR_TEXT = ("float_list", "int64_list", "bytes_list")
"""What a number column accepts when no record may decide its kind (e.g. CsvExampleGen types a column from all
its values): a float, an int, or text that parses alone as a number (`float`); other text does not conform."""


MAX_RECORD_BYTES = 1 << 20
"""The public bound on one record under a declared spec: a CSV line (its line ending included) or a
serialized tf.Example of more bytes does not conform and is left out without being held in memory whole
(no client id is read from it), so one huge record cannot decide whether the run finishes."""


@dataclasses.dataclass(frozen=True)
class Column:
    """A declared column: its name, kind (one of `ACCEPTED`), number of values per record, and the
    tf.Example value lists it accepts (default: the kind's, `ACCEPTED`)."""

    name: str
    kind: str = "number"
    length: int = 1
    accepts: tuple[str, ...] | None = None

    def __post_init__(self):
        validation.choice(f"column {self.name!r}: kind", self.kind, ACCEPTED)
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


def csv_header(path: str, max_bytes: int = MAX_RECORD_BYTES) -> list[str]:
    """The header row of a CSV file (its first line), parsed alone as UTF-8 (a byte-order mark skipped).

    Raises:
      ValueError: for an empty file, or a header line that is not UTF-8 CSV or is longer than ``max_bytes``
        (the header is public: refused).
    """
    with open(path, "rb") as f:
        first = _bounded_line(f, max_bytes)
    if first is None:
        raise ValueError(f"{path}: the header row is longer than {max_bytes} bytes")
    first = first.removeprefix(codecs.BOM_UTF8)
    try:
        header = next(csv.reader([_line_text(first)]), [])
    except (UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"{path}: the header row is not readable as UTF-8 CSV ({err})") from None
    if not header:
        raise ValueError(f"{path} needs a header row")
    return header


def read_csv(path: str, spec: Sequence[Column], max_bytes: int = MAX_RECORD_BYTES) -> Records:
    """The declared columns of a CSV file with a header row, each physical line read alone (a quoted field
    never spans lines) and each cell alone: a number cell that is not a number (text, empty) is NaN. A line
    longer than ``max_bytes`` (`MAX_RECORD_BYTES`) is skipped in chunks, never held whole, and left out.

    A line that is not UTF-8, or that has another number of fields than the header, does not conform: its
    number cells are NaN, and its client id (kind text) is read from the client column's place when the
    line has that field. A line that cannot be parsed at all (a field longer than the csv module's limit,
    a carriage return inside a field) has no readable client id. A line without a readable client id is
    left out; so is an empty line. No quote, byte or length on one line reaches another.

    Raises:
      ValueError: for a header that `csv_header` refuses, a declared column it lacks or one longer than 1.
    """
    header = csv_header(path, max_bytes)
    missing = [c.name for c in spec if c.name not in header]
    if missing:
        raise ValueError(f"{path} has no column(s) {missing}; the columns are {sorted(header)}")
    long = [c.name for c in spec if c.length != 1]
    if long:
        raise ValueError(f"{path}: CSV columns hold one value each, but {long} are declared longer")
    places = {c.name: header.index(c.name) for c in spec}
    values: dict[str, list] = {c.name: [] for c in spec}
    conforming, kept = [], []
    with open(path, "rb") as f:
        _bounded_line(f, max_bytes)
        for position, line in enumerate(iter(lambda: _bounded_line(f, max_bytes), b"")):
            row, whole = (None, False) if line is None else _csv_row(line, len(header))
            cells = {
                c.name: row[places[c.name]] if row is not None and places[c.name] < len(row) else None for c in spec
            }
            if row == [] or any(c.kind == "text" and cells[c.name] is None for c in spec):
                continue
            kept.append(position)
            read = {c.name: _cell(c, cells[c.name], whole) for c in spec}
            for c in spec:
                values[c.name].append(read[c.name])
            conforming.append(
                whole and not any(c.kind in ("number", "int", "float") and np.isnan(read[c.name]) for c in spec)
            )
    columns = {
        c.name: np.array(values[c.name] + [None], dtype=object)[:-1]
        if c.kind in ("text", "bytes")
        else np.array(values[c.name], dtype=np.float64)
        for c in spec
    }
    return Records(columns, np.array(conforming, bool), np.array(kept, np.int64))


def _cell(column: Column, cell: str | None, whole: bool):
    """A CSV cell read as ``column`` declares (text as written, bytes encoded, else a number or NaN); a line
    that is not ``whole`` gives NaN (bytes: None)."""
    if column.kind == "text":
        return cell
    if column.kind == "bytes":
        return cell.encode() if whole else None
    return _number(cell) if whole else float("nan")


def _bounded_line(f, max_bytes: int) -> bytes | None:
    """The next physical line of the binary file ``f`` (b"" at its end), or None for a line longer than
    ``max_bytes``, which is then read past in chunks of at most ``max_bytes`` + 1 bytes."""
    line = f.readline(max_bytes + 1)
    if len(line) <= max_bytes:
        return line
    while line and not line.endswith(b"\n"):
        line = f.readline(max_bytes + 1)
    return None


def _line_text(line: bytes) -> str:
    """One physical line without its line ending, decoded as UTF-8 (strict)."""
    return line.removesuffix(b"\n").removesuffix(b"\r").decode("utf-8")


def _csv_row(line: bytes, width: int) -> tuple[list[str] | None, bool]:
    """(the fields of one physical line, or None when it cannot be parsed; whether the line is UTF-8 with
    ``width`` fields). A line that is not UTF-8 is parsed with its bad bytes replaced, for its client id."""
    try:
        text, clean = _line_text(line), True
    except UnicodeDecodeError:
        text, clean = line.removesuffix(b"\n").removesuffix(b"\r").decode("utf-8", "replace"), False
    try:
        row = next(csv.reader([text]), [])
    except csv.Error:
        return None, False
    return row, clean and len(row) == width


def _number(cell: str | None) -> float:
    try:
        return float(cell)
    except (TypeError, ValueError):
        return float("nan")


def read_examples(records: Iterable[bytes], spec: Sequence[Column]) -> Records:
    """The declared features of serialized tf.Examples, each record read alone: a feature that is missing,
    of another kind or of another length is NaN (bytes: None) in that record only, and so is every feature
    of a record that is not a serialized tf.Example; a record without a conforming client id (kind text),
    such a record included, is left out. Undeclared features are ignored.
    """
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    values: dict[str, list] = {c.name: [] for c in spec}
    conforming, kept = [], []
    for position, raw in enumerate(records):
        try:
            features = tf.train.Example.FromString(raw).features.feature
        except DecodeError:
            features = {}
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
            columns[c.name] = np.array(values[c.name] + [None], dtype=object)[:-1]  # never a 2-D array
        else:
            nan = [float("nan")] * c.length
            array = np.array([nan if v is None else v for v in values[c.name]], dtype=np.float64)
            columns[c.name] = (
                array.reshape(len(array), c.length)[:, 0] if c.length == 1 else array.reshape(len(array), c.length)
            )
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
    if kind == "bytes_list":  # a number column that accepts text (`NUMBER_OR_TEXT`): each value parsed alone
        try:
            return [float(v) for v in values]
        except ValueError:
            return None
    return values
