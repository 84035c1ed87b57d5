"""Binary protos: .caffemodel (NetParameter), .solverstate (SolverState), .binaryproto (BlobProto)."""

from google.protobuf.message import DecodeError

from ..errors import CosError, ParseError
from . import caffe_pb2, upgrade
from .paths import read_bytes, write_bytes_atomic

# Caffe reads binary protos with a 2 GB limit; Python's protobuf has no smaller one.
MAX_BYTES = 2 ** 31 - 1


def read_message(path, cls, what):
    """Parse a binary proto file, with a one-line error naming the file and what was expected."""
    try:
        data = read_bytes(path)
    except (FileNotFoundError, IsADirectoryError):
        raise CosError(f"{path}: {what} not found") from None
    if len(data) > MAX_BYTES:
        raise ParseError(f"{path}: {what} is larger than 2 GB, which Caffe cannot read")
    message = cls()
    try:
        message.ParseFromString(data)
    except (DecodeError, RuntimeError) as err:
        raise ParseError(f"{path}: not a valid {what} ({_short(err)}); "
                         "the file is truncated or is not a Caffe binary proto") from None
    return message


def _short(err):
    return str(err).splitlines()[0][:120] or type(err).__name__


def read_net_binary(path):
    """Read a .caffemodel as an upgraded NetParameter (V0/V1 models load too)."""
    net = read_message(path, caffe_pb2.NetParameter, "Caffe model (binary NetParameter)")
    return upgrade.upgrade_net(net, str(path))


def read_solver_state(path):
    return read_message(path, caffe_pb2.SolverState, "solver state (binary SolverState)")


def read_blob_proto(path):
    """Read a .binaryproto mean file."""
    return read_message(path, caffe_pb2.BlobProto, "mean file (binary BlobProto)")


def write_binary(message, path):
    """Serialize `message` to `path` atomically (temp file, fsync, rename)."""
    write_bytes_atomic(path, message.SerializeToString())
