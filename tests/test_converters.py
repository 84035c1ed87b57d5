"""Tests for cos/tools/converters.py and the cos-tools subcommands: real PNG/JPEG files and a
real LMDB are converted, and the output is read back through the source that reads it."""

import os
import subprocess
import sys

import lmdb
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from cos.errors import CosError, DataError
from cos.proto import caffe_pb2
from cos.proto.datum import decode_image
from cos.tools import converters
from cos.tools.main import main


# ---- inputs made in the test ------------------------------------------------------------

def rgb_image(seed, height=6, width=8):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture
def image_dir(tmp_path):
    """Four PNGs (three colour, one gray) and one JPEG; returns (folder, {name: BGR array})."""
    folder = tmp_path / "images"
    folder.mkdir()
    expected = {}
    for i in range(3):
        rgb = rgb_image(i)
        Image.fromarray(rgb).save(folder / f"img{i}.png")
        expected[f"img{i}.png"] = rgb[:, :, ::-1]
    gray = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    Image.fromarray(gray).save(folder / "gray.png")
    expected["gray.png"] = gray[:, :, None]
    smooth = np.full((6, 8, 3), (200, 120, 40), np.uint8)
    Image.fromarray(smooth).save(folder / "photo.jpg", quality=95)
    expected["photo.jpg"] = smooth[:, :, ::-1]
    return folder, expected


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


def make_lmdb(path, images, labels):
    """A Caffe LMDB of raw C×H×W Datums, keys 00000000, 00000001, ..."""
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i, (img, label) in enumerate(zip(images, labels)):
            c, h, w = img.shape
            datum = caffe_pb2.Datum(channels=c, height=h, width=w, data=img.tobytes(),
                                    label=int(label))
            txn.put(b"%08d" % i, datum.SerializeToString())
    env.close()
    return path


@pytest.fixture
def color_lmdb(tmp_path):
    images = np.random.default_rng(5).integers(0, 256, (7, 3, 4, 5), dtype=np.uint8)
    labels = [3, 1, 4, 1, 5, 9, 2]
    return make_lmdb(tmp_path / "color_lmdb", images, labels), images, labels


def memory_layer(source, source_class, batch_size=2, channels=3, height=6, width=8,
                 selects=(), fmt=None):
    layer = caffe_pb2.LayerParameter(name="data", type="MemoryData",
                                     source_class=source_class)
    p = layer.memory_data_param
    p.source, p.batch_size = str(source), batch_size
    p.channels, p.height, p.width = channels, height, width
    p.dataframe_column_select.extend(selects)
    if fmt:
        p.dataframe_format = fmt
    return layer


def pixels(sample):
    """The H×W×C pixels of a 7-tuple sample (decoded when encoded)."""
    _, _, channels, height, width, encoded, data = sample
    if encoded:
        return decode_image(bytes(data))
    return np.frombuffer(bytes(data), np.uint8).reshape(height, width, channels)


# ---- convert_imageset (no Spark) -----------------------------------------------------------

def lmdb_samples(db, channels=3):
    from cos.data.sources.lmdb_source import LMDBSource
    layer = memory_layer(db, "com.yahoo.ml.caffe.LMDB", channels=channels)
    return list(LMDBSource(layer, False).iter_local())


def test_convert_imageset_raw_bgr_keys_and_labels(tmp_path, image_dir):
    folder, expected = image_dir
    names = ["img0.png", "img1.png", "img2.png", "gray.png"]
    listfile = write_lines(tmp_path / "list.txt", [f"{n} {i + 2}" for i, n in enumerate(names)])
    assert main(["convert_imageset", str(folder) + "/", str(listfile),
                 str(tmp_path / "db")]) == 0
    samples = lmdb_samples(tmp_path / "db")
    assert [s[0] for s in samples] == [f"{i:08d}_{n}" for i, n in enumerate(names)]
    assert [s[1] for s in samples] == ["2", "3", "4", "5"]
    for sample, name in zip(samples, names):
        assert sample[2:6] == (3, 6, 8, False)
        want = expected[name] if name != "gray.png" else np.repeat(expected[name], 3, axis=2)
        np.testing.assert_array_equal(pixels(sample), want)
    # the Datum itself is planar C×H×W, as Caffe stores it
    env = lmdb.open(str(tmp_path / "db"), readonly=True, lock=False)
    with env.begin() as txn:
        datum = caffe_pb2.Datum.FromString(txn.get(b"00000001_img1.png"))
    env.close()
    np.testing.assert_array_equal(np.frombuffer(datum.data, np.uint8).reshape(3, 6, 8),
                                  expected["img1.png"].transpose(2, 0, 1))


def opencv_linear(image, height, width):
    """Reference cv::resize INTER_LINEAR: half-pixel centres, edges replicated."""
    src = image.astype(np.float64)
    out = np.empty((height, width, src.shape[2]))
    for y in range(height):
        fy = min(max((y + 0.5) * src.shape[0] / height - 0.5, 0), src.shape[0] - 1)
        y0 = int(fy)
        y1, wy = min(y0 + 1, src.shape[0] - 1), fy - int(fy)
        for x in range(width):
            fx = min(max((x + 0.5) * src.shape[1] / width - 0.5, 0), src.shape[1] - 1)
            x0 = int(fx)
            x1, wx = min(x0 + 1, src.shape[1] - 1), fx - int(fx)
            top = src[y0, x0] * (1 - wx) + src[y0, x1] * wx
            bottom = src[y1, x0] * (1 - wx) + src[y1, x1] * wx
            out[y, x] = top * (1 - wy) + bottom * wy
    return out


def test_convert_imageset_gray_resize_and_seeded_shuffle(tmp_path, image_dir):
    folder, expected = image_dir
    names = ["gray.png"] * 6
    listfile = write_lines(tmp_path / "list.txt", [f"{n} {i}" for i, n in enumerate(names)])
    order = []
    for run in ("a", "b"):
        db = tmp_path / f"db_{run}"
        count = converters.convert_imageset(str(folder), str(listfile), str(db), gray=True,
                                            resize_height=9, resize_width=5, shuffle=True,
                                            seed=3)
        assert count == 6
        samples = lmdb_samples(db, channels=1)
        order.append([s[1] for s in samples])
        for index, sample in enumerate(samples):
            assert sample[0] == f"{index:08d}_gray.png"
            assert sample[2:6] == (1, 9, 5, False)
            want = opencv_linear(expected["gray.png"], 9, 5)
            assert np.abs(pixels(sample).astype(float) - want).max() <= 0.5 + 1e-6
    assert order[0] == order[1]  # same seed, same order
    assert sorted(order[0], key=int) == [str(i) for i in range(6)]
    assert order[0] != [str(i) for i in range(6)]  # and it was shuffled


def test_convert_imageset_encoded_keeps_or_reencodes(tmp_path, image_dir):
    folder, expected = image_dir
    listfile = write_lines(tmp_path / "list.txt", ["img0.png 1", "photo.jpg 2"])
    converters.convert_imageset(str(folder), str(listfile), str(tmp_path / "kept"),
                                encoded=True)
    kept = lmdb_samples(tmp_path / "kept")
    assert [s[5] for s in kept] == [True, True]
    assert kept[0][6] == (folder / "img0.png").read_bytes()  # the file, untouched
    assert kept[1][6] == (folder / "photo.jpg").read_bytes()
    converters.convert_imageset(str(folder), str(listfile), str(tmp_path / "png"),
                                encode_type="png")
    redone = lmdb_samples(tmp_path / "png")
    assert redone[0][6] == kept[0][6]
    assert redone[1][6][:4] == b"\x89PNG"  # the JPEG re-encoded as PNG
    np.testing.assert_array_equal(pixels(redone[1]), pixels(kept[1]))
    np.testing.assert_array_equal(pixels(redone[0]), expected["img0.png"])


def test_convert_imageset_check_size_names_the_line(tmp_path, image_dir):
    folder, _ = image_dir
    Image.fromarray(rgb_image(9, 5, 5)).save(folder / "small.png")
    listfile = write_lines(tmp_path / "list.txt", ["img0.png 0", "img1.png 1", "small.png 2"])
    with pytest.raises(DataError, match=r"list\.txt:3: small\.png is 3x5x5.*3x6x8"):
        converters.convert_imageset(str(folder), str(listfile), str(tmp_path / "db"),
                                    check_size=True)
    assert not (tmp_path / "db").exists() and not (tmp_path / "db.tmp").exists()


@pytest.mark.parametrize("lines,message", [
    (["img0.png 0", "img1.png x"], r"list\.txt:2: label 'x' is not an integer"),
    (["img0.png 0", "", "nothing.png 1"], r"list\.txt:3: cannot read image .*nothing\.png"),
    (["img0.png"], r"list\.txt:1: expected '<path> <label>'")])
def test_convert_imageset_bad_lines(tmp_path, image_dir, lines, message):
    folder, _ = image_dir
    listfile = write_lines(tmp_path / "list.txt", lines)
    with pytest.raises(DataError, match=message):
        converters.convert_imageset(str(folder), str(listfile), str(tmp_path / "db"))
    assert not (tmp_path / "db").exists()


def test_convert_imageset_refuses_existing_db_and_leveldb(tmp_path, image_dir):
    folder, _ = image_dir
    listfile = write_lines(tmp_path / "list.txt", ["img0.png 0"])
    (tmp_path / "db").mkdir()
    with pytest.raises(CosError, match="already exists"):
        converters.convert_imageset(str(folder), str(listfile), str(tmp_path / "db"))
    assert main(["convert_imageset", "-backend", "leveldb", str(folder), str(listfile),
                 str(tmp_path / "db2")]) == 1


# ---- DataFrames (Spark local[2]) ------------------------------------------------------------

@pytest.fixture(scope="module")
def spark():
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession
    session = (SparkSession.builder.master("local[2]").appName("test_converters")
               .config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", "2").getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def image_dataframe(source, **layer_args):
    from cos.data.sources.image_dataframe import ImageDataFrame
    return ImageDataFrame(memory_layer(source, "com.yahoo.ml.caffe.ImageDataFrame",
                                       **layer_args), False)


def check_lmdb_samples(samples, images, labels):
    assert [s[0] for s in samples] == [f"{i:08d}" for i in range(len(labels))]
    assert [s[1] for s in samples] == [str(v) for v in labels]
    for sample, img in zip(samples, images):
        assert sample[2:6] == (3, 4, 5, False)
        np.testing.assert_array_equal(pixels(sample), img.transpose(1, 2, 0))


@pytest.mark.slow
@pytest.mark.spark
def test_lmdb2dataframe_parquet_reads_back_directly(spark, tmp_path, color_lmdb):
    db, images, labels = color_lmdb
    out = tmp_path / "df"
    assert main(["LMDB2DataFrame", "-imageRoot", str(db), "-output", f"file:{out}",
                 "-lmdb_partitions", "3", "-outputFormat", "parquet"]) == 0
    assert (out / "_SUCCESS").exists()
    assert len([n for n in os.listdir(out) if n.startswith("part-")]) == 3
    schema = pq.read_schema(next(out.glob("part-*")))
    assert [(f.name, str(f.type)) for f in schema] == [
        ("id", "string"), ("label", "string"), ("channels", "int32"), ("height", "int32"),
        ("width", "int32"), ("encoded", "bool"), ("data", "binary")]
    check_lmdb_samples(list(image_dataframe(out).iter_local()), images, labels)
    rdd = image_dataframe(out, fmt="parquet").make_rdd(spark.sparkContext)
    check_lmdb_samples(sorted(rdd.collect()), images, labels)


@pytest.mark.slow
@pytest.mark.spark
def test_lmdb2dataframe_json_holds_base64_data(spark, tmp_path, color_lmdb):
    db, images, labels = color_lmdb
    out = tmp_path / "json"
    assert converters.lmdb2dataframe(str(db), str(out), 2, "json") == 7
    selects = ["id", "label", "channels", "height", "width", "encoded",
               "unbase64(data) as data"]
    rdd = image_dataframe(out, fmt="json", selects=selects).make_rdd(spark.sparkContext)
    check_lmdb_samples(sorted(rdd.collect()), images, labels)
    with pytest.raises(CosError, match="already exists"):
        converters.lmdb2dataframe(str(db), str(out), 2, "json")
    with pytest.raises(CosError, match=r"cannot write the nosuchformat DataFrame \(.*nosuchformat"):
        converters.lmdb2dataframe(str(db), str(tmp_path / "other"), 2, "nosuchformat")


@pytest.mark.slow
@pytest.mark.spark
@pytest.mark.parametrize("fmt,data_expr", [("parquet", "data"),
                                           ("json", "unbase64(data) as data")])
def test_binary2dataframe_renamed_columns_read_back(spark, tmp_path, image_dir, fmt, data_expr):
    folder, expected = image_dir
    names = sorted(expected)
    labels = write_lines(tmp_path / "labels.txt",
                         [f"{n} {i} id{i}" for i, n in enumerate(names)])
    out = tmp_path / "df"
    assert main(["Binary2DataFrame", "-imageRoot", str(folder), "-labelFile", str(labels),
                 "-output", str(out), "-outputFormat", fmt]) == 0
    raw = spark.read.format(fmt).load(str(out))
    assert sorted(raw.columns) == ["SampleID", "data", "label"]  # json sorts its columns
    assert dict(raw.dtypes)["label"] in ("int", "bigint")  # json infers bigint
    selects = ["SampleID as id", "cast(label as string) as label", data_expr]
    source = image_dataframe(out, fmt=fmt, selects=selects)
    samples = sorted(source.make_rdd(spark.sparkContext).collect())
    assert [s[:2] for s in samples] == [(f"id{i}", str(i)) for i in range(len(names))]
    for sample, name in zip(samples, names):
        assert sample[6] == (folder / name).read_bytes()
        assert sample[2:6] == (0, 0, 0, False)  # no dims: decoded by the image converter
        if name.endswith(".png"):
            np.testing.assert_array_equal(decode_image(sample[6]), expected[name])


def test_binary2dataframe_bad_line_fails_before_spark(tmp_path, image_dir):
    folder, _ = image_dir
    labels = write_lines(tmp_path / "labels.txt", ["img0.png 0 a", "img1.png 1"])
    with pytest.raises(DataError, match=r"labels\.txt:2: expected '<file name> <label> <id>'"):
        converters.binary2dataframe(str(folder), str(labels), str(tmp_path / "df"))
    assert not (tmp_path / "df").exists()


# ---- SequenceFiles -------------------------------------------------------------------------

def seq_source(path, cluster_size=1):
    from cos.data.sources.seq_source import SeqImageDataSource
    layer = memory_layer(path, "com.yahoo.ml.caffe.SeqImageDataSource")
    return SeqImageDataSource(layer, True, cluster_size=cluster_size)


def check_binary_samples(samples, folder, expected, names, labels):
    assert [s[:2] for s in samples] == [(n, str(v)) for n, v in zip(names, labels)]
    for sample, name in zip(samples, names):
        assert sample[2:6] == (1, 0, 0, True)  # Tuple2 key: encoded, size unknown
        assert sample[6] == (folder / name).read_bytes()
        if name.endswith(".png"):
            np.testing.assert_array_equal(pixels(sample), expected[name])


def test_binary2sequence_reads_back_locally(tmp_path, image_dir):
    folder, expected = image_dir
    names = ["img2.png", "gray.png", "photo.jpg", "img0.png"]
    labels = write_lines(tmp_path / "labels.txt", [f"{n} {i * 3}" for i, n in enumerate(names)])
    out = tmp_path / "seq"
    assert main(["Binary2Sequence", "-imageRoot", str(folder), "-labelFile", str(labels),
                 "-output", f"file:{out}"]) == 0
    assert sorted(os.listdir(out)) == ["_SUCCESS", "part-00000"]
    samples = list(seq_source(out).iter_local())
    check_binary_samples(samples, folder, expected, names, [0, 3, 6, 9])


def test_lmdb2sequence_partitions_read_back_locally(tmp_path, color_lmdb):
    db, images, labels = color_lmdb
    out = tmp_path / "seq"
    assert converters.lmdb2sequence(f"file:{db}", str(out), partitions=3) == 7
    assert sorted(os.listdir(out)) == ["_SUCCESS", "part-00000", "part-00001", "part-00002"]
    check_lmdb_samples(list(seq_source(out).iter_local()), images, labels)
    with pytest.raises(CosError, match="already exists"):
        converters.lmdb2sequence(str(db), str(out))


def test_lmdb2sequence_gray_and_cli(tmp_path):
    images = np.random.default_rng(2).integers(0, 256, (3, 1, 28, 28), dtype=np.uint8)
    db = make_lmdb(tmp_path / "gray_lmdb", images, [7, 8, 9])
    out = tmp_path / "seq"
    assert main(["LMDB2Sequence", "-imageRoot", str(db), "-output", str(out)]) == 0
    samples = list(seq_source(out).iter_local())
    assert [s[:6] for s in samples] == [(f"{i:08d}", str(v), 1, 28, 28, False)
                                        for i, v in enumerate([7, 8, 9])]
    for sample, img in zip(samples, images):
        np.testing.assert_array_equal(pixels(sample)[:, :, 0], img[0])


@pytest.mark.slow
@pytest.mark.spark
def test_sequence_outputs_read_back_through_spark(spark, tmp_path, image_dir, color_lmdb):
    folder, expected = image_dir
    names = ["img0.png", "img1.png", "gray.png"]
    labels = write_lines(tmp_path / "labels.txt", [f"{n} {i}" for i, n in enumerate(names)])
    converters.binary2sequence(str(folder), str(labels), str(tmp_path / "binary"))
    rdd = seq_source(f"file:{tmp_path / 'binary'}", cluster_size=2).make_rdd(spark.sparkContext)
    check_binary_samples(rdd.collect(), folder, expected, names, [0, 1, 2])
    db, images, lmdb_labels = color_lmdb
    converters.lmdb2sequence(str(db), str(tmp_path / "lmdb"), partitions=2)
    rdd = seq_source(str(tmp_path / "lmdb"), cluster_size=2).make_rdd(spark.sparkContext)
    assert rdd.getNumPartitions() >= 2
    check_lmdb_samples(rdd.collect(), images, lmdb_labels)


def test_binary2sequence_bad_label_line_exits_nonzero(tmp_path, image_dir):
    folder, _ = image_dir
    labels = write_lines(tmp_path / "labels.txt", ["img0.png 0", "img1.png 1 extra"])
    out = tmp_path / "seq"
    script = os.path.join(os.path.dirname(sys.executable), "cos-tools")  # the entry point
    command = [script] if os.path.exists(script) else [sys.executable, "-m", "cos.tools.main"]
    proc = subprocess.run(command + ["Binary2Sequence", "-imageRoot", str(folder),
                                     "-labelFile", str(labels), "-output", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1
    assert f"{labels}:2: expected '<file name> <label>'" in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("lines,message", [
    (["img0.png 0", "missing.png 1"], r"labels\.txt:2: cannot read image .*missing\.png"),
    (["img0.png zero"], r"labels\.txt:1: label 'zero' is not an integer"),
    ([], r"labels\.txt: lists no images")])
def test_binary2sequence_errors_write_nothing(tmp_path, image_dir, lines, message):
    folder, _ = image_dir
    labels = write_lines(tmp_path / "labels.txt", lines)
    with pytest.raises(DataError, match=message):
        converters.binary2sequence(str(folder), str(labels), str(tmp_path / "seq"))
    assert not (tmp_path / "seq").exists()


def test_missing_options_are_usage_errors(tmp_path, capsys):
    assert main(["Binary2Sequence", "-labelFile", "x"]) == 2
    assert "Both -imageRoot and -labelFile must be defined" in capsys.readouterr().err
    assert main(["LMDB2Sequence", "-imageRoot", str(tmp_path / "nope"),
                 "-output", str(tmp_path / "o")]) == 1
    assert "nope: LMDB directory not found" in capsys.readouterr().err


# ---- COCO captions -------------------------------------------------------------------------

def test_sentence_words_and_embedding_round_trip():
    assert converters.sentence_words(" A cat sits on a mat. ") == ["a", "cat", "sits", "on",
                                                                 "a", "mat"]
    assert converters.sentence_words("a dog, a cat!.") == ["a", "dog", ",", "a", "cat", "!."]
    assert converters.sentence_words("Café") == ["caf", "é"]  # Java's ASCII \w
    assert converters.sentence_words("") == []
    ids = {"UNK": 0, "a": 1, "cat": 2}
    inputs, cont, target = converters.caption_embedding("A cat", ids, 4)
    assert (inputs, cont, target) == ([0, 1, 2, -1], [0, 1, 1, -1], [1, 2, 0, -1])
    assert converters.embedding_caption(inputs, ["UNK", "a", "cat"]) == "a cat"


def read_json_rows(folder):
    import json
    return [json.loads(line) for part in sorted(folder.glob("part-*"))
            for line in part.read_text().splitlines()]


def write_coco(tmp_path, annotations=True):
    import json
    folder = tmp_path / "coco_images"
    folder.mkdir(exist_ok=True)
    images = []
    for i, name in enumerate(["a.png", "b.png", "c.png"], 1):
        Image.fromarray(rgb_image(i, 4, 3)).save(folder / name)
        images.append({"id": i, "height": 4, "width": 3, "file_name": name,
                       "flickr_url": f"http://flickr/{name}", "coco_url": f"http://coco/{name}"})
    coco = {"images": images}
    if annotations:
        coco["annotations"] = [
            {"image_id": 1, "id": 11, "caption": "A cat sits on a mat."},
            {"image_id": 1, "id": 12, "caption": "a dog, a cat."},
            {"image_id": 2, "id": 21, "caption": "The dog runs on the grass"},
            {"image_id": 1, "id": 13, "caption": "Cat"},
            {"image_id": 99, "id": 99, "caption": "no such image"}]
    path = tmp_path / ("captions.json" if annotations else "images.json")
    path.write_text(json.dumps(coco))
    return folder, path


@pytest.mark.slow
@pytest.mark.spark
def test_coco_converter_writes_captions_vocabulary_and_embedding(spark, tmp_path):
    folder, captions = write_coco(tmp_path)
    out = tmp_path / "coco"
    assert main(["CocoDataSetConverter", "-imageRoot", str(folder), "-captionFile", str(captions),
                 "-output", str(out), "-imageCaptionDFDir", "image_caption", "-vocabDir", "vocab",
                 "-embeddingDFDir", "embedding", "-vocabSize", "4", "-captionLength", "6"]) == 0
    rows = sorted(read_json_rows(out / "image_caption"), key=lambda r: r["id"])
    assert [(r["id"], r["file"], r["caption"]) for r in rows] == [
        (11, "a.png", "A cat sits on a mat."), (12, "a.png", "a dog, a cat."),
        (13, "a.png", "Cat"), (21, "b.png", "The dog runs on the grass")]
    assert rows[0]["url"] == "http://flickr/a.png"
    assert (rows[0]["height"], rows[0]["width"]) == (4, 3)
    # counts: a 4, cat 3, dog 2, on 2, the 2 -> top 4 after UNK
    assert (out / "vocab" / "part-00000").read_text().split() == ["UNK", "a", "cat", "dog", "on"]
    embedded = {r["id"]: r for r in read_json_rows(out / "embedding")}
    assert sorted(embedded) == ["11", "12", "13", "21"]
    want = {"11": ([0, 1, 2, 1, 4, 1], [0, 1, 1, 1, 1, 1], [1, 2, 1, 4, 1, 0]),  # 'sits' -> 1
            "12": ([0, 1, 3, 1, 1, 2], [0, 1, 1, 1, 1, 1], [1, 3, 1, 1, 2, 0]),
            "13": ([0, 2, -1, -1, -1, -1], [0, 1, -1, -1, -1, -1], [2, 0, -1, -1, -1, -1]),
            "21": ([0, 1, 3, 1, 4, 1], [0, 1, 1, 1, 1, 1], [1, 3, 1, 4, 1, 0])}
    for key, (inputs, cont, target) in want.items():
        row = embedded[key]
        assert (row["input_sentence"], row["cont_sentence"], row["target_sentence"]) == (
            inputs, cont, target)
        assert row["label"] == 0 and (row["data"]["height"], row["data"]["width"]) == (4, 3)
    image = np.array(embedded["21"]["data"]["image"], np.int64).astype(np.uint8).tobytes()
    assert image == (folder / "b.png").read_bytes()

    _, images_only = write_coco(tmp_path, annotations=False)
    plain = tmp_path / "plain"
    assert converters.coco_dataset_converter(str(folder), str(images_only), str(plain),
                                             embedding_dir="emb", output_format="parquet") == 3
    table = pq.read_table(plain / "emb").sort_by("id")
    assert table.column_names == ["id", "data", "label"]
    assert table.column("id").to_pylist() == ["1", "2", "3"]


def test_coco_converter_missing_image_names_the_caption(tmp_path):
    folder, captions = write_coco(tmp_path)
    (folder / "b.png").unlink()
    with pytest.raises(DataError, match=r"captions\.json: id 21: cannot read image .*b\.png"):
        converters.coco_dataset_converter(str(folder), str(captions), str(tmp_path / "o"),
                                          vocab_dir="v", embedding_dir="e")
    assert not (tmp_path / "o").exists()
