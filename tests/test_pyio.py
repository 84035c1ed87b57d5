"""caffe.io: blob/datum round trips, image loading, resizing, oversampling and the Transformer."""

import numpy as np
import pytest
from PIL import Image

from cos import caffe
from cos.errors import CosError
from cos.proto import caffe_pb2

io = caffe.io


def test_blobproto_round_trip_with_diff():
    arr = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    blob = io.array_to_blobproto(arr, diff=-arr)
    assert list(blob.shape.dim) == [2, 3, 4]
    np.testing.assert_array_equal(io.blobproto_to_array(blob), arr)
    np.testing.assert_array_equal(io.blobproto_to_array(blob, return_diff=True), -arr)


def test_blobproto_legacy_dims_win_over_shape():
    blob = caffe_pb2.BlobProto(num=1, channels=2, height=1, width=3)
    blob.data.extend(range(6))
    assert io.blobproto_to_array(blob).shape == (1, 2, 1, 3)


def test_blobprotovector_string_round_trip():
    arrays = [np.ones((2, 2), np.float32), np.arange(3, dtype=np.float32)]
    back = io.blobprotovector_str_to_arraylist(io.arraylist_to_blobprotovector_str(arrays))
    assert [a.shape for a in back] == [(2, 2), (3,)]
    np.testing.assert_array_equal(back[1], arrays[1])


def test_datum_round_trip_uint8_and_float():
    img = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    datum = io.array_to_datum(img, label=7)
    assert datum.label == 7 and len(datum.data) == 24 and not datum.float_data
    np.testing.assert_array_equal(io.datum_to_array(datum), img)
    floats = io.datum_to_array(io.array_to_datum(img.astype(np.float32) / 2))
    assert floats.dtype == np.float64
    np.testing.assert_allclose(floats, img / 2)


def test_load_image_rgb_grey_and_alpha(tmp_path):
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 10
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    im = io.load_image(str(tmp_path / "a.png"))
    assert im.shape == (4, 5, 3) and im.dtype == np.float32
    np.testing.assert_allclose(im[0, 0], [1.0, 0.0, 0.0])
    Image.fromarray(np.full((3, 2), 51, np.uint8), "L").save(tmp_path / "g.png")
    tiled = io.load_image(str(tmp_path / "g.png"))
    assert tiled.shape == (3, 2, 3)
    np.testing.assert_allclose(tiled, 0.2, rtol=1e-6)
    assert io.load_image(str(tmp_path / "g.png"), color=False).shape == (3, 2, 1)


def test_load_image_bad_file_names_it(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(CosError, match="bad.jpg"):
        io.load_image(str(bad))


def test_resize_bilinear_half_pixel_centres():
    im = np.array([[0.0, 1.0]], np.float32)[:, :, None]  # 1x2 -> 1x4
    out = io.resize_image(im, (1, 4))
    np.testing.assert_allclose(out[0, :, 0], [0.0, 0.25, 0.75, 1.0], atol=1e-6)
    flat = io.resize_image(np.full((3, 3, 3), 0.5, np.float32), (5, 7))
    assert flat.shape == (5, 7, 3) and np.all(flat == 0.5)
    near = io.resize_image(np.arange(4, dtype=np.float32).reshape(2, 2, 1), (4, 4), 0)
    np.testing.assert_array_equal(near[:, :, 0], [[0, 0, 1, 1]] * 2 + [[2, 2, 3, 3]] * 2)


def test_oversample_corners_centre_and_mirrors():
    im = np.arange(5 * 6, dtype=np.float32).reshape(5, 6, 1)
    crops = io.oversample([im, im + 100], (3, 4))
    assert crops.shape == (20, 3, 4, 1)
    np.testing.assert_array_equal(crops[0], im[0:3, 0:4])
    np.testing.assert_array_equal(crops[3], im[2:5, 2:6])
    np.testing.assert_array_equal(crops[4], im[1:4, 1:5])  # centre: int(2.5-1.5), int(3-2)
    np.testing.assert_array_equal(crops[5], im[0:3, 0:4][:, ::-1])
    np.testing.assert_array_equal(crops[10], im[0:3, 0:4] + 100)


def test_transformer_preprocess_order_and_deprocess():
    t = io.Transformer({"data": (1, 3, 2, 2)})
    t.set_transpose("data", (2, 0, 1))
    t.set_channel_swap("data", (2, 1, 0))
    t.set_raw_scale("data", 255.0)
    t.set_mean("data", np.array([10.0, 20.0, 30.0]))
    t.set_input_scale("data", 0.5)
    rng = np.random.default_rng(0)
    img = rng.random((2, 2, 3)).astype(np.float32)
    out = t.preprocess("data", img)
    want = (img.transpose(2, 0, 1)[::-1] * 255.0 - np.array([10, 20, 30])[:, None, None]) * 0.5
    assert out.shape == (3, 2, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out, want, rtol=1e-5)
    np.testing.assert_allclose(t.deprocess("data", out), img, rtol=1e-5, atol=1e-6)


def test_transformer_resizes_and_rejects_bad_settings():
    t = io.Transformer({"data": (1, 3, 4, 4)})
    t.set_transpose("data", (2, 0, 1))
    assert t.preprocess("data", np.ones((2, 3, 3), np.float32)).shape == (3, 4, 4)
    with pytest.raises(CosError, match="mean shape"):
        t.set_mean("data", np.zeros((3, 5, 5)))
    with pytest.raises(CosError, match="channels"):
        t.set_mean("data", np.zeros(2))
    with pytest.raises(CosError, match="channels"):
        t.set_channel_swap("data", (1, 0))
    with pytest.raises(CosError, match="'label' is not one of the inputs"):
        t.preprocess("label", np.ones((4, 4, 3)))
