"""Every single-layer case real Caffe produced, replayed through pycaffe's API per the fixture
README: forward tops (splits included), bottom and param diffs, and params after the pass."""

import os
from pathlib import Path

import numpy as np
import pytest

from cos import caffe

_SHARED = Path(os.environ.get("COS_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))
LAYERS = _SHARED / "fixtures" / "caffe" / "layers"
CASES = sorted(p.stem for p in LAYERS.glob("*.prototxt"))
RTOL, ATOL = 1e-4, 1e-5


def test_fixture_cases_were_collected(caffe_fixtures):
    on_disk = sorted(p.stem for p in (caffe_fixtures / "layers").glob("*.prototxt"))
    assert on_disk and on_disk == CASES


def _close(got, want, what):
    assert np.shape(got) == np.shape(want), f"{what}: shape {np.shape(got)} != {np.shape(want)}"
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=what)


def _entries(z, prefix):
    return {k[len(prefix):]: z[k] for k in z.files if k.startswith(prefix)}


def _build(case):
    z = np.load(LAYERS / f"{case}.npz")
    phase = caffe.TRAIN if str(z["phase"]) == "TRAIN" else caffe.TEST
    net = caffe.Net(str(LAYERS / f"{case}.prototxt"), phase)
    for name, value in _entries(z, "bottom/").items():
        net.blobs[name].data[...] = value
    for key, value in _entries(z, "param/").items():
        layer, i = key.rsplit("/", 1)
        net.params[layer][int(i)].data[...] = value
    return net, z


@pytest.mark.parametrize("case", CASES)
def test_layer_case_matches_caffe(case, caffe_fixtures):
    assert caffe_fixtures == LAYERS.parent
    net, z = _build(case)
    net.forward()
    tops = _entries(z, "top/")
    assert sorted(set(net.blobs) - set(net.inputs)) == sorted(tops)
    for name, want in tops.items():
        _close(net.blobs[name].data, want, f"{case}: top {name}")
    if not _entries(z, "bottom_diff/"):
        return
    _backward(net, z, case)
    for key, want in _entries(z, "param_after/").items():
        layer, i = key.rsplit("/", 1)
        _close(net.params[layer][int(i)].data, want, f"{case}: param after {key}")


def _backward(net, z, case):
    for name, diff in _entries(z, "top_diff/").items():
        if net.blob_loss_weights[name]:
            _close(net.blobs[name].diff, diff, f"{case}: loss weight on top {name}")
        else:
            net.blobs[name].diff[...] = diff
    for blobs in net.params.values():
        for blob in blobs:
            blob.diff[...] = 0
    net.backward()
    for name, want in _entries(z, "bottom_diff/").items():
        _close(net.blobs[name].diff, want, f"{case}: bottom diff {name}")
    for key, want in _entries(z, "param_diff/").items():
        layer, i = key.rsplit("/", 1)
        _close(net.params[layer][int(i)].diff, want, f"{case}: param diff {key}")
