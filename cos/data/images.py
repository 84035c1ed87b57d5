"""Image samples -> transformed arrays (spec 4.6): decode, skip or resize, then Caffe's transformer.

A sample is `(id, label, channels, height, width, encoded, data)` with raw pixels interleaved
HWC. Resizing is bilinear with OpenCV's INTER_LINEAR pixel mapping (half-pixel centres, edges
clamped), computed in NumPy float32 and rounded half up; it agrees with cv::resize to within
one grey level (OpenCV rounds through 11-bit fixed-point weights). Pillow's BILINEAR is not
used because it antialiases when shrinking, which OpenCV does not.
"""

import logging

import numpy as np

from ..errors import DataError
from ..proto.datum import color_flag, decode_image
from .transformer import DataTransformer

log = logging.getLogger("cos.data")


def declared_dims(layer):
    """(channels, height, width) from memory_data_param; 0 where unset (Data layers: all 0)."""
    if layer.HasField("memory_data_param"):
        p = layer.memory_data_param
        return int(p.channels), int(p.height), int(p.width)
    return 0, 0, 0


def image_top_shapes(layer, image_shape=None):
    """Per-sample top shapes after the transform: [(C, H', W'), ()].

    MemoryData declares the blob it outputs, i.e. the size after the host's transform (a
    reference net declares 227x227 with crop_size 227 for 256x256 images). A Data layer
    declares nothing: `image_shape` (C, H, W) of its first record, with crop_size applied.
    """
    declared = declared_dims(layer)
    if all(declared):
        return [tuple(declared), ()]
    dims = list(declared)
    if image_shape is not None:
        dims = [d or int(s) for d, s in zip(dims, image_shape)]
    channels, height, width = dims
    if not (channels and height and width):
        raise DataError(f"layer '{layer.name}': image size unknown: set memory_data_param "
                        "channels, height and width")
    crop = int(layer.transform_param.crop_size)
    if crop:
        height = width = crop
    return [(channels, height, width), ()]


def _axis_taps(src, dst):
    """OpenCV INTER_LINEAR source taps along one axis: (low index, high index, weight of high)."""
    pos = (np.arange(dst, dtype=np.float64) + 0.5) * (src / dst) - 0.5
    pos = np.clip(pos, 0.0, src - 1)
    low = np.floor(pos).astype(np.int64)
    high = np.minimum(low + 1, src - 1)
    return low, high, (pos - low).astype(np.float32)


def resize_bilinear(image, height, width):
    """H x W x C uint8 -> height x width x C uint8, bilinear like cv::resize(INTER_LINEAR)."""
    src = np.asarray(image, dtype=np.float32)
    rows_lo, rows_hi, fy = _axis_taps(src.shape[0], height)
    cols_lo, cols_hi, fx = _axis_taps(src.shape[1], width)
    fy = fy[:, None, None]
    fx = fx[None, :, None]
    top = src[rows_lo] * (1 - fy) + src[rows_hi] * fy
    out = top[:, cols_lo] * (1 - fx) + top[:, cols_hi] * fx
    return np.floor(out + 0.5).clip(0, 255).astype(np.uint8)


class ImageConverter:
    """sample -> (id, [C x H' x W' float32 image, float32 label]) or None to drop the sample."""

    def __init__(self, layer, phase, seed=None, resize=False, mean=None):
        self.name = layer.name
        self.resize = bool(resize)
        self.channels, self.height, self.width = declared_dims(layer)
        param = layer.transform_param
        self.color = None  # MemoryData sources decode "unchanged" (spec 4.6)
        if not layer.HasField("memory_data_param"):
            # Caffe's Data layer honours force_color / force_gray when decoding
            self.color = color_flag(param.force_color, param.force_gray,
                                    f"layer '{layer.name}' transform_param")
        if mean is not None:
            mean = np.asarray(mean, dtype=np.float32)
            self.transformer = DataTransformer(param, phase, seed,
                                               mean_file_loader=lambda _path: mean)
        else:
            self.transformer = DataTransformer(param, phase, seed)

    def __call__(self, sample):
        sid = sample[0]
        label = self.label(sid, sample[1])
        image = self.image(sample)
        if image is None:
            return None
        self.check_channels(sid, image)
        try:
            out = self.transformer.transform(image, layout="hwc")
        except DataError as err:
            raise DataError(f"image {sid}: {err}") from None
        self.check_size(sid, image, out)
        return sid, [out, label]

    def convert_batch(self, samples):
        """A whole batch at once when every sample is raw pixels of one size that needs no
        resize (the common LMDB case): (ids, [images, labels]); else None, and the caller
        converts sample by sample. Results equal the per-sample path's exactly."""
        ids, texts, depths, heights, widths, encoded, datas = zip(*samples)
        channels, height, width = depths[0], heights[0], widths[0]
        size = channels * height * width
        if height <= 0 or width <= 0 or channels <= 0 or any(encoded):
            return None
        if self.resize and (height, width) != (self.height or height, self.width or width):
            return None
        if {*heights} != {height} or {*widths} != {width} or {*depths} != {channels} \
                or {*map(len, datas)} != {size}:
            return None
        ids = list(ids)
        try:  # one parse for the batch; the per-sample path names a bad label
            labels = np.array(texts, dtype=np.int64)
        except (ValueError, TypeError, OverflowError):
            labels = [self.label(sid, text) for sid, text in zip(ids, texts)]
        labels = np.asarray(labels, dtype=np.float32)
        pixels = np.frombuffer(b"".join(datas), np.uint8)
        pixels = pixels.reshape(len(samples), height, width, channels)
        self.check_channels(ids[0], pixels[0])
        try:
            images = self.transformer.transform_hwc_batch(pixels)
        except DataError as err:
            raise DataError(f"image {ids[0]}: {err}") from None
        self.check_size(ids[0], pixels[0], images[0])
        return ids, [images, labels]

    def label(self, sid, text):
        try:
            return np.asarray(float(int(str(text).strip())), dtype=np.float32)
        except ValueError:
            raise DataError(f"image {sid}: label {text!r} is not an integer "
                            f"(layer '{self.name}')") from None

    def image(self, sample):
        """The sample's pixels as H x W x C uint8 (decoded, resized if asked), or None to skip."""
        sid, _, channels, height, width, encoded, data = sample
        if height > 0 and width > 0:
            if encoded:
                image = self._decode(sid, data, self.color)
                if image is None or image.shape[:2] != (height, width):
                    log.warning("Skip image %s", sid)
                    return None
            else:
                image = _wrap_raw(sid, data, channels, height, width)
            if self.resize and self.height and self.width \
                    and image.shape[:2] != (self.height, self.width):
                image = resize_bilinear(image, self.height, self.width)
            return image
        image = self._decode(sid, data, self._unknown_size_color())
        if image is None or image.shape[1] == 0:
            log.warning("Skipped image %s", sid)
            return None
        if self.resize and self.height and self.width:
            image = resize_bilinear(image, self.height, self.width)
        return image

    def _unknown_size_color(self):
        if self.channels == 1:
            return False
        if self.channels == 3:
            return True
        return self.color

    def _decode(self, sid, data, color):
        """Decoded pixels, or None when the bytes are no image (OpenCV gives an empty Mat)."""
        try:
            return decode_image(bytes(data), color=color, where=f"image {sid}")
        except DataError as err:
            log.warning("%s", err)
            return None

    def check_channels(self, sid, image):
        channels = image.shape[2]
        if self.channels and channels != self.channels:
            raise DataError(f"image {sid} has {channels} channel(s) but layer '{self.name}' "
                            f"expects {self.channels} (memory_data_param channels)")

    def check_size(self, sid, image, out):
        """The transformed image must have the layer's declared size (when declared)."""
        channels, height, width = out.shape
        want = (self.channels or channels, self.height or height, self.width or width)
        if (channels, height, width) == want:
            return
        before = "x".join(str(d) for d in (image.shape[2], *image.shape[:2]))
        raise DataError(f"image {sid} is {before} ({channels}x{height}x{width} after the "
                        f"transform) but layer '{self.name}' expects "
                        f"{want[0]}x{want[1]}x{want[2]} (memory_data_param channels x height x "
                        "width); use -resize, or crop_size, to make them agree")


def _wrap_raw(sid, data, channels, height, width):
    """Raw interleaved HWC bytes -> H x W x C uint8 (channels 0: inferred from the length)."""
    pixels = np.frombuffer(bytes(data), dtype=np.uint8)
    if channels <= 0 and pixels.size % (height * width) == 0:
        channels = pixels.size // (height * width)
    if channels <= 0 or pixels.size != channels * height * width:
        raise DataError(f"image {sid}: {pixels.size} bytes of raw data for "
                        f"{channels}x{height}x{width} pixels")
    return pixels.reshape(height, width, channels)
