"""ImageDataFrame on real parquet/json DataFrames: LMDB2DataFrame's layout (pyarrow and Spark),
Binary2DataFrame's layout mapped with dataframe_column_select, a DataFrame passed directly,
and the column errors."""

import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.protobuf import text_format

from cos.data.sources.image_dataframe import ImageDataFrame
from cos.errors import DataError
from cos.proto import caffe_pb2
from cos.proto.datum import encode_image

RAW = np.arange(12, dtype=np.uint8).reshape(2, 2, 3) * 20  # H x W x C, BGR
PNG_PIXELS = np.uint8([[[10, 20, 30], [40, 50, 60]], [[70, 80, 90], [100, 110, 120]]])
PNG = encode_image(PNG_PIXELS, "png")

# LMDB2DataFrame's columns: id, label (string), channels, height, width, encoded, data
LMDB_ROWS = [("00000000", "3", 3, 2, 2, False, RAW.tobytes()),
             ("00000001", "7", 3, 2, 2, True, PNG),
             ("00000002", "1", 0, 0, 0, True, PNG)]
LMDB_SCHEMA = pa.schema([("id", pa.string()), ("label", pa.string()),
                         ("channels", pa.int32()), ("height", pa.int32()),
                         ("width", pa.int32()), ("encoded", pa.bool_()),
                         ("data", pa.binary())])


def memory_layer(source, extra=""):
    layer = caffe_pb2.LayerParameter()
    text_format.Parse(f'name: "data" type: "MemoryData" top: "data" top: "label" '
                      f'source_class: "com.yahoo.ml.caffe.ImageDataFrame" '
                      f'memory_data_param {{ source: "{source}" batch_size: 2 channels: 3 '
                      f'height: 2 width: 2 {extra} }} '
                      f'transform_param {{ scale: 0.5 mean_value: 4 }}', layer)
    return layer


def write_table(path, rows, schema):
    names = schema.names
    table = pa.Table.from_pydict({n: [r[i] for r in rows] for i, n in enumerate(names)},
                                 schema=schema)
    pq.write_table(table, path)
    return str(path)


def test_lmdb2dataframe_layout_without_spark(tmp_path):
    path = write_table(tmp_path / "lmdb_df.parquet", LMDB_ROWS, LMDB_SCHEMA)
    src = ImageDataFrame(memory_layer(f"file:{path}"), False)
    samples = list(src.iter_local())
    assert samples == LMDB_ROWS
    assert all(type(v) is t for v, t in zip(samples[0], (str, str, int, int, int, bool, bytes)))


def test_converter_gives_transformed_images_and_labels(tmp_path):
    path = write_table(tmp_path / "lmdb_df.parquet", LMDB_ROWS, LMDB_SCHEMA)
    src = ImageDataFrame(memory_layer(path), False)
    convert = src.converter(caffe_pb2.TEST, seed=0)
    (id0, (img0, label0)), (id1, (img1, label1)), (_, (img2, _)) = \
        [convert(s) for s in src.iter_local()]
    assert (id0, float(label0), id1, float(label1)) == ("00000000", 3.0, "00000001", 7.0)
    np.testing.assert_array_equal(img0, (RAW.transpose(2, 0, 1).astype(np.float32) - 4) / 2)
    want_png = (PNG_PIXELS.transpose(2, 0, 1).astype(np.float32) - 4) / 2
    np.testing.assert_array_equal(img1, want_png)
    np.testing.assert_array_equal(img2, want_png)  # size unknown (0x0): decoded colour
    assert src.top_shapes() == [(3, 2, 2), ()]


def test_optional_columns_default_and_image_encoded(tmp_path):
    schema = pa.schema([("label", pa.int64()), ("data", pa.string())])
    path = write_table(tmp_path / "min.parquet", [(4, "héllo"), (-1, "x")], schema)
    samples = list(ImageDataFrame(memory_layer(path, "image_encoded: true"), True).iter_local())
    assert samples == [("", "4", 0, 0, 0, True, "héllo".encode("utf-8")),
                       ("", "-1", 0, 0, 0, True, b"x")]
    plain = list(ImageDataFrame(memory_layer(path), True).iter_local())
    assert plain[0][5] is False


@pytest.mark.parametrize("schema, rows, message", [
    (pa.schema([("label", pa.float64()), ("data", pa.binary())]), [(1.0, b"x")],
     r"column 'label' has type double, expected string \(or an int type"),
    (pa.schema([("id", pa.int32()), ("label", pa.string()), ("data", pa.binary())]),
     [(1, "1", b"x")], r"column 'id' has type int, expected string"),
    (pa.schema([("label", pa.string()), ("data", pa.int64())]), [("1", 5)],
     r"column 'data' has type bigint, expected binary"),
    (pa.schema([("label", pa.string()), ("data", pa.binary()), ("height", pa.string())]),
     [("1", b"x", "2")], r"column 'height' has type string, expected int"),
    (pa.schema([("label", pa.string()), ("pixels", pa.binary())]), [("1", b"x")],
     r"no column 'data' \(columns: label, pixels\)"),
    (pa.schema([("SampleID", pa.string()), ("data", pa.binary())]), [("a", b"x")],
     r"no column 'label' \(columns: SampleID, data\); map columns with "
     r"dataframe_column_select"),
    (pa.schema([("label", pa.string()), ("data", pa.binary())]), [("1", None)],
     r"id '': column 'data' is null"),
])
def test_column_errors_name_column_type_and_source(tmp_path, schema, rows, message):
    path = write_table(tmp_path / "bad.parquet", rows, schema)
    src = ImageDataFrame(memory_layer(path), False)
    with pytest.raises(DataError, match=message) as err:
        list(src.iter_local())
    assert path in str(err.value)


def test_select_and_other_formats_need_spark(tmp_path):
    path = write_table(tmp_path / "df.parquet", LMDB_ROWS, LMDB_SCHEMA)
    selected = ImageDataFrame(memory_layer(path, 'dataframe_column_select: "id"'), False)
    with pytest.raises(DataError, match="dataframe_column_select needs Spark"):
        list(selected.iter_local())
    json_fmt = ImageDataFrame(memory_layer(path, 'dataframe_format: "json"'), False)
    with pytest.raises(DataError, match="'json' needs Spark"):
        list(json_fmt.iter_local())


# ---- Spark (local[2]) ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def spark():
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    os.environ["PYSPARK_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession
    session = (SparkSession.builder.master("local[2]").appName("test_image_dataframe")
               .config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", "2")
               # C1 only: the JVM starts faster, and these jobs are tiny
               .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1")
               .getOrCreate())
    yield session
    session.stop()


def lmdb_frame(spark):
    from pyspark.sql import types as T
    schema = T.StructType([
        T.StructField("id", T.StringType()), T.StructField("label", T.StringType(), False),
        T.StructField("channels", T.IntegerType()), T.StructField("height", T.IntegerType()),
        T.StructField("width", T.IntegerType()), T.StructField("encoded", T.BooleanType()),
        T.StructField("data", T.BinaryType(), False)])
    return spark.createDataFrame(LMDB_ROWS, schema)


@pytest.mark.spark
@pytest.mark.slow
def test_spark_written_lmdb2dataframe_through_make_rdd(spark, tmp_path):
    from pyspark import StorageLevel
    out = str(tmp_path / "lmdb_df")
    lmdb_frame(spark).coalesce(1).write.parquet(out)
    src = ImageDataFrame(memory_layer(f"file:{out}"), True)
    rdd = src.make_rdd(spark.sparkContext)
    assert rdd.getStorageLevel() == StorageLevel.DISK_ONLY
    samples = rdd.collect()
    assert samples == LMDB_ROWS
    assert list(src.iter_local()) == LMDB_ROWS  # pyarrow reads Spark's directory the same


@pytest.mark.spark
@pytest.mark.slow
def test_binary2dataframe_layout_with_column_select(spark, tmp_path):
    from pyspark.sql import types as T
    schema = T.StructType([T.StructField("SampleID", T.StringType()),
                           T.StructField("label", T.IntegerType()),
                           T.StructField("data", T.BinaryType())])
    out = str(tmp_path / "binary_df")
    spark.createDataFrame([("cat.png", 5, PNG), ("dog.png", 0, RAW.tobytes())],
                          schema).coalesce(1).write.parquet(out)
    select = ('dataframe_column_select: "SampleID as id" '
              'dataframe_column_select: "cast(label as string) as label" '
              'dataframe_column_select: "data" image_encoded: true')
    src = ImageDataFrame(memory_layer(out, select), True)
    assert src.make_rdd(spark.sparkContext).collect() == [
        ("cat.png", "5", 0, 0, 0, True, PNG), ("dog.png", "0", 0, 0, 0, True, RAW.tobytes())]
    # unmapped: the int label is cast, but SampleID is not the id
    unmapped = ImageDataFrame(memory_layer(out, 'dataframe_format: "parquet"'), True)
    assert [s[:2] for s in unmapped.make_rdd(spark.sparkContext).collect()] == \
        [("", "5"), ("", "0")]


@pytest.mark.spark
@pytest.mark.slow
def test_dataframe_given_directly_json_format_and_driver_errors(spark, tmp_path):
    df = lmdb_frame(spark)
    given = ImageDataFrame(memory_layer(""), False, dataframe=df)
    assert given.make_rdd(spark.sparkContext).collect() == LMDB_ROWS
    assert list(given.iter_local()) == LMDB_ROWS
    renamed = ImageDataFrame(memory_layer("", 'dataframe_column_select: "label" '
                                              'dataframe_column_select: "data as data"'),
                             False, dataframe=df)
    assert [s[:2] for s in renamed.make_rdd(spark.sparkContext).collect()] == \
        [("", "3"), ("", "7"), ("", "1")]

    out = str(tmp_path / "json_df")
    spark.createDataFrame([("a", 2, "text bytes")], "id string, label long, data string") \
        .write.json(out)
    src = ImageDataFrame(memory_layer(out, 'dataframe_format: "json"'), False)
    assert src.make_rdd(spark.sparkContext).collect() == \
        [("a", "2", 0, 0, 0, False, b"text bytes")]

    bad = ImageDataFrame(memory_layer("", 'dataframe_column_select: "id as label" '
                                          'dataframe_column_select: "channels as data"'),
                         False, dataframe=df)
    with pytest.raises(DataError, match=r"column 'data' has type int, expected binary"):
        bad.make_rdd(spark.sparkContext)
