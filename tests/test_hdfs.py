"""Sources and paths on a real single-node HDFS (scripts/hdfs.sh), read by Spark on local[2]:
an LMDB shipped to executors, missing and empty LMDBs, parquet DataFrames, a SequenceFile,
and a model file round trip through cos.proto.paths."""

import functools
import os
import re
import sys

import lmdb
import numpy as np
import pytest

from cos.data.sources.lmdb_source import LMDBSource
from cos.errors import DataError
from cos.proto import caffe_pb2, paths
from hdfs_fixture import upload

pytestmark = [pytest.mark.hdfs, pytest.mark.spark, pytest.mark.slow]


@pytest.fixture(scope="module")
def sc(hdfs_server):
    """local[2] Spark, booted while the HDFS started by `hdfs_server` comes up."""
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    os.environ["PYSPARK_PYTHON"] = sys.executable
    from pyspark import SparkConf, SparkContext
    conf = (SparkConf().setMaster("local[2]").setAppName("test_hdfs")
            .set("spark.ui.enabled", "false").set("spark.driver.bindAddress", "127.0.0.1"))
    existing = SparkContext._active_spark_context
    context = SparkContext.getOrCreate(conf)
    yield context
    if existing is None:
        context.stop()


@pytest.fixture(scope="module")
def hdfs_uri(sc, hdfs_server):
    """The HDFS URI, asked for after Spark is up (the session fixture of the same name would
    wait for HDFS before Spark starts)."""
    return hdfs_server.uri()


def _layer(source, batch=4):
    layer = caffe_pb2.LayerParameter(name="data", type="MemoryData",
                                     source_class="com.yahoo.ml.caffe.LMDB")
    layer.memory_data_param.source = source
    layer.memory_data_param.batch_size = batch
    return layer


def _write_lmdb(path, n):
    """n 3x2x2 Datums, keys 00000..; returns the directory (python-lmdb adds lock.mdb)."""
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i in range(n):
            datum = caffe_pb2.Datum(channels=3, height=2, width=2, label=i % 10,
                                    data=bytes((i + j) % 256 for j in range(12)))
            txn.put(b"%05d" % i, datum.SerializeToString())
    env.close()
    return path


def _lmdb_on_hdfs(hdfs_uri, tmp_path, name, n):
    """An LMDB written locally, its data.mdb uploaded to /lmdb/<name>/ on HDFS."""
    local = _write_lmdb(tmp_path / name, n)
    upload(hdfs_uri, local / "data.mdb", f"/lmdb/{name}/data.mdb")
    return local, f"{hdfs_uri}/lmdb/{name}"


def test_lmdb_on_hdfs_is_read_once_per_record(hdfs_uri, sc, tmp_path):
    local, uri = _lmdb_on_hdfs(hdfs_uri, tmp_path, "train_lmdb", 21)
    expected = list(LMDBSource(_layer(str(local)), True).iter_local())
    assert [s[0] for s in expected] == ["%05d" % i for i in range(21)]

    source = LMDBSource(_layer(uri), True, partitions=3)
    parts = source.make_rdd(sc).glom().collect()
    assert [len(part) for part in parts] == [7, 7, 7]
    assert sorted(s for part in parts for s in part) == expected

    # the executors' copy holds data.mdb only: opening it wrote no lock.mdb
    from pyspark import SparkFiles
    listing = sc.parallelize([0], 1).map(
        lambda _: sorted(os.listdir(SparkFiles.get("train_lmdb")))).collect()
    assert listing == [["data.mdb"]]
    # a second RDD of the same path reuses the driver's copy and the shipped one
    from cos.data.sources import lmdb_source
    copy = lmdb_source._driver_copy(uri, sc)
    assert os.listdir(copy[0]) == ["data.mdb"]
    again = LMDBSource(_layer(uri), False, partitions=2).make_rdd(sc)
    assert lmdb_source._driver_copy(uri, sc) == copy
    assert again.count() == 21


def test_lmdb_on_hdfs_scheme_less_path_uses_default_fs(hdfs_uri, sc, tmp_path):
    local, uri = _lmdb_on_hdfs(hdfs_uri, tmp_path, "default_fs_lmdb", 5)
    conf = sc._jsc.hadoopConfiguration()
    before = conf.get("fs.defaultFS")
    conf.set("fs.defaultFS", hdfs_uri)
    try:
        rdd = LMDBSource(_layer("/lmdb/default_fs_lmdb"), True, partitions=2).make_rdd(sc)
        ids = sorted(s[0] for s in rdd.collect())
    finally:
        conf.set("fs.defaultFS", before)
    assert ids == ["%05d" % i for i in range(5)]


def test_missing_and_empty_lmdb_on_hdfs_name_the_path(hdfs_uri, sc, tmp_path):
    missing = hdfs_uri + "/lmdb/no_such_lmdb"
    with pytest.raises(DataError, match="^" + re.escape(missing) + ": LMDB directory not found"):
        LMDBSource(_layer(missing), True).make_rdd(sc)

    env = lmdb.open(str(tmp_path / "empty_lmdb"), map_size=1 << 20)
    env.close()
    upload(hdfs_uri, tmp_path / "empty_lmdb" / "data.mdb", "/lmdb/empty_lmdb/data.mdb")
    empty = hdfs_uri + "/lmdb/empty_lmdb"
    with pytest.raises(DataError, match="^" + re.escape(empty) + ": LMDB is empty"):
        LMDBSource(_layer(empty), True).make_rdd(sc)

    upload(hdfs_uri, tmp_path / "empty_lmdb" / "lock.mdb", "/lmdb/not_lmdb/lock.mdb")
    with pytest.raises(DataError, match="not_lmdb: not an LMDB directory"):
        LMDBSource(_layer(hdfs_uri + "/lmdb/not_lmdb"), True).make_rdd(sc)


def test_executor_copy_of_another_size_is_refused(hdfs_uri, sc, tmp_path):
    from cos.data.sources import lmdb_source
    _, uri = _lmdb_on_hdfs(hdfs_uri, tmp_path, "sized_lmdb", 6)
    source = LMDBSource(_layer(uri), True)
    source.make_rdd(sc).count()  # ships the directory
    local, size = lmdb_source._driver_copy(uri, sc)
    part = source.partitions()[0]
    read = functools.partial(lmdb_source.read_shipped, "sized_lmdb", size + 1, uri)
    message = (re.escape(uri) + r": the executor's copy \S*data.mdb: "
               f"{size} bytes, the driver saw {size + 1} bytes")
    with pytest.raises(Exception, match=message):
        sc.parallelize([part], 1).flatMap(read).collect()


def test_parquet_on_hdfs_through_dataframe_sources(hdfs_uri, sc):
    from pyspark.sql import SparkSession
    from cos.data.sources.dataframe_source import DataFrameSource
    from cos.data.sources.image_dataframe import ImageDataFrame
    spark = SparkSession(sc)
    rows = [(f"s{i}", str(i % 3), 1, 2, 2, False, bytes([i, i + 1, i + 2, i + 3]),
             float(i), [float(i), 2.0 * i]) for i in range(10)]
    frame = spark.createDataFrame(rows, "id string, label string, channels int, height int, "
                                  "width int, encoded boolean, data binary, value double, "
                                  "pair array<double>")
    uri = hdfs_uri + "/frames/images.parquet"
    frame.write.mode("overwrite").parquet(uri)

    images = ImageDataFrame(_layer(uri), True)
    assert sorted(images.make_rdd(sc).collect()) == sorted(r[:7] for r in rows)

    layer = caffe_pb2.LayerParameter(name="cos", type="CoSData", top=["value", "pair"])
    layer.cos_data_param.source = uri
    layer.cos_data_param.batch_size = 2
    CoS = caffe_pb2.CoSDataParameter
    layer.cos_data_param.top.add(name="value", type=CoS.FLOAT, channels=1, sample_num_axes=1)
    layer.cos_data_param.top.add(name="pair", type=CoS.FLOAT_ARRAY, channels=2,
                                 sample_num_axes=1)
    samples = sorted(DataFrameSource(layer, True).make_rdd(sc).collect())
    assert samples == sorted((r[0], [r[7], r[8]]) for r in rows)


def test_sequence_file_on_hdfs_through_seq_source(hdfs_uri, sc):
    import io
    from PIL import Image
    from cos.data import javaser
    from cos.data.seqfile import write_sequence_file
    from cos.data.sources.seq_source import SeqImageDataSource
    pairs = []
    for i in range(7):
        buf = io.BytesIO()
        Image.fromarray(np.full((4, 4), i * 30, np.uint8)).save(buf, format="PNG")
        pairs.append((javaser.dump_tuple2(f"img{i}.png", str(i % 2)), buf.getvalue()))
    uri = hdfs_uri + "/seq/images.seq"
    paths.makedirs(hdfs_uri + "/seq")
    assert write_sequence_file(uri, pairs) == 7

    layer = _layer(uri)
    layer.source_class = "com.yahoo.ml.caffe.SeqImageDataSource"
    samples = sorted(SeqImageDataSource(layer, True).make_rdd(sc).collect())
    assert samples == [(f"img{i}.png", str(i % 2), 1, 0, 0, True, pairs[i][1])
                       for i in range(7)]


def test_model_file_round_trip_through_paths(hdfs_uri, sc):
    net = caffe_pb2.NetParameter(name="tiny")
    net.layer.add(name="ip", type="InnerProduct").blobs.add(data=[0.5, -1.25], shape={"dim": [2]})
    uri = hdfs_uri + "/models/tiny.caffemodel"
    assert not paths.exists(uri)
    paths.makedirs(hdfs_uri + "/models")
    paths.write_bytes_atomic(uri, b"old contents")
    paths.write_bytes_atomic(uri, net.SerializeToString())
    assert paths.exists(uri) and not paths.exists(uri + "._COPYING_")
    back = caffe_pb2.NetParameter.FromString(paths.read_bytes(uri))
    assert back == net
    with pytest.raises(FileNotFoundError, match="tiny.solverstate"):
        paths.read_bytes(hdfs_uri + "/models/tiny.solverstate")
