"""DataSource(sc).getSource(cfg, is_training): the TRAIN or TEST data layer's source as a
picklable description that builds the record RDD on the driver and turns a rank's
records into batches inside a task.

The reading itself belongs to `cos.data.sources` (registry by `source_class`); a minimal
LMDB reader stands in here until that registry provides the class.
"""

import os

import numpy as np

from ..errors import DataError, NetError

_SHORT = {"com.yahoo.ml.caffe.LMDB": "LMDB",
          "com.yahoo.ml.caffe.SeqImageDataSource": "SeqImageDataSource",
          "com.yahoo.ml.caffe.ImageDataFrame": "ImageDataFrame",
          "com.yahoo.ml.caffe.DataFrameSource": "DataFrameSource"}


class DataSource:
    def __init__(self, sc):
        self.sc = sc

    def getSource(self, cfg, is_training):
        layer = cfg.data_layer(is_training)
        source = Source(layer, is_training, resize=cfg.resize,
                        partitions=cfg.lmdb_partitions, solver_dir=cfg.solver_dir,
                        persistent=cfg.isRddPersistent)
        source.cfg = cfg  # the driver-side job reads its options from here
        return source

    get_source = getSource


class Source:
    """One data layer's input: which records, in what batches, for which phase."""

    def __init__(self, layer, is_training, resize=False, partitions=1, solver_dir="",
                 persistent=False):
        self.layer = layer
        self.is_training = is_training
        self.resize = resize
        self.partitions = max(int(partitions or 1), 1)
        self.solver_dir = solver_dir
        self.persistent = persistent
        self.source_class = layer.source_class
        self.kind = _SHORT.get(self.source_class, self.source_class)
        self.batch_size = _batch_size(layer)
        self.path = _source_path(layer, solver_dir)
        self.cfg = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["cfg"] = None  # holds the SparkContext; tasks never need it
        state["layer"] = self.layer.SerializeToString()  # protobuf messages don't pickle
        return state

    def __setstate__(self, state):
        from ..proto import caffe_pb2
        layer = caffe_pb2.LayerParameter()
        layer.ParseFromString(state["layer"])
        state["layer"] = layer
        self.__dict__.update(state)

    def make_rdd(self, sc):
        """RDD of records `(id, label, channels, height, width, encoded, data)`."""
        delegate = _registered(self)
        if delegate is not None:
            return delegate.make_rdd(sc)
        if self.kind == "LMDB":
            return _lmdb_rdd(sc, self.path, self.partitions)
        raise DataError(f"layer '{self.layer.name}': source_class '{self.source_class}' "
                        "is not available (known: " + ", ".join(sorted(_SHORT.values())) + ")")

    # ---- inside a task -------------------------------------------------------
    def to_arrays(self, records, phase, seed=None):
        """A batch's worth of records -> [data (B,C,H,W) float32, label (B,1,1,1)]."""
        transform = _transformer(self.layer, phase, seed)
        images, labels = [], []
        for record in records:
            images.append(transform(_decode(record, self.layer, self.resize)))
            labels.append(float(int(record[1])))
        data = np.stack(images).astype(np.float32)
        label = np.asarray(labels, dtype=np.float32).reshape(-1, 1, 1, 1)
        return [data, label]


def _batch_size(layer):
    if layer.HasField("memory_data_param"):
        size = layer.memory_data_param.batch_size
    elif layer.HasField("cos_data_param"):
        size = layer.cos_data_param.batch_size
    else:
        raise NetError(f"layer '{layer.name}': failed to specify memory_data_param")
    if size < 1:
        raise NetError(f"layer '{layer.name}': invalid batch size: {size}")
    return int(size)


def _source_path(layer, solver_dir):
    param = layer.memory_data_param if layer.HasField("memory_data_param") \
        else layer.cos_data_param
    if not param.source:
        raise NetError(f"layer '{layer.name}': source must be specified")
    from ..proto import paths
    source = param.source
    if paths.is_local(source) and not os.path.isabs(paths.local_path(source)):
        near = os.path.join(solver_dir, paths.local_path(source))
        source = near if os.path.exists(near) else os.path.abspath(paths.local_path(source))
    return source


def _registered(source):
    """The data team's source for this layer, when `cos.data.sources` provides one."""
    try:
        from ..data import sources as registry
    except ImportError:
        return None
    lookup = getattr(registry, "get_source_class", None) or getattr(registry, "get", None)
    if lookup is None:
        return None
    try:
        cls = lookup(source.source_class)
    except Exception:
        return None
    try:
        return cls(source.layer, source.is_training, resize=source.resize,
                   partitions=source.partitions)
    except TypeError:
        return None


# ---- a minimal LMDB reader ----------------------------------------------------

def _lmdb_rdd(sc, path, partitions):
    from ..proto import paths
    local = paths.local_path(path)
    ranges = _lmdb_ranges(local, partitions)
    return sc.parallelize(ranges, len(ranges)).flatMap(lambda r: _read_lmdb(local, *r))


def _lmdb_ranges(path, partitions):
    """Split the entries into min(P, ceil(E/S)) consecutive (start, count) ranges."""
    import lmdb
    if not os.path.isdir(path):
        raise DataError(f"{path}: LMDB directory not found")
    env = lmdb.open(path, readonly=True, lock=False)
    try:
        entries = env.stat()["entries"]
    finally:
        env.close()
    if entries == 0:
        raise DataError(f"{path}: LMDB is empty")
    per = -(-entries // partitions)
    return [(start, min(per, entries - start)) for start in range(0, entries, per)]


def _read_lmdb(path, start, count):
    import lmdb
    from ..proto import caffe_pb2
    env = lmdb.open(path, readonly=True, lock=False)
    try:
        with env.begin() as txn:
            cursor = txn.cursor()
            cursor.first()
            for _ in range(start):
                cursor.next()
            out = []
            for key, value in cursor:
                if len(out) == count:
                    break
                datum = caffe_pb2.Datum()
                datum.ParseFromString(value)
                data = datum.data
                if datum.channels > 1 and not datum.encoded:  # planar CHW -> HWC
                    data = np.frombuffer(data, np.uint8).reshape(
                        datum.channels, datum.height, datum.width).transpose(1, 2, 0).tobytes()
                out.append((key.decode(), str(datum.label), datum.channels, datum.height,
                            datum.width, datum.encoded, data))
            return out
    finally:
        env.close()


def _decode(record, layer, resize):
    """Image record -> CxHxW uint8 (raw bytes are interleaved HWC, section 4.2)."""
    _, _, channels, height, width, encoded, data = record
    if encoded:
        from ..proto.datum import decode_image
        want = layer.memory_data_param.channels or None
        img = decode_image(data, color=(want == 3) if want in (1, 3) else None)
        img = img if img.ndim == 3 else img[:, :, None]
        return np.ascontiguousarray(img.transpose(2, 0, 1))
    arr = np.frombuffer(data, dtype=np.uint8)
    return np.ascontiguousarray(arr.reshape(height, width, channels).transpose(2, 0, 1))


def _transformer(layer, phase, seed):
    param = layer.transform_param
    try:
        from ..data.transformer import DataTransformer
        return DataTransformer(param, phase, seed).transform
    except ImportError:
        pass
    scale = param.scale
    mean = np.asarray(list(param.mean_value) or [0.0], dtype=np.float32).reshape(-1, 1, 1)
    return lambda img: (img.astype(np.float32) - mean) * scale
