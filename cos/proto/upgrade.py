"""Caffe's in-memory upgrades of old net and solver definitions.

Applied on every read, in Caffe's order: V0→V1, V1 data-transform migration, V1→V2,
legacy input fields → an Input layer, BatchNorm param rule; solver_type → type.
"""

import os

from ..errors import ParseError
from . import caffe_pb2

V1 = caffe_pb2.V1LayerParameter

V1_TYPE_NAMES = {
    V1.NONE: "", V1.ABSVAL: "AbsVal", V1.ACCURACY: "Accuracy", V1.ARGMAX: "ArgMax",
    V1.BNLL: "BNLL", V1.CONCAT: "Concat", V1.CONTRASTIVE_LOSS: "ContrastiveLoss",
    V1.CONVOLUTION: "Convolution", V1.DECONVOLUTION: "Deconvolution", V1.DATA: "Data",
    V1.DROPOUT: "Dropout", V1.DUMMY_DATA: "DummyData", V1.EUCLIDEAN_LOSS: "EuclideanLoss",
    V1.ELTWISE: "Eltwise", V1.EXP: "Exp", V1.FLATTEN: "Flatten", V1.HDF5_DATA: "HDF5Data",
    V1.HDF5_OUTPUT: "HDF5Output", V1.HINGE_LOSS: "HingeLoss", V1.IM2COL: "Im2col",
    V1.IMAGE_DATA: "ImageData", V1.INFOGAIN_LOSS: "InfogainLoss",
    V1.INNER_PRODUCT: "InnerProduct", V1.LRN: "LRN", V1.MEMORY_DATA: "MemoryData",
    V1.MULTINOMIAL_LOGISTIC_LOSS: "MultinomialLogisticLoss", V1.MVN: "MVN",
    V1.POOLING: "Pooling", V1.POWER: "Power", V1.RELU: "ReLU", V1.SIGMOID: "Sigmoid",
    V1.SIGMOID_CROSS_ENTROPY_LOSS: "SigmoidCrossEntropyLoss", V1.SILENCE: "Silence",
    V1.SOFTMAX: "Softmax", V1.SOFTMAX_LOSS: "SoftmaxWithLoss", V1.SPLIT: "Split",
    V1.SLICE: "Slice", V1.TANH: "TanH", V1.WINDOW_DATA: "WindowData",
    V1.THRESHOLD: "Threshold",
}

V0_TYPES = {
    "accuracy": V1.ACCURACY, "bnll": V1.BNLL, "concat": V1.CONCAT, "conv": V1.CONVOLUTION,
    "data": V1.DATA, "dropout": V1.DROPOUT, "euclidean_loss": V1.EUCLIDEAN_LOSS,
    "flatten": V1.FLATTEN, "hdf5_data": V1.HDF5_DATA, "hdf5_output": V1.HDF5_OUTPUT,
    "im2col": V1.IM2COL, "images": V1.IMAGE_DATA, "infogain_loss": V1.INFOGAIN_LOSS,
    "innerproduct": V1.INNER_PRODUCT, "lrn": V1.LRN,
    "multinomial_logistic_loss": V1.MULTINOMIAL_LOGISTIC_LOSS, "pool": V1.POOLING,
    "relu": V1.RELU, "sigmoid": V1.SIGMOID, "softmax": V1.SOFTMAX,
    "softmax_loss": V1.SOFTMAX_LOSS, "split": V1.SPLIT, "tanh": V1.TANH,
    "window_data": V1.WINDOW_DATA,
}

SOLVER_TYPE_NAMES = {0: "SGD", 1: "Nesterov", 2: "AdaGrad", 3: "RMSProp", 4: "AdaDelta", 5: "Adam"}


# ---- nets --------------------------------------------------------------------

def upgrade_net(net, path="<net>"):
    """Return `net` upgraded to the current format (modified in place)."""
    if len(net.layer) and len(net.layers):
        raise ParseError(f"{path}: net has both 'layer' (current) and 'layers' (V1) fields; "
                         "use one format")
    if any(l.HasField("layer") for l in net.layers):
        upgrade_v0_to_v1(net, path)
    if len(net.layers):
        migrate_v1_transform(net)
        upgrade_v1_to_v2(net, path)
    upgrade_input_fields(net, path)
    upgrade_batch_norm(net)
    return net


def upgrade_v1_to_v2(net, path):
    layers = list(net.layers)
    del net.layers[:]
    for old in layers:
        net.layer.add().CopyFrom(v1_layer_to_v2(old, path))


def v1_layer_to_v2(old, path):
    new = caffe_pb2.LayerParameter()
    new.name = old.name
    new.type = V1_TYPE_NAMES.get(old.type, "")
    new.bottom.extend(old.bottom)
    new.top.extend(old.top)
    new.include.extend(old.include)
    new.exclude.extend(old.exclude)
    new.blobs.extend(old.blobs)
    new.loss_weight.extend(old.loss_weight)
    _v1_param_specs(old, new)
    for field, value in old.ListFields():
        if field.name.endswith("_param") and field.name != "layer":
            getattr(new, field.name).CopyFrom(value)
    return new


def _v1_param_specs(old, new):
    count = max(len(old.param), len(old.blob_share_mode), len(old.blobs_lr),
                len(old.weight_decay))
    for i in range(count):
        spec = new.param.add()
        if i < len(old.param):
            spec.name = old.param[i]
        if i < len(old.blob_share_mode):
            spec.share_mode = old.blob_share_mode[i]
        if i < len(old.blobs_lr):
            spec.lr_mult = old.blobs_lr[i]
        if i < len(old.weight_decay):
            spec.decay_mult = old.weight_decay[i]


def migrate_v1_transform(net):
    """V1 data layers kept scale/mean_file/crop_size/mirror in their own params."""
    sources = {V1.DATA: "data_param", V1.IMAGE_DATA: "image_data_param",
               V1.WINDOW_DATA: "window_data_param"}
    for layer in net.layers:
        name = sources.get(layer.type)
        if not name or not layer.HasField(name):
            continue
        param = getattr(layer, name)
        for field in ("scale", "mean_file", "crop_size", "mirror"):
            if param.HasField(field):
                setattr(layer.transform_param, field, getattr(param, field))
                param.ClearField(field)


def upgrade_input_fields(net, path):
    if not (len(net.input_shape) or len(net.input_dim)):
        net.ClearField("input")
        return
    layer = caffe_pb2.LayerParameter(name="input", type="Input")
    layer.top.extend(net.input)
    if len(net.input_shape):
        if len(net.input_shape) != len(net.input):
            raise ParseError(f"{path}: {len(net.input)} inputs but {len(net.input_shape)} "
                             "input_shape entries")
        for shape in net.input_shape:
            layer.input_param.shape.add().CopyFrom(shape)
    else:
        if len(net.input_dim) != 4 * len(net.input):
            raise ParseError(f"{path}: input_dim needs 4 values per input "
                             f"({len(net.input)} inputs, {len(net.input_dim)} values)")
        for i in range(len(net.input)):
            layer.input_param.shape.add().dim.extend(net.input_dim[4 * i:4 * i + 4])
    layers = [layer] + list(net.layer)
    del net.layer[:]
    net.layer.extend(layers)
    for field in ("input", "input_shape", "input_dim"):
        net.ClearField(field)


def upgrade_batch_norm(net):
    for layer in net.layer:
        if layer.type == "BatchNorm" and len(layer.param) == 3:
            for spec in layer.param:
                spec.lr_mult = 0
                spec.decay_mult = 0


# ---- V0 → V1 -------------------------------------------------------------------

def upgrade_v0_to_v1(net, path):
    """Fold V0 'padding' layers into their consumer, then map every V0 layer to V1."""
    old_layers = list(net.layers)
    padding_tops = {}
    for layer in old_layers:
        v0 = layer.layer
        if v0.type == "padding":
            if len(layer.bottom) != 1 or len(layer.top) != 1:
                raise ParseError(f"{path}: V0 padding layer '{v0.name}' needs one bottom and one top")
            padding_tops[layer.top[0]] = (layer.bottom[0], v0.pad)
    del net.layers[:]
    for layer in old_layers:
        if layer.layer.type == "padding":
            continue
        new = v0_layer_to_v1(layer, path)
        if len(new.bottom) == 1 and new.bottom[0] in padding_tops:
            bottom, pad = padding_tops[new.bottom[0]]
            _apply_v0_padding(new, pad, path)
            new.bottom[0] = bottom
        net.layers.add().CopyFrom(new)


def _apply_v0_padding(layer, pad, path):
    if layer.type == V1.CONVOLUTION:
        del layer.convolution_param.pad[:]
        layer.convolution_param.pad.append(pad)
    elif layer.type == V1.POOLING:
        layer.pooling_param.pad = pad
    else:
        raise ParseError(f"{path}: V0 padding layer feeds '{layer.name}', "
                         "which is neither conv nor pool")


def v0_layer_to_v1(layer, path):
    v0 = layer.layer
    new = V1()
    new.bottom.extend(layer.bottom)
    new.top.extend(layer.top)
    new.name = v0.name
    if v0.type not in V0_TYPES:
        raise ParseError(f"{path}: unknown V0 layer type '{v0.type}' in layer '{v0.name}'")
    new.type = V0_TYPES[v0.type]
    new.blobs.extend(v0.blobs)
    new.blobs_lr.extend(v0.blobs_lr)
    new.weight_decay.extend(v0.weight_decay)
    _map_v0_fields(v0, new)
    return new


def _set(v0, field, target, name, repeated=False):
    if v0.HasField(field):
        if repeated:
            getattr(target, name).append(getattr(v0, field))
        else:
            setattr(target, name, getattr(v0, field))


def _map_v0_fields(v0, new):
    t = v0.type
    if t == "conv":
        p = new.convolution_param
        for src, dst, rep in (("num_output", "num_output", False), ("biasterm", "bias_term", False),
                              ("pad", "pad", True), ("kernelsize", "kernel_size", True),
                              ("group", "group", False), ("stride", "stride", True)):
            _set(v0, src, p, dst, rep)
        _copy_fillers(v0, p)
    elif t == "innerproduct":
        p = new.inner_product_param
        _set(v0, "num_output", p, "num_output")
        _set(v0, "biasterm", p, "bias_term")
        _copy_fillers(v0, p)
    elif t == "pool":
        p = new.pooling_param
        for src, dst in (("pool", "pool"), ("kernelsize", "kernel_size"), ("stride", "stride"),
                         ("pad", "pad")):
            _set(v0, src, p, dst)
    elif t == "dropout":
        _set(v0, "dropout_ratio", new.dropout_param, "dropout_ratio")
    elif t == "lrn":
        for f in ("local_size", "alpha", "beta", "k"):
            _set(v0, f, new.lrn_param, f)
    elif t == "concat":
        _set(v0, "concat_dim", new.concat_param, "concat_dim")
    elif t == "infogain_loss":
        _set(v0, "source", new.infogain_loss_param, "source")
    elif t == "hdf5_output" and v0.HasField("hdf5_output_param"):
        new.hdf5_output_param.CopyFrom(v0.hdf5_output_param)
    _map_v0_data_fields(v0, new)


def _copy_fillers(v0, p):
    if v0.HasField("weight_filler"):
        p.weight_filler.CopyFrom(v0.weight_filler)
    if v0.HasField("bias_filler"):
        p.bias_filler.CopyFrom(v0.bias_filler)


def _map_v0_data_fields(v0, new):
    targets = {"data": "data_param", "hdf5_data": "hdf5_data_param",
               "images": "image_data_param", "window_data": "window_data_param"}
    name = targets.get(v0.type)
    if name is None:
        return
    p = getattr(new, name)
    _set(v0, "source", p, "source")
    _set(v0, "batchsize", p, "batch_size")
    if v0.type != "hdf5_data":
        for src, dst in (("scale", "scale"), ("meanfile", "mean_file"),
                         ("cropsize", "crop_size"), ("mirror", "mirror")):
            _set(v0, src, new.transform_param, dst)
    if v0.type in ("data", "images"):
        _set(v0, "rand_skip", p, "rand_skip")
    if v0.type == "images":
        _set(v0, "shuffle_images", p, "shuffle")
        _set(v0, "new_height", p, "new_height")
        _set(v0, "new_width", p, "new_width")
    if v0.type == "window_data":
        for src, dst in (("det_fg_threshold", "fg_threshold"), ("det_bg_threshold", "bg_threshold"),
                         ("det_fg_fraction", "fg_fraction"), ("det_context_pad", "context_pad"),
                         ("det_crop_mode", "crop_mode")):
            _set(v0, src, p, dst)


# ---- solvers -------------------------------------------------------------------

def upgrade_solver(solver, path="<solver>"):
    """Map the deprecated `solver_type` enum onto the `type` string."""
    if solver.HasField("solver_type"):
        if solver.HasField("type"):
            raise ParseError(f"{path}: both 'solver_type' (deprecated) and 'type' are set; "
                             "keep only 'type'")
        solver.type = SOLVER_TYPE_NAMES[solver.solver_type]
        solver.ClearField("solver_type")
    return solver


def default_snapshot_prefix(solver, solver_path):
    """Caffe master's rule (not 1.0's, not CaffeOnSpark's): a missing snapshot_prefix becomes the
    solver file path without its extension; a prefix naming a directory gets the file's stem.

    Not applied by read_solver; tools that follow master (cos-caffe) call it themselves.
    """
    stem = os.path.splitext(str(solver_path))[0]
    if not solver.HasField("snapshot_prefix"):
        solver.snapshot_prefix = stem
    elif os.path.isdir(solver.snapshot_prefix):
        solver.snapshot_prefix = os.path.join(solver.snapshot_prefix, os.path.basename(stem))
    return solver
