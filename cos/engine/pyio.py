"""pycaffe's `caffe.io`: blob/datum conversions, image loading and resizing, and the Transformer
that turns H×W×C images into network input."""

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import CosError, DataError
from ..proto import caffe_pb2
from ..proto.blobs import array_to_blob, blob_to_array
from ..proto.datum import array_to_datum as _array_to_datum
from ..proto.datum import datum_to_array as _datum_to_array


# ---- blobs and datums ---------------------------------------------------------------------

def blobproto_to_array(blob, return_diff=False):
    """The blob's data (or diff) shaped by its legacy 4-D dims if present, else `shape.dim`."""
    return blob_to_array(blob, diff=return_diff)


def array_to_blobproto(arr, diff=None):
    """A BlobProto holding `shape` and `data` (and `diff` when given) of the array."""
    arr = np.asarray(arr)
    if diff is not None and np.shape(diff) != arr.shape:
        raise CosError(f"array_to_blobproto: diff shape {np.shape(diff)} differs from data "
                       f"shape {arr.shape}")
    return array_to_blob(arr, diff=diff)


def arraylist_to_blobprotovector_str(arraylist):
    vec = caffe_pb2.BlobProtoVector()
    vec.blobs.extend(array_to_blobproto(a) for a in arraylist)
    return vec.SerializeToString()


def blobprotovector_str_to_arraylist(data):
    vec = caffe_pb2.BlobProtoVector()
    vec.ParseFromString(data)
    return [blobproto_to_array(b) for b in vec.blobs]


def array_to_datum(arr, label=None):
    return _array_to_datum(arr, label)


def datum_to_array(datum):
    return _datum_to_array(datum)


# ---- images ------------------------------------------------------------------------------

def load_image(filename, color=True):
    """An image file as float32 H×W×3 RGB in [0, 1] (H×W×1 grey when `color` is False)."""
    try:
        with Image.open(filename) as img:
            img = img.convert("RGB" if color else "L")
            arr = np.asarray(img, dtype=np.float32) / 255.0
    except (OSError, ValueError) as err:
        raise DataError(f"{filename}: cannot read image ({str(err).splitlines()[0]})") from None
    return arr if arr.ndim == 3 else arr[:, :, np.newaxis]


def resize_image(im, new_dims, interp_order=1):
    """Resize an H×W×K image to new_dims (h, w): bilinear (order 1) or nearest (order 0), with
    pixel centres aligned as skimage does; constant images stay exactly constant."""
    im = np.asarray(im, dtype=np.float32)
    h, w = (int(d) for d in new_dims)
    if im.ndim == 2:
        return resize_image(im[:, :, np.newaxis], new_dims, interp_order)[:, :, 0]
    if im.shape[:2] == (h, w):
        return im.copy()
    lo, hi = float(im.min()), float(im.max())
    if hi == lo:
        return np.full((h, w, im.shape[2]), lo, dtype=np.float32)
    x = torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1)))[None]
    if interp_order == 0:
        out = F.interpolate(x, size=(h, w), mode="nearest")
    else:
        out = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    return out[0].numpy().transpose(1, 2, 0).astype(np.float32)


def oversample(images, crop_dims):
    """Ten crops per image: four corners and the centre, then their mirrors (pycaffe's order)."""
    images = [np.asarray(im) for im in images]
    ch, cw = (int(d) for d in crop_dims)
    h, w, k = images[0].shape
    if ch > h or cw > w:
        raise CosError(f"oversample: crop {ch}x{cw} is larger than the image {h}x{w}")
    boxes = [(i, j) for i in (0, h - ch) for j in (0, w - cw)]
    boxes.append((int(h / 2.0 - ch / 2.0), int(w / 2.0 - cw / 2.0)))
    crops = np.empty((10 * len(images), ch, cw, k), dtype=np.float32)
    n = 0
    for im in images:
        for i, j in boxes:
            crops[n] = im[i:i + ch, j:j + cw, :]
            crops[n + 5] = crops[n][:, ::-1, :]
            n += 1
        n += 5
    return crops


# ---- Transformer -------------------------------------------------------------------------

class Transformer:
    """Preprocess H×W×C images for the named inputs: resize, transpose, channel swap,
    raw scale, mean subtraction, input scale — the order pycaffe applies them in."""

    def __init__(self, inputs):
        self.inputs = {k: tuple(int(d) for d in v) for k, v in inputs.items()}
        self.transpose, self.channel_swap = {}, {}
        self.raw_scale, self.mean, self.input_scale = {}, {}, {}

    def _check(self, name):
        if name not in self.inputs:
            raise CosError(f"Transformer: '{name}' is not one of the inputs "
                           f"{sorted(self.inputs)}")

    def preprocess(self, name, data):
        self._check(name)
        out = np.asarray(data).astype(np.float32, copy=True)
        dims = self.inputs[name][2:]
        if out.shape[:2] != dims:
            out = resize_image(out, dims)
        if name in self.transpose:
            out = out.transpose(self.transpose[name])
        if name in self.channel_swap:
            out = out[list(self.channel_swap[name]), :, :]
        if name in self.raw_scale:
            out = out * self.raw_scale[name]
        if name in self.mean:
            out = out - self.mean[name]
        if name in self.input_scale:
            out = out * self.input_scale[name]
        return np.ascontiguousarray(out, dtype=np.float32)

    def deprocess(self, name, data):
        """Undo preprocess (except the resize)."""
        self._check(name)
        out = np.array(data, dtype=np.float32).squeeze()
        if name in self.input_scale:
            out = out / self.input_scale[name]
        if name in self.mean:
            out = out + self.mean[name]
        if name in self.raw_scale:
            out = out / self.raw_scale[name]
        if name in self.channel_swap:
            out = out[np.argsort(self.channel_swap[name]), :, :]
        if name in self.transpose:
            out = out.transpose(np.argsort(self.transpose[name]))
        return out

    def set_transpose(self, name, order):
        self._check(name)
        if len(order) != len(self.inputs[name]) - 1:
            raise CosError(f"Transformer.set_transpose('{name}'): order {tuple(order)} needs "
                           f"{len(self.inputs[name]) - 1} axes")
        self.transpose[name] = tuple(order)

    def set_channel_swap(self, name, order):
        self._check(name)
        if len(order) != self.inputs[name][1]:
            raise CosError(f"Transformer.set_channel_swap('{name}'): order {tuple(order)} needs "
                           f"{self.inputs[name][1]} channels")
        self.channel_swap[name] = tuple(order)

    def set_raw_scale(self, name, scale):
        self._check(name)
        self.raw_scale[name] = scale

    def set_input_scale(self, name, scale):
        self._check(name)
        self.input_scale[name] = scale

    def set_mean(self, name, mean):
        """(C,) is broadcast over pixels; (C,H,W) or (H,W) must match the input's shape."""
        self._check(name)
        mean = np.asarray(mean, dtype=np.float32)
        shape = self.inputs[name]
        if mean.ndim == 1:
            if mean.shape[0] != shape[1]:
                raise CosError(f"Transformer.set_mean('{name}'): {mean.shape[0]} mean channels "
                               f"but the input has {shape[1]}")
            mean = mean[:, np.newaxis, np.newaxis]
        else:
            full = mean.shape if mean.ndim == 3 else (1,) + mean.shape
            if mean.ndim not in (2, 3) or full != shape[1:]:
                raise CosError(f"Transformer.set_mean('{name}'): mean shape {mean.shape} does "
                               f"not match the input shape {shape[1:]}")
        self.mean[name] = mean
