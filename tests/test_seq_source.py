"""SeqImageDataSource over real SequenceFiles: PNG images with Tuple2 keys and raw pixels with
Tuple6 keys, read locally and through Spark (local[2]); directories of part files; bad keys."""

import os
import pickle
import re
import sys

import numpy as np
import pytest

from cos.data import javaser
from cos.data.seqfile import write_sequence_file
from cos.data.sources.seq_source import SeqImageDataSource
from cos.errors import DataError
from cos.proto import caffe_pb2
from cos.proto.datum import decode_image, encode_image


def layer(source, batch=2, channels=3, height=6, width=5):
    param = caffe_pb2.LayerParameter(name="data", type="MemoryData", top=["data", "label"])
    param.source_class = "com.yahoo.ml.caffe.SeqImageDataSource"
    m = param.memory_data_param
    m.source, m.batch_size, m.channels, m.height, m.width = source, batch, channels, height, width
    return param


def images(count, seed=0):
    """Small BGR images (6x5x3 uint8) with distinct pixels."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(6, 5, 3), dtype=np.uint8) for _ in range(count)]


def png_file(path, count=5):
    """Binary2Sequence's layout: Tuple2(file name, label) keys, PNG file bytes as values."""
    pixels = images(count)
    pairs = [(javaser.dump_tuple2(f"img_{i}.png", str(i % 3)), encode_image(p))
             for i, p in enumerate(pixels)]
    write_sequence_file(str(path), pairs)
    return pixels, pairs


def raw_file(path, count=4, offset=0):
    """LMDB2Sequence's layout: Tuple6 keys, raw interleaved HWC pixels as values."""
    pixels = images(count, seed=1 + offset)
    pairs = [(javaser.dump_tuple6(f"{offset + i:08d}", str(offset + i), 3, 6, 5, False),
              p.tobytes()) for i, p in enumerate(pixels)]
    write_sequence_file(str(path), pairs)
    return pixels


def check_png_samples(samples, pixels):
    assert [s[0] for s in samples] == [f"img_{i}.png" for i in range(len(pixels))]
    assert [s[1] for s in samples] == [str(i % 3) for i in range(len(pixels))]
    for sample, expected in zip(samples, pixels):
        assert sample[2:6] == (1, 0, 0, True)
        assert isinstance(sample[6], bytes)
        np.testing.assert_array_equal(decode_image(sample[6]), expected)


def check_raw_samples(samples, pixels, offset=0):
    for i, (sample, expected) in enumerate(zip(samples, pixels)):
        assert sample[:6] == (f"{offset + i:08d}", str(offset + i), 3, 6, 5, False)
        assert sample[6] == expected.tobytes()
    assert len(samples) == len(pixels)


def test_png_images_with_tuple2_keys(tmp_path):
    pixels, pairs = png_file(tmp_path / "images.seq")
    source = SeqImageDataSource(layer(str(tmp_path / "images.seq")), True)
    samples = list(source.iter_local())
    check_png_samples(samples, pixels)
    assert [s[6] for s in samples] == [value for _, value in pairs]


def test_raw_pixels_with_tuple6_keys_and_file_uri(tmp_path):
    pixels = raw_file(tmp_path / "raw.seq")
    source = SeqImageDataSource(layer("file:" + str(tmp_path / "raw.seq")), False)
    check_raw_samples(list(source.iter_local()), pixels)


def test_directory_of_part_files(tmp_path):
    out = tmp_path / "seq"
    out.mkdir()
    first = raw_file(out / "part-00000", count=3)
    second = raw_file(out / "part-00001", count=2, offset=3)
    (out / "_SUCCESS").write_bytes(b"")
    (out / ".part-00000.crc").write_bytes(b"crc")
    samples = list(SeqImageDataSource(layer(str(out)), True).iter_local())
    check_raw_samples(samples, first + second)


def test_bad_key_names_path_and_record(tmp_path):
    path = tmp_path / "bad.seq"
    good = javaser.dump_tuple2("a.png", "1")
    write_sequence_file(str(path), [(good, b"x"), (good, b"y"), (b"not java", b"z")])
    source = SeqImageDataSource(layer(str(path)), True)
    with pytest.raises(DataError) as info:
        list(source.iter_local())
    assert str(info.value).startswith(f"{path} (record 2): not a Java serialization stream")
    other = tmp_path / "other.seq"
    write_sequence_file(str(other), [(javaser.dump_object("java.util.UUID", 1, ["_1"], ["u"]),
                                      b"v")])
    with pytest.raises(DataError, match=re.escape(f"{other} (record 0): key is a java.util.UUID")):
        list(SeqImageDataSource(layer(str(other)), True).iter_local())


def test_missing_and_empty_sources(tmp_path):
    with pytest.raises(DataError, match="not found"):
        list(SeqImageDataSource(layer(str(tmp_path / "nope")), True).iter_local())
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "_SUCCESS").write_bytes(b"")
    with pytest.raises(DataError, match="no SequenceFiles"):
        list(SeqImageDataSource(layer(str(tmp_path / "empty")), True).iter_local())
    with pytest.raises(DataError, match="only local paths"):
        list(SeqImageDataSource(layer("hdfs://namenode:8020/seq"), True).iter_local())


def test_registry_and_pickling(tmp_path):
    from cos.data.sources import lookup
    assert lookup("com.yahoo.ml.caffe.SeqImageDataSource") is SeqImageDataSource
    source = SeqImageDataSource(layer(str(tmp_path / "x.seq"), batch=7), True, cluster_size=3)
    copy = pickle.loads(pickle.dumps(source))
    assert (copy.path, copy.batch_size, copy.cluster_size) == (str(tmp_path / "x.seq"), 7, 3)


# ---- through Spark ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def sc():
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark import SparkConf, SparkContext
    conf = (SparkConf().setMaster("local[2]").setAppName("test_seq_source")
            .set("spark.ui.enabled", "false").set("spark.driver.bindAddress", "127.0.0.1"))
    existing = SparkContext._active_spark_context
    context = SparkContext.getOrCreate(conf)
    yield context
    if existing is None:
        context.stop()


@pytest.mark.spark
@pytest.mark.slow
def test_make_rdd_png_raw_and_directory(sc, tmp_path):
    pixels, _ = png_file(tmp_path / "images.seq")
    source = SeqImageDataSource(layer("file:" + str(tmp_path / "images.seq")), True,
                                cluster_size=2)
    check_png_samples(source.make_rdd(sc).collect(), pixels)

    out = tmp_path / "raw"
    out.mkdir()
    first = raw_file(out / "part-00000", count=3)
    second = raw_file(out / "part-00001", count=2, offset=3)
    (out / "_SUCCESS").write_bytes(b"")
    rdd = SeqImageDataSource(layer(str(out)), False, cluster_size=2).make_rdd(sc)
    assert rdd.getNumPartitions() >= 2
    check_raw_samples(rdd.collect(), first + second)


@pytest.mark.spark
@pytest.mark.slow
def test_make_rdd_with_keys_from_the_jvm(sc, tmp_path):
    # keys serialised by the JVM itself, as LMDB2Sequence did, then read by the source
    jvm = sc._jvm
    keys = []
    for i in range(3):
        buffer = jvm.java.io.ByteArrayOutputStream()
        stream = jvm.java.io.ObjectOutputStream(buffer)
        stream.writeObject(jvm.scala.Tuple6(f"{i:08d}", str(i), 3, 6, 5, False))
        stream.close()
        keys.append(bytes(buffer.toByteArray()))
    pixels = images(3, seed=1)
    write_sequence_file(str(tmp_path / "jvm.seq"), zip(keys, (p.tobytes() for p in pixels)))
    rdd = SeqImageDataSource(layer(str(tmp_path / "jvm.seq")), True).make_rdd(sc)
    check_raw_samples(rdd.collect(), pixels)


@pytest.mark.spark
@pytest.mark.slow
def test_make_rdd_bad_key_names_path_and_record(sc, tmp_path):
    path = tmp_path / "bad.seq"
    good = javaser.dump_tuple2("a.png", "1")
    write_sequence_file(str(path), [(good, b"x"), (b"\xac\xed\x00\x05\x74\x00\x01s", b"y")])
    rdd = SeqImageDataSource(layer(str(path)), True).make_rdd(sc)
    with pytest.raises(Exception) as info:
        rdd.collect()
    assert f"{path} (split 0, record 1): key is a java.lang.String 's'" in str(info.value)
