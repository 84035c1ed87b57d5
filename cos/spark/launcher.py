"""Launcher: the one object that owns a barrier stage of `cluster_size` ranks.

Everything a task gets (its rank's records, the job payload, its environment) and how
results and failures come back is decided here, before and after the stage runs.
"""

import logging
import os
import re
import threading
import time

from ..errors import ClusterError

log = logging.getLogger("cos.spark")

# Spark settings the launcher relies on; `session()` sets them for a fresh context.
SPARK_SETTINGS = {
    "spark.scheduler.minRegisteredResourcesRatio": "1.0",
    "spark.task.maxFailures": "1",  # a dead rank fails the job; resume from a snapshot
    "spark.stage.maxConsecutiveAttempts": "1",
    "spark.barrier.sync.timeout": "120",
    "spark.scheduler.barrier.maxConcurrentTasksCheck.maxFailures": "1",
    "spark.scheduler.barrier.maxConcurrentTasksCheck.interval": "1s",
    "spark.ui.showConsoleProgress": "false",  # progress comes from Caffe's log lines
}


class Launcher:
    """Runs `task_fn(rank, size, all_gather, records, payload)` on `cluster_size` ranks."""

    def __init__(self, sc, cluster_size, connection="ethernet", timeout=120):
        self.sc = sc
        self.cluster_size = int(cluster_size)
        self.connection = connection
        self.timeout = timeout

    # ---- checks before the cluster is touched --------------------------------
    def slots(self):
        """How many tasks the cluster can run at once (executor cores / spark.task.cpus)."""
        conf = self.sc.getConf()
        task_cpus = max(int(conf.get("spark.task.cpus", "1")), 1)
        if self.sc.master.startswith("local"):
            return self.sc.defaultParallelism // task_cpus
        # registered executors (the driver's block manager is listed too)
        executors = len(self.sc._jsc.sc().statusTracker().getExecutorInfos()) - 1
        if executors <= 0:
            return 0
        cores = conf.get("spark.executor.cores")
        cores = int(cores) if cores else max(self.sc.defaultParallelism // executors, 1)
        return executors * (cores // task_cpus)

    def check_cluster(self):
        """Fail fast, before any task starts, if cluster_size ranks cannot run at once;
        on a real cluster wait (bounded) for executors to register first."""
        slots = self.slots()
        if slots < self.cluster_size and not self.sc.master.startswith("local"):
            import time
            wait = self.sc.getConf().get("spark.scheduler.maxRegisteredResourcesWaitingTime",
                                         "30s")
            deadline = time.monotonic() + _seconds(wait)
            while slots < self.cluster_size and time.monotonic() < deadline:
                time.sleep(0.5)
                slots = self.slots()
        if slots < self.cluster_size:
            master = self.sc.master
            raise ClusterError(
                f"-clusterSize {self.cluster_size} needs {self.cluster_size} task slots at "
                f"once but {master} offers {slots} (executor cores / spark.task.cpus); "
                "lower -clusterSize or add executors")

    # ---- environment of each task ------------------------------------------
    def task_env(self):
        """Environment variables every rank sets before importing MPI or torch."""
        from ..dist import mpi
        env = dict(mpi.fabric_env(self.connection))
        conf = self.sc.getConf()
        threads = conf.get("spark.task.cpus", "1")
        env.update(OMP_NUM_THREADS=threads, COS_TORCH_THREADS=threads)
        if os.environ.get("SPARK_LOCAL_IP"):
            env["SPARK_LOCAL_IP"] = os.environ["SPARK_LOCAL_IP"]
            if "FI_TCP_IFACE" not in env and env.get("FI_PROVIDER") == "tcp" \
                    and os.environ["SPARK_LOCAL_IP"] in ("127.0.0.1", "localhost"):
                env["FI_TCP_IFACE"] = "lo"
        for key in ("COS_TEST_KILL_RANK", "COS_TEST_KILL_ITER", "COS_TEST_KILL_STAMP"):  # test-only failure hook
            if key in os.environ:
                env[key] = os.environ[key]
        return env

    # ---- the barrier stage ---------------------------------------------------
    def run(self, task_fn, payload, rank_records=None):
        """Run the stage; `rank_records` is an RDD with exactly cluster_size partitions
        (partition r = rank r's records) or None. Returns the per-rank results in order."""
        self.check_cluster()
        size = self.cluster_size
        if rank_records is None:
            rank_records = self.sc.parallelize([None] * size, size).filter(lambda x: False)
        if rank_records.getNumPartitions() != size:
            raise ClusterError(f"internal: {rank_records.getNumPartitions()} record "
                               f"partitions for {size} ranks")
        env = self.task_env()
        timeout = self.timeout

        def stage(records):
            from pyspark import BarrierTaskContext
            ctx = BarrierTaskContext.get()
            rank = ctx.partitionId()
            exit_with_parent()
            os.environ.update(env)
            import torch
            torch.set_num_threads(int(env.get("COS_TORCH_THREADS", "1")))

            def all_gather(message):
                return list(ctx.allGather(message))
            try:
                result = task_fn(rank, size, all_gather, records, payload, timeout)
            except Exception as err:
                raise RuntimeError(f"rank {rank} failed: {_last_line(err)}") from err
            yield (rank, result)

        log.info("launching %d ranks on %s", size, self.sc.master)
        try:
            results = rank_records.barrier().mapPartitions(stage).collect()
        except Exception as err:
            raise ClusterError(explain_failure(err, size)) from None
        return [result for _, result in sorted(results, key=lambda pair: pair[0])]


_watching = []


def exit_with_parent(poll_seconds=1.0):
    """End this task's process if its parent (Spark's Python daemon) goes away.

    A rank blocked inside an MPI call never notices its driver dying; without this it
    would outlive the job as an orphan.
    """
    if _watching:
        return
    _watching.append(True)
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(poll_seconds)
            if os.getppid() != parent:
                os._exit(3)
    threading.Thread(target=watch, name="cos-parent-watch", daemon=True).start()


def explain_failure(err, size):
    """Turn a Spark job failure into one line naming the failed rank and its cause."""
    text = str(err)
    found = re.findall(r"rank (\d+) failed: ([^\n]*)", text)
    if found:
        rank, cause = found[-1]
        return f"rank {rank} failed: {cause.strip()}"
    lost = re.search(r"barrier task \w+Task\(\d+, (\d+)\) finished unsuccessfully\.?\s*"
                     r"([^\n]*)", text) or \
        re.search(r"Lost task (\d+)\.\d+ in stage [^)]*\)[^:]*: ([^\n]*)", text)
    if lost:
        cause = lost.group(2).strip()
        if "exited unexpectedly" in cause or "crashed" in cause or "EOFException" in cause:
            cause = "its Python process died (killed, aborted or out of memory)"
        return f"rank {lost.group(1)} failed: {cause}"
    if "barrier" in text.lower() and "slots" in text.lower():
        return f"the cluster cannot run {size} ranks at once: {_last_line(text)}"
    return f"distributed job failed: {_last_line(text)}"


def _seconds(text):
    text = str(text).strip().lower()
    for suffix, factor in (("ms", 0.001), ("s", 1), ("m", 60), ("min", 60), ("h", 3600)):
        if text.endswith(suffix) and text[:-len(suffix)].replace(".", "").isdigit():
            return float(text[:-len(suffix)]) * factor
    return float(text) if text.replace(".", "").isdigit() else 30.0


def _last_line(err):
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(err).__name__
