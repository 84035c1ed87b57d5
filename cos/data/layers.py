"""The data layers, registered into the engine's registry on import: MemoryData, CoSData, Data.

All three take batches from a host through `set_feed(iterable of batches)`, a batch being a
list of arrays, one per top (or an object with `.arrays`, like feeder.Batch). MemoryData also
takes pycaffe's `set_input_arrays`; Data reads its LMDB itself on a background thread.
Tops have fixed shapes known at construction, so the net is built before any data exists.
"""

import itertools
import os
import threading
import weakref

import numpy as np
import torch

from ..engine.layer import TRAIN, Layer, register
from ..errors import DataError
from ..proto import caffe_pb2
from .images import ImageConverter, image_top_shapes


def _squeezed(shape):
    """The shape without trailing 1s: (64, 1, 1, 1) and (64,) agree."""
    shape = tuple(int(s) for s in shape)
    while shape and shape[-1] == 1:
        shape = shape[:-1]
    return shape


class _FedLayer(Layer):
    """A data layer: no bottoms, no backward, tops from `set_feed` batches."""

    is_data = True
    has_backward = False
    exact_bottoms = 0
    top_shapes = ()

    def reshape(self, bottom_shapes):
        return [tuple(s) for s in self.top_shapes]

    def set_feed(self, batches):
        """Take tops from `batches` from now on (one batch per forward)."""
        self._feed = iter(batches)

    def _fed(self):
        """The next fed batch as tensors, each checked against its top's shape."""
        feed = getattr(self, "_feed", None)
        if feed is None:
            self.fail(self.no_data_message())
        try:
            batch = next(feed)
        except StopIteration:
            self.fail("the data feed has no more batches")
        arrays = list(getattr(batch, "arrays", batch))
        if len(arrays) < len(self.top_shapes):
            raise DataError(f"layer '{self.name}': a fed batch has {len(arrays)} arrays for "
                            f"{len(self.top_shapes)} tops")
        return [self._tensor(a, shape, top)
                for a, shape, top in zip(arrays, self.top_shapes, self.param.top)]

    def no_data_message(self):
        return "no data: the host must feed this layer with set_feed(batches)"

    def _tensor(self, array, shape, top):
        array = np.asarray(array)
        if array.shape != tuple(shape):
            if _squeezed(array.shape) != _squeezed(shape):
                raise DataError(f"layer '{self.name}': top '{top}' is {tuple(shape)} but the "
                                f"fed array is {tuple(array.shape)}")
            array = array.reshape(shape)
        return torch.as_tensor(array, dtype=self.dtype, device=self.device)

    def _batch_size(self, value, field):
        if value < 1:
            self.fail(f"{field} must be >= 1, got {value}")
        return int(value)


@register("MemoryData")
class MemoryData(_FedLayer):
    """Tops (batch, C, H, W) and (batch,) from memory_data_param (the size after the host's
    transform, as in the original, which strips transform_param from MemoryData layers).

    Data comes from `set_feed` (the Spark jobs) or pycaffe's `set_input_arrays`, whose arrays
    are used as given (Caffe does not transform them) and walked in order, wrapping around.
    """

    exact_tops = 2

    def setup(self, bottom_shapes):
        p = self.param.memory_data_param
        batch = self._batch_size(p.batch_size, "memory_data_param.batch_size")
        for field in ("channels", "height", "width"):
            if getattr(p, field) < 1:
                self.fail(f"memory_data_param.{field} must be >= 1, got {getattr(p, field)}")
        sample, _ = image_top_shapes(self.param)
        self.top_shapes = [(batch,) + tuple(sample), (batch,)]
        self._feed = None
        self._arrays = None

    def set_feed(self, batches):
        self._arrays = None
        super().set_feed(batches)

    def set_input_arrays(self, data, labels):
        """pycaffe's rules: float32 C-contiguous N x C x H x W data, N labels, N % batch == 0."""
        data_shape = self.top_shapes[0]
        if not isinstance(data, np.ndarray) or not isinstance(labels, np.ndarray):
            self.fail("set_input_arrays needs NumPy arrays for data and labels")
        if data.dtype != np.float32 or labels.dtype != np.float32:
            self.fail(f"set_input_arrays needs float32 arrays, got data {data.dtype} and "
                      f"labels {labels.dtype}")
        if not data.flags.c_contiguous:
            self.fail("set_input_arrays needs C-contiguous data (use np.ascontiguousarray)")
        if data.ndim != 4 or data.shape[1:] != data_shape[1:]:
            self.fail(f"set_input_arrays data is {data.shape}, expected N x "
                      f"{' x '.join(str(s) for s in data_shape[1:])}")
        num = data.shape[0]
        if labels.size != num or _squeezed(labels.shape[1:]) != ():
            self.fail(f"set_input_arrays has {num} images but labels of shape {labels.shape} "
                      f"(give {num} labels)")
        batch = data_shape[0]
        if num == 0 or num % batch:
            self.fail(f"set_input_arrays got {num} images, which must be a positive multiple "
                      f"of batch_size {batch}")
        self._feed = None
        self._arrays = (data, labels.reshape(num))
        self._pos = 0

    def no_data_message(self):
        return "no data: call net.set_input_arrays(data, labels) or feed it with set_feed"

    def forward(self, bottoms):
        if self._arrays is None:
            return self._fed()
        data, labels = self._arrays
        batch = self.top_shapes[0][0]
        rows = slice(self._pos, self._pos + batch)
        self._pos = (self._pos + batch) % data.shape[0]
        return [torch.as_tensor(data[rows], dtype=self.dtype, device=self.device),
                torch.as_tensor(labels[rows], dtype=self.dtype, device=self.device)]


def cos_top_shape(top, batch):
    """A CoSData top: (batch, out_C, out_H, out_W)[:sample_num_axes + 1], or (out_C, batch)."""
    dims = (top.out_channels or top.channels, top.out_height or top.height,
            top.out_width or top.width)
    if top.transpose:
        return (dims[0], batch)
    return (batch,) + tuple(dims[:top.sample_num_axes])


@register("CoSData")
class CoSData(_FedLayer):
    """One top per cos_data_param.top entry, fed by the host (DataFrameSource) with
    batch-major arrays, one per top."""

    def setup(self, bottom_shapes):
        p = self.param.cos_data_param
        if len(self.param.top) != len(p.top):
            self.fail(f"has {len(self.param.top)} top names but cos_data_param lists "
                      f"{len(p.top)} top entries; they must match")
        batch = self._batch_size(p.batch_size, "cos_data_param.batch_size")
        shapes = []
        for k, top in enumerate(p.top):
            where = f"cos_data_param.top[{k}] '{top.name}'"
            if not 1 <= top.sample_num_axes <= 3:
                self.fail(f"{where}: sample_num_axes must be 1, 2 or 3, got {top.sample_num_axes}")
            if top.transpose and top.sample_num_axes != 1:
                self.fail(f"{where}: transpose needs sample_num_axes: 1")
            shape = cos_top_shape(top, batch)
            if 0 in shape:
                self.fail(f"{where}: shape {shape} has a zero dimension (set channels, height "
                          "and width, or the out_* sizes)")
            shapes.append(shape)
        self.top_shapes = shapes
        self.transposed = {name for name, top in zip(self.param.top, p.top) if top.transpose}
        self._feed = None

    def _tensor(self, array, shape, top):
        """Fed arrays are batch-major (the Batcher's stack); a `transpose` top turns its
        (batch, C) array into the time-major (C, batch) blob."""
        array = np.asarray(array)
        if top in self.transposed and array.ndim == 2:
            array = array.T
        return super()._tensor(array, shape, top)

    def forward(self, bottoms):
        return self._fed()


# ---- Caffe's own LMDB Data layer -------------------------------------------------------

# py-lmdb refuses to open an environment twice in one process, and a train and a test net
# may read the same LMDB: every read happens under this lock, a chunk of records at a time,
# so no environment stays open between chunks.
_LMDB_LOCK = threading.Lock()
CHUNK = 64  # records read per opening (at least one batch)


def _records(source):
    """Every record of the LMDB in key order, read chunk by chunk (one partition each)."""
    with _LMDB_LOCK:
        parts = source.partitions()
    for part in parts:
        with _LMDB_LOCK:
            chunk = list(source.iter_partition(part))
        yield from chunk


def _sample_stream(source, skip):
    """samples() for the Batcher: the first pass starts after `skip` records (rand_skip)."""
    passes = itertools.count()

    def samples():
        first = next(passes) == 0
        return itertools.islice(_records(source), skip if first else 0, None)
    return samples


def _stop(batcher):
    batcher.close(wait=False)


def _looks_like_leveldb(path):
    return os.path.isfile(os.path.join(path, "CURRENT")) and \
        not os.path.isfile(os.path.join(path, "data.mdb"))


@register("Data")
class Data(_FedLayer):
    """Caffe's Data layer over an LMDB (single process: cos-caffe, pycaffe).

    Tops (batch, C, H', W') from the first record, and (batch,) labels. Records are read in key
    order on a daemon thread and wrap around in both phases, like Caffe's prefetching layer;
    record sizes may change between batches but not within one.
    """

    min_tops = 1
    max_tops = 2

    def setup(self, bottom_shapes):
        from .sources.lmdb_source import LMDBSource
        p = self.param.data_param
        self._check_backend(p)
        batch = self._batch_size(p.batch_size, "data_param.batch_size")
        if not p.source:
            self.fail("data_param.source must be specified")
        layer = caffe_pb2.LayerParameter()
        layer.CopyFrom(self.param)
        # relative to the CWD at construction, like Caffe; the reader thread may run later
        from ..proto import paths
        if paths.is_local(p.source):
            layer.data_param.source = os.path.abspath(paths.local_path(p.source))
        with _LMDB_LOCK:
            parts = LMDBSource(layer, self.phase == TRAIN).partitions()
        entries = sum(count for _, count in parts)
        chunks = -(-entries // max(CHUNK, batch))
        self.source = LMDBSource(layer, self.phase == TRAIN, partitions=chunks)
        with _LMDB_LOCK:
            first = list(self.source.iter_partition((parts[0][0], 1)))[0]
        if p.rand_skip >= entries:
            self.fail(f"data_param.rand_skip {p.rand_skip} skips all {entries} records")
        self.convert = ImageConverter(layer, self.phase, seed=self._transform_seed())
        image = self.convert.image(first)
        if image is None:
            self.fail(f"the first record ({first[0]}) of {p.source} is not a readable image")
        height, width, channels = image.shape
        sample, _ = image_top_shapes(layer, (channels, height, width))
        self.top_shapes = [(batch,) + tuple(sample), (batch,)][:len(self.param.top)]
        self._samples = _sample_stream(self.source, int(p.rand_skip))
        self._feed = None
        self._batcher = None

    def _check_backend(self, p):
        leveldb = caffe_pb2.DataParameter.LEVELDB
        if p.HasField("backend") and p.backend == leveldb:
            self.fail("backend LEVELDB is not supported; only LMDB is (convert the database "
                      "to LMDB and set backend: LMDB)")
        if not p.HasField("backend") and _looks_like_leveldb(p.source):
            self.fail(f"data_param.source {p.source} is a LevelDB (the default backend); only "
                      "LMDB is supported")

    def _transform_seed(self):
        """One draw from the net's generator, only when the transform is random (Caffe)."""
        tp = self.param.transform_param
        if tp.mirror or (self.phase == TRAIN and tp.crop_size):
            return int(torch.randint(0, 2 ** 31 - 1, (1,), generator=self.rng))
        return 0

    def set_feed(self, batches):
        self.close()
        super().set_feed(batches)

    def forward(self, bottoms):
        if self._feed is None:
            self._start()
        if self._batcher is None:
            return self._fed()
        batch = next(self._feed)
        # Caffe re-shapes the tops from each batch's first record
        return [torch.as_tensor(a, dtype=self.dtype, device=self.device)
                for a in batch.arrays[:len(self.top_shapes)]]

    def _start(self):
        from .feeder import Batcher
        batcher = Batcher(self._samples, self.convert, self.top_shapes[0][0], train=True,
                          prefetch=self.param.data_param.prefetch)
        self._batcher = batcher
        self._feed = batcher
        # the reader thread must not outlive the layer (it holds no reference to it)
        self._finalizer = weakref.finalize(self, _stop, batcher)

    def close(self):
        """Stop the reader thread (also done when the layer is garbage collected)."""
        if self._batcher is not None:
            self._finalizer.detach()
            self._batcher.close()
            self._batcher = None
            self._feed = None

