"""GradientSync: real MPI ranks average param diffs and share rank 0's weights."""

import multiprocessing as mp
import os

import numpy as np
import pytest

from test_rendezvous import _all_gather

pytestmark = [pytest.mark.mpi]


def _make_params(rank, dtype):
    import torch
    from cos.engine.blob import Blob
    shapes = [(4, 3), (4,), (2, 2, 3)]
    params = []
    for i, shape in enumerate(shapes):
        blob = Blob(shape, dtype=dtype)
        blob.make_param()
        n = int(np.prod(shape))
        blob.diff = np.arange(n).reshape(shape) * (rank + 1) + i
        blob.data = np.full(shape, 10.0 * rank + i)
        params.append(blob)
    return params


def _rank_main(rank, size, inbox, outbox, results, scenario):
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    import torch
    from cos.dist.rendezvous import form_world
    from cos.dist.sync import GradientSync
    comm = form_world(rank, size, _all_gather(inbox, outbox), timeout=30)
    dtype = torch.float64 if scenario == "float64" else torch.float32
    params = _make_params(rank, dtype)
    sync = GradientSync(comm, params, timeout=3)
    if scenario == "stuck" and rank == 1:
        os._exit(3)  # never joins the allreduce
    if scenario == "replaced":  # something rebinds a diff: the sync copies instead
        params[1].diff_tensor = params[1].diff_tensor.clone()
        params[1].tensor.grad = params[1].diff_tensor
    if scenario == "autograd":  # backward accumulates into the bucket in place
        for p in params:
            p.diff_tensor.zero_()
        sum(((p.tensor * (rank + 1)).sum() for p in params)).backward()
        bucket = sync._buckets[0]
        assert all(p.tensor.grad is p.diff_tensor for p in params)
        assert bucket.diffs_bound()
    sync()
    sync.broadcast_params()
    results.put((rank, [p.diff.copy() for p in params], [p.data.copy() for p in params]))
    sync.close()


def run_ranks(size, scenario):
    ctx = mp.get_context("spawn")
    inboxes = [ctx.Queue() for _ in range(size)]
    outboxes = [ctx.Queue() for _ in range(size)]
    results = ctx.Queue()
    procs = [ctx.Process(target=_rank_main,
                         args=(r, size, inboxes[r], outboxes[r], results, scenario))
             for r in range(size)]
    for p in procs:
        p.start()
    messages = [q.get(timeout=60) for q in outboxes]
    for q in inboxes:
        q.put(messages)
    return procs, results


def test_backward_accumulates_straight_into_the_allreduce_buffer():
    procs, results = run_ranks(3, "autograd")
    for _ in range(3):
        _, diffs, _ = results.get(timeout=60)
        for diff in diffs:
            np.testing.assert_allclose(diff, np.full(diff.shape, 2.0))  # mean of 1, 2, 3
    for p in procs:
        p.join(30)
        assert p.exitcode == 0


@pytest.mark.parametrize("scenario", ["float32", "float64", "replaced"])
def test_diffs_are_averaged_and_weights_come_from_rank0(scenario):
    procs, results = run_ranks(3, scenario)
    got = {}
    for _ in range(3):
        rank, diffs, datas = results.get(timeout=60)
        got[rank] = (diffs, datas)
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    dtype = np.float64 if scenario == "float64" else np.float32
    rank0_data = [np.full(d.shape, float(i)) for i, d in enumerate(got[0][1])]
    for rank in range(3):
        diffs, datas = got[rank]
        for i, diff in enumerate(diffs):
            n = diff.size
            expected = (np.arange(n).reshape(diff.shape) * (1 + 2 + 3) / 3 + i).astype(dtype)
            assert diff.dtype == dtype
            np.testing.assert_allclose(diff, expected, rtol=1e-6)
            np.testing.assert_array_equal(datas[i], rank0_data[i])


def test_rank_missing_from_allreduce_is_aborted_by_watchdog():
    procs, _ = run_ranks(2, "stuck")
    for p in procs:
        p.join(30)
    assert procs[1].exitcode == 3
    assert procs[0].exitcode == 13
