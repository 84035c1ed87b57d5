"""DataSource(sc).getSource(cfg, is_training): the TRAIN or TEST data layer's source.

The reading belongs to `cos.data.sources` (chosen by the layer's `source_class`); this wrapper
adds what only the driver knows: paths relative to the solver file, -lmdb_partitions,
-resize, the cluster size, a DataFrame handed in by the Python API, and mean files read on
the driver so executors need no copy of them (the original needed `--files`).
"""

import os

from ..errors import DataError
from ..proto import caffe_pb2


class DataSource:
    def __init__(self, sc):
        self.sc = sc

    def getSource(self, cfg, is_training, dataframe=None):
        """The source of the TRAIN (`is_training`) or TEST data layer; `dataframe` replaces
        the layer's `source` for DataFrame sources."""
        layer = cfg.data_layer(is_training)
        source = Source(layer, is_training, resize=cfg.resize,
                        partitions=cfg.lmdb_partitions, solver_dir=cfg.solver_dir,
                        persistent=cfg.isRddPersistent, cluster_size=cfg.clusterSize,
                        dataframe=dataframe)
        source.cfg = cfg  # the driver-side job reads its options from here
        return source

    get_source = getSource


class Source:
    """One data layer's input: the registered source class plus driver-side settings."""

    def __init__(self, layer, is_training, resize=False, partitions=1, solver_dir="",
                 persistent=False, cluster_size=1, dataframe=None):
        from ..data.sources import lookup
        self.layer = _with_resolved_source(layer, solver_dir)
        self.is_training = is_training
        self.persistent = persistent
        self.source_class = layer.source_class
        cls = lookup(layer.source_class, layer.name)
        self.impl = cls(self.layer, is_training, partitions=partitions or cluster_size,
                        resize=resize, cluster_size=cluster_size, dataframe=dataframe)
        self.batch_size = self.impl.batch_size
        self.mean = _shipped_mean(self.layer, solver_dir)
        self.cfg = None

    @property
    def path(self):
        return self.impl.path

    def __getstate__(self):
        state = dict(self.__dict__)
        state["cfg"] = None  # holds the SparkContext; tasks never need it
        state["layer"] = self.layer.SerializeToString()  # protobuf messages don't pickle
        return state

    def __setstate__(self, state):
        layer = caffe_pb2.LayerParameter()
        layer.ParseFromString(state["layer"])
        state["layer"] = layer
        self.__dict__.update(state)

    def make_rdd(self, sc):
        """The RDD of samples, persisted on disk when -persistent asked for it."""
        rdd = self.impl.make_rdd(sc)
        if self.persistent:
            from pyspark import StorageLevel
            rdd = rdd.persist(StorageLevel.DISK_ONLY)
        return rdd

    def converter(self, phase, seed=None):
        """Inside a task: sample -> (id, [array per top]) or None (sample dropped)."""
        return self.impl.converter(phase, seed=seed, mean=self.mean)

    def top_shapes(self):
        return self.impl.top_shapes()


def _with_resolved_source(layer, solver_dir):
    """A copy of `layer` whose relative `source` is made absolute when it exists next to the
    solver file or in the CWD (a relative `file:` path always is)."""
    from ..data.sources.base import layer_param
    from ..proto import paths
    copy = caffe_pb2.LayerParameter()
    copy.CopyFrom(layer)
    param = layer_param(copy)
    source = param.source
    if source and paths.is_local(source) and not os.path.isabs(paths.local_path(source)):
        near = os.path.join(solver_dir, paths.local_path(source))
        here = os.path.abspath(paths.local_path(source))
        if os.path.exists(near):
            param.source = near
        elif os.path.exists(here) or source.startswith("file:"):
            param.source = here
        # else: a scheme-less path left for Hadoop's default file system (section 8.4)
    return copy


def _shipped_mean(layer, solver_dir):
    """The mean_file read once on the driver (shipped to tasks in the closure): the layer's
    transform_param's, or for CoSData its image tops'. The converter takes one array, so
    tops naming different files get absolute paths in `layer` and read them in the tasks."""
    params = [layer.transform_param] + [top.transform_param
                                        for top in layer.cos_data_param.top]
    params = [p for p in params if p.HasField("mean_file")]
    if not params:
        return None
    if len({p.mean_file for p in params}) > 1:
        for p in params:
            p.mean_file = _mean_path(p.mean_file, solver_dir)
        return None
    from ..data.transformer import load_mean_file
    return load_mean_file(_mean_path(params[0].mean_file, solver_dir))


def _mean_path(name, solver_dir):
    """A mean file: a relative local path next to the solver file, else in the CWD."""
    from ..proto import paths
    path = name
    if paths.is_local(path) and not os.path.isabs(paths.local_path(path)):
        near = os.path.join(solver_dir, paths.local_path(path))
        path = near if os.path.exists(near) else os.path.abspath(paths.local_path(path))
    if not paths.exists(path):
        raise DataError(f"transform_param.mean_file {name}: file not found")
    return path
