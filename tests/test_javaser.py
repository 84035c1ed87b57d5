"""Java serialization of SequenceFile keys: round trips, the exact bytes a real JVM writes
(py4j into Spark's JVM), the deprecated Pair class compiled with javac, and errors."""

import os
import shutil
import subprocess
import sys

import pytest

from cos.data import javaser
from cos.data.javaser import dump_object, dump_tuple2, dump_tuple6, load_key
from cos.errors import DataError


def test_tuple2_round_trip():
    assert load_key(dump_tuple2("cat_1.jpg", "0")) == ("cat_1.jpg", "0")


def test_tuple6_round_trip_with_shared_and_unshared_boxes():
    for fields in [("00000007", "3", 3, 3, 5, False), ("x", "12", 3, 227, 227, True),
                   ("", "-1", -128, 127, 128, False), ("n", "0", -2 ** 31, 2 ** 31 - 1, 0, True)]:
        assert load_key(dump_tuple6(*fields)) == fields


def test_small_integers_and_booleans_are_back_references():
    # Integer.valueOf shares -128..127: the second 3 is a TC_REFERENCE to the first Integer
    shared = dump_tuple6("a", "b", 3, 3, 9, True)
    apart = dump_tuple6("a", "b", 300, 300, 9, True)
    assert shared.count(b"\x73\x71\x00\x7e\x00\x05") == 1  # one more Integer, by class ref
    assert apart.count(b"\x73\x71\x00\x7e\x00\x05") == 2
    # TC_OBJECT + class ref + int (10 bytes) where the shared one has a 5-byte TC_REFERENCE
    assert len(apart) - len(shared) == 5


def test_unicode_nul_and_long_strings():
    odd = "naïve\x00 \U0001f600 ü"
    assert load_key(dump_tuple2(odd, "7")) == (odd, "7")
    # modified UTF-8: NUL is two bytes, the emoji two 3-byte surrogates
    assert javaser.encode_modified_utf8("\x00") == b"\xc0\x80"
    assert len(javaser.encode_modified_utf8("\U0001f600")) == 6
    long_id = "é" * 40000  # 80000 UTF bytes > 65535: TC_LONGSTRING with an 8-byte length
    data = dump_tuple2(long_id, "1")
    assert b"\x7c" + (80000).to_bytes(8, "big") in data
    assert load_key(data) == (long_id, "1")


def test_scala_2_10_stream_prefix_and_any_uid_accepted():
    # The class descriptor Scala 2.10 wrote for Tuple2, as pinned by Akka 2.2's cross-version
    # serialization tests: same layout as Scala 2.13, different serialVersionUID.
    scala_210 = bytes.fromhex(
        "aced00057372000c7363616c612e5475706c6532bc7daadf46211a990200024c00025f317400124c"
        "6a6176612f6c616e672f4f626a6563743b4c00025f3271007e00017870")
    old = dump_tuple2("img.png", "4", uid=javaser.SCALA_2_10_TUPLE2_UID)
    assert old.startswith(scala_210)
    assert load_key(old) == ("img.png", "4")
    assert dump_tuple2("img.png", "4")[:len(scala_210)] != scala_210


def test_pair_class():
    data = dump_object(javaser.PAIR_CLASS, 1, ["first", "second"], ["a.jpg", "1"])
    assert load_key(data) == ("a.jpg", "1")


@pytest.mark.parametrize("data, found", [
    (b"\x00\x01\x02\x03\x04", "not a Java serialization stream"),
    (dump_object("java.util.Date", 7, ["_1"], ["x"]), "java.util.Date"),
    (dump_object("scala.Tuple2", 7, ["_1", "_2"], ["x", 1]), "field _2 is a java.lang.Integer"),
    (dump_object("scala.Tuple6", 7, ["_1", "_2", "_3", "_4", "_5", "_6"],
                 ["x", "1", 1, 2, True, False]), "field _5 is a java.lang.Boolean"),
    (b"\xac\xed\x00\x05\x74\x00\x03abc", "java.lang.String 'abc'"),
    (b"\xac\xed\x00\x05\x70", "null"),
    (b"\xac\xed\x00\x05\x75\x72", "TC_ARRAY"),
    (b"\xac\xed\x00\x05\x7e", "TC_ENUM"),
    (b"\xac\xed\x00\x05\x71\x00\x7e\x00\x09", "unknown handle 0x7e0009"),
])
def test_errors_name_what_was_found(data, found):
    with pytest.raises(DataError) as info:
        load_key(data, where="part-00000 record 3")
    message = str(info.value)
    assert message.startswith("part-00000 record 3: ") and found in message
    assert "\n" not in message


def test_every_truncation_and_byte_flip_is_a_data_error():
    data = dump_tuple6("id", "lab", 3, 300, 3, True)
    for cut in range(len(data)):
        with pytest.raises(DataError):
            load_key(data[:cut])
    for at in range(len(data)):
        for flip in (0x01, 0x80, 0xFF):
            broken = bytearray(data)
            broken[at] ^= flip
            try:
                load_key(bytes(broken))
            except DataError:
                pass


def test_superclass_loop_is_refused():
    # a class descriptor whose superclass is a back-reference to itself
    data = (b"\xac\xed\x00\x05\x73\x72\x00\x01X" + bytes(8) + b"\x02\x00\x00\x78"
            + b"\x71\x00\x7e\x00\x00")
    with pytest.raises(DataError, match="own superclass"):
        load_key(data)


# ---- against a real JVM -------------------------------------------------------------

@pytest.fixture(scope="module")
def sc():
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark import SparkConf, SparkContext
    conf = (SparkConf().setMaster("local[2]").setAppName("test_javaser")
            .set("spark.ui.enabled", "false").set("spark.driver.bindAddress", "127.0.0.1"))
    existing = SparkContext._active_spark_context
    context = SparkContext.getOrCreate(conf)
    yield context
    if existing is None:
        context.stop()


def jvm_bytes(sc, obj):
    """What java.io.ObjectOutputStream writes for a JVM object."""
    jvm = sc._jvm
    buffer = jvm.java.io.ByteArrayOutputStream()
    stream = jvm.java.io.ObjectOutputStream(buffer)
    stream.writeObject(obj)
    stream.close()
    return bytes(buffer.toByteArray())


def jvm_uid(sc, class_name):
    jvm = sc._jvm
    return jvm.java.io.ObjectStreamClass.lookup(
        jvm.java.lang.Class.forName(class_name)).getSerialVersionUID()


@pytest.mark.spark
@pytest.mark.slow
def test_serial_version_uids_match_the_jvm(sc):
    assert sc._jvm.scala.util.Properties.versionNumberString().startswith("2.13.")
    assert jvm_uid(sc, "scala.Tuple2") == javaser.TUPLE2_UID
    assert jvm_uid(sc, "scala.Tuple6") == javaser.TUPLE6_UID
    assert jvm_uid(sc, "java.lang.Integer") == javaser.INTEGER_UID
    assert jvm_uid(sc, "java.lang.Number") == javaser.NUMBER_UID
    assert jvm_uid(sc, "java.lang.Boolean") == javaser.BOOLEAN_UID


@pytest.mark.spark
@pytest.mark.slow
@pytest.mark.parametrize("id, label", [("a", "1"), ("cat_1.jpg", "0"),
                                       ("naïve\x00 \U0001f600", "12"), ("é" * 40000, "3")])
def test_tuple2_bytes_equal_the_jvm(sc, id, label):
    expected = jvm_bytes(sc, sc._jvm.scala.Tuple2(id, label))
    assert dump_tuple2(id, label) == expected
    assert load_key(expected) == (id, label)


@pytest.mark.spark
@pytest.mark.slow
@pytest.mark.parametrize("fields", [("00000000", "5", 1, 28, 28, False),
                                    ("id", "lab", 3, 3, 5, True),
                                    ("big", "999", 3, 227, 227, False),
                                    ("neg", "-1", -129, -128, 0, True)])
def test_tuple6_bytes_equal_the_jvm(sc, fields):
    # py4j boxes Python ints with Integer.valueOf and bools as Boolean.TRUE/FALSE, like Scala
    expected = jvm_bytes(sc, sc._jvm.scala.Tuple6(*fields))
    assert dump_tuple6(*fields) == expected
    assert load_key(expected) == fields


PAIR_SOURCE = """package com.yahoo.ml.dl.caffe;

public class Pair<F, S> implements java.io.Serializable {
    public F first;
    public S second;
    public Pair(F first, S second) { this.first = first; this.second = second; }
}
"""


@pytest.mark.spark
@pytest.mark.slow
def test_pair_written_by_the_jvm(sc, tmp_path):
    if shutil.which("javac") is None:
        pytest.skip("javac is not installed")
    source = tmp_path / "com" / "yahoo" / "ml" / "dl" / "caffe" / "Pair.java"
    source.parent.mkdir(parents=True)
    source.write_text(PAIR_SOURCE)
    subprocess.run(["javac", "--release", "8", str(source)], check=True, capture_output=True,
                   timeout=120)
    jvm, gateway = sc._jvm, sc._gateway
    urls = gateway.new_array(jvm.java.net.URL, 1)
    urls[0] = jvm.java.io.File(str(tmp_path)).toURI().toURL()
    pair_class = jvm.java.net.URLClassLoader(urls).loadClass(javaser.PAIR_CLASS)
    args = gateway.new_array(jvm.java.lang.Object, 2)
    args[0], args[1] = "dog_2.jpg", "1"
    pair = pair_class.getConstructors()[0].newInstance(args)
    data = jvm_bytes(sc, pair)
    assert load_key(data) == ("dog_2.jpg", "1")
    uid = jvm.java.io.ObjectStreamClass.lookup(pair_class).getSerialVersionUID()
    assert data == dump_object(javaser.PAIR_CLASS, uid, ["first", "second"], ["dog_2.jpg", "1"])
