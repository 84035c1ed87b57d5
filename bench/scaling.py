"""Scaling figures for the MPI data-parallel path, in one run on this machine:

1. allreduce bandwidth of GradientSync (in-place Allreduce of the bucket the diffs live in;
   the 1/size averaging is folded into backward's seed) over a bare mpi4py
   Allreduce of the same buffer (goal >= 0.9);
2. per-iteration sync time as a fraction of the step time for LeNet and CIFAR-10 quick;
3. training throughput (images/s) of 1 rank vs 2 ranks at the same per-rank batch.

Ranks are real processes joined by cos.dist.rendezvous (no Spark). Usage:
    .venv/bin/python bench/scaling.py [--iters 20]
"""

import argparse
import multiprocessing as mp
import os
import time

import numpy as np

LENET = """name: "LeNet"
layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: B dim: 1 dim: 28 dim: 28 } shape { dim: B } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 20 kernel_size: 5 weight_filler { type: "xavier" } } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  convolution_param { num_output: 50 kernel_size: 5 weight_filler { type: "xavier" } } }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool2" top: "ip1"
  inner_product_param { num_output: 500 weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
"""

CIFAR_QUICK = """name: "CIFAR10_quick"
layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: B dim: 3 dim: 32 dim: 32 } shape { dim: B } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 32 pad: 2 kernel_size: 5 stride: 1
    weight_filler { type: "gaussian" std: 0.0001 } } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "relu1" type: "ReLU" bottom: "pool1" top: "pool1" }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  convolution_param { num_output: 32 pad: 2 kernel_size: 5 stride: 1
    weight_filler { type: "gaussian" std: 0.01 } } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
  pooling_param { pool: AVE kernel_size: 3 stride: 2 } }
layer { name: "conv3" type: "Convolution" bottom: "pool2" top: "conv3"
  convolution_param { num_output: 64 pad: 2 kernel_size: 5 stride: 1
    weight_filler { type: "gaussian" std: 0.01 } } }
layer { name: "relu3" type: "ReLU" bottom: "conv3" top: "conv3" }
layer { name: "pool3" type: "Pooling" bottom: "conv3" top: "pool3"
  pooling_param { pool: AVE kernel_size: 3 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool3" top: "ip1"
  inner_product_param { num_output: 64 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param { num_output: 10 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
"""
NETS = {"LeNet": (LENET, 64, (1, 28, 28)), "CIFAR-10 quick": (CIFAR_QUICK, 100, (3, 32, 32))}


def _world(rank, size, inbox, outbox):
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    import torch
    torch.set_num_threads(1)  # one core per rank, as a Spark task gets
    from cos.dist.rendezvous import form_world

    def all_gather(message):
        outbox.put(message)
        return inbox.get(timeout=120)
    return form_world(rank, size, all_gather, timeout=120)


def _bandwidth(comm, floats, reps):
    """(bare seconds, GradientSync seconds) per allreduce of `floats` float32 values."""
    import torch
    from mpi4py import MPI
    from cos.dist.sync import GradientSync
    from cos.engine.blob import Blob
    sizes = [floats // 2, floats // 4, floats - floats // 2 - floats // 4]
    params = [Blob((n,)).make_param() for n in sizes]
    for p in params:
        p.diff_tensor.normal_()
    sync = GradientSync(comm, params, prescaled=True)  # as attach() makes it in training
    bare = np.random.rand(floats).astype(np.float32)
    timings = {"bare": [], "sync": []}
    for _ in range(reps):
        comm.Barrier()
        t = time.perf_counter()
        comm.Allreduce(MPI.IN_PLACE, bare, op=MPI.SUM)
        timings["bare"].append(time.perf_counter() - t)
        comm.Barrier()
        t = time.perf_counter()
        sync.allreduce_grads()
        timings["sync"].append(time.perf_counter() - t)
    return float(np.median(timings["bare"])), float(np.median(timings["sync"]))


def _solver(net_text, batch):
    from cos.engine.solvers import get_solver
    from cos.proto.text import parse_net_text, parse_solver_text
    param = parse_solver_text('base_lr: 0.01 momentum: 0.9 lr_policy: "fixed" max_iter: 100000 '
                              'random_seed: 1 solver_mode: CPU')
    param.net_param.CopyFrom(parse_net_text(net_text.replace("B", str(batch))))
    return get_solver(param)


def _train(comm, name, iters):
    """(seconds per iteration, sync seconds per iteration) for `iters` steps of `name`."""
    from cos.dist.sync import GradientSync
    net_text, batch, shape = NETS[name]
    solver = _solver(net_text, batch)
    rng = np.random.RandomState(comm.Get_rank() if comm else 0)
    solver.net.blobs["data"].data = rng.rand(batch, *shape).astype(np.float32)
    solver.net.blobs["label"].data = rng.randint(0, 10, batch).astype(np.float32)
    sync = None
    if comm is not None and comm.Get_size() > 1:
        sync = GradientSync(comm, solver.net.learnable_params)
        sync.broadcast_params()
        sync.attach(solver)
    solver.step(2)  # warm up
    if sync:
        sync.seconds, sync.calls = 0.0, 0
        comm.Barrier()
    t = time.perf_counter()
    solver.step(iters)
    per_iter = (time.perf_counter() - t) / iters
    return per_iter, (sync.seconds / max(sync.calls, 1)) if sync else 0.0


def _rank_main(rank, size, inbox, outbox, results, iters, floats):
    comm = _world(rank, size, inbox, outbox)
    out = {}
    if size > 1:
        out["bandwidth"] = {n: _bandwidth(comm, n, 20) for n in floats}
    for name in NETS:
        out[name] = _train(comm, name, iters)
    results.put((rank, out))


def run_ranks(size, iters, floats):
    ctx = mp.get_context("spawn")
    inboxes = [ctx.Queue() for _ in range(size)]
    outboxes = [ctx.Queue() for _ in range(size)]
    results = ctx.Queue()
    procs = [ctx.Process(target=_rank_main,
                         args=(r, size, inboxes[r], outboxes[r], results, iters, floats))
             for r in range(size)]
    for p in procs:
        p.start()
    if size > 1:  # a single rank never calls all_gather
        messages = [q.get(timeout=300) for q in outboxes]
        for q in inboxes:
            q.put(messages)
    got = dict(results.get(timeout=1800) for _ in range(size))
    for p in procs:
        p.join(60)
    return got


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=20)
    args = parser.parse_args()
    floats = [431_080, 4_000_000, 16_000_000]  # LeNet's params, 16 MB, 64 MB
    one = run_ranks(1, args.iters, floats)[0]
    two = run_ranks(2, args.iters, floats)
    print("1. allreduce, 2 ranks (median of 20): bare mpi4py vs GradientSync")
    for n in floats:
        bare, ours = two[0]["bandwidth"][n]
        mb = n * 4 / 1e6
        print(f"   {mb:7.1f} MB: bare {mb / bare:8.1f} MB/s, GradientSync {mb / ours:8.1f} MB/s,"
              f" ratio {bare / ours:.2f}")
    print("2. sync share of a training step, 2 ranks")
    for name in NETS:
        step, sync = two[0][name]
        print(f"   {name:15s}: step {step * 1e3:7.1f} ms, sync {sync * 1e3:6.2f} ms "
              f"({100 * sync / step:.1f}%)")
    print("3. throughput at the same per-rank batch (images/s)")
    for name, (_, batch, _) in NETS.items():
        t1 = batch / one[name][0]
        t2 = 2 * batch / max(two[0][name][0], two[1][name][0])
        print(f"   {name:15s}: 1 rank {t1:8.1f}, 2 ranks {t2:8.1f} (x{t2 / t1:.2f})")
    print(f"   ({os.cpu_count()} CPU cores, 1 torch thread per rank)")


if __name__ == "__main__":
    main()
