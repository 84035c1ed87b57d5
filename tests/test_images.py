"""ImageConverter (spec 4.6): raw and encoded samples, skips, resize, size errors, labels."""

import logging

import numpy as np
import pytest
from google.protobuf import text_format

from cos.data.images import ImageConverter, image_top_shapes, resize_bilinear
from cos.errors import CosError, DataError
from cos.proto import caffe_pb2
from cos.proto.datum import decode_image, encode_image

TRAIN, TEST = caffe_pb2.TRAIN, caffe_pb2.TEST
RNG = np.random.default_rng(3)


def memory_layer(c, h, w, extra=""):
    return text_format.Parse(f'name: "mem" type: "MemoryData" memory_data_param {{ '
                             f'batch_size: 2 channels: {c} height: {h} width: {w} }} {extra}',
                             caffe_pb2.LayerParameter())


def data_layer(extra=""):
    return text_format.Parse(f'name: "d" type: "Data" data_param {{ source: "x" '
                             f'batch_size: 2 }} {extra}', caffe_pb2.LayerParameter())


def image(h, w, c):
    return RNG.integers(0, 256, size=(h, w, c), dtype=np.uint8)


def test_top_shapes_are_declared_or_from_the_first_record():
    assert image_top_shapes(memory_layer(3, 8, 9)) == [(3, 8, 9), ()]
    # MemoryData declares its output blob, i.e. the size after the crop
    cropped = memory_layer(3, 5, 5, "transform_param { crop_size: 5 }")
    assert image_top_shapes(cropped) == [(3, 5, 5), ()]
    assert image_top_shapes(data_layer("transform_param { crop_size: 4 }"),
                            (1, 6, 7)) == [(1, 4, 4), ()]
    assert image_top_shapes(data_layer(), (1, 6, 7)) == [(1, 6, 7), ()]
    with pytest.raises(DataError, match="layer 'd'.*image size unknown"):
        image_top_shapes(data_layer())


def test_raw_sample_is_transformed_with_scale_and_label():
    pixels = image(4, 5, 3)
    conv = ImageConverter(memory_layer(3, 4, 5, "transform_param { scale: 0.5 }"), TEST)
    sid, (out, label) = conv(("a", "7", 3, 4, 5, False, pixels.tobytes()))
    assert sid == "a" and out.dtype == np.float32 and out.shape == (3, 4, 5)
    np.testing.assert_array_equal(out, pixels.transpose(2, 0, 1).astype(np.float32) * 0.5)
    assert label.dtype == np.float32 and label.shape == () and float(label) == 7.0


@pytest.mark.parametrize("known", [True, False])
def test_png_colour_and_gray_decode_exactly(known):
    colour, gray = image(6, 4, 3), image(6, 4, 1)
    conv3 = ImageConverter(memory_layer(3, 6, 4), TEST)
    conv1 = ImageConverter(memory_layer(1, 6, 4), TEST)
    dims = (6, 4) if known else (0, 0)
    _, (out, _) = conv3(("c", "1", 3, *dims, True, encode_image(colour, "png")))
    np.testing.assert_array_equal(out, colour.transpose(2, 0, 1))  # BGR kept
    _, (out, _) = conv1(("g", "1", 1, *dims, True, encode_image(gray, "png")))
    np.testing.assert_array_equal(out, gray.transpose(2, 0, 1))


def test_jpeg_matches_decoder_and_unknown_size_follows_layer_channels():
    smooth = np.tile(np.linspace(0, 255, 16, dtype=np.uint8)[None, :, None], (16, 1, 3))
    jpeg = encode_image(smooth, "jpeg")
    _, (out, _) = ImageConverter(memory_layer(3, 16, 16), TEST)(("j", "0", 3, 0, 0, True, jpeg))
    np.testing.assert_array_equal(out, decode_image(jpeg).transpose(2, 0, 1))
    assert np.abs(out - smooth.transpose(2, 0, 1)).mean() < 8  # lossy but close
    # a colour JPEG of unknown size into a 1-channel layer is decoded gray
    _, (gray, _) = ImageConverter(memory_layer(1, 16, 16), TEST)(("j", "0", 3, 0, 0, True, jpeg))
    assert gray.shape == (1, 16, 16)
    np.testing.assert_array_equal(gray, decode_image(jpeg, color=False).transpose(2, 0, 1))


def test_header_mismatch_is_skipped_with_a_warning(caplog):
    png = encode_image(image(4, 4, 1), "png")
    conv = ImageConverter(memory_layer(1, 5, 5), TEST)
    with caplog.at_level(logging.WARNING, logger="cos.data"):
        assert conv(("img-9", "0", 1, 5, 5, True, png)) is None
        assert conv(("junk-1", "0", 1, 0, 0, True, b"not an image")) is None
    assert "Skip image img-9" in caplog.text
    assert "Skipped image junk-1" in caplog.text


def test_size_mismatch_error_names_sample_layer_and_resize():
    conv = ImageConverter(memory_layer(1, 8, 8), TEST)
    with pytest.raises(DataError,
                       match=r"image s3 is 1x4x4 .*but layer 'mem' expects 1x8x8.*-resize"):
        conv(("s3", "0", 1, 4, 4, False, bytes(16)))
    with pytest.raises(DataError, match=r"image s4 has 3 channel\(s\) .* expects 1"):
        conv(("s4", "0", 3, 8, 8, False, bytes(192)))
    with pytest.raises(DataError, match="image s5: 10 bytes"):
        conv(("s5", "0", 1, 4, 4, False, bytes(10)))


def test_resize_known_size_branch():
    pixels = image(4, 6, 1)
    conv = ImageConverter(memory_layer(1, 8, 3), TEST, resize=True)
    _, (out, _) = conv(("r", "2", 1, 4, 6, False, pixels.tobytes()))
    assert out.shape == (1, 8, 3)
    np.testing.assert_array_equal(out[0], resize_bilinear(pixels, 8, 3)[:, :, 0])
    # an image already of the layer's size is left alone
    same = image(8, 3, 1)
    _, (out, _) = conv(("s", "2", 1, 8, 3, False, same.tobytes()))
    np.testing.assert_array_equal(out[0], same[:, :, 0])


def test_resize_unknown_size_branch_always_resizes():
    pixels = image(6, 6, 3)
    conv = ImageConverter(memory_layer(3, 3, 3), TEST, resize=True)
    _, (out, _) = conv(("u", "1", 3, 0, 0, True, encode_image(pixels, "png")))
    np.testing.assert_array_equal(out, resize_bilinear(pixels, 3, 3).transpose(2, 0, 1))


def test_bilinear_matches_opencv_values():
    # cv2.resize(np.uint8([[0, 255]]), (4, 1)) == [[0, 64, 191, 255]]
    row = np.array([[[0], [255]]], np.uint8)
    assert resize_bilinear(row, 1, 4)[0, :, 0].tolist() == [0, 64, 191, 255]
    # cv2.resize(np.uint8([[0, 100, 200, 255]]), (2, 1)) == [[50, 228]]
    row = np.array([[[0], [100], [200], [255]]], np.uint8)
    assert resize_bilinear(row, 1, 2)[0, :, 0].tolist() == [50, 228]
    # 2-D: a 2x2 upscaled to 4x4 interpolates rows then columns
    square = np.array([[0, 80], [160, 240]], np.uint8)[:, :, None]
    out = resize_bilinear(square, 4, 4)[:, :, 0]
    assert out[0].tolist() == [0, 20, 60, 80] and out[:, 0].tolist() == [0, 40, 120, 160]
    assert out[1, 1] == 60  # 0.75·(0.75·0 + 0.25·80) + 0.25·(0.75·160 + 0.25·240)


def test_label_must_be_an_integer():
    conv = ImageConverter(memory_layer(1, 2, 2), TEST)
    with pytest.raises(DataError, match="image x7: label '3.5' is not an integer"):
        conv(("x7", "3.5", 1, 2, 2, False, bytes(4)))


def test_given_mean_replaces_mean_file():
    layer = memory_layer(1, 2, 2, 'transform_param { mean_file: "/nonexistent/mean.binaryproto" }')
    mean = np.full((1, 2, 2), 10, np.float32)
    conv = ImageConverter(layer, TEST, mean=mean)
    _, (out, _) = conv(("m", "0", 1, 2, 2, False, bytes([10, 20, 30, 40])))
    np.testing.assert_array_equal(out[0], [[0, 10], [20, 30]])
    with pytest.raises(CosError, match="mean.binaryproto"):
        ImageConverter(layer, TEST)  # without `mean` the file itself is read


def test_data_layer_honours_force_gray_and_accepts_any_size():
    png = encode_image(image(5, 7, 3), "png")
    conv = ImageConverter(data_layer("transform_param { force_gray: true }"), TEST)
    _, (out, _) = conv(("f", "0", 0, 0, 0, True, png))
    assert out.shape == (1, 5, 7)
    _, (out, _) = ImageConverter(data_layer(), TEST)(("f", "0", 0, 0, 0, True, png))
    assert out.shape == (3, 5, 7)


def test_images_larger_than_the_declared_size_are_cropped_to_it():
    pixels = image(8, 8, 3)
    conv = ImageConverter(memory_layer(3, 6, 6, "transform_param { crop_size: 6 }"), TEST)
    _, (out, _) = conv(("big", "1", 3, 8, 8, False, pixels.tobytes()))
    np.testing.assert_array_equal(out, pixels.transpose(2, 0, 1)[:, 1:7, 1:7])
    uncropped = ImageConverter(memory_layer(3, 6, 6), TEST)
    with pytest.raises(DataError, match="image big is 3x8x8 .*expects 3x6x6.*-resize"):
        uncropped(("big", "1", 3, 8, 8, False, pixels.tobytes()))


def test_transformer_errors_name_the_sample():
    conv = ImageConverter(memory_layer(1, 2, 2, "transform_param { crop_size: 3 }"), TRAIN)
    with pytest.raises(DataError, match="image c1: .*crop_size 3"):
        conv(("c1", "0", 1, 2, 2, False, bytes(4)))


@pytest.mark.parametrize("phase", [TRAIN, TEST])
@pytest.mark.parametrize("extra", ["transform_param { scale: 0.5 mean_value: 3 }",
                                   "transform_param { crop_size: 4 mirror: true "
                                   "mean_value: 1 mean_value: 2 mean_value: 3 }",
                                   "transform_param { crop_size: 5 mean_file: 'm' scale: 2 }"])
def test_batch_path_equals_the_per_sample_path(phase, extra):
    """Whole raw batches are converted at once; the result must not depend on that."""
    from cos.data.feeder import Batcher
    height = 6 if "crop_size" in extra else 4
    declared = 4 if "crop_size: 4" in extra else (5 if "crop_size: 5" in extra else height)
    layer = memory_layer(3, declared, declared, extra)
    mean = RNG.random((3, height, height)).astype(np.float32) * 50
    samples = [(f"s{i}", str(i % 10), 3, height, height, False,
                image(height, height, 3).tobytes()) for i in range(23)]

    used = []

    def batches(fast):
        conv = ImageConverter(layer, phase, seed=5, mean=mean)
        if not fast:
            conv.convert_batch = None
        else:
            whole = conv.convert_batch
            conv.convert_batch = lambda chunk: used.append(whole(chunk)) or used[-1]
        batcher = Batcher(lambda: iter(samples), conv, 5, train=phase == TRAIN)
        # TRAIN wraps around (7 batches of 5 from 23 samples); TEST ends with a padded 5th
        out = [next(batcher) for _ in range(7)] if phase == TRAIN else list(batcher)
        batcher.close()
        return out

    fast_batches, slow_batches = batches(True), batches(False)
    assert used and all(result is not None for result in used)
    assert len(fast_batches) == len(slow_batches) == (7 if phase == TRAIN else 5)
    for fast, slow in zip(fast_batches, slow_batches):
        assert fast.ids == slow.ids and fast.count == slow.count
        for a, b in zip(fast.arrays, slow.arrays):
            assert a.dtype == b.dtype == np.float32
            np.testing.assert_array_equal(a, b)
