"""Text prototxt read/write for nets and solvers, with Caffe's upgrades applied on read."""

import os
import re

from google.protobuf import text_format

from ..errors import CosError, ParseError
from . import caffe_pb2, upgrade
from .paths import read_text, write_bytes_atomic


def parse_text(text, message, path="<string>"):
    """Parse protobuf text into `message`; errors become `path:line:col: what is wrong`."""
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as err:
        raise ParseError(_describe(err, path, text)) from None
    return message


def _describe(err, path, text):
    line, col = err.GetLine(), err.GetColumn()
    what = re.sub(r"^\d+:\d+ : ", "", str(err))
    what = re.sub(r"^'.*?': (?=[A-Z])", "", what)  # protobuf repeats the whole line; drop it
    what = _explain(what, _field_before(text, line, col))
    where = f"{path}:{line}:{col}" if line else path
    return f"{where}: {what}"


def _field_before(text, line, col):
    """The field name written just before line:col (for enum errors, which omit it)."""
    lines = text.splitlines()
    if not line or line > len(lines):
        return None
    m = re.search(r"(\w+)\s*:\s*\S*\s*$", lines[line - 1][:max(col - 1, 0)])
    return m.group(1) if m else None


def _explain(what, field):
    # protobuf says: Message type "caffe.X" has no field named "y".
    m = re.search(r'Message type "([\w.]+)" has no field named "?(\w+)"?', what)
    if m:
        return f"unknown field '{m.group(2)}' in message {m.group(1)}"
    m = re.search(r'Enum type "([\w.]+)" has no value (?:named|with number) (-?\w+)', what)
    if m:
        enum = _enum(m.group(1))
        names = ", ".join(v.name for v in enum.values) if enum else "?"
        owner = enum.containing_type.full_name if enum and enum.containing_type else None
        if field and owner:
            where = f" for field '{field}' of message {owner}"
        elif field:
            where = f" for field '{field}' (enum {m.group(1)})"
        else:
            where = f" for enum {m.group(1)}"
        return f"unknown enum value '{m.group(2)}'{where} (expected one of {names})"
    return what


def _enum(full_name):
    try:
        return caffe_pb2.DESCRIPTOR.pool.FindEnumTypeByName(full_name)
    except KeyError:
        return None


def parse_net_text(text, path="<string>"):
    net = parse_text(text, caffe_pb2.NetParameter(), path)
    return upgrade.upgrade_net(net, path)


def parse_solver_text(text, path="<string>"):
    solver = parse_text(text, caffe_pb2.SolverParameter(), path)
    return upgrade.upgrade_solver(solver, path)


def read_net(path):
    """Read a net prototxt (any Caffe version) as an upgraded NetParameter."""
    return parse_net_text(_read(path, "net prototxt"), str(path))


def read_solver(path):
    """Read a solver prototxt as an upgraded SolverParameter."""
    return parse_solver_text(_read(path, "solver prototxt"), str(path))


def _read(path, what):
    try:
        return read_text(path)
    except (FileNotFoundError, IsADirectoryError):
        raise CosError(f"{path}: {what} not found (cwd: {os.getcwd()})") from None
    except UnicodeDecodeError:
        raise ParseError(f"{path}: not a text {what} (binary file?)") from None


def to_text(message):
    return text_format.MessageToString(message)


def write_text(message, path):
    write_bytes_atomic(path, to_text(message).encode("utf-8"))
