"""Paths: plain and file: URIs on the local disk; Hadoop URIs through a live Spark JVM."""

import os

import pytest

from cos.errors import CosError
from cos.proto import paths


@pytest.mark.parametrize("uri,expected", [
    ("/a/b.txt", "/a/b.txt"),
    ("rel/b.txt", "rel/b.txt"),
    ("file:/a/b.txt", "/a/b.txt"),
    ("file:///a/b.txt", "/a/b.txt"),
    ("file://localhost/a/b.txt", "/a/b.txt"),
    ("file:data/generated/x", "data/generated/x"),
])
def test_local_path(uri, expected):
    assert paths.is_local(uri) and not paths.is_hdfs(uri)
    assert paths.local_path(uri) == expected


def test_hadoop_schemes_are_not_local():
    for uri in ("hdfs://nn:8020/x", "hdfs:///x", "s3a://bucket/x", "viewfs://c/x"):
        assert paths.is_hdfs(uri) and not paths.is_local(uri)
        with pytest.raises(CosError, match="not a local path"):
            paths.local_path(uri)


def test_local_read_write_exists(tmp_path):
    target = tmp_path / "sub" / "f.bin"
    paths.makedirs("file:" + str(target.parent))
    assert paths.exists("file://" + str(target.parent))
    assert not paths.exists(str(target))
    paths.write_bytes_atomic("file://" + str(target), b"one")
    paths.write_bytes_atomic(str(target), b"two")
    assert paths.read_bytes("file:" + str(target)) == b"two"
    with paths.open_read(str(target)) as f:
        assert f.read() == b"two"
    assert os.listdir(target.parent) == ["f.bin"]  # no temp files left behind


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "model.caffemodel"
    target.write_bytes(b"old")

    class Boom:  # not bytes: the write fails half way
        def __len__(self):
            return 3
    with pytest.raises(TypeError):
        paths.write_bytes_atomic(str(target), Boom())
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["model.caffemodel"]


def test_copy_to_local(tmp_path):
    src = tmp_path / "db"
    src.mkdir()
    (src / "data.mdb").write_bytes(b"x" * 10)
    dest = paths.copy_to_local("file:" + str(src), str(tmp_path / "out"))
    assert open(os.path.join(dest, "data.mdb"), "rb").read() == b"x" * 10
    single = paths.copy_to_local(str(src / "data.mdb"), str(tmp_path / "one"))
    assert os.path.getsize(single) == 10


def test_unreachable_hdfs_without_spark_fails_fast_with_one_line():
    """No JVM here: hdfs:// goes through hdfs-native, which must not retry for minutes."""
    import time
    from pyspark import SparkContext
    if SparkContext._active_spark_context is not None:
        pytest.skip("a SparkContext from another test is still running")
    for uri in ("hdfs://namenode.invalid:8020/models/lenet.caffemodel",
                "hdfs://127.0.0.1:9/models/lenet.caffemodel"):
        start = time.monotonic()
        with pytest.raises(CosError) as info:
            paths.read_bytes(uri)
        assert time.monotonic() - start < 30
        message = str(info.value)
        assert message.startswith(uri + ": ") and "\n" not in message


@pytest.fixture(scope="module")
def spark_context():
    from pyspark import SparkConf, SparkContext
    conf = (SparkConf().setMaster("local[1]").setAppName("test_proto_paths")
            .set("spark.ui.enabled", "false").set("spark.driver.bindAddress", "127.0.0.1"))
    existing = SparkContext._active_spark_context
    sc = SparkContext.getOrCreate(conf)
    yield sc
    if existing is None:
        sc.stop()


@pytest.mark.slow
@pytest.mark.spark
def test_hadoop_file_system_through_spark(spark_context, tmp_path):
    # Hadoop's LocalFileSystem serves file:// here; the code path is the one hdfs:// takes.
    uri = "file://" + str(tmp_path / "dir" / "w.caffemodel")
    paths._hadoop(uri)[0].mkdirs(paths._hadoop("file://" + str(tmp_path / "dir"))[1])
    paths._hadoop_write_atomic(uri, b"first")
    paths._hadoop_write_atomic(uri, b"\x00second\xff")
    assert paths._hadoop_read(uri) == b"\x00second\xff"
    assert (tmp_path / "dir" / "w.caffemodel").read_bytes() == b"\x00second\xff"
    assert not (tmp_path / "dir" / "w.caffemodel._COPYING_").exists()
    with pytest.raises(FileNotFoundError):
        paths._hadoop_read("file://" + str(tmp_path / "missing"))
    out = paths._hadoop_copy_to_local("file://" + str(tmp_path / "dir"), str(tmp_path / "copy"))
    assert open(os.path.join(out, "w.caffemodel"), "rb").read() == b"\x00second\xff"


@pytest.mark.slow
@pytest.mark.spark
def test_unknown_scheme_error_comes_from_hadoop(spark_context):
    with pytest.raises(CosError) as info:
        paths.read_bytes("nosuchfs://host/x")
    message = str(info.value)
    assert message.startswith("nosuchfs://host/x: ") and "nosuchfs" in message[19:]
    assert "\n" not in message


def test_atomic_write_creates_missing_parent_directories(tmp_path):
    target = tmp_path / "new" / "dir" / "model.caffemodel"
    paths.write_bytes_atomic(f"file:{target}", b"weights")
    assert target.read_bytes() == b"weights"
    assert [p.name for p in target.parent.iterdir()] == ["model.caffemodel"]
