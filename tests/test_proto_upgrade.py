"""Caffe's upgrade rules: V0→V1, V1 transform migration, V1→V2, input fields, BatchNorm, solver_type."""

import pytest

from cos.errors import ParseError
from cos.proto import caffe_pb2, text, upgrade

V2_LENET = """name: "LeNet"
layer {
  name: "mnist" type: "Data" top: "data" top: "label"
  include { phase: TRAIN }
  transform_param { scale: 0.00390625 }
  data_param { source: "mnist_train_lmdb" batch_size: 64 backend: LMDB }
}
layer {
  name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  param { lr_mult: 1 } param { lr_mult: 2 }
  convolution_param { num_output: 20 kernel_size: 5 stride: 1
    weight_filler { type: "xavier" } bias_filler { type: "constant" } }
}
layer {
  name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 }
}
layer {
  name: "ip1" type: "InnerProduct" bottom: "pool1" top: "ip1"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  inner_product_param { num_output: 500 weight_filler { type: "xavier" } }
}
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer {
  name: "accuracy" type: "Accuracy" bottom: "ip1" bottom: "label" top: "accuracy"
  include { phase: TEST }
}
layer {
  name: "loss" type: "SoftmaxWithLoss" bottom: "ip1" bottom: "label" top: "loss"
  loss_weight: 1
}
"""

# The same net written in the V1 format (enum types, blobs_lr, weight_decay, scale in data_param).
V1_LENET = """name: "LeNet"
layers {
  name: "mnist" type: DATA top: "data" top: "label"
  include { phase: TRAIN }
  data_param { source: "mnist_train_lmdb" batch_size: 64 backend: LMDB scale: 0.00390625 }
}
layers {
  name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1"
  blobs_lr: 1 blobs_lr: 2
  convolution_param { num_output: 20 kernel_size: 5 stride: 1
    weight_filler { type: "xavier" } bias_filler { type: "constant" } }
}
layers {
  name: "pool1" type: POOLING bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 }
}
layers {
  name: "ip1" type: INNER_PRODUCT bottom: "pool1" top: "ip1"
  blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0
  inner_product_param { num_output: 500 weight_filler { type: "xavier" } }
}
layers { name: "relu1" type: RELU bottom: "ip1" top: "ip1" }
layers {
  name: "accuracy" type: ACCURACY bottom: "ip1" bottom: "label" top: "accuracy"
  include { phase: TEST }
}
layers {
  name: "loss" type: SOFTMAX_LOSS bottom: "ip1" bottom: "label" top: "loss"
  loss_weight: 1
}
"""


def test_v1_lenet_upgrades_to_v2():
    upgraded = text.parse_net_text(V1_LENET, "v1.prototxt")
    expected = text.parse_net_text(V2_LENET, "v2.prototxt")
    assert text.to_text(upgraded) == text.to_text(expected)


def test_v1_param_names_share_modes_and_blobs():
    net = text.parse_net_text("""
layers { name: "a" type: INNER_PRODUCT bottom: "x" top: "y"
  param: "w" param: "b" blob_share_mode: PERMISSIVE blobs_lr: 3
  blobs { shape { dim: 1 } data: 5 } inner_product_param { num_output: 1 }
  transform_param { mirror: true } loss_param { ignore_label: 4 } exclude { stage: "s" } }
""")
    layer = net.layer[0]
    assert [p.name for p in layer.param] == ["w", "b"]
    assert layer.param[0].share_mode == caffe_pb2.ParamSpec.PERMISSIVE
    assert layer.param[0].lr_mult == 3 and not layer.param[1].HasField("lr_mult")
    assert list(layer.blobs[0].data) == [5]
    assert layer.transform_param.mirror and layer.loss_param.ignore_label == 4
    assert layer.exclude[0].stage == ["s"]


def test_every_v1_type_has_a_name():
    for value in caffe_pb2.V1LayerParameter.LayerType.values():
        assert value in upgrade.V1_TYPE_NAMES
    assert upgrade.V1_TYPE_NAMES[caffe_pb2.V1LayerParameter.SOFTMAX_LOSS] == "SoftmaxWithLoss"
    assert upgrade.V1_TYPE_NAMES[caffe_pb2.V1LayerParameter.IM2COL] == "Im2col"


def test_v1_transform_migration_only_for_data_layers():
    net = text.parse_net_text("""
layers { name: "d" type: IMAGE_DATA top: "x" top: "l"
  image_data_param { source: "list.txt" mean_file: "m.binaryproto" crop_size: 3 mirror: true } }
""")
    layer = net.layer[0]
    assert layer.type == "ImageData"
    assert layer.transform_param.mean_file == "m.binaryproto"
    assert layer.transform_param.crop_size == 3 and layer.transform_param.mirror
    assert not layer.image_data_param.HasField("mean_file")
    # A current-format layer keeps its deprecated fields where they are.
    current = text.parse_net_text('layer { name: "d" type: "Data" data_param { scale: 2 } }')
    assert current.layer[0].data_param.scale == 2
    assert not current.layer[0].HasField("transform_param")


V0_NET = """name: "v0"
input: "data"
input_dim: 1 input_dim: 1 input_dim: 8 input_dim: 8
layers { layer { name: "pad1" type: "padding" pad: 2 } bottom: "data" top: "pad1" }
layers { layer { name: "conv1" type: "conv" num_output: 4 kernelsize: 3 stride: 2
                 biasterm: false blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0
                 weight_filler { type: "gaussian" std: 0.01 } }
         bottom: "pad1" top: "conv1" }
layers { layer { name: "pool1" type: "pool" pool: AVE kernelsize: 2 stride: 2 }
         bottom: "conv1" top: "pool1" }
layers { layer { name: "ip" type: "innerproduct" num_output: 10 } bottom: "pool1" top: "ip" }
layers { layer { name: "drop" type: "dropout" dropout_ratio: 0.3 } bottom: "ip" top: "ip" }
layers { layer { name: "prob" type: "softmax" } bottom: "ip" top: "prob" }
"""


def test_v0_net_upgrades_through_v1_to_v2():
    net = text.parse_net_text(V0_NET, "v0.prototxt")
    assert [(l.name, l.type) for l in net.layer] == [
        ("input", "Input"), ("conv1", "Convolution"), ("pool1", "Pooling"),
        ("ip", "InnerProduct"), ("drop", "Dropout"), ("prob", "Softmax")]
    assert list(net.layer[0].input_param.shape[0].dim) == [1, 1, 8, 8]
    conv = net.layer[1]
    assert list(conv.bottom) == ["data"]  # the padding layer is folded away
    p = conv.convolution_param
    assert list(p.pad) == [2] and list(p.kernel_size) == [3] and list(p.stride) == [2]
    assert p.num_output == 4 and p.bias_term is False and p.weight_filler.std == pytest.approx(0.01)
    assert [(s.lr_mult, s.decay_mult) for s in conv.param] == [(1, 1), (2, 0)]
    pool = net.layer[2].pooling_param
    assert pool.pool == caffe_pb2.PoolingParameter.AVE and pool.kernel_size == 2
    assert net.layer[4].dropout_param.dropout_ratio == pytest.approx(0.3)


def test_v0_data_layer_fields():
    net = text.parse_net_text("""
layers { layer { name: "d" type: "data" source: "db" batchsize: 32 scale: 0.5
                 meanfile: "mean.bp" cropsize: 7 mirror: true rand_skip: 3 }
         top: "data" top: "label" }
""")
    layer = net.layer[0]
    assert layer.type == "Data"
    assert layer.data_param.source == "db" and layer.data_param.batch_size == 32
    assert layer.data_param.rand_skip == 3
    t = layer.transform_param
    assert (t.scale, t.mean_file, t.crop_size, t.mirror) == (0.5, "mean.bp", 7, True)


def test_v0_unknown_type_and_bad_padding_target():
    with pytest.raises(ParseError, match="unknown V0 layer type 'warp'.*'w'"):
        text.parse_net_text('layers { layer { name: "w" type: "warp" } }', "v0.prototxt")
    with pytest.raises(ParseError, match="padding"):
        text.parse_net_text("""
layers { layer { name: "p" type: "padding" pad: 1 } bottom: "x" top: "px" }
layers { layer { name: "r" type: "relu" } bottom: "px" top: "y" }""")


def test_input_shape_becomes_input_layer_first():
    net = text.parse_net_text("""
input: "a" input_shape { dim: 2 dim: 3 }
input: "b" input_shape { dim: 2 }
layer { name: "e" type: "Eltwise" bottom: "a" bottom: "a" top: "c" }
""")
    first = net.layer[0]
    assert (first.name, first.type, list(first.top)) == ("input", "Input", ["a", "b"])
    assert [list(s.dim) for s in first.input_param.shape] == [[2, 3], [2]]
    assert net.layer[1].name == "e"
    assert not (len(net.input) or len(net.input_shape) or len(net.input_dim))


def test_input_names_alone_are_dropped():
    net = text.parse_net_text('input: "data"\nlayer { name: "r" type: "ReLU" }')
    assert [l.name for l in net.layer] == ["r"] and not len(net.input)


def test_input_dim_count_must_be_four_per_input():
    with pytest.raises(ParseError, match="input_dim"):
        text.parse_net_text('input: "a" input_dim: 1 input_dim: 2', "x.prototxt")


def test_batch_norm_three_params_get_zero_rates():
    net = text.parse_net_text("""
layer { name: "bn" type: "BatchNorm" param { lr_mult: 1 } param { lr_mult: 1 } param { lr_mult: 1 } }
layer { name: "bn2" type: "BatchNorm" param { lr_mult: 1 } }
""")
    assert [(p.lr_mult, p.decay_mult) for p in net.layer[0].param] == [(0, 0)] * 3
    assert net.layer[1].param[0].lr_mult == 1


def test_both_layer_and_layers_rejected():
    with pytest.raises(ParseError, match="both 'layer'.*'layers'") as info:
        text.parse_net_text('layer { name: "a" }\nlayers { name: "b" type: RELU }', "mix.prototxt")
    assert str(info.value).startswith("mix.prototxt")


@pytest.mark.parametrize("enum,name", [("SGD", "SGD"), ("NESTEROV", "Nesterov"),
                                       ("ADAGRAD", "AdaGrad"), ("RMSPROP", "RMSProp"),
                                       ("ADADELTA", "AdaDelta"), ("ADAM", "Adam")])
def test_solver_type_enum_to_string(enum, name):
    solver = text.parse_solver_text(f"solver_type: {enum}")
    assert solver.type == name and not solver.HasField("solver_type")


def test_solver_type_and_type_both_set_is_an_error():
    with pytest.raises(ParseError, match="solver_type.*type") as info:
        text.parse_solver_text('solver_type: ADAM\ntype: "Adam"', "s.prototxt")
    assert str(info.value).startswith("s.prototxt")


def test_current_net_is_unchanged():
    net = text.parse_net_text(V2_LENET)
    before = net.SerializeToString()
    upgrade.upgrade_net(net)
    assert net.SerializeToString() == before


def test_default_snapshot_prefix_master_rule(tmp_path):
    solver = text.parse_solver_text("base_lr: 0.1")
    upgrade.default_snapshot_prefix(solver, str(tmp_path / "lenet_solver.prototxt"))
    assert solver.snapshot_prefix == str(tmp_path / "lenet_solver")
    (tmp_path / "snaps").mkdir()
    solver = text.parse_solver_text(f'snapshot_prefix: "{tmp_path / "snaps"}"')
    upgrade.default_snapshot_prefix(solver, "conf/lenet_solver.prototxt")
    assert solver.snapshot_prefix == str(tmp_path / "snaps" / "lenet_solver")
    solver = text.parse_solver_text('snapshot_prefix: "out/lenet"')
    upgrade.default_snapshot_prefix(solver, "s.prototxt")
    assert solver.snapshot_prefix == "out/lenet"
    # read_solver itself keeps Caffe 1.0's behaviour: no prefix is invented.
    path = tmp_path / "s.prototxt"
    path.write_text("base_lr: 0.1")
    assert not text.read_solver(str(path)).HasField("snapshot_prefix")
