"""ImageDataFrame: a DataFrame of images (LMDB2DataFrame's layout) feeding a MemoryData layer.

Columns: `label` (string; int columns are cast) and `data` (binary, or a string whose UTF-8
bytes are used) are required; `id` (string, default ""), `channels`/`height`/`width` (int,
default 0 = unknown) and `encoded` (bool, default memory_data_param.image_encoded) are
optional. Each row becomes the 7-tuple `(id, label, channels, height, width, encoded, data)`
of raw HWC pixels or encoded bytes; decoding is the shared image converter's job.
Other layouts (e.g. Binary2DataFrame's SampleID/int label) are mapped with
`dataframe_column_select`, which needs Spark.
"""

import functools

from ...errors import DataError
from .base import ImageSource
from .dataframe_source import INTEGRAL, iter_parquet, load_frame, schema_types, type_name

# column -> (accepted type names, what the message says is expected)
COLUMNS = {"id": (("string",), "string"),
           "label": (("string",) + INTEGRAL, "string (or an int type, cast to string)"),
           "channels": (INTEGRAL, "int"),
           "height": (INTEGRAL, "int"),
           "width": (INTEGRAL, "int"),
           "encoded": (("boolean",), "boolean"),
           "data": (("binary", "string"), "binary (or string)")}
REQUIRED = ("label", "data")
ORDER = ("id", "label", "channels", "height", "width", "encoded", "data")


def image_row(where, present, encoded_default, row):
    """A row (Spark Row or dict) -> (id, label, channels, height, width, encoded, data)."""
    def cell(name, default):
        value = row[name] if name in present else None
        return default if value is None else value
    sample_id = cell("id", "")
    label, data = cell("label", None), cell("data", None)
    if label is None or data is None:
        missing = "label" if label is None else "data"
        raise DataError(f"{where}: id '{sample_id}': column '{missing}' is null")
    if isinstance(data, str):
        data = data.encode("utf-8")
    return (sample_id, str(label), int(cell("channels", 0)), int(cell("height", 0)),
            int(cell("width", 0)), bool(cell("encoded", encoded_default)), bytes(data))


class ImageDataFrame(ImageSource):
    """MemoryData fed from a DataFrame (a `dataframe=` one, or memory_data_param.source)."""

    @property
    def where(self):
        return f"layer '{self.layer.name}' ({self.path or 'DataFrame'})"

    def check_schema(self, schema):
        """The columns present among the 7 (a tuple); DataError for a missing required column
        or a column of the wrong type."""
        types = schema_types(schema)
        for name in REQUIRED:
            if name not in types:
                raise DataError(f"{self.where}: no column '{name}' (columns: "
                                f"{', '.join(types)}); map columns with "
                                "dataframe_column_select")
        present = tuple(name for name in ORDER if name in types)
        for name in present:
            accepted, expected = COLUMNS[name]
            actual = type_name(types[name])
            if actual not in accepted:
                raise DataError(f"{self.where}: column '{name}' has type {actual}, "
                                f"expected {expected}")
        return present

    def frame(self, sc):
        """The DataFrame after dataframe_column_select; format() only if explicitly set."""
        df = self.dataframe
        if df is None:
            fmt = self.param.dataframe_format if self.param.HasField("dataframe_format") \
                else None
            df = load_frame(sc, self.path, fmt)
        if len(self.param.dataframe_column_select):
            df = df.selectExpr(*self.param.dataframe_column_select)
        return df

    def _row_function(self, schema):
        present = self.check_schema(schema)
        encoded = bool(self.param.image_encoded)
        return functools.partial(image_row, self.where, present, encoded), present

    def make_rdd(self, sc):
        from pyspark import StorageLevel
        df = self.frame(sc)
        to_tuple, present = self._row_function(df.schema)
        rdd = df.select(*present).rdd.map(to_tuple)
        return rdd.persist(StorageLevel.DISK_ONLY)

    def iter_local(self):
        """The 7-tuples of a local parquet file/directory (pyarrow, no Spark), or of the
        DataFrame given to the constructor."""
        if self.dataframe is not None:
            df = self.frame(None)
            to_tuple, _ = self._row_function(df.schema)
            for row in df.toLocalIterator():
                yield to_tuple(row)
            return
        if len(self.param.dataframe_column_select):
            raise DataError(f"{self.where}: dataframe_column_select needs Spark (selectExpr); "
                            "read this source with make_rdd")
        if self.param.HasField("dataframe_format") and self.param.dataframe_format != "parquet":
            raise DataError(f"{self.where}: dataframe_format "
                            f"'{self.param.dataframe_format}' needs Spark (only parquet is "
                            "read without it)")
        state = {}

        def check(schema):
            state["to_tuple"] = self._row_function(schema)[0]
        for row in iter_parquet(self.path, list(ORDER), check, self.where):
            yield state["to_tuple"](row)
