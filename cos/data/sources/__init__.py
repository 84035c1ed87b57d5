"""Registry from a data layer's `source_class` (JVM or short name, or a dotted Python path) to
the source class that reads it."""

import importlib

from ...errors import DataError

_CLASSES = {"LMDB": "cos.data.sources.lmdb_source.LMDBSource",
            "SeqImageDataSource": "cos.data.sources.seq_source.SeqImageDataSource",
            "ImageDataFrame": "cos.data.sources.image_dataframe.ImageDataFrame",
            "DataFrameSource": "cos.data.sources.dataframe_source.DataFrameSource"}
_KNOWN = ("LMDB", "SeqImageDataSource", "ImageDataFrame", "DataFrameSource")


def lookup(name, layer_name="?"):
    """The class for `name`; unknown or missing -> DataError naming the layer and valid names."""
    if not name:
        raise DataError(f"layer '{layer_name}': no source_class")
    short = name[len("com.yahoo.ml.caffe."):] if name.startswith("com.yahoo.ml.caffe.") else name
    target = _CLASSES.get(short)
    if target is None and "." not in name:
        raise DataError(f"layer '{layer_name}': unknown source_class '{name}' (valid: "
                        + ", ".join(_KNOWN) + ", or a dotted Python class path)")
    module, _, cls = (target or name).rpartition(".")
    try:
        return getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError):
        if short in _KNOWN:
            raise DataError(f"layer '{layer_name}': source_class '{name}' is not "
                            "implemented yet") from None
        raise DataError(f"layer '{layer_name}': cannot import source_class '{name}'") from None
