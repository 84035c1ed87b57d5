"""Tests for scripts/prepare_mnist.py: real LMDBs, mean file, parquet, SequenceFiles and PNG
files written, read back through their sources, and rerun safely."""

import importlib.util
from pathlib import Path

import lmdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from cos.proto import caffe_pb2

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("prepare_mnist", ROOT / "scripts" / "prepare_mnist.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    assert load_script().main(["--out", str(out)]) == 0
    return out


def read_lmdb(path):
    env = lmdb.open(str(path), readonly=True, lock=False)
    with env.begin() as txn:
        rows = [(k, bytes(v)) for k, v in txn.cursor()]
    env.close()
    return rows


def test_lmdbs_hold_caffe_keys_and_datums(prepared):
    train = read_lmdb(prepared / "mnist_train_lmdb")
    test = read_lmdb(prepared / "mnist_test_lmdb")
    assert (len(train), len(test)) == (4000, 1000)
    assert train[0][0] == b"00000000" and train[-1][0] == b"00003999"
    d = caffe_pb2.Datum.FromString(train[5][1])
    assert (d.channels, d.height, d.width, len(d.data)) == (1, 28, 28, 784)
    labels = {caffe_pb2.Datum.FromString(v).label for _, v in test}
    assert labels == set(range(10))


def test_mean_file_matches_training_pixels(prepared):
    blob = caffe_pb2.BlobProto.FromString((prepared / "mnist_mean.binaryproto").read_bytes())
    assert (blob.num, blob.channels, blob.height, blob.width) == (1, 1, 28, 28)
    pixels = np.stack([np.frombuffer(caffe_pb2.Datum.FromString(v).data, np.uint8)
                       for _, v in read_lmdb(prepared / "mnist_train_lmdb")])
    np.testing.assert_allclose(np.array(blob.data), pixels.mean(axis=0), rtol=1e-4)


def test_dataframe_schema_and_rows_match_lmdb(prepared):
    table = pq.read_table(prepared / "mnist_test_dataframe")
    assert table.column_names == ["id", "label", "channels", "height", "width", "encoded", "data"]
    assert table.num_rows == 1000
    first = caffe_pb2.Datum.FromString(read_lmdb(prepared / "mnist_test_lmdb")[0][1])
    row = table.slice(0, 1).to_pylist()[0]
    assert row["label"] == str(first.label) and row["data"] == first.data


def sequence_samples(path):
    from cos.data.sources.seq_source import SeqImageDataSource
    layer = caffe_pb2.LayerParameter(name="data", type="MemoryData",
                                     source_class="com.yahoo.ml.caffe.SeqImageDataSource")
    layer.memory_data_param.source = f"file:{path}"
    layer.memory_data_param.batch_size = 10
    return list(SeqImageDataSource(layer, True).iter_local())


def test_sequence_files_hold_the_lmdb_records(prepared):
    for split, count in (("train", 4000), ("test", 1000)):
        samples = sequence_samples(prepared / f"mnist_{split}_seq")
        records = read_lmdb(prepared / f"mnist_{split}_lmdb")
        assert len(samples) == len(records) == count
        for sample, (key, value) in zip(samples[::97], records[::97]):
            d = caffe_pb2.Datum.FromString(value)
            assert sample == (key.decode(), str(d.label), 1, 28, 28, False, d.data)


def test_png_digits_and_label_files_match_the_test_lmdb(prepared):
    from PIL import Image
    folder = prepared / "mnist_images"
    lines = (folder / "labels.txt").read_text().splitlines()
    with_ids = (folder / "labels_with_ids.txt").read_text().splitlines()
    assert len(lines) == len(with_ids) == 200
    records = read_lmdb(prepared / "mnist_test_lmdb")[:200]
    for line, id_line, (key, value) in zip(lines, with_ids, records):
        d = caffe_pb2.Datum.FromString(value)
        name, label = line.split()
        assert (name, int(label)) == (f"{key.decode()}.png", d.label)
        assert id_line == f"{line} {key.decode()}"
    for name, (_, value) in zip([l.split()[0] for l in lines[:20]], records):
        pixels = np.asarray(Image.open(folder / name))
        assert pixels.tobytes() == caffe_pb2.Datum.FromString(value).data


def test_rerun_rebuilds_a_half_written_sequence_file(prepared):
    import shutil
    script = load_script()
    seq = prepared / "mnist_test_seq"
    shutil.rmtree(seq)
    seq.mkdir()
    (seq / "part-00000").write_bytes(b"SEQ")  # a run that died: no _SUCCESS
    assert not script.all_present(prepared)
    assert script.write_sequence(seq, prepared / "mnist_test_lmdb") is True
    assert len(sequence_samples(seq)) == 1000
    assert script.write_sequence(seq, prepared / "mnist_test_lmdb") is False
    assert script.all_present(prepared)


def test_rerun_skips_complete_outputs(prepared, capsys):
    before = (prepared / "mnist_train_lmdb" / "data.mdb").stat().st_mtime_ns
    assert load_script().main(["--out", str(prepared)]) == 0
    assert "already prepared" in capsys.readouterr().out
    assert (prepared / "mnist_train_lmdb" / "data.mdb").stat().st_mtime_ns == before
