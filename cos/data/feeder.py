"""Batcher: samples -> batches of per-top arrays, prepared on a background thread.

Producer errors are re-raised in the consumer; every wait polls with a timeout and checks the
producer is alive, so a dead producer never hangs the consumer. TRAIN wraps around like
Caffe's data layer; TEST/features sees each sample once and pads the last batch, with
`count` saying how many rows are real.
"""

import queue
import threading
from dataclasses import dataclass

import numpy as np

from ..errors import DataError

_DONE = object()


@dataclass
class Batch:
    arrays: list   # one array per top, leading axis = batch size
    ids: list      # sample ids of the real rows
    count: int     # real rows; rows past it repeat the last sample as padding


class _Failure:
    def __init__(self, error):
        self.error = error


class Batcher:
    """`samples()` returns a fresh iterator of samples; `convert(sample) -> (id, [arrays])`."""

    def __init__(self, samples, convert, batch_size, train=False, prefetch=4, poll=0.5):
        self.samples = samples
        self.convert = convert
        self.batch_size = int(batch_size)
        self.train = train
        self.poll = poll
        self.queue = queue.Queue(maxsize=max(1, prefetch))
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._produce, daemon=True, name="cos-feeder")
        self.thread.start()

    def _put(self, item):
        while not self.stopped.is_set():
            try:
                self.queue.put(item, timeout=self.poll)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self):
        try:
            rows = []
            while not self.stopped.is_set():
                seen = 0
                for sample in self.samples():
                    seen += 1
                    rows.append(self.convert(sample))
                    if len(rows) == self.batch_size:
                        if not self._put(self._assemble(rows)):
                            return
                        rows = []
                if not self.train:
                    break
                if seen == 0:
                    raise DataError("data source yielded no samples")
            if rows:
                self._put(self._assemble(rows))
            self._put(_DONE)
        except BaseException as err:  # re-raised in the consumer
            self._put(_Failure(err))

    def _assemble(self, rows):
        count = len(rows)
        padded = rows + [rows[-1]] * (self.batch_size - count)
        tops = len(padded[0][1])
        arrays = [np.stack([np.asarray(r[1][t]) for r in padded]) for t in range(tops)]
        return Batch(arrays, [r[0] for r in rows], count)

    def __iter__(self):
        return self

    def __next__(self):
        while True:
            try:
                item = self.queue.get(timeout=self.poll)
                break
            except queue.Empty:
                if not self.thread.is_alive() and self.queue.empty():
                    raise DataError("data feeder thread stopped without a result") from None
        if item is _DONE:
            self.stopped.set()
            raise StopIteration
        if isinstance(item, _Failure):
            self.stopped.set()
            raise item.error
        return item

    def close(self):
        self.stopped.set()
        self.thread.join(timeout=5)
