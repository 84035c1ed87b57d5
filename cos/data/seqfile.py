"""Hadoop SequenceFiles (format version 6, "SEQ\\x06") of BytesWritable keys and values, in
pure Python: the files CaffeOnSpark's Binary2Sequence/LMDB2Sequence wrote and
SeqImageDataSource reads.

Layout (Hadoop's org.apache.hadoop.io.SequenceFile):
  header   "SEQ" 6, key class (Text), value class (Text), compressed (bool),
           block-compressed (bool), codec class (Text, only when compressed),
           metadata (int32 count + Text pairs), 16-byte sync marker
  records  int32 record length, int32 key length, key, value
           (record-compressed: the value is a zlib stream of its own)
  blocks   (block-compressed) sync escape, vint record count, then four zlib buffers
           (each vint size + data): key lengths, keys, value lengths, values
  sync     int32 -1 then the 16 sync bytes, between records every ~2000 bytes
All integers are big-endian (Java's DataOutput).
"""

import hashlib
import io
import os
import struct
import tempfile
import time
import uuid
import zlib

from ..errors import DataError
from ..proto import paths

BYTES_WRITABLE = "org.apache.hadoop.io.BytesWritable"
DEFAULT_CODEC = "org.apache.hadoop.io.compress.DefaultCodec"
MAGIC = b"SEQ"
VERSION = 6
SYNC_ESCAPE = -1
SYNC_SIZE = 16
# Hadoop 2.x (what the original ran) wrote a sync every 100 * (4 + 16) bytes; Hadoop 3
# raised it to 100 KB. Readers accept any spacing.
SYNC_INTERVAL = 100 * (4 + SYNC_SIZE)


# ---- Hadoop's small serialisations ------------------------------------------------

def write_vint(value):
    """Hadoop WritableUtils.writeVLong: one byte for -112..127, else a length byte (-113..-120
    positive, -121..-128 negative) followed by the big-endian magnitude (one's complement
    for negatives)."""
    if -112 <= value <= 127:
        return struct.pack(">b", value)
    marker = -112
    if value < 0:
        value = ~value
        marker = -120
    size = (value.bit_length() + 7) // 8
    return struct.pack(">b", marker - size) + value.to_bytes(size, "big")


def decode_vint(first, rest):
    """The value of a vint whose first byte is `first` (signed) and further bytes `rest`."""
    if first >= -112:
        return first
    value = int.from_bytes(rest, "big")
    return ~value if first < -120 else value


def vint_size(first):
    """Total bytes of a vint, from its first byte (signed)."""
    if first >= -112:
        return 1
    return (-119 - first) if first < -120 else (-111 - first)


def text(value):
    """Hadoop Text: vint byte length, then UTF-8."""
    data = value.encode("utf-8")
    return write_vint(len(data)) + data


def bytes_writable(data):
    """Hadoop BytesWritable: int32 length, then the bytes."""
    return struct.pack(">i", len(data)) + bytes(data)


def unwrap_bytes_writable(data, where):
    """The payload of a serialised BytesWritable; a length that disagrees -> DataError."""
    if len(data) < 4:
        raise DataError(f"{where}: BytesWritable of {len(data)} bytes has no length prefix")
    (size,) = struct.unpack_from(">i", data)
    if size != len(data) - 4:
        raise DataError(f"{where}: BytesWritable says {size} bytes but holds {len(data) - 4}")
    return bytes(data[4:])


# ---- writer -------------------------------------------------------------------------

def write_sequence_file(path, pairs, metadata=None):
    """Write (key bytes, value bytes) pairs as an uncompressed SequenceFile<BytesWritable,
    BytesWritable>. Readers see the old file or the whole new one (temp file + rename).
    `path`: a local path or file: URI (other URIs go through Hadoop, built in memory).
    Returns the number of records written."""
    if not paths.is_local(path):
        buf = io.BytesIO()
        count = _write_stream(buf, pairs, metadata)
        paths.write_bytes_atomic(path, buf.getvalue())
        return count
    target = os.path.abspath(paths.local_path(path))
    directory = os.path.dirname(target)
    if not os.path.isdir(directory):
        raise DataError(f"{path}: directory {directory} does not exist")
    # a leading "." keeps the half-written file out of Hadoop's input listings
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(target) + ".", suffix=".tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            count = _write_stream(f, pairs, metadata)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return count


def _write_stream(out, pairs, metadata):
    sync = _new_sync()
    header = _header(sync, metadata or {})
    out.write(header)
    pos, last_sync, count = len(header), 0, 0
    for key, value in pairs:
        key_data, value_data = bytes_writable(key), bytes_writable(value)
        if pos >= last_sync + SYNC_INTERVAL:  # Hadoop's Writer.checkAndWriteSync
            out.write(struct.pack(">i", SYNC_ESCAPE) + sync)
            pos += 4 + SYNC_SIZE
            last_sync = pos
        out.write(struct.pack(">ii", len(key_data) + len(value_data), len(key_data)))
        out.write(key_data)
        out.write(value_data)
        pos += 8 + len(key_data) + len(value_data)
        count += 1
    return count


def _header(sync, metadata):
    parts = [MAGIC, bytes([VERSION]), text(BYTES_WRITABLE), text(BYTES_WRITABLE),
             b"\x00", b"\x00", struct.pack(">i", len(metadata))]
    for name in sorted(metadata):  # Hadoop keeps metadata in a TreeMap
        parts += [text(name), text(metadata[name])]
    parts.append(sync)
    return b"".join(parts)


def _new_sync():
    """16 bytes unique to this file, made like Hadoop's (MD5 of a unique id and the time)."""
    seed = f"{uuid.uuid4()}@{time.time_ns()}".encode()
    return hashlib.md5(seed).digest()


# ---- reader -------------------------------------------------------------------------

class Header:
    """What a SequenceFile header says."""

    def __init__(self, key_class, value_class, compressed, block_compressed, codec,
                 metadata, sync):
        self.key_class = key_class
        self.value_class = value_class
        self.compressed = compressed
        self.block_compressed = block_compressed
        self.codec = codec
        self.metadata = metadata
        self.sync = sync


class _Input:
    """A binary stream that raises a one-line DataError on truncation. Lengths are checked
    against the file size first, so a corrupt length never allocates a huge buffer."""

    def __init__(self, stream, where):
        self.stream = stream
        self.where = where
        self.pos = stream.tell()
        self.size = stream.seek(0, os.SEEK_END)
        stream.seek(self.pos)

    def read(self, size, what):
        if size < 0:
            raise DataError(f"{self.where}: negative {what} length {size} at byte {self.pos}")
        if self.pos + size > self.size:
            raise DataError(f"{self.where}: truncated file: {what} needs {size} bytes at "
                            f"byte {self.pos}, only {self.size - self.pos} left")
        data = self.stream.read(size)
        self.pos += len(data)
        return data

    def at_end(self):
        return self.pos >= self.size

    def int32(self, what):
        return struct.unpack(">i", self.read(4, what))[0]

    def vint(self, what):
        first = struct.unpack(">b", self.read(1, what))[0]
        return decode_vint(first, self.read(vint_size(first) - 1, what))

    def text(self, what):
        size = self.vint(what)
        if size < 0:
            raise DataError(f"{self.where}: bad {what} length {size} at byte {self.pos}")
        return self.read(size, what).decode("utf-8", errors="replace")


def read_header(stream, where):
    """Parse the header from a binary stream; anything unsupported -> DataError naming `where`."""
    src = stream if isinstance(stream, _Input) else _Input(stream, where)
    magic = src.read(min(4, src.size - src.pos), "magic")
    if magic[:3] != MAGIC:
        raise DataError(f"{where}: not a Hadoop SequenceFile (starts with {magic[:4]!r}, "
                        "expected b'SEQ\\x06')")
    if len(magic) < 4 or magic[3] != VERSION:
        found = magic[3] if len(magic) == 4 else "none"
        raise DataError(f"{where}: SequenceFile version {found} is not supported "
                        f"(only {VERSION})")
    key_class = src.text("key class name")
    value_class = src.text("value class name")
    compressed = src.read(1, "compression flag") != b"\x00"
    block_compressed = src.read(1, "block compression flag") != b"\x00"
    codec = src.text("codec class name") if compressed else None
    metadata = {}
    for _ in range(src.int32("metadata count")):
        name = src.text("metadata key")
        metadata[name] = src.text("metadata value")
    sync = src.read(SYNC_SIZE, "sync marker")
    for role, name in (("key", key_class), ("value", value_class)):
        if name != BYTES_WRITABLE:
            raise DataError(f"{where}: {role} class is {name}, expected {BYTES_WRITABLE}")
    if compressed and codec != DEFAULT_CODEC:
        raise DataError(f"{where}: compression codec {codec} is not supported "
                        f"(only {DEFAULT_CODEC})")
    return Header(key_class, value_class, compressed, block_compressed, codec, metadata, sync)


def read_sequence_file(path):
    """Iterator of (key bytes, value bytes) from a SequenceFile<BytesWritable, BytesWritable>
    (uncompressed, record- or block-compressed with DefaultCodec). The header is checked at
    once; corrupt or truncated records raise DataError naming `path` while iterating."""
    where = str(path)
    try:
        stream = paths.open_read(path)
    except FileNotFoundError:
        raise DataError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{where}: is a directory, not a SequenceFile") from None
    try:
        src = _Input(stream, where)
        header = read_header(src, where)
    except BaseException:
        stream.close()
        raise
    return _records(stream, src, header)


def _records(stream, src, header):
    with stream:
        if header.block_compressed:
            yield from _block_records(src, header)
        else:
            yield from _plain_records(src, header)


def _check_sync(src, header):
    start = src.pos
    if src.read(SYNC_SIZE, "sync marker") != header.sync:
        raise DataError(f"{src.where}: sync marker at byte {start} does not match the "
                        "header's: file is corrupt")


def _plain_records(src, header):
    index = 0
    while not src.at_end():
        length = src.int32(f"record {index} length")
        if length == SYNC_ESCAPE:
            _check_sync(src, header)
            continue
        key_length = src.int32(f"record {index} key length")
        if not 0 <= key_length <= length:
            raise DataError(f"{src.where}: record {index} at byte {src.pos - 8}: key length "
                            f"{key_length} does not fit record length {length}")
        key = src.read(key_length, f"record {index} key")
        value = src.read(length - key_length, f"record {index} value")
        if header.compressed:
            value = _inflate(value, src.where, f"record {index} value")
        yield (unwrap_bytes_writable(key, f"{src.where}: record {index} key"),
               unwrap_bytes_writable(value, f"{src.where}: record {index} value"))
        index += 1


def _block_records(src, header):
    index = 0
    while not src.at_end():
        if src.int32("block sync escape") != SYNC_ESCAPE:
            raise DataError(f"{src.where}: block at byte {src.pos - 4} does not start with a "
                            "sync marker: file is corrupt")
        _check_sync(src, header)
        count = src.vint("block record count")
        key_lengths = _vints(_block_buffer(src, "key lengths"), count, src.where)
        keys = _block_buffer(src, "keys")
        value_lengths = _vints(_block_buffer(src, "value lengths"), count, src.where)
        values = _block_buffer(src, "values")
        key_at = value_at = 0
        for key_length, value_length in zip(key_lengths, value_lengths):
            key = keys[key_at:key_at + key_length]
            value = values[value_at:value_at + value_length]
            if len(key) != key_length or len(value) != value_length:
                raise DataError(f"{src.where}: block record {index} runs past its block")
            key_at += key_length
            value_at += value_length
            yield (unwrap_bytes_writable(key, f"{src.where}: record {index} key"),
                   unwrap_bytes_writable(value, f"{src.where}: record {index} value"))
            index += 1


def _block_buffer(src, what):
    size = src.vint(f"block {what} size")
    if size < 0:
        raise DataError(f"{src.where}: block {what} size {size} at byte {src.pos}")
    return _inflate(src.read(size, f"block {what}"), src.where, f"block {what}")


def _vints(data, count, where):
    out, at = [], 0
    for _ in range(count):
        if at >= len(data):
            raise DataError(f"{where}: block lengths end after {len(out)} of {count} records")
        first = struct.unpack_from(">b", data, at)[0]
        size = vint_size(first)
        out.append(decode_vint(first, data[at + 1:at + size]))
        at += size
    return out


def _inflate(data, where, what):
    """DefaultCodec output: one complete zlib stream."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data)
    except zlib.error as err:
        raise DataError(f"{where}: {what}: bad zlib data ({err})") from None
    if not inflater.eof:
        raise DataError(f"{where}: {what}: zlib stream is truncated")
    return out
