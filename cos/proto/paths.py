"""Paths: plain, `file:` URIs, and Hadoop URIs (`hdfs://...`).

Hadoop paths go through the JVM's FileSystem (py4j) when a SparkContext is active (the
driver), and through the `hdfs-native` client for `hdfs://` where there is no JVM (inside
Spark tasks, e.g. rank 0 writing snapshots). Both are imported lazily so the engine runs
without them.
"""

import io
import os
import re
import shutil
import tempfile
from urllib.parse import urlparse

from ..errors import CosError

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")


def scheme(uri):
    uri = str(uri)
    m = _SCHEME.match(uri)
    return m.group(1).lower() if m else ""


def is_local(uri):
    return scheme(uri) in ("", "file")


def is_hadoop(uri):
    return not is_local(uri)


def is_hdfs(uri):
    """True for URIs that go through Hadoop (`hdfs://`, `s3a://`, ...), not the local disk."""
    return is_hadoop(uri)


def local_path(uri):
    """`file:/a`, `file:///a`, `file:a` or a plain path → a local filesystem path."""
    uri = str(uri)
    if scheme(uri) != "file":
        if scheme(uri):
            raise CosError(f"{uri}: not a local path")
        return uri
    rest = uri[len("file:"):]
    if rest.startswith("//"):
        parsed = urlparse(uri)
        return parsed.path or "/"
    return rest


def absolute(uri):
    """Make a relative local path absolute (relative to the CWD), keeping its `file:` form."""
    if not is_local(uri):
        return str(uri)
    path = os.path.abspath(local_path(uri))
    return "file:" + path if scheme(uri) == "file" else path


# ---- local and Hadoop IO ------------------------------------------------------

def read_bytes(uri):
    if is_local(uri):
        with open(local_path(uri), "rb") as f:
            return f.read()
    if _native(uri):
        return _native_read(uri)
    return _hadoop_read(uri)


def open_read(uri):
    """A binary file object for reading (Hadoop files are read whole into memory)."""
    if is_local(uri):
        return open(local_path(uri), "rb")
    return io.BytesIO(read_bytes(uri))


def read_text(uri):
    return read_bytes(uri).decode("utf-8")


def exists(uri):
    if is_local(uri):
        return os.path.exists(local_path(uri))
    if _native(uri):
        return _native_info(uri) is not None
    fs, path = _hadoop(uri)
    return bool(fs.exists(path))


def makedirs(uri):
    if is_local(uri):
        os.makedirs(local_path(uri), exist_ok=True)
    elif _native(uri):
        client, path = _native_client(uri)
        client.mkdirs(path, create_parent=True)
    else:
        fs, path = _hadoop(uri)
        fs.mkdirs(path)


def write_bytes_atomic(uri, data):
    """Write a whole file so that readers see the old file or the new one, never a half."""
    if is_local(uri):
        _write_local_atomic(local_path(uri), data)
    elif _native(uri):
        _native_write_atomic(uri, data)
    else:
        _hadoop_write_atomic(uri, data)


def _write_local_atomic(path, data):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def copy_to_local(uri, local_dir):
    """Copy a file or directory (recursively) from any supported URI into `local_dir`."""
    os.makedirs(local_dir, exist_ok=True)
    name = os.path.basename(str(uri).rstrip("/"))
    dest = os.path.join(local_dir, name)
    if not is_local(uri):
        return _hadoop_copy_to_local(uri, dest)
    src = local_path(uri)
    if os.path.isdir(src):
        shutil.copytree(src, dest, dirs_exist_ok=True)
    else:
        shutil.copyfile(src, dest)
    return dest


# ---- Hadoop plumbing (py4j into the JVM of the active SparkContext) -------------

def _spark_context():
    try:
        from pyspark import SparkContext
    except ImportError:
        return None
    return SparkContext._active_spark_context


def _hadoop(uri):
    """(FileSystem, Path) for a Hadoop URI."""
    sc = _spark_context()
    if sc is None:
        raise CosError(f"{uri}: needs a running Spark session (or use a file: path)")
    path = sc._jvm.org.apache.hadoop.fs.Path(str(uri))
    try:
        return path.getFileSystem(sc._jsc.hadoopConfiguration()), path
    except Exception as err:  # py4j's Py4JJavaError: keep the Java message, drop the trace
        raise CosError(f"{uri}: {_java_message(err)}") from None


def _java_message(err):
    java = getattr(err, "java_exception", None)
    text = java.toString() if java is not None else str(err)
    return (str(text).strip().splitlines() or [type(err).__name__])[0]


def _jvm():
    return _spark_context()._jvm


def _hadoop_read(uri):
    fs, path = _hadoop(uri)
    if not fs.exists(path):
        raise FileNotFoundError(f"{uri}: no such file")
    if fs.getFileStatus(path).isDirectory():
        raise IsADirectoryError(f"{uri}: is a directory")
    stream = fs.open(path)
    try:
        buf = _jvm().java.io.ByteArrayOutputStream()
        _jvm().org.apache.hadoop.io.IOUtils.copyBytes(stream, buf, 1 << 16, False)
        return bytes(buf.toByteArray())
    finally:
        stream.close()


def _hadoop_write_atomic(uri, data):
    """Write `<name>._COPYING_`, then replace the old file by renaming it into place."""
    fs, path = _hadoop(uri)
    tmp = _jvm().org.apache.hadoop.fs.Path(str(uri) + "._COPYING_")
    out = fs.create(tmp, True)
    try:
        out.write(bytearray(data))
    finally:
        out.close()
    if fs.exists(path):
        fs.delete(path, False)
    if not fs.rename(tmp, path):
        raise CosError(f"{uri}: could not rename {uri}._COPYING_ into place")


def _hadoop_copy_to_local(uri, dest):
    fs, path = _hadoop(uri)
    if not fs.exists(path):
        raise FileNotFoundError(f"{uri}: no such file or directory")
    target = _jvm().org.apache.hadoop.fs.Path("file://" + os.path.abspath(dest))
    fs.copyToLocalFile(False, path, target, True)
    return dest


# ---- hdfs:// without a JVM (inside Spark tasks) -----------------------------------

def _native(uri):
    """Use hdfs-native for hdfs:// when no SparkContext is active in this process."""
    return scheme(uri) == "hdfs" and _spark_context() is None


def _native_client(uri):
    try:
        from hdfs_native import Client
    except ImportError:
        raise CosError(f"{uri}: reading hdfs:// here needs a Spark session or the "
                       "hdfs-native package") from None
    parsed = urlparse(str(uri))
    base = f"hdfs://{parsed.netloc}" if parsed.netloc else None
    try:
        return Client(base, config=_NATIVE_CONFIG), parsed.path or "/"
    except Exception as err:
        raise CosError(f"{uri}: {_first(err)}") from None


# Fail fast on an unreachable NameNode instead of retrying for minutes.
_NATIVE_CONFIG = {"dfs.client.failover.max.attempts": "1",
                  "dfs.client.failover.sleep.base.millis": "200",
                  "dfs.client.failover.sleep.max.millis": "1000",
                  "dfs.client.socket-timeout": "60000"}


def _first(err):
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]


def _native_info(uri):
    client, path = _native_client(uri)
    try:
        return client.get_file_info(path)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise CosError(f"{uri}: {_first(err)}") from None


def _native_read(uri):
    info = _native_info(uri)
    if info is None:
        raise FileNotFoundError(f"{uri}: no such file")
    if info.isdir:
        raise IsADirectoryError(f"{uri}: is a directory")
    client, path = _native_client(uri)
    reader = client.read(path)
    try:
        return bytes(reader.read())
    finally:
        reader.close()


def _native_write_atomic(uri, data):
    """Same protocol as the JVM path: write `<name>._COPYING_`, then rename over."""
    client, path = _native_client(uri)
    parent = path.rsplit("/", 1)[0] or "/"
    client.mkdirs(parent, create_parent=True)
    tmp = path + "._COPYING_"
    writer = client.create(tmp, _overwrite_options())
    try:
        writer.write(bytes(data))
    finally:
        writer.close()
    client.rename(tmp, path, overwrite=True)


def _overwrite_options():
    from hdfs_native import WriteOptions
    options = WriteOptions()
    options.overwrite = True
    return options
