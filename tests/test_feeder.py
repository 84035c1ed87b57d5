"""Batcher: exact-once test iteration with padding, train wrap-around, producer errors."""

import threading

import numpy as np
import pytest

from cos.data.feeder import Batcher
from cos.errors import DataError


def _convert(sample):
    i = sample
    return f"id{i}", [np.full((1, 2, 2), i, np.float32), np.float32(i % 10)]


def test_features_mode_over_two_partitions_yields_each_record_once():
    parts = [range(0, 502), range(502, 1003)]
    rows = []
    for part in parts:
        for batch in Batcher(lambda p=part: iter(p), _convert, 10):
            assert batch.arrays[0].shape == (10, 1, 2, 2)
            rows += [(i, batch.arrays[0][k, 0, 0, 0]) for k, i in enumerate(batch.ids)]
            assert len(batch.ids) == batch.count
    assert len(rows) == 1003
    assert [r[0] for r in rows] == [f"id{i}" for i in range(1003)]
    assert all(float(v) == int(i[2:]) for i, v in rows)


def test_train_mode_wraps_around():
    b = Batcher(lambda: iter(range(3)), _convert, 2, train=True)
    ids = [i for _ in range(4) for i in next(b).ids]
    b.close()
    assert ids == ["id0", "id1", "id2", "id0", "id1", "id2", "id0", "id1"]


def test_producer_exception_reaches_consumer():
    def bad(sample):
        if sample == 5:
            raise DataError("sample id5: label out of range")
        return _convert(sample)
    b = Batcher(lambda: iter(range(10)), bad, 2)
    with pytest.raises(DataError, match="id5"):
        for _ in b:
            pass


def test_dropped_samples_do_not_count_toward_a_batch():
    def odd_only(sample):
        return None if sample % 2 == 0 else _convert(sample)
    batches = list(Batcher(lambda: iter(range(10)), odd_only, 2))
    assert [b.ids for b in batches] == [["id1", "id3"], ["id5", "id7"], ["id9"]]
    assert batches[-1].count == 1 and batches[-1].arrays[0].shape == (2, 1, 2, 2)


def test_train_mode_with_every_sample_dropped_fails_instead_of_spinning():
    b = Batcher(lambda: iter(range(4)), lambda s: None, 2, train=True)
    with pytest.raises(DataError, match="all 4 samples .* dropped"):
        next(b)


def test_samples_of_different_sizes_name_the_odd_one():
    def sized(sample):
        side = 3 if sample == 2 else 2
        return f"id{sample}", [np.zeros((1, side, side), np.float32), np.float32(0)]
    with pytest.raises(DataError, match=r"sample id2: top 0 has shape \(1, 3, 3\).*id0"):
        list(Batcher(lambda: iter(range(4)), sized, 4))


def test_close_without_waiting_stops_the_thread():
    b = Batcher(lambda: iter(range(3)), _convert, 1, train=True, prefetch=1, poll=0.05)
    next(b)
    b.close(wait=False)
    b.thread.join(timeout=5)
    assert not b.thread.is_alive()


def test_a_starved_consumer_gets_a_batch_before_the_queue_fills():
    """The channel wakes a waiting consumer only when full, so its poll must still hand
    over a lone batch while the producer is stuck on the next one."""
    gate = threading.Event()

    def slow(sample):
        if sample > 0:
            gate.wait(10)
        return _convert(sample)

    b = Batcher(lambda: iter(range(3)), slow, 1, prefetch=4, poll=0.05)
    try:
        first = next(b)
        assert first.ids == ["id0"] and not gate.is_set()
    finally:
        gate.set()
    assert [batch.ids for batch in b] == [["id1"], ["id2"]]


@pytest.mark.timeout(4)
def test_a_full_queue_resumes_the_producer_as_the_consumer_drains_it():
    """With a 5 s poll, a missed wake-up on either side would blow the 4 s limit."""
    b = Batcher(lambda: iter(range(50)), _convert, 1, prefetch=4, poll=5)
    ids = [batch.ids[0] for batch in b]
    assert ids == [f"id{i}" for i in range(50)]
