"""DataFrameSource (CoSData) on real parquet files: all 8 top types written with pyarrow and with
Spark (local[2]), read through iter_local and make_rdd, converted and checked against arrays
computed here from the inputs; schema, size and transform_param errors."""

import os
import pickle
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.protobuf import text_format

from cos.data.sources.dataframe_source import DataFrameSource, resize_bilinear
from cos.errors import DataError, NetError
from cos.proto import caffe_pb2
from cos.proto.datum import decode_image, encode_image

TEST = caffe_pb2.TEST

TOPS = """
top { name: "s" type: STRING channels: 1 height: 1 width: 1 }
top { name: "i" type: INT channels: 1 sample_num_axes: 1 }
top { name: "f" type: FLOAT channels: 1 height: 1 width: 1 }
top { name: "ia" type: INT_ARRAY channels: 4 sample_num_axes: 1 transpose: true }
top { name: "fa" type: FLOAT_ARRAY channels: 2 height: 1 width: 3 }
top { name: "enc" type: ENCODED_IMAGE channels: 3 height: 4 width: 4
      transform_param { mean_value: 10 scale: 0.5 } }
top { name: "raw" type: RAW_IMAGE channels: 3 height: 2 width: 4 out_height: 2 out_width: 2
      transform_param { crop_size: 2 } }
top { name: "dim" type: ENCODED_IMAGE_WITH_DIM channels: 1 height: 4 width: 4
      out_height: 2 out_width: 2 transform_param { crop_size: 2 mean_value: 1 } }
"""

IDS = ["r0", "r1", "r2"]
STRINGS = ["1.5", "-2", "3e1"]
INTS = [7, -3, 0]
FLOATS = [0.25, 1.5, -4.0]
INT_ARRAYS = [[1, 2, 3, 4], [5, 6], []]
FLOAT_ARRAYS = [[0.5, 1.0, 1.5, 2.0, 2.5, 3.0], [-1.0] * 6, [9.0]]
COLORS = [(np.arange(48).reshape(4, 4, 3) * 5 + i).astype(np.uint8) for i in range(3)]
RAWS = [(np.arange(24).reshape(2, 4, 3) + 10 * i).astype(np.uint8) for i in range(3)]
GRAYS = [(np.arange(16).reshape(4, 4) * 10 + i).astype(np.uint8) for i in range(3)]


def cos_layer(source, tops=TOPS, batch=3, extra=""):
    layer = caffe_pb2.LayerParameter()
    text_format.Parse(f'name: "input" type: "CoSData" cos_data_param {{ source: "{source}" '
                      f'batch_size: {batch} {extra} {tops} }}', layer)
    layer.top.extend(top.name for top in layer.cos_data_param.top)
    return layer


def columns():
    """The 8 columns (plus id) as Python values, one list per column."""
    return {"id": IDS, "s": STRINGS, "i": INTS, "f": FLOATS, "ia": INT_ARRAYS,
            "fa": FLOAT_ARRAYS,
            "enc": [encode_image(img, "png") for img in COLORS],
            "raw": [img.tobytes() for img in RAWS],
            "dim": [{"image": encode_image(img[:, :, None], "png"), "height": 4, "width": 4}
                    for img in GRAYS]}


ARROW_SCHEMA = pa.schema([
    ("id", pa.string()), ("s", pa.string()), ("i", pa.int64()), ("f", pa.float64()),
    ("ia", pa.list_(pa.int32())), ("fa", pa.list_(pa.float64())), ("enc", pa.binary()),
    ("raw", pa.binary()),
    ("dim", pa.struct([("image", pa.binary()), ("height", pa.int32()),
                       ("width", pa.int32())]))])


def write_arrow(directory, rows_per_file=2):
    """A Spark-like parquet directory: part files and a _SUCCESS marker."""
    os.makedirs(directory)
    table = pa.Table.from_pydict(columns(), schema=ARROW_SCHEMA)
    for part, start in enumerate(range(0, table.num_rows, rows_per_file)):
        pq.write_table(table.slice(start, rows_per_file), f"{directory}/part-{part:05d}.parquet")
    open(f"{directory}/_SUCCESS", "w").close()
    return str(directory)


def expected(k):
    """Row k converted by hand: TEST phase, so crops are centred and nothing is random."""
    return [np.float32([[[float(STRINGS[k])]]]),
            np.float32([INTS[k]]),
            np.float32([[[FLOATS[k]]]]),
            np.float32(INT_ARRAYS[k] + [0] * (4 - len(INT_ARRAYS[k]))),
            np.float32(FLOAT_ARRAYS[k] + [0] * (6 - len(FLOAT_ARRAYS[k]))).reshape(2, 1, 3),
            (COLORS[k].transpose(2, 0, 1).astype(np.float32) - 10) * 0.5,
            RAWS[k].transpose(2, 0, 1)[:, 0:2, 1:3].astype(np.float32),
            GRAYS[k][None, 1:3, 1:3].astype(np.float32) - 1]


def check_converted(src, samples):
    convert = src.converter(TEST, seed=3)
    converted = [convert(s) for s in samples]
    for (sample_id, arrays) in converted:
        k = IDS.index(sample_id)
        assert [a.shape for a in arrays] == src.top_shapes()
        for got, want in zip(arrays, expected(k)):
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, want)
    return converted


def test_arrow_directory_iter_local_converts_all_types(tmp_path):
    src = DataFrameSource(cos_layer(write_arrow(tmp_path / "df")), False)
    samples = list(src.iter_local())
    assert [s[0] for s in samples] == IDS  # storage order: part files sorted
    sample_id, values = samples[2]
    assert values[:5] == ["3e1", 0, -4.0, [], [9.0]]
    assert isinstance(values[6], bytes) and values[7]["height"] == 4
    assert src.top_shapes() == [(1, 1, 1), (1,), (1, 1, 1), (4,), (2, 1, 3), (3, 4, 4),
                                (3, 2, 2), (1, 2, 2)]
    converted = check_converted(src, samples)
    ids, blobs = src.batch_arrays(converted)
    assert ids == IDS
    assert blobs[3].shape == (4, 3)  # transposed: (C, batch), time-major
    np.testing.assert_array_equal(blobs[3], np.float32([[1, 5, 0], [2, 6, 0], [3, 0, 0],
                                                        [4, 0, 0]]))
    assert [b.shape for b in blobs[4:]] == [(3, 2, 1, 3), (3, 3, 4, 4), (3, 3, 2, 2),
                                            (3, 1, 2, 2)]


def test_source_pickles_for_executors(tmp_path):
    src = DataFrameSource(cos_layer(write_arrow(tmp_path / "df")), False)
    copy = pickle.loads(pickle.dumps(src))
    assert copy.top_shapes() == src.top_shapes()
    check_converted(copy, list(copy.iter_local()))


def test_two_tops_may_read_one_column(tmp_path):
    tops = ('top { name: "ia" type: INT_ARRAY channels: 4 sample_num_axes: 1 transpose: true } '
            'top { name: "ia" type: INT_ARRAY channels: 2 height: 3 sample_num_axes: 2 }')
    src = DataFrameSource(cos_layer(write_arrow(tmp_path / "df"), tops), False)
    samples = list(src.iter_local())
    assert samples[1] == ("r1", [[5, 6], [5, 6]])
    _, (vector, grid) = src.converter(TEST)(samples[0])
    np.testing.assert_array_equal(vector, [1, 2, 3, 4])
    np.testing.assert_array_equal(grid, [[1, 2, 3], [4, 0, 0]])


def test_mean_array_replaces_mean_file(tmp_path):
    tops = ('top { name: "raw" type: RAW_IMAGE channels: 3 height: 2 width: 4 '
            'transform_param { mean_file: "not/shipped.binaryproto" scale: 2 } }')
    src = DataFrameSource(cos_layer(write_arrow(tmp_path / "df"), tops), False)
    mean = np.arange(24, dtype=np.float32).reshape(3, 2, 4)
    sample_id, (out,) = src.converter(TEST, mean=mean)(("r1", [RAWS[1].tobytes()]))
    np.testing.assert_allclose(out, (RAWS[1].transpose(2, 0, 1) - mean) * 2)


def test_resize_is_bilinear_and_required_for_other_sizes(tmp_path):
    tops = ('top { name: "enc" type: ENCODED_IMAGE channels: 1 height: 4 width: 4 '
            'transform_param { } }')
    png = encode_image(np.uint8([[0, 3], [6, 9]])[:, :, None], "png")
    sample = ("small", [png])
    src = DataFrameSource(cos_layer("unused", tops), False, resize=True)
    _, (out,) = src.converter(TEST)(sample)
    # OpenCV INTER_LINEAR: centres aligned, edges clamped, halves rounded up
    np.testing.assert_array_equal(out[0], [[0, 1, 2, 3], [2, 2, 4, 5], [5, 5, 7, 8],
                                           [6, 7, 8, 9]])
    plain = DataFrameSource(cos_layer("unused", tops), False)
    with pytest.raises(DataError, match=r"column 'enc', id 'small'.*2x2.*4x4.*-resize"):
        plain.converter(TEST)(sample)
    shrunk = resize_bilinear(np.full((6, 6, 3), 77, np.uint8), 3, 2)
    assert shrunk.shape == (3, 2, 3) and (shrunk == 77).all()


def test_jpeg_struct_with_signed_byte_array(tmp_path):
    """ENCODED_IMAGE_WITH_DIM from JPEG bytes stored as array<tinyint>, colour top."""
    img = np.zeros((8, 6, 3), np.uint8)
    img[:, :, 0], img[:, :, 2] = 200, 40
    jpeg = encode_image(img, "jpeg")
    signed = np.frombuffer(jpeg, np.int8).tolist()
    schema = pa.schema([("pix", pa.struct([("image", pa.list_(pa.int8())),
                                           ("height", pa.int64()), ("width", pa.int64())]))])
    pq.write_table(pa.Table.from_pydict({"pix": [{"image": signed, "height": 8, "width": 6}]},
                                        schema=schema), tmp_path / "j.parquet")
    tops = ('top { name: "pix" type: ENCODED_IMAGE_WITH_DIM channels: 3 height: 8 width: 6 '
            'transform_param { scale: 0.25 } }')
    src = DataFrameSource(cos_layer(f"file:{tmp_path}/j.parquet", tops), True)
    (sample,) = list(src.iter_local())
    assert sample[0] == ""  # no id column
    _, (out,) = src.converter(caffe_pb2.TRAIN, seed=1)(sample)
    want = decode_image(jpeg, True).transpose(2, 0, 1).astype(np.float32) * 0.25
    np.testing.assert_array_equal(out, want)
    assert abs(float(out[0].mean()) - 50) < 2 and abs(float(out[2].mean()) - 10) < 2


def test_schema_errors_name_column_and_types(tmp_path):
    path = write_arrow(tmp_path / "df")
    missing = 'top { name: "nope" type: INT channels: 1 height: 1 width: 1 }'
    with pytest.raises(DataError, match=r"no column 'nope'.*columns: id, s, i, f, ia"):
        list(DataFrameSource(cos_layer(path, missing), False).iter_local())
    wrong = 'top { name: "s" type: INT channels: 1 height: 1 width: 1 }'
    with pytest.raises(DataError, match=r"column 's' has type string, but top type INT "
                                        r"needs int"):
        list(DataFrameSource(cos_layer(path, wrong), False).iter_local())
    wrong_array = 'top { name: "ia" type: FLOAT_ARRAY channels: 4 sample_num_axes: 1 }'
    with pytest.raises(DataError, match=r"column 'ia' has type array<int>.*array<float>"):
        list(DataFrameSource(cos_layer(path, wrong_array), False).iter_local())
    wrong_struct = ('top { name: "raw" type: ENCODED_IMAGE_WITH_DIM channels: 3 height: 2 '
                    'width: 4 transform_param { } }')
    with pytest.raises(DataError, match=r"column 'raw' has type binary.*struct<image"):
        list(DataFrameSource(cos_layer(path, wrong_struct), False).iter_local())
    json_fmt = DataFrameSource(cos_layer(path, extra='dataframe_format: "json"'), False)
    with pytest.raises(DataError, match="'json' needs Spark"):
        list(json_fmt.iter_local())
    with pytest.raises(DataError, match="not a local path; reading it needs Spark"):
        list(DataFrameSource(cos_layer("hdfs://nn:8020/df"), False).iter_local())
    with pytest.raises(DataError, match="not found"):
        list(DataFrameSource(cos_layer(str(tmp_path / "absent")), False).iter_local())


def test_sample_errors_name_column_and_id():
    src = DataFrameSource(cos_layer("unused"), False)
    convert = src.converter(TEST)
    good = [columns()[name][0] for name in ("s", "i", "f", "ia", "fa", "enc", "raw", "dim")]

    def with_value(index, value):
        values = list(good)
        values[index] = value
        return ("bad", values)
    with pytest.raises(DataError, match=r"column 'ia', id 'bad': blob size is 4, but total "
                                        r"data length is 5"):
        convert(with_value(3, [1, 2, 3, 4, 5]))
    with pytest.raises(DataError, match=r"column 'raw', id 'bad': raw image has 23 bytes.*24"):
        convert(with_value(6, RAWS[0].tobytes()[:-1]))
    with pytest.raises(DataError, match=r"column 'dim', id 'bad': decoded image is 4x4, but "
                                        r"the struct says 4x5"):
        convert(with_value(7, dict(good[7], width=5)))
    with pytest.raises(DataError, match=r"column 's', id 'bad': 'x1' is not a number"):
        convert(with_value(0, "x1"))
    with pytest.raises(DataError, match=r"column 'enc', id 'bad': cannot decode"):
        convert(with_value(5, b"not an image"))
    with pytest.raises(DataError, match=r"column 'fa', id 'bad': null value"):
        convert(with_value(4, None))


@pytest.mark.parametrize("tops, message", [
    ('top { name: "img" type: RAW_IMAGE channels: 3 height: 2 width: 2 }',
     "top 'img': image type RAW_IMAGE needs a transform_param"),
    ('top { name: "n" type: INT channels: 1 height: 1 width: 1 transform_param { } }',
     "top 'n': transform_param is only allowed on image tops"),
    ('top { name: "n" type: INT channels: 3 sample_num_axes: 1 }',
     "top 'n': INT holds one value per sample"),
    ('top { name: "a" type: FLOAT_ARRAY channels: 3 height: 2 transpose: true '
     'sample_num_axes: 2 }', "top 'a': transpose needs INT_ARRAY/FLOAT_ARRAY"),
    ('top { name: "a" type: FLOAT_ARRAY channels: 3 }', "top 'a': the first 3 of channels"),
    ('top { name: "img" type: RAW_IMAGE channels: 3 height: 2 width: 2 sample_num_axes: 2 '
     'transform_param { } }', "top 'img': sample_num_axes 2 drops image axes"),
    ('top { name: "a" type: FLOAT_ARRAY channels: 3 sample_num_axes: 4 }',
     "top 'a': sample_num_axes must be 1, 2 or 3"),
])
def test_top_definition_errors(tops, message):
    with pytest.raises(NetError, match=message):
        DataFrameSource(cos_layer("unused", tops), False)


def test_transformed_shape_must_match_out_dims():
    tops = ('top { name: "img" type: RAW_IMAGE channels: 1 height: 4 width: 4 out_height: 3 '
            'out_width: 3 transform_param { crop_size: 2 } }')
    src = DataFrameSource(cos_layer("unused", tops), False)
    assert src.top_shapes() == [(1, 3, 3)]
    with pytest.raises(NetError, match=r"top 'img': the transform gives \(1, 2, 2\)"):
        src.converter(TEST)(("x", [bytes(16)]))
    flat = ('top { name: "img" type: RAW_IMAGE channels: 3 height: 1 width: 1 '
            'sample_num_axes: 1 transform_param { scale: 2 } }')
    src = DataFrameSource(cos_layer("unused", flat), False)
    assert src.top_shapes() == [(3,)]
    np.testing.assert_array_equal(src.converter(TEST)(("x", [b"\x01\x02\x03"]))[1][0],
                                  [2, 4, 6])
    too_big = ('top { name: "img" type: RAW_IMAGE channels: 1 height: 2 width: 2 '
               'transform_param { crop_size: 3 } }')
    with pytest.raises(DataError, match=r"column 'img', id 'x': transform_param: crop_size 3"):
        DataFrameSource(cos_layer("unused", too_big), False).converter(TEST)(("x", [bytes(4)]))


# ---- Spark (local[2]) ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def spark():
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    os.environ["PYSPARK_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession
    session = (SparkSession.builder.master("local[2]").appName("test_dataframe_source")
               .config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", "2")
               .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1")
               .getOrCreate())
    yield session
    session.stop()


def spark_frame(spark):
    from pyspark.sql import types as T
    schema = T.StructType([
        T.StructField("id", T.StringType()), T.StructField("s", T.StringType()),
        T.StructField("i", T.LongType()), T.StructField("f", T.DoubleType()),
        T.StructField("ia", T.ArrayType(T.IntegerType())),
        T.StructField("fa", T.ArrayType(T.DoubleType())),
        T.StructField("enc", T.BinaryType()), T.StructField("raw", T.BinaryType()),
        T.StructField("dim", T.StructType([T.StructField("image", T.BinaryType()),
                                           T.StructField("height", T.IntegerType()),
                                           T.StructField("width", T.IntegerType())]))])
    cols = columns()
    rows = [tuple(cols[f.name][k] for f in schema.fields) for k in range(3)]
    return spark.createDataFrame(rows, schema)


@pytest.mark.spark
@pytest.mark.slow
def test_spark_written_parquet_through_make_rdd_and_iter_local(spark, tmp_path):
    out = str(tmp_path / "spark_df")
    spark_frame(spark).coalesce(1).write.parquet(out)
    src = DataFrameSource(cos_layer(f"file:{out}"), True)
    rdd_samples = src.make_rdd(spark.sparkContext).collect()
    assert [s[0] for s in rdd_samples] == IDS
    assert rdd_samples == list(src.iter_local())
    check_converted(src, rdd_samples)

    arrow_dir = write_arrow(tmp_path / "arrow_df")
    arrow_src = DataFrameSource(cos_layer(arrow_dir), True)
    from_spark = arrow_src.make_rdd(spark.sparkContext).collect()
    assert sorted(from_spark) == sorted(arrow_src.iter_local())
    check_converted(arrow_src, from_spark)


@pytest.mark.spark
@pytest.mark.slow
def test_spark_dataframe_given_directly_and_checked_on_the_driver(spark):
    df = spark_frame(spark)
    layer = cos_layer("")
    src = DataFrameSource(layer, False, dataframe=df)
    samples = src.make_rdd(spark.sparkContext).collect()
    assert [s[0] for s in samples] == IDS
    check_converted(src, samples)
    wrong = DataFrameSource(cos_layer("", 'top { name: "f" type: INT channels: 1 height: 1 '
                                          'width: 1 }'), False, dataframe=df)
    with pytest.raises(DataError, match=r"column 'f' has type double, but top type INT"):
        wrong.make_rdd(spark.sparkContext)
    with pytest.raises(DataError, match=r"no column 'x'.*columns: id, s, i"):
        DataFrameSource(cos_layer("", 'top { name: "x" type: FLOAT channels: 1 height: 1 '
                                      'width: 1 }'), False, dataframe=df).make_rdd(
            spark.sparkContext)
