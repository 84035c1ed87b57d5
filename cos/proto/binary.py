"""Binary protos: .caffemodel (NetParameter), .solverstate (SolverState), .binaryproto (BlobProto)."""

from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet

from ..errors import CosError, ParseError
from . import caffe_pb2, upgrade
from .paths import read_bytes, write_bytes_atomic

# Caffe reads binary protos with an INT_MAX byte limit; Python's protobuf has no smaller one.
MAX_BYTES = 2 ** 31 - 1

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

NET = "Caffe NetParameter (binary .caffemodel)"
STATE = "Caffe SolverState (binary .solverstate)"
BLOB = "Caffe BlobProto (binary .binaryproto mean file)"


def read_message(path, cls, what):
    """Parse a binary proto file, with a one-line error naming the file and what was expected."""
    data = _read(path, what)
    if not data:
        raise ParseError(f"{path}: empty file, not a {what}")
    if data.startswith(HDF5_MAGIC):
        raise ParseError(f"{path}: an HDF5 file, not a {what}; HDF5 weights and snapshots "
                         "are not supported (use snapshot_format: BINARYPROTO)")
    if len(data) > MAX_BYTES:
        raise ParseError(f"{path}: {len(data)} bytes, larger than the 2 GB Caffe can read ({what})")
    message = cls()
    try:
        message.ParseFromString(data)
    except (DecodeError, RuntimeError) as err:
        raise ParseError(f"{path}: not a {what}: truncated or not a Caffe binary proto "
                         f"({_short(err)})") from None
    # Garbage sometimes decodes as fields this schema does not have; Caffe never writes those.
    if len(UnknownFieldSet(message)):
        raise ParseError(f"{path}: not a {what}: it holds fields the Caffe schema does not "
                         "define (wrong file type?)")
    return message


def _read(path, what):
    try:
        return read_bytes(path)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise CosError(f"{path}: file not found (expected a {what})") from None


def _short(err):
    text = str(err).splitlines()[0][:120] if str(err) else ""
    return text or type(err).__name__


def read_net_binary(path):
    """Read a .caffemodel as an upgraded NetParameter (V0/V1 models load too)."""
    net = read_message(path, caffe_pb2.NetParameter, NET)
    return upgrade.upgrade_net(net, str(path))


def read_solver_state(path):
    return read_message(path, caffe_pb2.SolverState, STATE)


def read_blob_proto(path):
    """Read a .binaryproto mean file."""
    return read_message(path, caffe_pb2.BlobProto, BLOB)


def write_binary(message, path):
    """Serialize `message` to `path` atomically (temp file, fsync, rename)."""
    write_bytes_atomic(path, message.SerializeToString())
