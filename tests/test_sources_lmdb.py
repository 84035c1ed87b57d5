"""LMDBSource on a real LMDB of Datums: HWC samples, partitions, corrupt Datum errors."""

import lmdb
import numpy as np
import pytest

from cos.data.sources.lmdb_source import LMDBSource
from cos.errors import DataError
from cos.proto import caffe_pb2


def _layer(path, batch=4):
    layer = caffe_pb2.LayerParameter(name="data", type="Data")
    layer.data_param.source = path
    layer.data_param.batch_size = batch
    return layer


def _write(path, n, corrupt=None):
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i in range(n):
            d = caffe_pb2.Datum(channels=3, height=2, width=2, label=i % 10,
                                data=bytes(range(i, i + 12)))
            value = b"\xff\xff garbage" if i == corrupt else d.SerializeToString()
            txn.put(b"%05d" % i, value)
    env.close()
    return str(path)


def test_samples_are_hwc_and_cover_all_partitions(tmp_path):
    src = LMDBSource(_layer(_write(tmp_path / "db", 9)), True, partitions=4)
    parts = src.partitions()
    assert len(parts) == 3
    samples = [s for p in parts for s in src.iter_partition(p)]
    assert [s[0] for s in samples] == ["%05d" % i for i in range(9)]
    sid, label, c, h, w, enc, data = samples[1]
    assert (label, c, h, w, enc) == ("1", 3, 2, 2, False)
    chw = np.arange(1, 13, dtype=np.uint8).reshape(3, 2, 2)
    np.testing.assert_array_equal(np.frombuffer(data, np.uint8).reshape(2, 2, 3),
                                  chw.transpose(1, 2, 0))


def test_corrupt_datum_names_key(tmp_path):
    src = LMDBSource(_layer(_write(tmp_path / "db", 5, corrupt=3)), False)
    with pytest.raises(DataError, match="00003"):
        [s for p in src.partitions() for s in src.iter_partition(p)]


def test_missing_source(tmp_path):
    with pytest.raises(DataError, match="not found"):
        LMDBSource(_layer(str(tmp_path / "nope")), False).partitions()


def test_registry_names():
    from cos.data.sources import lookup
    assert lookup("com.yahoo.ml.caffe.LMDB") is LMDBSource
    assert lookup("LMDB") is LMDBSource
    assert lookup("cos.data.sources.lmdb_source.LMDBSource") is LMDBSource
    with pytest.raises(DataError, match="valid: LMDB"):
        lookup("Bogus", "data")
    with pytest.raises(DataError, match="layer 'data'"):
        lookup("", "data")


def test_two_readers_of_one_lmdb_in_one_process(tmp_path):
    """py-lmdb refuses a second open of the same environment: readers share one."""
    src = LMDBSource(_layer(_write(tmp_path / "db", 6)), True)
    first, second = src.iter_local(), src.iter_local()
    pairs = list(zip(first, second))
    assert [a[0] for a, _ in pairs] == [b[0] for _, b in pairs] == ["%05d" % i for i in range(6)]
    again = list(src.iter_local())  # reopened after both were closed
    assert len(again) == 6
