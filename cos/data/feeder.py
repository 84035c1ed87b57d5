"""Batcher: samples -> batches of per-top arrays, prepared on a background thread.

Producer errors are re-raised in the consumer; every wait polls with a timeout and checks the
producer is alive, so a dead producer never hangs the consumer. TRAIN wraps around like
Caffe's data layer; TEST/features sees each sample once and pads the last batch, with
`count` saying how many rows are real. A sample whose conversion gives None is dropped
(it does not count toward a batch), like the original's "Skip image <id>".
"""

import collections
import itertools
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


class _Channel:
    """A bounded FIFO from the producer thread to the consumer. A starved consumer is woken
    when the channel is full or holds a final item, a blocked producer when it is half
    empty: the two threads hand over the CPU once per several batches rather than once per
    batch (waking a thread on another core costs about as much as making a small batch).
    put/get wait at most `timeout` seconds (put -> False, get -> queue.Empty)."""

    def __init__(self, size):
        self.size = max(1, int(size))
        self.items = collections.deque()
        self.cond = threading.Condition()
        self.consumer_waits = self.producer_waits = False

    def put(self, item, timeout, final=False):
        with self.cond:
            if len(self.items) >= self.size:
                self.producer_waits = True
                self.cond.wait(timeout)
                self.producer_waits = False
                if len(self.items) >= self.size:
                    return False
            self.items.append(item)
            if self.consumer_waits and (final or len(self.items) >= self.size):
                self.cond.notify()
            return True

    def get(self, timeout):
        with self.cond:
            if not self.items:
                self.consumer_waits = True
                self.cond.wait(timeout)
                self.consumer_waits = False
                if not self.items:
                    raise queue.Empty
            item = self.items.popleft()
            if self.producer_waits and len(self.items) <= self.size // 2:
                self.cond.notify()
            return item

    def empty(self):
        return not self.items


class Batcher:
    """`samples()` returns a fresh iterator of samples; `convert(sample) -> (id, [arrays])`,
    or None to drop the sample."""

    def __init__(self, samples, convert, batch_size, train=False, prefetch=4, poll=0.5):
        self.samples = samples
        self.convert = convert
        self.batch_size = int(batch_size)
        self.train = train
        self.poll = poll
        self.queue = _Channel(prefetch)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._produce, daemon=True, name="cos-feeder")
        self.thread.start()

    def _put(self, item, final=False):
        while not self.stopped.is_set():
            if self.queue.put(item, self.poll, final):
                return True
        return False

    def _produce(self):
        try:
            self._fill()
            self._put(_DONE, final=True)
        except BaseException as err:  # re-raised in the consumer
            self._put(_Failure(err), final=True)

    def _fill(self):
        """Convert passes over the samples into batches. While no partial batch is open,
        whole batches are pulled at once and go through `convert.convert_batch` when the
        converter has it and it accepts them; otherwise samples are converted one by one."""
        fast = getattr(self.convert, "convert_batch", None)
        rows, pending = [], []
        while not self.stopped.is_set():
            seen = kept = 0
            samples = iter(self.samples())
            while not self.stopped.is_set():
                if fast is None or rows:
                    sample = next(samples, _DONE)
                    if sample is _DONE:
                        break
                    seen += 1
                    kept += self._add(rows, [sample])
                    continue
                fresh = list(itertools.islice(samples, self.batch_size - len(pending)))
                seen += len(fresh)
                chunk, pending = pending + fresh, []
                if len(chunk) < self.batch_size:  # end of this pass
                    pending = chunk
                    break
                done = fast(chunk)
                if done is None:
                    kept += self._add(rows, chunk)
                    continue
                kept += len(chunk)
                ids, arrays = done
                if not self._put(Batch(list(arrays), list(ids), len(chunk))):
                    return
            if self.stopped.is_set():
                return
            if not self.train:
                break
            if seen == 0:
                raise DataError("data source yielded no samples")
            if kept == 0 and not pending:  # wrapping around would spin forever
                raise DataError(f"all {seen} samples of the data source were dropped "
                                "(see the 'Skip image' warnings)")
        self._add(rows, pending)
        if rows:
            self._put(self._assemble(rows))

    def _add(self, rows, samples):
        """Convert `samples` one by one into `rows`, emitting full batches; returns how
        many were kept."""
        kept = 0
        for sample in samples:
            if self.stopped.is_set():
                break
            row = self.convert(sample)
            if row is None:
                continue
            kept += 1
            rows.append(row)
            if len(rows) == self.batch_size:
                self._put(self._assemble(rows))
                rows.clear()
        return kept

    def _assemble(self, rows):
        count = len(rows)
        padded = rows + [rows[-1]] * (self.batch_size - count)
        tops = len(padded[0][1])
        arrays = [_stack(padded, t) for t in range(tops)]
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

    def close(self, wait=True):
        """Stop the producer; `wait=False` only signals it (safe from a finalizer)."""
        self.stopped.set()
        if wait:
            self.thread.join(timeout=5)


def _stack(rows, top):
    """Top `top` of every row as one array; rows of different shapes -> DataError naming one."""
    values = [np.asarray(r[1][top]) for r in rows]
    first = values[0].shape
    for (sid, _), value in zip(rows, values):
        if value.shape != first:
            raise DataError(f"sample {sid}: top {top} has shape {value.shape}, but sample "
                            f"{rows[0][0]} in the same batch has {first} (all samples of a "
                            "batch must have the same size; resize them)")
    return np.stack(values)
