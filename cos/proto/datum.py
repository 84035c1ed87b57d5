"""Caffe Datum records: raw C,H,W bytes, float_data, or encoded JPEG/PNG decoded to BGR like OpenCV."""

import io

import numpy as np

from ..errors import DataError
from . import caffe_pb2


def decode_image(data, color=None, where="image"):
    """Decode JPEG/PNG bytes to an H×W×C uint8 array in OpenCV's BGR order.

    color=None keeps the file's channels (gray → 1, colour → 3), True forces 3-channel BGR,
    False forces 1-channel gray (OpenCV's IMREAD_COLOR / IMREAD_GRAYSCALE).
    """
    rgb = _decode_jpeg_fast(data, color)
    if rgb is None:
        rgb = _decode_pillow(data, color, where)
    if rgb.ndim == 2:
        rgb = rgb[:, :, None]
    if rgb.shape[2] == 3:
        return np.ascontiguousarray(rgb[:, :, ::-1])
    return np.ascontiguousarray(rgb)


def _decode_jpeg_fast(data, color):
    if data[:2] != b"\xff\xd8":
        return None
    try:
        import simplejpeg
    except ImportError:
        return None
    try:
        if color is False:
            return simplejpeg.decode_jpeg(data, colorspace="GRAY")
        if color is None:
            _, _, _, subsampling = simplejpeg.decode_jpeg_header(data)
            if subsampling == "Gray":
                return simplejpeg.decode_jpeg(data, colorspace="GRAY")
        return simplejpeg.decode_jpeg(data, colorspace="RGB")
    except ValueError:
        return None


def _decode_pillow(data, color, where):
    from PIL import Image
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception as err:  # Pillow raises several types for bad data
        raise DataError(f"{where}: cannot decode image ({err})") from None
    if color is False:
        img = img.convert("L")
    elif color is True or img.mode not in ("L", "I;16", "I"):
        img = img.convert("RGB")
    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        arr = (arr >> 8).astype(np.uint8) if arr.dtype == np.uint16 else arr.astype(np.uint8)
    return arr


def encode_image(bgr, fmt="png"):
    """Encode an H×W×C (BGR or gray) uint8 array as PNG or JPEG bytes."""
    from PIL import Image
    arr = np.asarray(bgr, dtype=np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 3:
        arr = arr[:, :, ::-1]
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="JPEG" if fmt in ("jpg", "jpeg") else "PNG")
    return buf.getvalue()


def datum_to_array(datum, color=None, where="datum"):
    """The Datum as a C×H×W array: uint8 for `data`, float for `float_data`, decoded if encoded."""
    if datum.encoded:
        return decode_image(datum.data, color, where).transpose(2, 0, 1)
    shape = (datum.channels, datum.height, datum.width)
    if len(datum.data):
        arr = np.frombuffer(datum.data, dtype=np.uint8)
        if arr.size != int(np.prod(shape)):
            raise DataError(f"{where}: has {arr.size} bytes but channels×height×width = "
                            f"{shape[0]}×{shape[1]}×{shape[2]}")
        return arr.reshape(shape)
    values = np.array(datum.float_data, dtype=np.float64)
    if values.size != int(np.prod(shape)):
        raise DataError(f"{where}: has {values.size} float values but channels×height×width = "
                        f"{shape[0]}×{shape[1]}×{shape[2]}")
    return values.reshape(shape)


def array_to_datum(arr, label=None):
    """A C×H×W array → Datum (uint8 → `data` bytes, anything else → `float_data`), as pycaffe."""
    arr = np.asarray(arr)
    if arr.ndim != 3:
        raise DataError(f"array_to_datum needs a 3-D C×H×W array, got shape {arr.shape}")
    datum = caffe_pb2.Datum()
    datum.channels, datum.height, datum.width = (int(s) for s in arr.shape)
    if arr.dtype == np.uint8:
        datum.data = arr.tobytes()
    else:
        datum.float_data.extend(arr.astype(np.float64).ravel().tolist())
    if label is not None:
        datum.label = int(label)
    return datum


def encoded_datum(image_bytes, label=None):
    datum = caffe_pb2.Datum()
    datum.data = image_bytes
    datum.encoded = True
    if label is not None:
        datum.label = int(label)
    return datum


def parse_datum(value, where="datum"):
    datum = caffe_pb2.Datum()
    try:
        datum.ParseFromString(value)
    except Exception:
        raise DataError(f"{where}: corrupt record (not a Caffe Datum)") from None
    return datum
