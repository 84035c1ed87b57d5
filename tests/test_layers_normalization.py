"""BatchNorm, Scale, Bias, MVN against NumPy references of Caffe's formulas (float64)."""

import numpy as np
import pytest

from layer_check import check_gradient, make_layer, run_forward
from cos.engine.layer import TEST, TRAIN
from cos.errors import NetError


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-12)


def test_batchnorm_train_normalises_and_updates_accumulators():
    x = np.random.default_rng(0).standard_normal((3, 2, 2, 2))
    layer, _ = make_layer('type: "BatchNorm" batch_norm_param { moving_average_fraction: 0.5'
                          ' eps: 0.01 }', [x.shape], phase=TRAIN)
    assert [p.lr_mult for p in layer.param.param] == [0, 0, 0]
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    var = ((x - mean) ** 2).mean(axis=(0, 2, 3), keepdims=True)
    close(run_forward(layer, [x])[0], (x - mean) / np.sqrt(var + 0.01))
    run_forward(layer, [x])  # second pass: acc = 0.5*acc + stat, norm = 0.5*1 + 1
    close(layer.blobs[2].data, [1.5])
    close(layer.blobs[0].data, 1.5 * mean.ravel())
    close(layer.blobs[1].data, 1.5 * var.ravel() * 12 / 11)  # unbiased m/(m-1), m=12


def test_batchnorm_global_stats_in_test_phase():
    x = np.random.default_rng(1).standard_normal((2, 3, 2))
    layer, _ = make_layer('type: "BatchNorm"', [x.shape], phase=TEST)
    layer.blobs[0].data[...] = [2.0, 4.0, 6.0]
    layer.blobs[1].data[...] = [8.0, 2.0, 4.0]
    layer.blobs[2].data[...] = [2.0]
    mean, var = np.array([1, 2, 3.]), np.array([4, 1, 2.])
    want = (x - mean[None, :, None]) / np.sqrt(var[None, :, None] + 1e-5)
    close(run_forward(layer, [x])[0], want)
    check_gradient(layer, [x])


def test_batchnorm_batch_mode_gradient():
    x = np.random.default_rng(2).standard_normal((3, 2, 2))
    layer, _ = make_layer('type: "BatchNorm"', [x.shape], phase=TRAIN)
    check_gradient(layer, [x], rtol=1e-4, atol=1e-6)


def test_batchnorm_rejects_learned_statistics():
    with pytest.raises(NetError):
        make_layer('type: "BatchNorm" param { lr_mult: 1 }', [(2, 3)])


def test_scale_one_and_two_bottoms():
    rng = np.random.default_rng(3)
    x, s = rng.standard_normal((2, 3, 4)), rng.standard_normal((3,))
    layer, _ = make_layer('type: "Scale" scale_param { axis: 1 bias_term: true'
                          ' filler { type: "gaussian" } bias_filler { type: "gaussian" } }',
                          [x.shape])
    g, b = layer.blobs[0].data, layer.blobs[1].data
    assert g.shape == (3,) and b.shape == (3,)
    close(run_forward(layer, [x])[0], x * g[None, :, None] + b[None, :, None])
    layer, _ = make_layer('type: "Scale"', [x.shape, s.shape])
    assert not layer.blobs
    close(run_forward(layer, [x, s])[0], x * s[None, :, None])
    check_gradient(layer, [x, s])


def test_scale_default_filler_is_one_and_bias_num_axes():
    x = np.random.default_rng(4).standard_normal((2, 3, 4))
    layer, _ = make_layer('type: "Scale"', [x.shape])
    close(layer.blobs[0].data, np.ones(3))
    layer, _ = make_layer('type: "Bias" bias_param { axis: 1 num_axes: 2'
                          ' filler { type: "gaussian" } }', [x.shape])
    b = layer.blobs[0].data
    assert b.shape == (3, 4)
    close(run_forward(layer, [x])[0], x + b[None])
    check_gradient(layer, [x])


@pytest.mark.parametrize("across,variance", [(False, True), (True, True), (False, False)])
def test_mvn(across, variance):
    x = np.random.default_rng(5).standard_normal((2, 3, 2, 2))
    layer, _ = make_layer(f'type: "MVN" mvn_param {{ across_channels: {str(across).lower()}'
                          f' normalize_variance: {str(variance).lower()} eps: 1e-9 }}', [x.shape])
    axes = (1, 2, 3) if across else (2, 3)
    y = x - x.mean(axis=axes, keepdims=True)
    if variance:
        y = y / (np.sqrt((y ** 2).mean(axis=axes, keepdims=True)) + 1e-9)
    close(run_forward(layer, [x])[0], y)
    check_gradient(layer, [x[:1]], rtol=1e-4, atol=1e-6)
