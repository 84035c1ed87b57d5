"""LMDB key-range partitions cover every key exactly once, from a real read-only LMDB."""

import os

import lmdb
import pytest

from cos.data.partition import key_ranges, plan, read_range
from cos.errors import DataError


def _make_lmdb(path, n):
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i in range(n):
            txn.put(b"%08d" % i, b"v%d" % i)
    env.close()
    os.remove(path / "lock.mdb")  # readers must not need it
    return str(path)


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("lmdb") / "db"
    _make_lmdb(path, 1000)
    os.chmod(path, 0o555)
    yield str(path)
    os.chmod(path, 0o755)


@pytest.mark.parametrize("parts", range(1, 8))
def test_every_key_exactly_once(db, parts):
    ranges = key_ranges(db, 10, parts)
    assert len(ranges) == parts
    keys = [k for start, count in ranges for k, _ in read_range(db, start, count)]
    assert keys == [b"%08d" % i for i in range(1000)]
    assert not os.path.exists(os.path.join(db, "lock.mdb"))


def test_partition_count_is_bounded_by_batches():
    assert [c for _, c in plan(9, 4, 4)] == [3, 3, 3]
    assert plan(0, 4, 4) == []


def test_empty_and_missing_lmdb(tmp_path):
    empty = tmp_path / "empty"
    lmdb.open(str(empty)).close()
    with pytest.raises(DataError, match="empty"):
        key_ranges(str(empty), 4, 2)
    with pytest.raises(DataError, match="not found"):
        key_ranges(str(tmp_path / "nope"), 4, 2)
