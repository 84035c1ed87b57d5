"""The sample configs in data/: every prototxt parses, and each matches the settings it documents."""

from pathlib import Path

import pytest

from cos.proto import caffe_pb2, text

DATA = Path(__file__).resolve().parents[1] / "data"
PROTOTXTS = sorted(DATA.glob("*.prototxt"))
SOLVERS = [p for p in PROTOTXTS if p.name.endswith("solver.prototxt")]
NETS = [p for p in PROTOTXTS if p not in SOLVERS]
LENET_BODY = ["conv1", "pool1", "conv2", "pool2", "ip1", "relu1", "ip2"]
CIFAR_BODY = ["conv1", "pool1", "relu1", "conv2", "relu2", "pool2", "conv3", "relu3", "pool3",
              "ip1", "ip2"]


def test_all_expected_files_exist():
    names = {p.name for p in PROTOTXTS}
    for stem in ("lenet_memory", "lenet_dataframe", "lenet_cos", "cifar10_quick", "lenet"):
        assert f"{stem}_solver.prototxt" in names
        assert f"{stem}_train_test.prototxt" in names
    assert {"lenet.prototxt", "cifar10_quick.prototxt"} <= names


@pytest.mark.parametrize("path", NETS, ids=lambda p: p.name)
def test_net_parses_without_upgrades(path):
    net = text.read_net(str(path))
    raw = text.parse_text(path.read_text(), caffe_pb2.NetParameter(), str(path))
    assert net == raw  # written in the current format: nothing to upgrade
    assert len(net.layer) > 5


@pytest.mark.parametrize("path", SOLVERS, ids=lambda p: p.name)
def test_solver_parses_and_its_net_is_beside_it(path):
    solver = text.read_solver(str(path))
    assert solver.solver_mode == caffe_pb2.SolverParameter.CPU
    assert (path.parent / solver.net).is_file(), solver.net
    paired = path.parent / path.name.replace("_solver", "_train_test")
    if paired.exists():
        assert solver.net == paired.name


def _layers(name, phase=None):
    net = text.read_net(str(DATA / name))
    return [l for l in net.layer
            if phase is None or not l.include or any(r.phase == phase for r in l.include)]


@pytest.mark.parametrize("stem,test_iter,interval,max_iter", [
    ("lenet_memory", 10, 100, 2000), ("lenet_dataframe", 10, 100, 2000),
    ("lenet_cos", 1, 500, 10000), ("lenet", 100, 500, 10000)])
def test_lenet_solver_settings(stem, test_iter, interval, max_iter):
    s = text.read_solver(str(DATA / f"{stem}_solver.prototxt"))
    assert (list(s.test_iter), s.test_interval, s.max_iter) == ([test_iter], interval, max_iter)
    assert (s.base_lr, s.momentum, s.lr_policy) == (pytest.approx(0.01), pytest.approx(0.9), "inv")
    assert s.weight_decay == pytest.approx(0.0005)
    assert (s.gamma, s.power) == (pytest.approx(0.0001), pytest.approx(0.75))
    assert s.display == 100 and s.snapshot == 5000


def test_cifar_solver_settings():
    s = text.read_solver(str(DATA / "cifar10_quick_solver.prototxt"))
    assert (s.base_lr, s.weight_decay, s.lr_policy) == (
        pytest.approx(0.001), pytest.approx(0.004), "fixed")
    assert (list(s.test_iter), s.test_interval, s.max_iter, s.snapshot) == ([100], 100, 4000, 4000)


@pytest.mark.parametrize("name,source_class,stem", [
    ("lenet_memory_train_test.prototxt", "com.yahoo.ml.caffe.LMDB", "lmdb"),
    ("lenet_dataframe_train_test.prototxt", "com.yahoo.ml.caffe.ImageDataFrame", "dataframe")])
def test_lenet_memory_data_layers(name, source_class, stem):
    for phase, split, batch in ((caffe_pb2.TRAIN, "train", 64), (caffe_pb2.TEST, "test", 100)):
        layers = _layers(name, phase)
        data = layers[0]
        assert data.type == "MemoryData" and data.source_class == source_class
        p = data.memory_data_param
        assert p.source == f"file:data/generated/mnist_{split}_{stem}"
        assert (p.batch_size, p.channels, p.height, p.width) == (batch, 1, 28, 28)
        assert p.share_in_parallel is False
        assert data.transform_param.scale == pytest.approx(1 / 256)
        _check_lenet_tail(layers, phase)


def _check_lenet_tail(layers, phase):
    names = [l.name for l in layers[1:]]
    heads = ["accuracy", "loss"] if phase == caffe_pb2.TEST else ["loss"]
    assert names == LENET_BODY + heads
    conv1 = layers[1].convolution_param
    assert (conv1.num_output, list(conv1.kernel_size)) == (20, [5])
    assert [p.lr_mult for p in layers[1].param] == [1, 2]
    assert layers[-1].type == "SoftmaxWithLoss"


def test_lenet_cos_data_layers():
    for phase, split in ((caffe_pb2.TRAIN, "train"), (caffe_pb2.TEST, "test")):
        layers = _layers("lenet_cos_train_test.prototxt", phase)
        data = layers[0]
        assert data.type == "CoSData"
        assert data.source_class == "com.yahoo.ml.caffe.DataFrameSource"
        p = data.cos_data_param
        assert p.source == f"file:data/generated/mnist_{split}_dataframe" and p.batch_size == 64
        image, label = p.top
        T = caffe_pb2.CoSDataParameter
        assert (image.name, image.type, image.channels, image.height, image.width) == (
            "data", T.RAW_IMAGE, 1, 28, 28)
        assert image.transform_param.scale == pytest.approx(1 / 256)
        assert (label.name, label.type) == ("label", T.STRING)
        assert not label.HasField("transform_param")
        assert list(data.top) == ["data", "label"]
        _check_lenet_tail(layers, phase)


def test_plain_caffe_lenet_uses_lmdb_data_layers():
    for phase, split, batch in ((caffe_pb2.TRAIN, "train", 64), (caffe_pb2.TEST, "test", 100)):
        layers = _layers("lenet_train_test.prototxt", phase)
        data = layers[0]
        assert data.type == "Data" and not data.HasField("source_class")
        assert data.data_param.backend == caffe_pb2.DataParameter.LMDB
        assert data.data_param.source == f"data/generated/mnist_{split}_lmdb"
        assert data.data_param.batch_size == batch
        _check_lenet_tail(layers, phase)


def test_cifar10_quick_train_test():
    for phase, split in ((caffe_pb2.TRAIN, "train"), (caffe_pb2.TEST, "test")):
        layers = _layers("cifar10_quick_train_test.prototxt", phase)
        p = layers[0].memory_data_param
        assert layers[0].source_class == "com.yahoo.ml.caffe.LMDB"
        assert p.source == f"file:data/generated/cifar10_{split}_lmdb"
        assert (p.batch_size, p.channels, p.height, p.width) == (100, 3, 32, 32)
        assert layers[0].transform_param.mean_file.endswith(".binaryproto")
        names = [l.name for l in layers[1:]]
        assert names == CIFAR_BODY + (["accuracy", "loss"] if phase == caffe_pb2.TEST else ["loss"])
        pools = {l.name: l.pooling_param.pool for l in layers if l.type == "Pooling"}
        P = caffe_pb2.PoolingParameter
        assert pools == {"pool1": P.MAX, "pool2": P.AVE, "pool3": P.AVE}
        assert layers[1].convolution_param.weight_filler.std == pytest.approx(1e-4)


@pytest.mark.parametrize("name,shape,body", [("lenet.prototxt", [64, 1, 28, 28], LENET_BODY),
                                             ("cifar10_quick.prototxt", [1, 3, 32, 32], CIFAR_BODY)])
def test_deploy_nets(name, shape, body):
    layers = _layers(name)
    assert layers[0].type == "Input" and list(layers[0].input_param.shape[0].dim) == shape
    assert [l.name for l in layers[1:]] == body + ["prob"]
    assert layers[-1].type == "Softmax"
    assert not any(l.include or l.exclude for l in layers)


def _learnable_values(layers, channels, size):
    """Count weights+biases by walking conv/pool/ip shapes (Caffe's ceil rule for pooling)."""
    total, flat = 0, None
    for layer in layers:
        if layer.type == "Convolution":
            p = layer.convolution_param
            k, pad = p.kernel_size[0], (p.pad[0] if len(p.pad) else 0)
            total += p.num_output * channels * k * k + p.num_output
            channels, size = p.num_output, size + 2 * pad - k + 1
        elif layer.type == "Pooling":
            p = layer.pooling_param
            size = -(-(size - p.kernel_size) // p.stride) + 1
        elif layer.type == "InnerProduct":
            inputs = flat if flat is not None else channels * size * size
            total += layer.inner_product_param.num_output * (inputs + 1)
            flat = layer.inner_product_param.num_output
    return total


@pytest.mark.parametrize("name,channels,size,expected", [
    ("lenet_train_test.prototxt", 1, 28, 431_080),          # caffe.md §10.1
    ("lenet_memory_train_test.prototxt", 1, 28, 431_080),
    ("lenet_cos_train_test.prototxt", 1, 28, 431_080),
    ("lenet.prototxt", 1, 28, 431_080),
    ("cifar10_quick_train_test.prototxt", 3, 32, 145_578),  # caffe.md §10.2
    ("cifar10_quick.prototxt", 3, 32, 145_578)])
def test_learnable_value_counts_match_caffe(name, channels, size, expected):
    assert _learnable_values(_layers(name, caffe_pb2.TRAIN), channels, size) == expected
