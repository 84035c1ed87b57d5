"""pycaffe's public names, so that a pycaffe script runs after `from cos import caffe`."""

import os

import torch

from .engine import layer as _layer
from .engine import net as _net
from .engine.layer import TEST, TRAIN, layer_type_list  # noqa: F401
from .engine.solvers import (AdaDeltaSolver, AdaGradSolver, AdamSolver,  # noqa: F401
                             NesterovSolver, RMSPropSolver, SGDSolver, get_solver)

from .data import layers as _data_layers  # noqa: F401  (registers Data, MemoryData, CoSData)

try:
    from .engine import pyio as io  # noqa: F401
except ImportError:  # pragma: no cover
    io = None

__version__ = "1.0.0"

_mode = {"device": "cpu", "gpu_id": 0}


def set_mode_cpu():
    _mode["device"] = "cpu"


def set_mode_gpu():
    if not torch.cuda.is_available():
        raise RuntimeError("set_mode_gpu: no CUDA device is visible")
    _mode["device"] = f"cuda:{_mode['gpu_id']}"


def set_device(device_id):
    _mode["gpu_id"] = int(device_id)
    if _mode["device"].startswith("cuda"):
        _mode["device"] = f"cuda:{int(device_id)}"


def set_random_seed(seed):
    _net.set_random_seed(seed)
    torch.manual_seed(int(seed))


def current_device():
    return _mode["device"]


def Net(prototxt, *args, **kwargs):
    """caffe.Net(prototxt, phase, level=0, stages=None, weights=None)
    or the legacy caffe.Net(prototxt, weights, phase)."""
    phase = kwargs.pop("phase", None)
    weights = kwargs.pop("weights", None)
    rest = list(args)
    if rest and isinstance(rest[0], (str, bytes)) or (rest and hasattr(rest[0], "__fspath__")):
        weights = rest.pop(0)
    if rest:
        phase = rest.pop(0)
    if phase is None:
        raise TypeError("caffe.Net needs a phase (caffe.TRAIN or caffe.TEST)")
    level = kwargs.pop("level", rest.pop(0) if rest else 0)
    stages = kwargs.pop("stages", rest.pop(0) if rest else None) or ()
    kwargs.setdefault("device", _mode["device"])
    for path in (prototxt, weights):  # pycaffe reports unopenable files as RuntimeError
        if isinstance(path, (str, bytes)) or hasattr(path, "__fspath__"):
            if not os.path.isfile(path):
                raise RuntimeError(f"Could not open file {os.fsdecode(path)}")
    try:
        return _net.Net(prototxt, phase, level=level, stages=tuple(stages), weights=weights,
                        **kwargs)
    except FileNotFoundError as err:
        raise RuntimeError(str(err)) from None


Layer = _layer.Layer
