"""LMDB key-range partitions: N = min(P, ceil(E/S)) balanced ranges, each (start_key, count).

Unlike the original (which could lose or repeat records at range edges), every key lands in
exactly one range: ranges are cut from one ordered walk of the keys.
"""

import contextlib
import os
import threading

from ..errors import DataError

# py-lmdb refuses to open one environment twice in a process, so readers of the same LMDB
# (a train and a test layer, two iterators) share one, closed when the last one is done.
_ENVS = {}
_ENVS_LOCK = threading.Lock()


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


@contextlib.contextmanager
def shared_env(path):
    """The process's read-only environment for `path`, reference counted."""
    key = os.path.realpath(path)
    with _ENVS_LOCK:
        entry = _ENVS.get(key)
        if entry is None:
            entry = _ENVS[key] = [_open(path), 0]
        entry[1] += 1
    try:
        yield entry[0]
    finally:
        with _ENVS_LOCK:
            entry[1] -= 1
            if entry[1] == 0:
                entry[0].close()
                del _ENVS[key]


def key_ranges(path, batch_size, partitions):
    """[(start_key: bytes, count)] for the LMDB at local `path`; empty LMDB -> DataError."""
    with shared_env(path) as env:
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


def read_range(path, start_key, count):
    """Yield (key, value) for `count` records from `start_key` on, in key order."""
    with shared_env(path) as env:
        with env.begin() as txn:
            cursor = txn.cursor()
            if not cursor.set_key(start_key):
                raise DataError(f"{path}: key {start_key!r} not found")
            for _ in range(count):
                yield bytes(cursor.key()), bytes(cursor.value())
                if not cursor.next():
                    break
