"""The CUDA path: the same net on the GPU gives the CPU's numbers (skipped without a GPU)."""

import numpy as np
import pytest
import torch

from cos import caffe

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible")]


def test_lenet_forward_backward_on_gpu_matches_cpu(caffe_fixtures):
    d = caffe_fixtures / "lenet"
    proto, weights = str(d / "lenet_train_test.prototxt"), str(d / "lenet_iter_20.caffemodel")
    inputs = np.load(d / "lenet_inputs.npz")
    feed = dict(data=inputs["test_data"], label=inputs["test_labels"])
    cpu = caffe.Net(proto, caffe.TEST, weights=weights, device="cpu")
    gpu = caffe.Net(proto, caffe.TEST, weights=weights, device="cuda")
    want = cpu.forward(**feed)
    got = gpu.forward(**feed)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-5, err_msg=name)
    for net in (cpu, gpu):
        net.clear_param_diffs()
        net.backward()
    for a, b in zip(cpu.learnable_params, gpu.learnable_params):
        np.testing.assert_allclose(b.diff, a.diff, rtol=1e-3, atol=1e-5)
