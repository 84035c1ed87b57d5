"""MPI plumbing for ranks started without mpirun: fabric environment, import, abort, cleanup.

The fabric variables must be in the environment before `mpi4py.MPI` is first imported,
so every task calls `fabric_env` / `apply_fabric_env` and only then `import_mpi`.
"""

import os
import sys

from ..errors import ClusterError

ETHERNET = "ethernet"
INFINIBAND = "infiniband"


def fabric_env(connection=ETHERNET):
    """Environment variables that make MPICH's singleton-init ranks reach each other.

    `ethernet` (the default, and what every loopback test uses) selects libfabric's TCP
    provider; `infiniband` selects UCX with its RDMA transports and no device restriction.
    """
    kind = (connection or ETHERNET).lower()
    if kind in (ETHERNET, "socket", "tcp"):
        env = {"MPIR_CVAR_CH4_NETMOD": "ofi", "FI_PROVIDER": "tcp"}
        iface = os.environ.get("COS_MPI_IFACE")
        if iface is None and _loopback_only():
            iface = "lo"
        if iface:
            env["FI_TCP_IFACE"] = iface
        return env
    if kind in (INFINIBAND, "rdma", "ib"):
        return {"MPIR_CVAR_CH4_NETMOD": "ucx", "UCX_TLS": "rc,ud,sm,self"}
    raise ClusterError(f"-connection {connection!r}: expected 'ethernet' or 'infiniband'")


def _loopback_only():
    """True when every peer runs on this host (local Spark, tests): pin traffic to `lo`."""
    return os.environ.get("SPARK_LOCAL_IP", "") in ("127.0.0.1", "localhost")


def apply_fabric_env(connection=ETHERNET):
    """Set the fabric variables in this process; refuse if MPI is already initialised."""
    if "mpi4py.MPI" in sys.modules:
        return  # too late to change; the first choice in this process stands
    os.environ.update(fabric_env(connection))


def import_mpi(connection=ETHERNET):
    """Import mpi4py.MPI after setting the fabric environment (singleton MPI_Init)."""
    apply_fabric_env(connection)
    import mpi4py
    mpi4py.rc.thread_level = "multiple"  # the watchdog thread may call Abort
    from mpi4py import MPI
    return MPI


def abort(message, code=13):
    """Kill this rank now with a message on stderr; peers fail through the barrier stage."""
    sys.stderr.write(message.rstrip() + "\n")
    sys.stderr.flush()
    os._exit(code)


def free(comm):
    """Release a communicator built by the rendezvous; errors here must not mask results."""
    if comm is None:
        return
    try:
        comm.Disconnect()
    except Exception:
        try:
            comm.Free()
        except Exception:
            pass


class Watchdog:
    """Aborts this process if an armed operation runs past its bound.

    MPI collectives cannot time out by themselves; a rank stuck in one (its peer died)
    is ended here with a message naming it, and Spark's barrier stage fails the rest.
    """

    def __init__(self, rank, what="MPI operation"):
        import threading
        self.rank = rank
        self.what = what
        self._deadline = None
        self._label = ""
        self._lock = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"cos-watchdog-{rank}",
                                        daemon=True)
        self._thread.start()

    def arm(self, seconds, label=""):
        import time
        with self._lock:
            self._deadline = time.monotonic() + seconds
            self._label = label or self.what
            self._lock.notify()

    def disarm(self):
        with self._lock:
            self._deadline = None

    def close(self):
        with self._lock:
            self._closed = True
            self._lock.notify()

    def guard(self, seconds, label=""):
        """Context manager: `with watchdog.guard(30, "allreduce"): ...`."""
        import contextlib

        @contextlib.contextmanager
        def _guard():
            self.arm(seconds, label)
            try:
                yield
            finally:
                self.disarm()
        return _guard()

    def _run(self):
        import time
        with self._lock:
            while not self._closed:
                if self._deadline is None:
                    self._lock.wait()
                    continue
                left = self._deadline - time.monotonic()
                if left <= 0:
                    abort(f"rank {self.rank}: {self._label} timed out "
                          "(a peer rank died or is stuck); aborting this rank")
                self._lock.wait(left)
