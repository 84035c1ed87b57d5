"""DataTransformer against hand-computed Caffe outputs: crop, mirror, mean, scale, order."""

import numpy as np
import pytest

from cos.data.transformer import DataTransformer
from cos.errors import DataError
from cos.proto import caffe_pb2


def _param(**kw):
    p = caffe_pb2.TransformationParameter()
    for key, value in kw.items():
        if key == "mean_value":
            p.mean_value.extend(value)
        else:
            setattr(p, key, value)
    return p


IMG = np.arange(2 * 4 * 5, dtype=np.uint8).reshape(2, 4, 5)  # C,H,W


def test_identity_and_scale_after_mean_value():
    t = DataTransformer(_param(scale=0.5, mean_value=[1.0, 3.0]), caffe_pb2.TEST)
    out = t.transform(IMG)
    want = (IMG.astype(np.float32) - np.array([1, 3], np.float32).reshape(2, 1, 1)) * 0.5
    np.testing.assert_allclose(out, want)
    assert out.dtype == np.float32


def test_single_mean_value_broadcasts_and_wrong_count_fails():
    out = DataTransformer(_param(mean_value=[2.0]), caffe_pb2.TEST).transform(IMG)
    np.testing.assert_allclose(out, IMG.astype(np.float32) - 2)
    with pytest.raises(DataError, match="mean_value"):
        DataTransformer(_param(mean_value=[1, 2, 3]), caffe_pb2.TEST).transform(IMG)


def test_centre_crop_in_test():
    out = DataTransformer(_param(crop_size=3), caffe_pb2.TEST).transform(IMG)
    np.testing.assert_array_equal(out, IMG[:, 0:3, 1:4])  # (4-3)//2=0, (5-3)//2=1


def test_train_crop_uses_rng_in_caffe_order():
    seed = 7
    rng = np.random.default_rng(seed)
    coin = rng.integers(2)
    h_off, w_off = rng.integers(2), rng.integers(3)
    out = DataTransformer(_param(crop_size=3, mirror=True), caffe_pb2.TRAIN,
                          seed=seed).transform(IMG)
    want = IMG[:, h_off:h_off + 3, w_off:w_off + 3].astype(np.float32)
    if coin:
        want = want[:, :, ::-1]
    np.testing.assert_array_equal(out, want)


def test_mirror_flips_width_and_seed_is_reproducible():
    t = DataTransformer(_param(mirror=True), caffe_pb2.TEST, seed=1)
    outs = [t.transform(IMG) for _ in range(20)]
    flipped = [o for o in outs if np.array_equal(o, IMG[:, :, ::-1])]
    plain = [o for o in outs if np.array_equal(o, IMG)]
    assert flipped and plain and len(flipped) + len(plain) == 20
    t2 = DataTransformer(_param(mirror=True), caffe_pb2.TEST, seed=1)
    assert all(np.array_equal(a, t2.transform(IMG)) for a in outs)


def test_mean_file_cropped_with_image(tmp_path):
    mean = np.random.default_rng(0).random((2, 4, 5)).astype(np.float32)
    t = DataTransformer(_param(mean_file="m.binaryproto", crop_size=3, scale=2.0),
                        caffe_pb2.TEST, mean_file_loader=lambda path: mean)
    out = t.transform(IMG)
    want = (IMG[:, 0:3, 1:4] - mean[:, 0:3, 1:4]) * 2.0
    np.testing.assert_allclose(out, want, rtol=1e-6)


def test_mean_file_from_disk_and_shape_mismatch(tmp_path):
    from cos.proto.binary import write_binary
    from cos.proto.blobs import array_to_blob
    mean = np.full((1, 2, 4, 5), 1.5, np.float32)
    path = tmp_path / "mean.binaryproto"
    write_binary(array_to_blob(mean), str(path))
    out = DataTransformer(_param(mean_file=str(path)), caffe_pb2.TEST).transform(IMG)
    np.testing.assert_allclose(out, IMG - 1.5)
    with pytest.raises(DataError, match="mean_file"):
        DataTransformer(_param(mean_file=str(path)), caffe_pb2.TEST).transform(IMG[:, :3])


def test_mean_file_and_values_together_is_an_error():
    with pytest.raises(DataError, match="both"):
        DataTransformer(_param(mean_file="x", mean_value=[1]), caffe_pb2.TEST,
                        mean_file_loader=lambda p: None)


def test_hwc_layout_and_png_bgr_order():
    from cos.proto.datum import decode_image, encode_image
    bgr = np.zeros((2, 3, 3), np.uint8)
    bgr[..., 0] = 10  # blue
    bgr[..., 2] = 200  # red
    decoded = decode_image(encode_image(bgr, "png"))
    out = DataTransformer(_param(), caffe_pb2.TEST).transform(decoded, layout="hwc")
    assert out.shape == (3, 2, 3)
    assert np.all(out[0] == 10) and np.all(out[2] == 200)


def test_crop_larger_than_image_fails():
    with pytest.raises(DataError, match="crop_size"):
        DataTransformer(_param(crop_size=9), caffe_pb2.TEST).transform(IMG)


def test_transform_batch_stacks():
    out = DataTransformer(_param(scale=2.0), caffe_pb2.TEST).transform_batch([IMG, IMG])
    assert out.shape == (2, 2, 4, 5)
    np.testing.assert_allclose(out[1], IMG * 2.0)
