"""LMDB of Caffe Datums -> sample tuples (id, label, channels, height, width, encoded, data).

Raw data is converted from Datum's planar CHW to interleaved HWC (channels > 1); encoded
images pass through. float_data is ignored, as in the original.
"""

import numpy as np

from ...errors import DataError
from ...proto import caffe_pb2
from .. import partition


def datum_sample(key, value, where):
    """One LMDB (key, value) -> the sample tuple; a value that is not a Datum -> DataError."""
    datum = caffe_pb2.Datum()
    try:
        datum.ParseFromString(value)
    except Exception:
        raise DataError(f"{where}: key {key.decode(errors='replace')!r}: "
                        "value is not a Caffe Datum") from None
    data = datum.data
    if not datum.encoded:
        size = datum.channels * datum.height * datum.width
        if len(data) != size or size == 0:
            raise DataError(f"{where}: key {key.decode(errors='replace')!r}: "
                            f"{len(data)} data bytes for {datum.channels}x{datum.height}x"
                            f"{datum.width}")
        if datum.channels > 1:
            data = np.frombuffer(data, np.uint8).reshape(
                datum.channels, datum.height, datum.width).transpose(1, 2, 0).tobytes()
    return (key.decode(errors="replace"), str(datum.label), datum.channels, datum.height,
            datum.width, bool(datum.encoded), data)


class LMDBSource:
    """A Data/MemoryData/CoSData layer whose `source` is an LMDB directory (local path)."""

    def __init__(self, layer, is_train, partitions=1, resize=False, **_options):
        self.layer = layer
        self.is_train = is_train
        self.lmdb_partitions = max(int(partitions or 1), 1)
        param = _param(layer)
        self.path = param.source
        self.batch_size = int(param.batch_size)
        if not self.path:
            raise DataError(f"layer '{layer.name}': source must be specified")

    def local(self):
        from ...proto import paths
        return paths.local_path(self.path)

    def partitions(self, spark=None):
        return partition.key_ranges(self.local(), self.batch_size, self.lmdb_partitions)

    def iter_partition(self, part):
        start_key, count = part
        where = self.path
        for key, value in partition.read_range(self.local(), start_key, count):
            yield datum_sample(key, value, where)

    def make_rdd(self, sc):
        parts = self.partitions()
        return sc.parallelize(parts, len(parts)).flatMap(self.iter_partition)


def _param(layer):
    for name in ("data_param", "memory_data_param", "cos_data_param"):
        if layer.HasField(name):
            return getattr(layer, name)
    raise DataError(f"layer '{layer.name}': no data_param/memory_data_param/cos_data_param")
