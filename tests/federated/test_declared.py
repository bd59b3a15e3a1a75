"""The public bound on one record's length under a declared spec (`federated.data.declared.MAX_RECORD_BYTES`):
CSV lines and TFRecord records."""

import tracemalloc

import numpy as np
import pytest

from federated.data import declared
from federated.data.examples import read_tf_records

SPEC = [declared.Column("f0"), declared.Column("label"), declared.Column("user", "text")]


def test_a_csv_line_longer_than_the_bound_is_left_out_without_reaching_the_next_line(tmp_path):
    """Lines of exactly ``max_bytes`` bytes (line ending included) and one more: the first is read, the second
    is left out with its user id, and the line after it is read as if the long one were absent."""
    fit = b"1," + b"0" * 26 + b",u1\n"  # 32 bytes
    over = b"1," + b"0" * 27 + b",u2\n"  # 33 bytes
    path = tmp_path / "d.csv"
    path.write_bytes(b"f0,label,user\n" + fit + over + b"2,1,u3\n")
    read = declared.read_csv(str(path), SPEC, max_bytes=32)
    assert list(read.columns["user"]) == ["u1", "u3"] and list(read.kept) == [0, 2]
    assert np.array_equal(read.columns["f0"], [1, 2]) and read.conforming.all()


def test_a_csv_line_over_the_default_bound_is_never_held_whole(tmp_path):
    """A 20 MB line (10M fields) took about 7 bytes of memory per byte; read in chunks of the bound, the peak
    stays within a few bounds."""
    path = tmp_path / "wide.csv"
    with open(path, "wb") as f:
        f.write(b"f0,label,user\n1,0,a\n" + b"1," * 10_000_000 + b"b\n2,1,c\n")
    tracemalloc.start()
    try:
        read = declared.read_csv(str(path), SPEC)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert list(read.columns["user"]) == ["a", "c"] and peak < 4 * declared.MAX_RECORD_BYTES


@pytest.mark.parametrize("compression", ["", "GZIP"])
def test_a_tfrecord_longer_than_the_bound_is_skipped_by_its_length_and_the_others_read_as_tf_reads_them(
    tmp_path, compression
):
    """Records of 32 and 33 bytes with a bound of 32: the long one stands as b"" (no feature: it does not
    conform) and is never read whole; the others are what TFRecordDataset reads, CRCs checked."""
    import tensorflow as tf

    records = [b"a" * 32, b"b" * 33, b"", b"c" * 5]
    path = str(tmp_path / "r.tfrecord")
    with tf.io.TFRecordWriter(path, options=compression or None) as writer:
        for record in records:
            writer.write(record)
    assert read_tf_records([path], compression=compression) == records
    assert read_tf_records([path], compression=compression, max_record_bytes=32) == [b"a" * 32, b"", b"", b"c" * 5]
    raw = bytearray(open(path, "rb").read())
    if not compression:  # a flipped data byte: refused as TF refuses it
        raw[20] ^= 1
        (tmp_path / "bad.tfrecord").write_bytes(bytes(raw))
        with pytest.raises(ValueError, match="not readable as TFRecord files"):
            read_tf_records([str(tmp_path / "bad.tfrecord")], compression="", max_record_bytes=32)


def test_a_tfrecord_over_the_default_bound_is_never_held_whole(tmp_path):
    import tensorflow as tf

    path = str(tmp_path / "r.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for record in (b"x", b"y" * 20_000_000, b"z"):
            writer.write(record)
    tracemalloc.start()
    try:
        read = read_tf_records([path], max_record_bytes=declared.MAX_RECORD_BYTES)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert read == [b"x", b"", b"z"] and peak < 4 * declared.MAX_RECORD_BYTES
