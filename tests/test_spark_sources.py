"""End to end through bin/caffe-on-spark on local[2], 2 MPI ranks, for every source kind
other than LMDB (which test_spark_local.py covers): SeqImageDataSource, ImageDataFrame
(with validation), DataFrameSource/CoSData (with a transposed top), mean files found next
to the solver (a MemoryData layer's and a CoSData top's) while the job runs from another
directory, and -resize.

Each job trains a small LeNet on a few hundred sklearn 8x8 digits for 60 iterations, then
runs -features or -test in the same spark-submit, to keep the number of JVM starts low.
Where it can, a test recomputes the extracted features in this process from the saved
model and compares them, so a transform that was silently skipped would be caught.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from test_spark_local import digits, read_json_rows, run_wrapper, write_lmdb

pytestmark = [pytest.mark.slow, pytest.mark.spark, pytest.mark.mpi]

SCALE = 0.00390625

BODY = """
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 6 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool1" top: "ip1"
  inner_product_param { num_output: 20 weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }
layer { name: "accuracy" type: "Accuracy" bottom: "ip2" bottom: "label" top: "accuracy"
  include { phase: TEST } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
"""

MEMORY_LAYER = """
layer { name: "data" type: "MemoryData" top: "data" top: "label"
  include { phase: PHASE } source_class: "com.yahoo.ml.caffe.CLASS"
  memory_data_param { source: "SOURCE" batch_size: 10 channels: 1 height: 8 width: 8 }
  transform_param { scale: 0.00390625 MEAN } }
"""

SOLVER = """net: "net.prototxt"
base_lr: 0.05
momentum: 0.9
lr_policy: "fixed"
max_iter: 60
solver_mode: CPU
random_seed: 7
EXTRA
"""


def memory_layer(phase, source_class, source, mean=""):
    return MEMORY_LAYER.replace("PHASE", phase).replace("CLASS", source_class) \
        .replace("SOURCE", source).replace("MEAN", mean)


def write_job(directory, layers, solver_extra=""):
    """net.prototxt (data layers + the small LeNet) and solver.prototxt in `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "net.prototxt").write_text(layers + BODY)
    (directory / "solver.prototxt").write_text(SOLVER.replace("EXTRA", solver_extra))
    return directory / "solver.prototxt"


def spark_job(*args, cwd):
    """Run the wrapper on local[2] with two ranks; fail with its stderr's tail if it fails."""
    result = run_wrapper("--master", "local[2]", *args, "-clusterSize", 2, cwd=cwd)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def local_net(net_path, model):
    """The TEST net of `net_path` with the trained weights, run in this process."""
    import cos.data.layers  # noqa: F401  (registers MemoryData and CoSData)
    from cos.engine.net import Net
    from cos.proto import caffe_pb2
    net = Net(str(net_path), phase=caffe_pb2.TEST)
    net.copy_from(str(model))
    return net


def forward_ip2(net, images):
    """ip2 of already transformed (N, 1, 8, 8) images through a MemoryData net."""
    data = np.ascontiguousarray(images, dtype=np.float32)
    net.set_input_arrays(data, np.zeros(len(data), dtype=np.float32))
    out = []
    for _ in range(len(data) // 10):
        net.forward()
        out.append(np.array(net.blobs["ip2"].data))
    return np.concatenate(out)


def by_id(rows):
    return {row["SampleID"]: row for row in rows}


def accuracy(rows, labels):
    """Fraction of rows whose arg-max ip2 equals the true label of their id."""
    return float(np.mean([np.argmax(r["ip2"]) == labels[r["SampleID"]] for r in rows]))


# ---- 1 + 4: SequenceFiles, and a mean_file next to the solver, run from elsewhere -----

def test_seq_source_with_relative_mean_file_from_another_cwd(tmp_path):
    from cos.tools.compute_image_mean import compute_image_mean
    from cos.tools.converters import lmdb2sequence
    job, elsewhere = tmp_path / "job", tmp_path / "elsewhere"
    job.mkdir()
    elsewhere.mkdir()
    test_images, test_labels = digits(50, offset=1500)
    write_lmdb(tmp_path / "train_lmdb", *digits(300))
    write_lmdb(tmp_path / "test_lmdb", test_images, test_labels)
    # LMDB2Sequence: Tuple6 keys (id, label, 1, 8, 8, false), raw pixels; 2 part files
    assert lmdb2sequence(tmp_path / "train_lmdb", f"file:{job / 'train_seq'}", 2) == 300
    assert lmdb2sequence(tmp_path / "test_lmdb", f"file:{job / 'test_seq'}", 1) == 50
    mean = compute_image_mean(tmp_path / "train_lmdb", job / "mean.binaryproto")
    assert mean.shape == (1, 8, 8) and mean.std() > 10  # a mean that matters
    seq = "SeqImageDataSource"
    with_mean = 'mean_file: "mean.binaryproto"'  # relative to the solver's directory
    solver = write_job(job, memory_layer("TRAIN", seq, "file:train_seq", with_mean)
                       + memory_layer("TEST", seq, "file:test_seq", with_mean))
    model = tmp_path / "out" / "model.caffemodel"
    model.parent.mkdir()
    features = tmp_path / "features"

    # Nothing of the job is in the CWD and no --files: the driver reads and ships the mean.
    spark_job("-train", "-features", "ip2", "-label", "label", "-conf", solver,
              "-model", f"file:{model}", "-output", f"file:{features}", cwd=elsewhere)
    assert sorted(p.name for p in elsewhere.iterdir() if not p.name.startswith(".")) \
        in ([], ["spark-warehouse"])

    rows = read_json_rows(features)
    ids = [f"{i:08d}" for i in range(50)]
    assert sorted(r["SampleID"] for r in rows) == ids  # one row per record, LMDB keys
    rows = by_id(rows)
    assert [rows[i]["label"] for i in ids] == [[float(v)] for v in test_labels]
    extracted = np.array([rows[i]["ip2"] for i in ids])
    assert np.mean(extracted.argmax(1) == test_labels) > 0.5  # it learned

    # The same model in this process, on (pixel - mean) * scale, gives the same ip2;
    # without the mean it would not.
    net = local_net(job / "net.prototxt", model)
    pixels = test_images[:, None].astype(np.float32)
    expected = forward_ip2(net, (pixels - mean[None].astype(np.float32)) * SCALE)
    np.testing.assert_allclose(extracted, expected, rtol=1e-4, atol=1e-4)
    assert np.abs(forward_ip2(net, pixels * SCALE) - extracted).max() > 0.1


# ---- 2: ImageDataFrame, train with validation, then -test -------------------------------

def write_image_frame(directory, images, labels, first_id=0, files=1):
    """Parquet in LMDB2DataFrame's schema (id, label string, channels, height, width,
    encoded, data of raw HWC pixels), split into `files` part files."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from cos.tools.converters import LMDB_COLUMNS
    kinds = {"string": pa.string(), "int": pa.int32(), "boolean": pa.bool_(),
             "binary": pa.binary()}
    schema = pa.schema([pa.field(name, kinds[kind], nullable)
                        for name, kind, nullable in LMDB_COLUMNS])
    directory.mkdir(parents=True)
    for part, rows in enumerate(np.array_split(np.arange(len(images)), files)):
        table = pa.table({
            "id": [f"{first_id + i:08d}" for i in rows],
            "label": [str(int(labels[i])) for i in rows],
            "channels": [1] * len(rows),
            "height": [int(images.shape[1])] * len(rows),
            "width": [int(images.shape[2])] * len(rows),
            "encoded": [False] * len(rows),
            "data": [images[i].astype(np.uint8).tobytes() for i in rows]}, schema=schema)
        pq.write_table(table, directory / f"part-{part:05d}.parquet")


def test_image_dataframe_with_validation_then_test(tmp_path):
    # one parquet file, so one Spark partition for two ranks: dealt out in two blocks
    write_image_frame(tmp_path / "train_df", *digits(300))
    write_image_frame(tmp_path / "test_df", *digits(60, offset=1500), first_id=1500)
    idf = "ImageDataFrame"
    # validation before iterations 10, 20, .., 50 (none at 0, none after the last, 60)
    solver = write_job(tmp_path, memory_layer("TRAIN", idf, f"file:{tmp_path / 'train_df'}")
                       + memory_layer("TEST", idf, f"file:{tmp_path / 'test_df'}"),
                       "test_iter: 3\ntest_interval: 10\n")
    model = tmp_path / "model.caffemodel"
    result_file = tmp_path / "test_result"
    trained = spark_job("-train", "-test", "-conf", solver, "-model", f"file:{model}",
                        "-output", f"file:{result_file}", cwd=tmp_path)

    # Spec 6.8 (a): rank 0 logs each validation in Caffe's style.
    lines = trained.stderr.splitlines()
    events = [line.split("] ", 1)[1] for line in lines if "Testing net (#0)" in line]
    assert events == [f"Iteration {it}, Testing net (#0)" for it in (10, 20, 30, 40, 50)]
    outputs = [line.split("] ", 1)[1] for line in lines if "Test net output #" in line]
    assert len(outputs) == 2 * len(events)
    for accuracy_line, loss_line in zip(outputs[::2], outputs[1::2]):
        assert accuracy_line.startswith("    Test net output #0: accuracy = ")
        assert 0.0 <= float(accuracy_line.split(" = ")[1]) <= 1.0
        assert loss_line.startswith("    Test net output #1: loss = ")
        value, suffix = loss_line.split(" = ", 1)[1].split(" ", 1)
        assert suffix == f"(* 1 = {value} loss)"  # loss weight 1 noted, as Caffe does
    first_loss = float(outputs[1].split(" = ")[1].split()[0])

    # -test after training: one 'name: value' line per test-net output, in net order
    result = result_file.read_text().splitlines()
    assert [line.split(": ")[0] for line in result] == ["accuracy", "loss"]
    accuracy_value, loss_value = (float(line.split(": ")[1]) for line in result)
    assert 0.5 < accuracy_value <= 1.0
    assert 0 < loss_value < first_loss  # still learning after the first validation


# ---- 3 (+ 4): DataFrameSource / CoSData, a transposed INT_ARRAY top, a per-top mean_file --

COS_LAYER = """
layer { name: "data" type: "CoSData" top: "data" top: "label" top: "seq"
  include { phase: PHASE } source_class: "com.yahoo.ml.caffe.DataFrameSource"
  cos_data_param { source: "SOURCE" batch_size: 10
    top { name: "data" type: RAW_IMAGE channels: 1 height: 8 width: 8
          transform_param { scale: 0.00390625 mean_file: "mean.binaryproto" } }
    top { name: "label" type: LABEL_TYPE channels: 1 height: 1 width: 1 }
    top { name: "seq" type: INT_ARRAY channels: 4 height: 1 width: 1 sample_num_axes: 1
          transpose: true } } }
"""
SEQ_LAYERS = """
layer { name: "seq_flat" type: "Flatten" bottom: "seq" top: "seq_flat" }
layer { name: "silence" type: "Silence" bottom: "seq_flat" }
"""
SEQ_LEN = 4


def seq_values(index):
    """The INT_ARRAY of record `index`: every value names its record and position."""
    return [index * 10 + c for c in range(SEQ_LEN)]


def write_cos_frame(directory, images, labels, label_type, first=0, files=1):
    """Parquet with id, data (raw HWC bytes), label (string or int) and seq (array<int>)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    directory.mkdir(parents=True)
    for part, rows in enumerate(np.array_split(np.arange(len(images)), files)):
        label = [str(int(labels[i])) for i in rows] if label_type == "STRING" \
            else pa.array([int(labels[i]) for i in rows], pa.int32())
        table = pa.table({"id": [f"r{first + i:04d}" for i in rows],
                          "data": [images[i].astype(np.uint8).tobytes() for i in rows],
                          "label": label,
                          "seq": pa.array([seq_values(first + i) for i in rows],
                                          pa.list_(pa.int32()))})
        pq.write_table(table, directory / f"part-{part:05d}.parquet")


def cos_layer(phase, source, label_type):
    return COS_LAYER.replace("PHASE", phase).replace("SOURCE", source) \
        .replace("LABEL_TYPE", label_type)


def expected_seq_rows(ids, batch=10):
    """seq_flat of each row of one partition, in order: the (4, batch) time-major blob of
    each batch (the last one padded with its last sample), cut into 4 values per row."""
    expected = []
    for start in range(0, len(ids), batch):
        chunk = ids[start:start + batch]
        padded = chunk + [chunk[-1]] * (batch - len(chunk))
        blob = np.array([seq_values(int(i[1:])) for i in padded]).T  # (4, batch)
        flat = blob.reshape(-1)
        expected += [flat[k * SEQ_LEN:(k + 1) * SEQ_LEN].tolist() for k in range(len(chunk))]
    return expected


def forward_cos_ip2(net, images):
    """ip2 of transformed (N, 1, 8, 8) images through the CoSData TEST net, fed by hand."""
    batches = [[images[i:i + 10], np.zeros((10, 1, 1, 1)), np.zeros((10, SEQ_LEN))]
               for i in range(0, len(images), 10)]
    net.layer_dict["data"].set_feed(batches)
    out = []
    for _ in batches:
        net.forward()
        out.append(np.array(net.blobs["ip2"].data))
    return np.concatenate(out)


def test_dataframe_source_cos_data_with_transposed_top(tmp_path):
    from cos.proto.binary import write_binary
    from cos.proto.blobs import array_to_blob
    job, elsewhere = tmp_path / "job", tmp_path / "elsewhere"
    elsewhere.mkdir()
    train_images, train_labels = digits(300)
    test_images, test_labels = digits(50, offset=1500)
    write_cos_frame(job / "train_df", train_images, train_labels, "STRING", files=2)
    write_cos_frame(job / "test_df", test_images, test_labels, "INT", first=1500)
    mean = train_images.mean(axis=0)[None].astype(np.float32)  # (1, 8, 8)
    net = (cos_layer("TRAIN", "file:train_df", "STRING")
           + cos_layer("TEST", "file:test_df", "INT") + SEQ_LAYERS)
    solver = write_job(job, net)
    write_binary(array_to_blob(mean), str(job / "mean.binaryproto"))
    model = tmp_path / "model.caffemodel"
    features = tmp_path / "features"
    # sources and the image top's mean_file are relative to the solver; the CWD is not there
    spark_job("-train", "-features", "ip2,seq_flat", "-label", "label", "-conf", solver,
              "-model", f"file:{model}", "-output", f"file:{features}", cwd=elsewhere)

    ids = [f"r{1500 + i:04d}" for i in range(50)]
    labels = dict(zip(ids, test_labels))
    parts = [[json.loads(line) for line in part.read_text().splitlines() if line]
             for part in sorted(features.glob("part-*"))]
    rows = [row for part in parts for row in part]
    assert sorted(r["SampleID"] for r in rows) == ids
    assert list(rows[0]) == ["SampleID", "ip2", "seq_flat", "label"]
    assert all(r["label"] == [float(labels[r["SampleID"]])] for r in rows)
    assert accuracy(rows, labels) > 0.5
    # the transposed top reached the net as (4, batch): each row's 4 values come from
    # the time-major blob of its batch
    for part in parts:
        assert [r["seq_flat"] for r in part] == expected_seq_rows([r["SampleID"] for r in part])
    # the top's mean was applied: the model in this process on (pixel - mean) * scale
    net = local_net(job / "net.prototxt", model)
    pixels = test_images[:, None].astype(np.float32)
    expected = forward_cos_ip2(net, (pixels - mean) * SCALE)
    extracted = np.array([by_id(rows)[i]["ip2"] for i in ids])
    np.testing.assert_allclose(extracted, expected, rtol=1e-4, atol=1e-4)
    assert np.abs(forward_cos_ip2(net, pixels * SCALE) - extracted).max() > 0.1


# ---- 5: -resize -----------------------------------------------------------------------

def write_png_sequence(root, output, images, labels, first=0, from_index=0):
    """PNG files -> Binary2Sequence output (Tuple2 keys: file name, label). The digits from
    `from_index` on are 10x10 (padded by one pixel), those before it 8x8."""
    from cos.proto.datum import encode_image
    from cos.tools.converters import binary2sequence
    root.mkdir(parents=True)
    lines = []
    for k, (img, label) in enumerate(zip(images, labels)):
        name = f"d{first + k:04d}.png"
        pixels = img.astype(np.uint8)
        if k >= from_index:
            pixels = np.pad(pixels, 1)
        (root / name).write_bytes(encode_image(pixels[:, :, None], "png"))
        lines.append(f"{name} {int(label)}")
    (root / "labels.txt").write_text("\n".join(lines) + "\n")
    assert binary2sequence(str(root), str(root / "labels.txt"), str(output)) == len(lines)


def test_resize_needed_for_larger_images(tmp_path):
    from cos.data.images import resize_bilinear
    test_images, test_labels = digits(40, offset=1500)
    # Rank 0's split holds only 8x8 images, rank 1's ends in 10x10 ones: rank 1 fails
    # while rank 0 waits for it in the allreduce, and the job must still end at once.
    write_png_sequence(tmp_path / "train_png", tmp_path / "train_seq", *digits(300),
                       from_index=200)
    write_png_sequence(tmp_path / "test_png", tmp_path / "test_seq", test_images,
                       test_labels, first=1500)
    seq = "SeqImageDataSource"
    solver = write_job(tmp_path, memory_layer("TRAIN", seq, f"file:{tmp_path / 'train_seq'}")
                       + memory_layer("TEST", seq, f"file:{tmp_path / 'test_seq'}"))
    model = tmp_path / "model.caffemodel"
    features = tmp_path / "features"

    failed = run_wrapper("--master", "local[2]", "-train", "-conf", solver, "-clusterSize", 2,
                         "-model", f"file:{model}", cwd=tmp_path, timeout=240)
    assert failed.returncode != 0  # (and well before the 300 s allreduce timeout)
    # spark-submit merges the Python driver's stderr into its stdout: look in both
    output = failed.stdout + failed.stderr
    errors = [line for line in output.splitlines() if line.startswith("caffe-on-spark: error:")]
    assert len(errors) == 1, output[-3000:]
    assert "rank 1 failed: image d02" in errors[0] and ".png" in errors[0]
    assert "-resize" in errors[0]
    assert "10x10" in errors[0] and "1x8x8" in errors[0]
    assert not model.exists()

    spark_job("-train", "-resize", "-features", "ip2", "-label", "label", "-conf", solver,
              "-model", f"file:{model}", "-output", f"file:{features}", cwd=tmp_path)
    rows = by_id(read_json_rows(features))
    names = [f"d{1500 + k:04d}.png" for k in range(40)]
    assert sorted(rows) == names  # Binary2Sequence ids are the file names
    assert [rows[n]["label"] for n in names] == [[float(v)] for v in test_labels]
    # -resize applies to features too: the 10x10 images resized bilinearly to 8x8
    resized = np.stack([resize_bilinear(np.pad(img.astype(np.uint8), 1)[:, :, None], 8, 8)
                        for img in test_images]).transpose(0, 3, 1, 2)
    expected = forward_ip2(local_net(tmp_path / "net.prototxt", model), resized * SCALE)
    np.testing.assert_allclose(np.array([rows[n]["ip2"] for n in names]), expected,
                               rtol=1e-4, atol=1e-4)
    assert np.mean(expected.argmax(1) == test_labels) > 0.3


def test_cos_data_mean_files_are_found_next_to_the_solver(tmp_path):
    """No Spark: one mean file named by the image tops is read on the driver (shipped);
    tops naming different files get absolute paths, read by the tasks themselves."""
    from cos.proto.binary import write_binary
    from cos.proto.blobs import array_to_blob
    from cos.proto.text import parse_net_text
    from cos.errors import DataError
    from cos.spark.datasource import Source
    for name, value in (("a.binaryproto", 1.0), ("b.binaryproto", 2.0)):
        write_binary(array_to_blob(np.full((1, 2, 2), value, np.float32)), str(tmp_path / name))
    top = ('top {{ name: "{0}" type: RAW_IMAGE channels: 1 height: 2 width: 2 '
           'transform_param {{ mean_file: "{1}" }} }}')

    def source(first, second):
        layer = parse_net_text(
            'layer { name: "d" type: "CoSData" top: "x" top: "y" '
            'source_class: "com.yahoo.ml.caffe.DataFrameSource" '
            'cos_data_param { source: "file:/nowhere" batch_size: 2 '
            + top.format("x", first) + top.format("y", second) + " } }").layer[0]
        return Source(layer, True, solver_dir=str(tmp_path))

    shared = source("a.binaryproto", "a.binaryproto")
    np.testing.assert_array_equal(shared.mean, np.ones((1, 2, 2)))
    assert [t.transform_param.mean_file for t in shared.layer.cos_data_param.top] \
        == ["a.binaryproto"] * 2
    apart = source("a.binaryproto", "b.binaryproto")
    assert apart.mean is None
    assert [t.transform_param.mean_file for t in apart.layer.cos_data_param.top] \
        == [str(tmp_path / "a.binaryproto"), str(tmp_path / "b.binaryproto")]
    with pytest.raises(DataError, match="mean_file missing.binaryproto: file not found"):
        source("missing.binaryproto", "a.binaryproto")
