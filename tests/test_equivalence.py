"""Data parallelism changes nothing: K iterations on 2 MPI ranks with batch b each equal
K iterations of one process with batch 2b over the same samples in the same order."""

import multiprocessing as mp
import os

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.mpi]

BATCH, ITERS = 6, 5
NET = """
name: "eq"
layer {{ name: "data" type: "Input" top: "data" top: "label"
  input_param {{ shape {{ dim: {b} dim: 1 dim: 8 dim: 8 }} shape {{ dim: {b} }} }} }}
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param {{ num_output: 4 kernel_size: 3 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "ip1" type: "InnerProduct" bottom: "conv1" top: "ip1"
  inner_product_param {{ num_output: 10 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip1" bottom: "label" top: "loss" }}
"""
SOLVER = """base_lr: 0.1 momentum: 0.9 weight_decay: 0.001 lr_policy: "step" gamma: 0.5
stepsize: 2 max_iter: 100 random_seed: 3 solver_mode: CPU"""


def samples():
    rng = np.random.RandomState(0)
    data = rng.rand(ITERS * 2 * BATCH, 1, 8, 8).astype(np.float32)
    labels = rng.randint(0, 10, size=ITERS * 2 * BATCH).astype(np.float32)
    return data, labels


def make_solver(batch, seed):
    from cos.engine.solvers import get_solver
    from cos.proto.text import parse_net_text, parse_solver_text
    param = parse_solver_text(SOLVER)
    param.net_param.CopyFrom(parse_net_text(NET.format(b=batch)))
    param.random_seed = seed
    return get_solver(param)


def train(solver, batches):
    """Step once per (data, label) batch, written straight into the Input blobs."""
    for data, labels in batches:
        solver.net.blobs["data"].data = data
        solver.net.blobs["label"].data = labels
        solver.step(1)
    return [p.data.copy() for p in solver.net.learnable_params]


def _rank_main(rank, inbox, outbox, results):
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    from cos.dist.rendezvous import form_world
    from cos.dist.sync import GradientSync

    def all_gather(message):
        outbox.put(message)
        return inbox.get(timeout=60)
    comm = form_world(rank, 2, all_gather, timeout=30)
    solver = make_solver(BATCH, seed=100 + rank)  # different seeds: the broadcast unifies
    sync = GradientSync(comm, solver.net.learnable_params, timeout=60)
    sync.broadcast_params()
    sync.attach(solver)  # as the Spark jobs do: backward seeded with 1/size
    data, labels = samples()
    # iteration k: rank r takes the r-th half of the single process's batch k
    mine = [(data[(2 * k + rank) * BATCH:(2 * k + rank + 1) * BATCH],
             labels[(2 * k + rank) * BATCH:(2 * k + rank + 1) * BATCH]) for k in range(ITERS)]
    results.put((rank, train(solver, mine)))
    sync.close()


def test_two_ranks_equal_one_process_with_double_batch():
    ctx = mp.get_context("spawn")
    inboxes, outboxes, results = [ctx.Queue(), ctx.Queue()], [ctx.Queue(), ctx.Queue()], \
        ctx.Queue()
    procs = [ctx.Process(target=_rank_main, args=(r, inboxes[r], outboxes[r], results))
             for r in range(2)]
    for p in procs:
        p.start()
    messages = [q.get(timeout=60) for q in outboxes]
    for q in inboxes:
        q.put(messages)
    got = dict(results.get(timeout=120) for _ in range(2))
    for p in procs:
        p.join(30)
        assert p.exitcode == 0

    # the reference starts from rank 0's initial weights (seed 100)
    reference = make_solver(2 * BATCH, seed=100)
    data, labels = samples()
    batches = [(data[2 * k * BATCH:2 * (k + 1) * BATCH],
                labels[2 * k * BATCH:2 * (k + 1) * BATCH]) for k in range(ITERS)]
    expected = train(reference, batches)
    for rank in (0, 1):
        assert len(got[rank]) == len(expected)
        for mine, want in zip(got[rank], expected):
            np.testing.assert_allclose(mine, want, rtol=1e-5, atol=1e-6)
    for a, b in zip(got[0], got[1]):
        np.testing.assert_array_equal(a, b)  # identical update everywhere
