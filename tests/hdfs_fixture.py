"""A real single-node HDFS for tests: session fixtures `hdfs_server` / `hdfs_uri`, `upload()`.

scripts/hdfs.sh starts a NameNode and a DataNode in a temporary run directory (the Hadoop
jars are fetched once into the user's cache on first use) and stops them when the session
ends. Expose the fixtures with `from hdfs_fixture import hdfs_server, hdfs_uri` in
conftest.py. `hdfs_server` only launches the start, so a test module can boot Spark while
HDFS comes up and ask for `hdfs_server.uri()` afterwards.
"""

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "hdfs.sh"
START_TIMEOUT_S = 900  # a first run downloads ~220 MB
STOP_TIMEOUT_S = 60


class HdfsServer:
    """One scripts/hdfs.sh run directory: start() returns at once, uri() waits for it."""

    def __init__(self, run_dir):
        self.run_dir = Path(run_dir)
        self._start = None
        self._uri = None

    def start(self):
        # the daemons stop by themselves if this session dies without its teardown
        env = dict(os.environ, COS_HDFS_OWNER_PID=str(os.getpid()))
        self._start = subprocess.Popen(["bash", str(SCRIPT), "start", str(self.run_dir)],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True, env=env)

    def uri(self):
        """hdfs://127.0.0.1:PORT once both daemons are up (pytest.fail if they are not)."""
        if self._uri is None:
            try:
                out, err = self._start.communicate(timeout=START_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._start.kill()
                pytest.fail(f"scripts/hdfs.sh start did not finish in {START_TIMEOUT_S}s")
            if self._start.returncode != 0 or not out.strip():
                pytest.fail(f"scripts/hdfs.sh start failed (rc {self._start.returncode}):\n"
                            f"{out}{err}")
            self._uri = out.strip().splitlines()[-1]
        return self._uri

    def stop(self):
        if self._start is not None and self._start.poll() is None:
            self._start.wait(timeout=START_TIMEOUT_S)
        subprocess.run(["bash", str(SCRIPT), "stop", str(self.run_dir)],
                       capture_output=True, timeout=STOP_TIMEOUT_S, check=True)


@pytest.fixture(scope="session")
def hdfs_server(tmp_path_factory):
    """A single-node HDFS being started (call .uri() to wait for it); stopped at the end."""
    server = HdfsServer(tmp_path_factory.mktemp("hdfs"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def hdfs_uri(hdfs_server):
    """hdfs://127.0.0.1:PORT of a fresh single-node HDFS, up for the whole session."""
    return hdfs_server.uri()


def upload(hdfs_uri, local, dest):
    """Copy a local file or directory (recursively) to `dest` (an absolute HDFS path such as
    /data/train_lmdb); returns its full hdfs:// URI. Uses the hdfs-native client, so no
    SparkContext is needed."""
    from hdfs_native import Client
    client = Client(hdfs_uri)
    local = Path(local)
    if local.is_dir():
        client.mkdirs(dest, create_parent=True)
        for root, dirs, files in os.walk(local):
            relative = os.path.relpath(root, local)
            target = dest.rstrip("/") + ("" if relative == "." else "/" + relative)
            for name in dirs:
                client.mkdirs(f"{target}/{name}", create_parent=True)
            for name in files:
                _put(client, Path(root) / name, f"{target}/{name}")
    else:
        parent = os.path.dirname(dest.rstrip("/"))
        if parent and parent != "/":
            client.mkdirs(parent, create_parent=True)
        _put(client, local, dest)
    return hdfs_uri.rstrip("/") + dest


def _put(client, local_file, dest):
    with client.create(dest) as out, open(local_file, "rb") as src:
        while chunk := src.read(1 << 20):
            out.write(chunk)
