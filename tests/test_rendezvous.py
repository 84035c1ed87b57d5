"""form_world: real MPI ranks in separate processes joined through a queue-based all-gather."""

import multiprocessing as mp
import os
import time

import pytest

from cos.errors import ClusterError

pytestmark = [pytest.mark.mpi]


def _all_gather(inbox, outbox):
    def all_gather(message):
        outbox.put(message)
        return inbox.get(timeout=60)
    return all_gather


def _rank_main(rank, size, inbox, outbox, results, timeout, skip_connect):
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    from cos.dist.rendezvous import form_world
    if skip_connect:  # a rank that takes part in the all-gather, then dies
        _all_gather(inbox, outbox)("")
        os._exit(3)
    comm = form_world(rank, size, _all_gather(inbox, outbox), timeout=timeout)
    total = comm.allreduce(rank + 1)
    gathered = comm.allgather(rank)
    results.put((rank, comm.Get_rank(), comm.Get_size(), total, gathered))


def run_ranks(size, timeout=30, dead_rank=None):
    """Start `size` spawned processes; the parent plays the all-gather hub."""
    ctx = mp.get_context("spawn")
    inboxes = [ctx.Queue() for _ in range(size)]
    outboxes = [ctx.Queue() for _ in range(size)]
    results = ctx.Queue()
    procs = [ctx.Process(target=_rank_main,
                         args=(r, size, inboxes[r], outboxes[r], results, timeout,
                               r == dead_rank))
             for r in range(size)]
    for p in procs:
        p.start()
    messages = [q.get(timeout=60) for q in outboxes]
    for q in inboxes:
        q.put(messages)
    return procs, results


def test_three_ranks_form_one_world_in_task_order():
    procs, results = run_ranks(3)
    got = sorted(results.get(timeout=60) for _ in range(3))
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    for rank, (r, comm_rank, comm_size, total, gathered) in enumerate(got):
        assert (r, comm_rank, comm_size) == (rank, rank, 3)
        assert total == 6
        assert gathered == [0, 1, 2]


def test_dead_peer_aborts_the_waiting_rank_within_timeout():
    start = time.monotonic()
    procs, _ = run_ranks(2, timeout=3, dead_rank=1)
    for p in procs:
        p.join(30)
    assert time.monotonic() - start < 25
    assert procs[1].exitcode == 3
    assert procs[0].exitcode == 13  # the watchdog's abort code


def test_single_rank_needs_no_peers():
    from cos.dist.rendezvous import form_world
    comm = form_world(0, 1, lambda m: [m])
    assert (comm.Get_rank(), comm.Get_size()) == (0, 1)
    comm.Free()


def test_rank_outside_cluster_is_a_clear_error():
    from cos.dist.rendezvous import form_world
    with pytest.raises(ClusterError, match="rank 2 is outside a cluster of size 2"):
        form_world(2, 2, lambda m: [m])
