"""Hadoop SequenceFiles: our writer and reader, files Hadoop wrote (plain, record- and
block-compressed, through Spark) read by us, our files read by Hadoop, and errors."""

import os
import re
import struct
import sys
import zlib

import pytest

from cos.data import seqfile
from cos.data.seqfile import read_sequence_file, write_sequence_file
from cos.errors import DataError


def sample_pairs(count, seed=0):
    """Keys and values of varied sizes, including empty ones."""
    import random
    rng = random.Random(seed)
    pairs = [(b"", b""), (b"key-only", b"")]
    for i in range(count):
        pairs.append((f"k{i:05d}".encode(), rng.randbytes(rng.randrange(0, 700))))
    return pairs


def test_vint_known_encodings():
    # WritableUtils.writeVLong: small values in one byte, then a length marker
    cases = {0: "00", 127: "7f", -112: "90", 128: "8f80", 255: "8fff", 256: "8e0100",
             -113: "8770", -256: "87ff", -257: "860100", 2 ** 31 - 1: "8c7fffffff",
             -2 ** 31: "847fffffff"}
    for value, encoded in cases.items():
        assert seqfile.write_vint(value).hex() == encoded
        first = struct.unpack(">b", bytes.fromhex(encoded)[:1])[0]
        assert seqfile.vint_size(first) == len(encoded) // 2
        assert seqfile.decode_vint(first, bytes.fromhex(encoded)[1:]) == value


def test_text_and_bytes_writable():
    assert seqfile.text("org") == b"\x03org"
    assert seqfile.text("é" * 100) == b"\x8f\xc8" + "é".encode() * 100
    assert seqfile.bytes_writable(b"ab") == b"\x00\x00\x00\x02ab"
    assert seqfile.unwrap_bytes_writable(b"\x00\x00\x00\x02ab", "k") == b"ab"
    with pytest.raises(DataError, match="k: BytesWritable says 3 bytes but holds 2"):
        seqfile.unwrap_bytes_writable(b"\x00\x00\x00\x03ab", "k")


def test_round_trip_with_sync_markers(tmp_path):
    path = tmp_path / "images.seq"
    pairs = sample_pairs(200)
    assert write_sequence_file(str(path), pairs, metadata={"b": "2", "a": "1"}) == len(pairs)
    assert list(read_sequence_file(str(path))) == pairs
    data = path.read_bytes()
    with open(path, "rb") as f:
        header = seqfile.read_header(f, str(path))
    assert (header.key_class, header.value_class) == (seqfile.BYTES_WRITABLE,) * 2
    assert not header.compressed and header.metadata == {"a": "1", "b": "2"}
    escape = b"\xff\xff\xff\xff" + header.sync
    # a sync escape before the first record that starts 2000 or more bytes after the last
    # sync (the header's at first), as Hadoop 2's writer did
    starts, at = [], data.find(escape)
    while at != -1:
        starts.append(at)
        at = data.find(escape, at + 1)
    assert len(starts) > 10
    largest_record = 8 + 4 + 6 + 4 + 700
    ends = [0] + [start + 20 for start in starts]
    for previous_end, start in zip(ends, starts):
        assert 2000 <= start - previous_end < 2000 + largest_record
    assert data.startswith(b"SEQ\x06\x22org.apache.hadoop.io.BytesWritable")


def test_file_uri_empty_file_and_replacement(tmp_path):
    uri = "file:" + str(tmp_path / "a.seq")
    write_sequence_file(uri, [])
    assert list(read_sequence_file(uri)) == []
    write_sequence_file(uri, [(b"k", b"v")])
    assert list(read_sequence_file(str(tmp_path / "a.seq"))) == [(b"k", b"v")]


def test_failed_write_keeps_the_old_file(tmp_path):
    path = str(tmp_path / "a.seq")
    write_sequence_file(path, [(b"old", b"1")])

    def broken():
        yield b"new", b"2"
        raise RuntimeError("source failed")
    with pytest.raises(RuntimeError):
        write_sequence_file(path, broken())
    assert list(read_sequence_file(path)) == [(b"old", b"1")]
    assert os.listdir(tmp_path) == ["a.seq"]


def _header(codec=None, block=False, key_class=seqfile.BYTES_WRITABLE):
    parts = [b"SEQ\x06", seqfile.text(key_class), seqfile.text(seqfile.BYTES_WRITABLE),
             b"\x01" if codec else b"\x00", b"\x01" if block else b"\x00"]
    if codec:
        parts.append(seqfile.text(codec))
    return b"".join(parts) + b"\x00\x00\x00\x00" + b"S" * 16


def _record_compressed(key, value):
    packed = zlib.compress(seqfile.bytes_writable(value))
    key = seqfile.bytes_writable(key)
    return struct.pack(">ii", len(key) + len(packed), len(key)) + key + packed


def test_record_compressed_by_hand(tmp_path):
    path = tmp_path / "r.seq"
    path.write_bytes(_header(seqfile.DEFAULT_CODEC) + _record_compressed(b"k", b"v" * 1000)
                     + b"\xff\xff\xff\xff" + b"S" * 16 + _record_compressed(b"k2", b""))
    assert list(read_sequence_file(str(path))) == [(b"k", b"v" * 1000), (b"k2", b"")]


@pytest.mark.parametrize("make, message", [
    (lambda: b"PK\x03\x04 zip file", "not a Hadoop SequenceFile"),
    (lambda: b"SEQ\x05", "version 5 is not supported"),
    (lambda: _header("org.apache.hadoop.io.compress.SnappyCodec"),
     "codec org.apache.hadoop.io.compress.SnappyCodec is not supported"),
    (lambda: _header(key_class="org.apache.hadoop.io.Text"),
     "key class is org.apache.hadoop.io.Text"),
    (lambda: _header() + b"\xff\xff\xff\xff" + b"X" * 16, "sync marker at byte"),
    (lambda: _header() + struct.pack(">ii", 4, 9) + b"abcd", "key length 9"),
    (lambda: _header() + struct.pack(">ii", 8, 4) + b"\x00\x00\x00\x09" + b"\x00" * 4,
     "record 0 key: BytesWritable says 9 bytes"),
    (lambda: _header(seqfile.DEFAULT_CODEC) + struct.pack(">ii", 9, 4) + bytes(4) + b"nozlib",
     "record 0 value: bad zlib data"),
])
def test_errors_name_the_path(tmp_path, make, message):
    path = tmp_path / "bad.seq"
    path.write_bytes(make())
    with pytest.raises(DataError) as info:
        list(read_sequence_file(str(path)))
    assert str(info.value).startswith(str(path) + ": ") and message in str(info.value)


def test_every_truncation_is_a_data_error(tmp_path):
    good = tmp_path / "good.seq"
    write_sequence_file(str(good), sample_pairs(12))
    data = good.read_bytes()
    record_ends = set()
    pos = len(_header())  # magic, two class names, two flags, empty metadata, sync
    record_ends.add(pos)
    while pos < len(data):
        length = struct.unpack_from(">i", data, pos)[0]
        pos += 4 + 16 if length == -1 else 8 + length
        record_ends.add(pos)
    cut_file = tmp_path / "cut.seq"
    for cut in range(len(data) - 1, 0, -7):
        cut_file.write_bytes(data[:cut])
        if cut in record_ends:  # a clean record boundary is a shorter, valid file
            list(read_sequence_file(str(cut_file)))
            continue
        with pytest.raises(DataError, match="^" + re.escape(str(cut_file)) + ": "):
            list(read_sequence_file(str(cut_file)))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_sequence_file(str(tmp_path / "nope.seq"))
    with pytest.raises(DataError, match="is a directory"):
        read_sequence_file(str(tmp_path))


# ---- against real Hadoop (Spark's JVM) ------------------------------------------------

@pytest.fixture(scope="module")
def sc():
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark import SparkConf, SparkContext
    conf = (SparkConf().setMaster("local[2]").setAppName("test_seqfile")
            .set("spark.ui.enabled", "false").set("spark.driver.bindAddress", "127.0.0.1"))
    existing = SparkContext._active_spark_context
    context = SparkContext.getOrCreate(conf)
    yield context
    if existing is None:
        context.stop()


def read_with_our_reader(directory):
    names = sorted(n for n in os.listdir(directory) if n.startswith("part-"))
    assert names
    return [pair for n in names for pair in read_sequence_file(os.path.join(directory, n))]


def as_bytearrays(pairs):
    return [(bytearray(k), bytearray(v)) for k, v in pairs]


@pytest.mark.spark
@pytest.mark.slow
def test_hadoop_vints_match(sc):
    jvm = sc._jvm
    for value in [0, 1, -1, 127, 128, -112, -113, 255, 256, -257, 65536, 2 ** 31 - 1,
                  -2 ** 31, 2 ** 40, -2 ** 63]:
        buffer = jvm.org.apache.hadoop.io.DataOutputBuffer()
        jvm.org.apache.hadoop.io.WritableUtils.writeVLong(buffer, value)
        assert seqfile.write_vint(value) == bytes(buffer.getData())[:buffer.getLength()]


@pytest.mark.spark
@pytest.mark.slow
def test_hadoop_reads_our_file_across_splits(sc, tmp_path):
    # > 2 * 100 KB so Hadoop 3's SequenceFileInputFormat makes two splits; the second split
    # starts at the first sync marker after its offset, so each record comes once
    pairs = [(f"k{i:05d}".encode(), bytes([i % 251]) * (1500 + 37 * i)) for i in range(120)]
    path = tmp_path / "ours.seq"
    write_sequence_file(str(path), pairs)
    assert path.stat().st_size > 250_000
    jvm = sc._jvm
    mapred = jvm.org.apache.hadoop.mapred
    conf = mapred.JobConf(sc._jsc.hadoopConfiguration())
    mapred.FileInputFormat.setInputPaths(conf, "file:" + str(path))
    input_format = mapred.SequenceFileInputFormat()
    per_split = []
    for split in input_format.getSplits(conf, 2):
        reader = input_format.getRecordReader(split, conf, mapred.Reporter.NULL)
        key, value = reader.createKey(), reader.createValue()
        records = []
        while reader.next(key, value):
            records.append((bytes(key.copyBytes()), bytes(value.copyBytes())))
        reader.close()
        per_split.append(records)
    assert len(per_split) == 2 and all(per_split)
    assert [pair for records in per_split for pair in records] == pairs
    # and through Spark's own sequenceFile (converted in the JVM, no Python worker)
    rdd = sc.sequenceFile("file:" + str(path), seqfile.BYTES_WRITABLE, seqfile.BYTES_WRITABLE,
                          minSplits=2)
    assert rdd.getNumPartitions() == 2
    assert [(bytes(k), bytes(v)) for k, v in rdd.collect()] == pairs


@pytest.mark.spark
@pytest.mark.slow
def test_we_read_files_spark_wrote(sc, tmp_path):
    pairs = sample_pairs(150, seed=3)
    rdd = sc.parallelize(as_bytearrays(pairs), 1)
    rdd.saveAsSequenceFile(str(tmp_path / "plain"))
    # Spark asks Hadoop for BLOCK compression whenever a codec is given
    rdd.saveAsSequenceFile(str(tmp_path / "block"),
                           compressionCodecClass=seqfile.DEFAULT_CODEC)
    rdd.saveAsHadoopFile(str(tmp_path / "record"),
                         "org.apache.hadoop.mapred.SequenceFileOutputFormat",
                         seqfile.BYTES_WRITABLE, seqfile.BYTES_WRITABLE,
                         conf={"mapreduce.output.fileoutputformat.compress": "true",
                               "mapreduce.output.fileoutputformat.compress.codec":
                                   seqfile.DEFAULT_CODEC,
                               "mapreduce.output.fileoutputformat.compress.type": "RECORD"})
    expected_kinds = {"plain": (False, False), "block": (True, True), "record": (True, False)}
    for kind, (compressed, block) in expected_kinds.items():
        part = tmp_path / kind / "part-00000"
        with open(part, "rb") as f:
            header = seqfile.read_header(f, str(part))
        assert (header.compressed, header.block_compressed) == (compressed, block)
        assert read_with_our_reader(tmp_path / kind) == pairs, kind
