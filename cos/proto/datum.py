"""Caffe Datum records: raw C,H,W bytes, float_data, or encoded JPEG/PNG decoded to BGR like OpenCV."""

import io

import numpy as np

from ..errors import DataError
from . import caffe_pb2


def decode_image(data, color=None, where="image"):
    """Decode JPEG/PNG bytes to an H×W×C uint8 array in OpenCV's BGR order.

    color=None keeps the file's channels like cv::imdecode(-1) (gray → 1, colour → 3 BGR,
    with alpha → 4 BGRA), True forces 3-channel BGR, False forces 1-channel gray.
    """
    pixels = _decode_jpeg_fast(data, color)
    if pixels is None:
        pixels = _decode_pillow(data, color, where)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.shape[2] in (3, 4):
        pixels = np.concatenate([pixels[:, :, 2::-1], pixels[:, :, 3:]], axis=2)
    return np.ascontiguousarray(pixels)


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
        reason = _first_line(err)
        if "cannot identify image file" in reason:
            reason = "not a JPEG or PNG image"
        raise DataError(f"{where}: cannot decode image ({reason})") from None
    img = img.convert(_target_mode(img, color))
    return np.asarray(img)


def _target_mode(img, color):
    """The Pillow mode OpenCV's imdecode would give: L (gray), RGB or RGBA."""
    if color is False:
        return "L"
    if color is True:
        return "RGB"
    if img.mode in ("1", "L", "I", "I;16", "I;16B", "F"):
        return "L"
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        return "RGBA"
    return "RGB"


def _first_line(err):
    return (str(err).splitlines() or [type(err).__name__])[0]


def encode_image(bgr, fmt="png"):
    """Encode an H×W×C (BGR, BGRA or gray) uint8 array as PNG or JPEG bytes."""
    from PIL import Image
    arr = np.asarray(bgr, dtype=np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 3:
        arr = np.concatenate([arr[:, :, 2::-1], arr[:, :, 3:]], axis=2)
    buf = io.BytesIO()
    kind = "JPEG" if fmt.lower() in ("jpg", "jpeg") else "PNG"
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format=kind)
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
        return arr.reshape(shape).copy()  # writable, like pycaffe's
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


def encode_datum(image, label=None, fmt="png"):
    """An encoded Datum from image file bytes, or from an H×W×C BGR array (encoded as `fmt`)."""
    data = image if isinstance(image, (bytes, bytearray)) else encode_image(image, fmt)
    datum = caffe_pb2.Datum(data=bytes(data), encoded=True)
    if label is not None:
        datum.label = int(label)
    return datum


encoded_datum = encode_datum


def color_flag(force_color=False, force_gray=False, where="transform_param"):
    """TransformationParameter's force_color/force_gray as decode_image's `color` argument."""
    if force_color and force_gray:
        raise DataError(f"{where}: force_color and force_gray cannot both be set")
    return True if force_color else (False if force_gray else None)


def parse_datum(value, where="datum"):
    datum = caffe_pb2.Datum()
    try:
        datum.ParseFromString(value)
    except Exception:
        raise DataError(f"{where}: corrupt record (not a Caffe Datum)") from None
    return datum
