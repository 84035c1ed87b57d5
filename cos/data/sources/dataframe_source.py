"""DataFrameSource: a DataFrame (parquet by default) feeding a CoSData layer, one column per top.

Samples are `(id, [value per top])` with plain Python values (bytes for binary, lists for
arrays, dicts for the ENCODED_IMAGE_WITH_DIM struct), in storage order. `converter()` turns a
sample into `(id, [np.float32 array per top])`, each array shaped like `top_shapes()`:
numeric tops give (C, H, W) cut to `sample_num_axes` (a transposed top gives its (C,)
vector), image tops give (out_C, out_H, out_W) after the top's transform_param.

Batching: `batch_arrays(converted_samples)` stacks the samples of one batch per top and
transposes the `transpose: true` tops to (C, batch), time-major as the CoSData layer expects.

Unlike the original, a bad sample never reuses stale data: a shorter array is zero-filled,
and an image of the wrong size fails with a DataError naming the column and the sample id
(with `resize`, the -resize option, it is resized bilinearly to the top's height x width).

Order: `iter_local()` reads a parquet directory's files in name order (part-00000, ...);
`make_rdd()` keeps Spark's split order, which for several files may differ.
"""

import functools
import os

import numpy as np

from ...errors import DataError, NetError
from ...proto import caffe_pb2
from ..images import resize_bilinear  # OpenCV INTER_LINEAR, shared with the image sources
from .base import Source

CoS = caffe_pb2.CoSDataParameter
IMAGES = (CoS.ENCODED_IMAGE, CoS.RAW_IMAGE, CoS.ENCODED_IMAGE_WITH_DIM)
SCALARS = (CoS.STRING, CoS.INT, CoS.FLOAT)
ARRAYS = (CoS.INT_ARRAY, CoS.FLOAT_ARRAY)

INTEGRAL = ("tinyint", "smallint", "int", "bigint")
FLOATING = ("float", "double")
_ARROW_NAMES = {"int8": "tinyint", "int16": "smallint", "int32": "int", "int64": "bigint",
                "uint8": "smallint", "uint16": "int", "uint32": "bigint", "uint64": "bigint",
                "float": "float", "halffloat": "float", "double": "double",
                "string": "string", "large_string": "string", "string_view": "string",
                "binary": "binary", "large_binary": "binary", "binary_view": "binary",
                "bool": "boolean"}


# ---- column types, for Spark and pyarrow schemas alike ----------------------------

def type_name(dtype):
    """Spark's short name (int, bigint, string, binary, array<int>, struct<...>) of a Spark
    or pyarrow column type, so checks and messages read the same on both paths."""
    if hasattr(dtype, "simpleString"):  # a Spark DataType
        return dtype.simpleString()
    import pyarrow as pa
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype) \
            or pa.types.is_fixed_size_list(dtype):
        return f"array<{type_name(dtype.value_type)}>"
    if pa.types.is_struct(dtype):
        fields = (dtype.field(i) for i in range(dtype.num_fields))
        return "struct<" + ",".join(f"{f.name}:{type_name(f.type)}" for f in fields) + ">"
    if pa.types.is_dictionary(dtype):
        return type_name(dtype.value_type)
    return _ARROW_NAMES.get(str(dtype), str(dtype))


def struct_fields(dtype):
    """{field name: type} of a Spark or pyarrow struct type; {} for any other type."""
    if hasattr(dtype, "simpleString"):
        return {f.name: f.dataType for f in getattr(dtype, "fields", None) or []}
    import pyarrow as pa
    if not pa.types.is_struct(dtype):
        return {}
    return {dtype.field(i).name: dtype.field(i).type for i in range(dtype.num_fields)}


def schema_types(schema):
    """{column: type} of a Spark StructType or a pyarrow Schema."""
    if hasattr(schema, "fields") and hasattr(schema, "simpleString"):
        return {f.name: f.dataType for f in schema.fields}
    return {name: schema.field(name).type for name in schema.names}


def plain(value):
    """A Spark or pyarrow cell as a plain Python value (bytes, list, dict, str, number)."""
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if hasattr(value, "asDict"):  # a Spark Row (struct column)
        return {k: plain(v) for k, v in value.asDict().items()}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


# ---- reading ------------------------------------------------------------------------

def spark_session(sc):
    from pyspark.sql import SparkSession
    return SparkSession.getActiveSession() or SparkSession(sc)


def load_frame(sc, path, fmt=None):
    """spark.read[.format(fmt)].load(path); a relative local path is made absolute."""
    from ...proto import paths
    reader = spark_session(sc).read
    if fmt:
        reader = reader.format(fmt)
    return reader.load(paths.absolute(path))


def parquet_files(path, where):
    """The parquet file at `path`, or the data files of a parquet directory (Spark's output:
    part-* files, sorted; `_SUCCESS`, `.crc` and other hidden files skipped)."""
    from ...proto import paths
    if not paths.is_local(path):
        raise DataError(f"{where}: '{path}' is not a local path; reading it needs Spark "
                        "(make_rdd)")
    local = paths.local_path(path)
    if os.path.isfile(local):
        return [local]
    if not os.path.isdir(local):
        raise DataError(f"{where}: DataFrame source '{path}' not found")
    files = sorted(os.path.join(local, name) for name in os.listdir(local)
                   if not name.startswith(("_", ".")) and not name.endswith(".crc")
                   and os.path.isfile(os.path.join(local, name)))
    if not files:
        raise DataError(f"{where}: DataFrame source '{path}' holds no parquet files")
    return files


def iter_parquet(path, columns, check_schema, where):
    """Yield {column: value} rows of a local parquet file or directory, in storage order.
    `check_schema(pyarrow schema)` runs once per file before its rows are read."""
    import pyarrow.parquet as pq
    for name in parquet_files(path, where):
        try:
            handle = pq.ParquetFile(name)
        except Exception as err:  # pyarrow raises several types for a non-parquet file
            raise DataError(f"{where}: {name}: not a parquet file ({err})") from None
        with handle:
            check_schema(handle.schema_arrow)
            present = [c for c in dict.fromkeys(columns) if c in handle.schema_arrow.names]
            for batch in handle.iter_batches(columns=present):
                yield from batch.to_pylist()


# ---- the source ---------------------------------------------------------------------

def expected_type(top):
    """What the column of `top` must hold, in Spark's names (for checks and messages)."""
    return {CoS.STRING: "string", CoS.INT: "int (tinyint, smallint, int or bigint)",
            CoS.FLOAT: "float or double", CoS.INT_ARRAY: "array<int>",
            CoS.FLOAT_ARRAY: "array<float> or array<double>",
            CoS.ENCODED_IMAGE: "binary", CoS.RAW_IMAGE: "binary",
            CoS.ENCODED_IMAGE_WITH_DIM: "struct<image:binary,height:int,width:int>"}[top.type]


def type_fits(top, dtype):
    name = type_name(dtype)
    if top.type == CoS.STRING:
        return name == "string"
    if top.type == CoS.INT:
        return name in INTEGRAL
    if top.type == CoS.FLOAT:
        return name in FLOATING
    if top.type == CoS.INT_ARRAY:
        return name in tuple(f"array<{t}>" for t in INTEGRAL)
    if top.type == CoS.FLOAT_ARRAY:
        return name in tuple(f"array<{t}>" for t in FLOATING)
    if top.type in (CoS.ENCODED_IMAGE, CoS.RAW_IMAGE):
        return name == "binary"
    fields = {k: type_name(v) for k, v in struct_fields(dtype).items()}
    return (fields.get("image") in ("binary", "array<tinyint>")
            and fields.get("height") in INTEGRAL and fields.get("width") in INTEGRAL)


def _cos_row(names, has_id, row):
    sample_id = (row["id"] or "") if has_id else ""
    return sample_id, [plain(row[name]) for name in names]


class DataFrameSource(Source):
    """A CoSData layer's source: every `cos_data_param.top` names a column."""

    def __init__(self, layer, is_train, *args, **options):
        super().__init__(layer, is_train, *args, **options)
        if not layer.HasField("cos_data_param"):
            raise DataError(f"layer '{layer.name}': DataFrameSource needs cos_data_param")
        check_tops(layer)

    @property
    def where(self):
        return f"layer '{self.layer.name}' ({self.path or 'DataFrame'})"

    def columns(self):
        """The column of each top, in top order (two tops may read one column)."""
        return [top.name for top in self.param.top]

    def check_schema(self, schema):
        """Every top's column exists and has the top type's column type; True if `id` exists."""
        types = schema_types(schema)
        for top in self.param.top:
            if top.name not in types:
                raise DataError(f"{self.where}: no column '{top.name}' "
                                f"(columns: {', '.join(types)})")
            if not type_fits(top, types[top.name]):
                raise DataError(f"{self.where}: column '{top.name}' has type "
                                f"{type_name(types[top.name])}, but top type "
                                f"{CoS.DataType.Name(top.type)} needs {expected_type(top)}")
        if "id" in types and type_name(types["id"]) != "string":
            raise DataError(f"{self.where}: column 'id' has type {type_name(types['id'])}, "
                            "expected string")
        return "id" in types

    def frame(self, sc):
        """The DataFrame: the one given, or format(dataframe_format or parquet).load(source)."""
        if self.dataframe is not None:
            return self.dataframe
        fmt = self.param.dataframe_format if self.param.HasField("dataframe_format") \
            else "parquet"
        return load_frame(sc, self.path, fmt)

    def make_rdd(self, sc):
        df = self.frame(sc)
        has_id = self.check_schema(df.schema)
        names = self.columns()
        wanted = list(dict.fromkeys(names + ["id"] if has_id else names))
        return df.select(*wanted).rdd.map(functools.partial(_cos_row, names, has_id))

    def iter_local(self):
        """The samples of a local parquet file/directory (pyarrow, no Spark), or of the
        given DataFrame."""
        names = self.columns()
        if self.dataframe is not None:
            has_id = self.check_schema(self.dataframe.schema)
            for row in self.dataframe.toLocalIterator():
                yield _cos_row(names, has_id, row)
            return
        if self.param.HasField("dataframe_format") and self.param.dataframe_format != "parquet":
            raise DataError(f"{self.where}: dataframe_format "
                            f"'{self.param.dataframe_format}' needs Spark (only parquet is "
                            "read without it)")
        for row in iter_parquet(self.path, names + ["id"], self.check_schema, self.where):
            yield row.get("id") or "", [row[n] for n in names]

    def top_shapes(self):
        return [top_shape(top) for top in self.param.top]

    def converter(self, phase, seed=None, mean=None):
        return SampleConverter(self.layer, phase, seed=seed, mean=mean, resize=self.resize)

    def batch_arrays(self, converted):
        """[(id, [array per top]), ...] of one batch -> (ids, [batch array per top]); a
        `transpose: true` top becomes (C, batch)."""
        ids = [sample_id for sample_id, _ in converted]
        blobs = []
        for i, top in enumerate(self.param.top):
            stacked = np.stack([arrays[i] for _, arrays in converted])
            blobs.append(np.ascontiguousarray(stacked.T) if top.transpose else stacked)
        return ids, blobs


# ---- tops: checks and shapes -----------------------------------------------------------

def sample_dims(top):
    """Pre-transform per-sample dims (C, H, W) cut to sample_num_axes."""
    return tuple(int(d) for d in (top.channels, top.height, top.width))[:top.sample_num_axes]


def image_dims(top):
    """An image top's post-transform (out_C, out_H, out_W); out_* of 0 means the pre value."""
    return (int(top.out_channels or top.channels), int(top.out_height or top.height),
            int(top.out_width or top.width))


def top_shape(top):
    """Per-sample shape after conversion, cut to sample_num_axes: images their out dims,
    numeric tops their sample dims; a transposed top (C,) (the batch makes it (C, batch))."""
    if top.type in IMAGES:
        return image_dims(top)[:top.sample_num_axes]
    return sample_dims(top)


def check_tops(layer):
    """Static checks of cos_data_param.top against Caffe's CoSData rules (NetError)."""
    param = layer.cos_data_param
    if not len(param.top):
        raise NetError(f"layer '{layer.name}': cos_data_param has no top {{}} entries")
    if len(layer.top) and len(layer.top) != len(param.top):
        raise NetError(f"layer '{layer.name}': {len(layer.top)} top blobs but "
                       f"{len(param.top)} cos_data_param.top entries")
    for top in param.top:
        where = f"layer '{layer.name}' top '{top.name}'"
        if not top.name:
            raise NetError(f"layer '{layer.name}': a cos_data_param.top has no name")
        if not 1 <= top.sample_num_axes <= 3:
            raise NetError(f"{where}: sample_num_axes must be 1, 2 or 3, "
                           f"got {top.sample_num_axes}")
        if top.type in IMAGES:
            if not top.HasField("transform_param"):
                raise NetError(f"{where}: image type {CoS.DataType.Name(top.type)} needs a "
                               "transform_param")
            if top.transpose:
                raise NetError(f"{where}: transpose is only for INT_ARRAY/FLOAT_ARRAY")
            if not (top.channels and top.height and top.width):
                raise NetError(f"{where}: channels, height and width must be > 0, got "
                               f"{top.channels}x{top.height}x{top.width}")
            if any(d != 1 for d in image_dims(top)[top.sample_num_axes:]):
                raise NetError(f"{where}: sample_num_axes {top.sample_num_axes} drops image "
                               f"axes of {image_dims(top)} that are not 1")
            continue
        if top.HasField("transform_param"):
            raise NetError(f"{where}: transform_param is only allowed on image tops, not "
                           f"{CoS.DataType.Name(top.type)}")
        dims = sample_dims(top)
        if not all(dims):
            raise NetError(f"{where}: the first {top.sample_num_axes} of channels x height x "
                           f"width must be > 0, got {top.channels}x{top.height}x{top.width}")
        if top.transpose and (top.type not in ARRAYS or top.sample_num_axes != 1):
            raise NetError(f"{where}: transpose needs INT_ARRAY/FLOAT_ARRAY with "
                           "sample_num_axes: 1")
        if top.type in SCALARS and int(np.prod(dims)) != 1:
            raise NetError(f"{where}: {CoS.DataType.Name(top.type)} holds one value per "
                           f"sample, but its sample shape is {dims}")
        out = tuple(int(d) for d in (top.out_channels, top.out_height, top.out_width))
        pre = (int(top.channels), int(top.height), int(top.width))
        for axis in range(top.sample_num_axes):
            if out[axis] and out[axis] != pre[axis]:
                raise NetError(f"{where}: out_* dims {out} differ from {pre}, but numeric "
                               "tops are not transformed")


# ---- conversion ---------------------------------------------------------------------------

class SampleConverter:
    """callable(sample) -> (id, [np.float32 array per top]); one DataTransformer per image
    top (seeded `seed + top index` when a seed is given)."""

    def __init__(self, layer, phase, seed=None, mean=None, resize=False):
        from ..transformer import DataTransformer
        self.layer_name = layer.name
        self.tops = list(layer.cos_data_param.top)
        self.resize = bool(resize)
        self.transformers = {}
        mean_array = None if mean is None else np.asarray(mean, dtype=np.float32)
        for i, top in enumerate(self.tops):
            if top.type in IMAGES:
                loader = {} if mean is None else {"mean_file_loader": lambda _path: mean_array}
                self.transformers[i] = DataTransformer(
                    top.transform_param, phase, None if seed is None else seed + i, **loader)

    def __call__(self, sample):
        sample_id, values = sample
        if len(values) != len(self.tops):
            raise DataError(f"layer '{self.layer_name}': sample '{sample_id}' has "
                            f"{len(values)} values for {len(self.tops)} tops")
        return sample_id, [self.convert(i, sample_id, value) for i, value in enumerate(values)]

    def convert(self, i, sample_id, value):
        top = self.tops[i]
        where = f"layer '{self.layer_name}' column '{top.name}', id '{sample_id}'"
        if value is None:
            raise DataError(f"{where}: null value")
        if top.type in IMAGES:
            return self.image(i, where, value)
        return numeric(top, where, value)

    def image(self, i, where, value):
        top = self.tops[i]
        pixels = decode_top_image(top, where, value)
        if pixels.shape[2] != top.channels:
            raise DataError(f"{where}: image has {pixels.shape[2]} channels, top expects "
                            f"{top.channels}")
        size = pixels.shape[:2]
        if size != (top.height, top.width):
            if not self.resize:
                raise DataError(f"{where}: image is {size[0]}x{size[1]}, top expects "
                                f"{top.height}x{top.width} (use -resize to resize it)")
            pixels = resize_bilinear(pixels, top.height, top.width)
        try:
            out = self.transformers[i].transform(pixels, layout="hwc")
        except DataError as err:
            raise DataError(f"{where}: {err}") from None
        if out.shape != image_dims(top):
            raise NetError(f"layer '{self.layer_name}' top '{top.name}': the transform gives "
                           f"{out.shape}, but out_channels/out_height/out_width say "
                           f"{image_dims(top)}")
        return out.reshape(top_shape(top))


def numeric(top, where, value):
    """A numeric cell -> float32 array of the top's sample dims (zero-filled past the data)."""
    dims = sample_dims(top)
    out = np.zeros(int(np.prod(dims)), dtype=np.float32)
    if top.type == CoS.STRING:
        try:
            out[0] = float(value)
        except ValueError:
            raise DataError(f"{where}: '{value}' is not a number") from None
    elif top.type in SCALARS:
        out[0] = value
    else:
        if len(value) > out.size:
            raise DataError(f"{where}: blob size is {out.size}, but total data length is "
                            f"{len(value)}")
        try:
            out[:len(value)] = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError(f"{where}: array holds a null or non-numeric element") from None
    return out.reshape(dims)


def decode_top_image(top, where, value):
    """The cell of an image top -> HxWxC uint8 (BGR when decoded)."""
    from ...proto.datum import decode_image
    color = {1: False, 3: True}.get(int(top.channels))
    if top.type == CoS.ENCODED_IMAGE:
        return decode_image(bytes(value), color, where)
    if top.type == CoS.RAW_IMAGE:
        expect = top.channels * top.height * top.width
        if len(value) != expect:
            raise DataError(f"{where}: raw image has {len(value)} bytes, top expects "
                            f"channels x height x width = {top.channels}x{top.height}x"
                            f"{top.width} = {expect}")
        return np.frombuffer(bytes(value), np.uint8).reshape(
            top.height, top.width, top.channels)
    data, height, width = value.get("image"), value.get("height"), value.get("width")
    if data is None:
        raise DataError(f"{where}: struct has no image bytes")
    if isinstance(data, list):  # array<tinyint>: signed bytes
        data = (np.asarray(data, dtype=np.int16) & 0xFF).astype(np.uint8).tobytes()
    pixels = decode_image(bytes(data), color, where)
    if pixels.shape[:2] != (height, width):
        raise DataError(f"{where}: decoded image is {pixels.shape[0]}x{pixels.shape[1]}, "
                        f"but the struct says {height}x{width}")
    return pixels
