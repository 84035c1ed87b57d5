"""Caffe's DataTransformer: mirror coin, crop, mean (file or values), scale, on uint8 images.

Order and random draws follow data_transformer.cpp: the mirror coin is drawn only when
`mirror` is set, then the crop offsets (random in TRAIN, centred in TEST).
"""

import numpy as np

from ..errors import DataError
from ..proto import caffe_pb2

TRAIN = caffe_pb2.TRAIN


def load_mean_file(path):
    """A .binaryproto mean file (local path or URI) -> C x H x W float32."""
    from ..proto.binary import read_blob_proto
    from ..proto.blobs import blob_to_array
    mean = blob_to_array(read_blob_proto(path), where=path)
    return np.asarray(mean, dtype=np.float32).reshape(mean.shape[-3:])


class DataTransformer:
    """transform(image) -> C x H' x W' float32 for an HxWxC (decoded, BGR) or CxHxW (Datum raw)
    array; `layout` says which when the shape alone cannot ("hwc" or "chw")."""

    def __init__(self, param, phase, seed=None, mean_file_loader=load_mean_file):
        self.param = param
        self.train = phase == TRAIN
        self.rng = np.random.default_rng(seed)
        self.scale = float(param.scale) if param.HasField("scale") else 1.0
        self.mean = None
        self.mean_values = None
        if param.HasField("mean_file") and len(param.mean_value):
            raise DataError("transform_param: cannot specify both mean_file and mean_value")
        if param.HasField("mean_file"):
            self.mean = mean_file_loader(param.mean_file)
        elif len(param.mean_value):
            self.mean_values = np.asarray(param.mean_value, dtype=np.float32)

    def _mean_for(self, channels):
        if self.mean_values is None:
            return None
        values = self.mean_values
        if len(values) == 1 and channels > 1:
            values = np.repeat(values, channels)
        if len(values) != channels:
            raise DataError(f"transform_param: {len(values)} mean_value(s) for "
                            f"{channels} channels (give 1 or {channels})")
        return values.reshape(channels, 1, 1)

    def transform(self, image, layout="chw"):
        """One image; `layout` "hwc" for interleaved decoded pixels, "chw" for Datum raw."""
        arr = np.asarray(image)
        if arr.ndim == 2:
            arr = arr[None]
        elif layout == "hwc":
            arr = arr.transpose(2, 0, 1)
        return self._transform_chw(arr.astype(np.float32, copy=False))

    def transform_hwc_batch(self, batch):
        """B x H x W x C uint8 -> B x C x H' x W' float32, equal to calling `transform` on each
        image in order (the same random draws in the same order), without per-image Python
        work beyond the draws."""
        arr = np.asarray(batch)
        count, height, width, channels = arr.shape
        crop = int(self.param.crop_size)
        if crop and (crop > height or crop > width):
            raise DataError(f"transform_param: crop_size {crop} larger than image "
                            f"{height}x{width}")
        out_h, out_w = (crop, crop) if crop else (height, width)
        mirror, h_off, w_off = self._draws(count, height, width, crop)
        chw = arr.transpose(0, 3, 1, 2)
        if not crop or (not self.train):
            top, left = h_off[0], w_off[0]
            out = chw[:, :, top:top + out_h, left:left + out_w].astype(np.float32)
        else:
            out = np.empty((count, channels, out_h, out_w), dtype=np.float32)
            for i in range(count):
                out[i] = chw[i, :, h_off[i]:h_off[i] + out_h, w_off[i]:w_off[i] + out_w]
        if self.mean is not None:
            if self.mean.shape != (channels, height, width):
                raise DataError(f"transform_param: mean_file {self.param.mean_file} has shape "
                                f"{tuple(self.mean.shape)}, images are "
                                f"{(channels, height, width)}")
            if crop and self.train:
                for i in range(count):
                    out[i] -= self.mean[:, h_off[i]:h_off[i] + out_h, w_off[i]:w_off[i] + out_w]
            else:
                out -= self.mean[:, h_off[0]:h_off[0] + out_h, w_off[0]:w_off[0] + out_w]
        else:
            values = self._mean_for(channels)
            if values is not None:
                out -= values
        out *= np.float32(self.scale)
        if mirror.any():
            out[mirror] = out[mirror][:, :, :, ::-1]
        return out

    def _draws(self, count, height, width, crop):
        """Per image, in `transform`'s order: the mirror coin, then the crop offsets."""
        mirror = np.zeros(count, dtype=bool)
        h_off = np.full(count, (height - crop) // 2 if crop else 0)
        w_off = np.full(count, (width - crop) // 2 if crop else 0)
        use_mirror = bool(self.param.mirror)
        random_crop = bool(crop) and self.train
        if not (use_mirror or random_crop):
            return mirror, h_off, w_off
        for i in range(count):
            if use_mirror:
                mirror[i] = bool(self.rng.integers(2))
            if random_crop:
                h_off[i] = int(self.rng.integers(height - crop + 1))
                w_off[i] = int(self.rng.integers(width - crop + 1))
        return mirror, h_off, w_off

    def transform_batch(self, images, layout="chw"):
        """A list (or N-d array) of same-sized images -> N x C x H' x W' float32."""
        return np.stack([self.transform(img, layout) for img in images])

    def _transform_chw(self, arr):
        channels, height, width = arr.shape
        crop = int(self.param.crop_size)
        mirror = bool(self.param.mirror) and bool(self.rng.integers(2))
        h_off = w_off = 0
        if crop:
            if crop > height or crop > width:
                raise DataError(f"transform_param: crop_size {crop} larger than image "
                                f"{height}x{width}")
            if self.train:
                h_off = int(self.rng.integers(height - crop + 1))
                w_off = int(self.rng.integers(width - crop + 1))
            else:
                h_off, w_off = (height - crop) // 2, (width - crop) // 2
            out_h = out_w = crop
        else:
            out_h, out_w = height, width
        window = (slice(None), slice(h_off, h_off + out_h), slice(w_off, w_off + out_w))
        out = arr[window]
        if self.mean is not None:
            if self.mean.shape != (channels, height, width):
                raise DataError(f"transform_param: mean_file {self.param.mean_file} has shape "
                                f"{tuple(self.mean.shape)}, images are "
                                f"{(channels, height, width)}")
            out = out - self.mean[window]
        else:
            values = self._mean_for(channels)
            if values is not None:
                out = out - values
        out = out * np.float32(self.scale)
        if mirror:
            out = out[:, :, ::-1]
        return np.ascontiguousarray(out, dtype=np.float32)
