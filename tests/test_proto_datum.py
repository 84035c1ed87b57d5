"""Datum records: raw bytes, float_data, encoded JPEG/PNG decoded to BGR like OpenCV."""

import io

import numpy as np
import pytest
from PIL import Image

from cos.errors import DataError
from cos.proto import caffe_pb2, datum

BLUE_RGB = (10, 40, 250)  # a known colour, written by Pillow in RGB order


def _file(pixels, fmt, mode=None):
    buf = io.BytesIO()
    Image.fromarray(pixels, mode).save(buf, format=fmt)
    return buf.getvalue()


def _rgb_image():
    img = np.zeros((6, 5, 3), np.uint8)
    img[...] = BLUE_RGB
    return img


def _round_trip(d):
    return caffe_pb2.Datum.FromString(d.SerializeToString())


def test_raw_uint8_round_trip_chw():
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    d = _round_trip(datum.array_to_datum(arr, label=7))
    assert (d.channels, d.height, d.width, d.label) == (2, 3, 4, 7)
    assert d.data == arr.tobytes() and not len(d.float_data)  # C,H,W planar bytes
    back = datum.datum_to_array(d)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, arr)
    back[0, 0, 0] = 99  # writable, like pycaffe's


def test_float_round_trip():
    arr = np.linspace(-1, 1, 12).reshape(3, 2, 2).astype(np.float32)
    d = _round_trip(datum.array_to_datum(arr))
    assert not d.data and len(d.float_data) == 12 and not d.HasField("label")
    np.testing.assert_allclose(datum.datum_to_array(d), arr, rtol=1e-7)


def test_float_data_is_not_packed_on_the_wire():
    d = datum.array_to_datum(np.ones((1, 1, 2), np.float32))
    wire = d.SerializeToString()
    # Unpacked: one tag byte 0x35 (field 6, fixed32) per value; packed would be 0x32 + length.
    assert wire.count(b"\x35") == 2 and b"\x32" not in wire


def test_size_mismatch_names_record():
    d = caffe_pb2.Datum(channels=1, height=2, width=2, data=b"\x00\x01\x02")
    with pytest.raises(DataError, match=r"key 00000001: has 3 bytes.*1×2×2"):
        datum.datum_to_array(d, where="key 00000001")
    with pytest.raises(DataError, match="3-D"):
        datum.array_to_datum(np.zeros((2, 2)))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_encoded_colour_decodes_to_bgr(fmt):
    d = _round_trip(datum.encode_datum(_file(_rgb_image(), fmt), label=3))
    assert d.encoded and d.label == 3
    chw = datum.datum_to_array(d)
    assert chw.shape == (3, 6, 5)
    tol = 0 if fmt == "PNG" else 3
    blue, green, red = (int(chw[c, 2, 2]) for c in range(3))
    assert abs(blue - BLUE_RGB[2]) <= tol  # channel 0 is blue
    assert abs(green - BLUE_RGB[1]) <= tol and abs(red - BLUE_RGB[0]) <= tol


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_encoded_gray_stays_one_channel(fmt):
    gray = np.tile(np.arange(0, 200, 40, dtype=np.uint8), (4, 1))
    data = _file(gray, fmt)
    hwc = datum.decode_image(data)
    assert hwc.shape == (4, 5, 1)
    if fmt == "PNG":
        np.testing.assert_array_equal(hwc[:, :, 0], gray)
    forced = datum.decode_image(data, color=True)
    assert forced.shape == (4, 5, 3)
    np.testing.assert_array_equal(forced[:, :, 0], forced[:, :, 2])


def test_force_gray_on_colour():
    data = _file(_rgb_image(), "PNG")
    gray = datum.decode_image(data, color=False)
    assert gray.shape == (6, 5, 1)
    # ITU-R 601 luma, as OpenCV's and Pillow's conversions compute it.
    expected = 0.299 * BLUE_RGB[0] + 0.587 * BLUE_RGB[1] + 0.114 * BLUE_RGB[2]
    assert abs(int(gray[0, 0, 0]) - expected) <= 1


def test_png_with_alpha_keeps_four_channels_bgra():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[...] = (200, 100, 50, 128)
    hwc = datum.decode_image(_file(rgba, "PNG", "RGBA"))
    assert hwc[0, 0].tolist() == [50, 100, 200, 128]


def test_encode_from_bgr_array_round_trip():
    bgr = np.zeros((3, 4, 3), np.uint8)
    bgr[..., 0] = 255  # blue
    d = datum.encode_datum(bgr, label=1, fmt="png")
    np.testing.assert_array_equal(datum.datum_to_array(d), bgr.transpose(2, 0, 1))


def test_color_flag():
    assert datum.color_flag() is None
    assert datum.color_flag(force_color=True) is True
    assert datum.color_flag(force_gray=True) is False
    with pytest.raises(DataError, match="force_color and force_gray"):
        datum.color_flag(True, True)


def test_corrupt_image_and_record():
    with pytest.raises(DataError) as info:
        datum.decode_image(b"not an image at all", where="key 00000005")
    assert str(info.value) == "key 00000005: cannot decode image (not a JPEG or PNG image)"
    with pytest.raises(DataError, match="not a Caffe Datum"):
        datum.parse_datum(b"\xff\xff\xff", where="key 1")


def test_fast_jpeg_path_matches_pillow():
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    data = _file(rgb, "JPEG")
    fast = datum.decode_image(data)
    slow = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))[:, :, ::-1]
    assert np.abs(fast.astype(int) - slow.astype(int)).max() <= 1


def test_truncated_jpeg_is_a_data_error():
    data = _file(_rgb_image(), "JPEG")
    with pytest.raises(DataError, match="key 9: cannot decode image"):
        datum.decode_image(data[:20], where="key 9")
