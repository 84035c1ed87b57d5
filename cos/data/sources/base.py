"""The contract every data source follows (see docs/design.md, "data/").

A source is built from one data layer: `cls(layer, is_train, partitions=1, resize=False,
cluster_size=1, dataframe=None)`. On the driver `make_rdd(sc)` gives the RDD of samples; inside
a task (or without Spark) `converter(phase, seed, mean)` turns one sample into
`(id, [np.ndarray per top])`, or None when the sample must be dropped (an image whose size
disagrees with its header, like the original's "Skip image <id>").

Image sources (LMDB, SeqImageDataSource, ImageDataFrame) yield 7-tuples
`(id, label, channels, height, width, encoded, data)` with raw pixels interleaved HWC, and
share one converter (cos/data/images.py, section 4.6 of the spec). DataFrameSource yields
`(id, [value per top])`.
"""

from ...errors import DataError


def layer_param(layer):
    """The layer's data parameter message: data_param, memory_data_param or cos_data_param."""
    for name in ("memory_data_param", "cos_data_param", "data_param"):
        if layer.HasField(name):
            return getattr(layer, name)
    raise DataError(f"layer '{layer.name}': no data_param, memory_data_param or "
                    "cos_data_param")


class Source:
    """Base class: the layer, its batch size and source path."""

    def __init__(self, layer, is_train, partitions=1, resize=False, cluster_size=1,
                 dataframe=None, **_options):
        self.layer = layer
        self.is_train = bool(is_train)
        self.lmdb_partitions = max(int(partitions or 1), 1)
        self.resize = bool(resize)
        self.cluster_size = max(int(cluster_size or 1), 1)
        self.dataframe = dataframe
        self.param = layer_param(layer)
        self.batch_size = int(self.param.batch_size)
        self.path = self.param.source
        if self.batch_size < 1:
            raise DataError(f"layer '{layer.name}': batch_size must be >= 1, "
                            f"got {self.batch_size}")
        if not self.path and dataframe is None:
            raise DataError(f"layer '{layer.name}': source must be specified")

    def make_rdd(self, sc):
        """The RDD of samples (driver side; Spark is imported lazily)."""
        raise NotImplementedError

    def iter_local(self):
        """All samples in storage order without Spark (plain and file: paths)."""
        raise NotImplementedError

    def converter(self, phase, seed=None, mean=None):
        """callable(sample) -> (id, [array per top]) or None to drop the sample.
        `mean`: a pre-loaded mean array (C,H,W) replacing transform_param.mean_file."""
        raise NotImplementedError

    def top_shapes(self):
        """Per-sample shape of each top after the transform, e.g. [(1, 28, 28), ()]."""
        raise NotImplementedError

    def __getstate__(self):
        state = dict(self.__dict__)
        state["dataframe"] = None  # a DataFrame lives on the driver only
        state["layer"] = self.layer.SerializeToString()  # protobuf messages don't pickle
        state.pop("param", None)
        return state

    def __setstate__(self, state):
        from ...proto import caffe_pb2
        layer = caffe_pb2.LayerParameter()
        layer.ParseFromString(state["layer"])
        state["layer"] = layer
        self.__dict__.update(state)
        self.param = layer_param(layer)


class ImageSource(Source):
    """Sources of 7-tuple image samples; paired with MemoryData (or Data) layers."""

    def converter(self, phase, seed=None, mean=None):
        from ..images import ImageConverter
        return ImageConverter(self.layer, phase, seed=seed, resize=self.resize, mean=mean)

    def top_shapes(self):
        from ..images import image_top_shapes
        return image_top_shapes(self.layer)
