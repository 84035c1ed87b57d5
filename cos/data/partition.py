"""LMDB key-range partitions: N = min(P, ceil(E/S)) balanced ranges, each (start_key, count).

Unlike the original (which could lose or repeat records at range edges), every key lands in
exactly one range: ranges are cut from one ordered walk of the keys.
"""

import os

from ..errors import DataError


def plan(entries, batch_size, partitions):
    """Balanced (start_index, count) ranges covering `entries` records exactly once."""
    if entries <= 0:
        return []
    n = max(1, min(int(partitions), -(-entries // max(int(batch_size), 1))))
    base, extra = divmod(entries, n)
    ranges, start = [], 0
    for i in range(n):
        count = base + (1 if i < extra else 0)
        ranges.append((start, count))
        start += count
    return ranges


def _open(path):
    import lmdb
    if not os.path.isdir(path):
        raise DataError(f"{path}: LMDB directory not found")
    try:
        return lmdb.open(path, readonly=True, lock=False, readahead=False)
    except lmdb.Error as err:
        raise DataError(f"{path}: cannot open LMDB ({err})") from None


def key_ranges(path, batch_size, partitions):
    """[(start_key: bytes, count)] for the LMDB at local `path`; empty LMDB -> DataError."""
    env = _open(path)
    try:
        entries = env.stat()["entries"]
        if entries == 0:
            raise DataError(f"{path}: LMDB is empty")
        ranges = plan(entries, batch_size, partitions)
        starts = {start for start, _ in ranges}
        keys = {}
        with env.begin() as txn:
            for index, key in enumerate(txn.cursor().iternext(keys=True, values=False)):
                if index in starts:
                    keys[index] = bytes(key)
        return [(keys[start], count) for start, count in ranges]
    finally:
        env.close()


def read_range(path, start_key, count):
    """Yield (key, value) for `count` records from `start_key` on, in key order."""
    env = _open(path)
    try:
        with env.begin() as txn:
            cursor = txn.cursor()
            if not cursor.set_key(start_key):
                raise DataError(f"{path}: key {start_key!r} not found")
            for _ in range(count):
                yield bytes(cursor.key()), bytes(cursor.value())
                if not cursor.next():
                    break
    finally:
        env.close()
