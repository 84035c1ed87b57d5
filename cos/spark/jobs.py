"""What runs inside the Spark tasks: one rank's training loop (MPI-synchronised) and
the per-partition inference used by test and features.

Tasks get everything in their closure (solver with the net inlined, model bytes,
records), so users never ship prototxt files with --files.
"""

import copy
import itertools
import logging
import os
import tempfile
import time

import numpy as np

from ..errors import ClusterError, DataError
from ..proto import caffe_pb2

log = logging.getLogger("cos.spark")


class TrainPayload:
    """What every rank needs to train; built on the driver, pickled into the closure."""

    def __init__(self, solver, train_source, model_path, connection="ethernet",
                 weights=None, state=None, val_source=None, val_records=None,
                 sync_timeout=300):
        self.solver = solver.SerializeToString()
        self.train_source = train_source
        self.model_path = model_path
        self.connection = connection
        self.weights = weights  # NetParameter bytes or None
        self.state = state  # (SolverState bytes, weights bytes) or None
        self.val_source = val_source
        self.val_records = val_records
        self.sync_timeout = sync_timeout


def train_rank(rank, size, all_gather, records, payload, timeout):
    """One rank: join the MPI world, train max_iter iterations, rank 0 saves the model.

    Returns the validation rows (one dict per validation event) on every rank.
    """
    from ..dist.rendezvous import form_world
    from ..dist.sync import GradientSync
    if rank == 0:  # Caffe's log lines (display, validation) come from rank 0 only
        from ..engine.logging import configure
        configure()
    comm = form_world(rank, size, all_gather, timeout, payload.connection)
    records = ordered_records(records)
    if not records:
        raise DataError(f"rank {rank}: no training records reached this rank "
                        f"(fewer records than ranks?)")
    solver = build_solver(payload, rank)
    sync = GradientSync(comm, solver.net.learnable_params, timeout=payload.sync_timeout)
    try:
        sync.broadcast_params()  # identical start even without random_seed
        sync.attach(solver)
        feed(solver.net, payload.train_source, records, caffe_pb2.TRAIN, rank)
        val = _validation(solver, payload, rank)
        rows = run_iterations(solver, val, rank)
        if rank == 0:
            save_model(solver, payload.model_path)
        comm.Barrier()  # nobody leaves (and tears down MPI) before rank 0 has saved
        return {"rows": rows, "iter": solver.iter, "sync_seconds": sync.seconds,
                "sync_calls": sync.calls}
    finally:
        sync.close()
        comm.Free()


def ordered_records(records):
    """Records routed to a rank arrive as ((partition, index), record): restore order."""
    items = list(records)
    if items and isinstance(items[0], tuple) and len(items[0]) == 2 \
            and isinstance(items[0][0], tuple):
        items.sort(key=lambda kv: kv[0])
        return [record for _, record in items]
    return items


def build_solver(payload, rank):
    """The engine's solver for this rank: seed offset by rank, snapshots into the directory
    of -model on rank 0 only, resumed or fine-tuned as asked."""
    from ..engine.solvers import get_solver
    import cos.data.layers  # noqa: F401  (registers Data, MemoryData, CoSData)
    solver_param = caffe_pb2.SolverParameter()
    solver_param.ParseFromString(payload.solver)
    solver_param.snapshot_prefix = snapshot_prefix(solver_param, payload.model_path)
    solver_param.test_interval = 0  # validation is run here, fed from the validation source
    solver = get_solver(solver_param, rank=rank, host_tests=True)  # seeds random_seed + rank
    solver.is_root = rank == 0
    if payload.state is not None:
        state_bytes, weights_bytes = payload.state
        with tempfile.TemporaryDirectory() as tmp:
            weights_path = os.path.join(tmp, "resume.caffemodel")
            with open(weights_path, "wb") as f:
                f.write(weights_bytes)
            state = caffe_pb2.SolverState()
            state.ParseFromString(state_bytes)
            state.learned_net = weights_path
            state_path = os.path.join(tmp, "resume.solverstate")
            with open(state_path, "wb") as f:
                f.write(state.SerializeToString())
            solver.restore(state_path)
    elif payload.weights is not None:
        solver.net.copy_from(_net_param(payload.weights))
    return solver


def snapshot_prefix(solver_param, model_path):
    """Snapshots go to the directory part of -model, named by the solver's prefix."""
    from ..proto import paths
    prefix = solver_param.snapshot_prefix or "snapshot"
    directory = model_path[:model_path.rfind("/") + 1] if "/" in model_path else ""
    if paths.is_local(directory) and directory:
        directory = paths.local_path(directory)
    return directory + prefix


def run_iterations(solver, val, rank):
    """Step to max_iter; validate before iteration `it` when it % test_interval == 0."""
    max_iter = solver.param.max_iter
    kill_at = _kill_hook(rank)
    rows = []
    while solver.iter < max_iter:
        if val is not None and solver.iter > 0 and solver.iter % val["interval"] == 0:
            rows.append(validate(solver, val, rank))
        if kill_at is not None and solver.iter >= kill_at:
            _die_for_test()
        # Step in chunks up to the next validation (or test kill point), so Caffe's
        # per-Step display timing and loss smoothing span many iterations.
        stop = max_iter
        if val is not None:
            stop = min(stop, (solver.iter // val["interval"] + 1) * val["interval"])
        if kill_at is not None and kill_at > solver.iter:
            stop = min(stop, kill_at)
        solver.step(stop - solver.iter)
    if getattr(solver.param, "snapshot_after_train", False) and solver.is_root \
            and solver.param.snapshot and solver.iter % solver.param.snapshot != 0:
        solver.snapshot()
    return rows


def _die_for_test():
    """Test-only: simulate a rank dying mid-training, noting when it died."""
    stamp = os.environ.get("COS_TEST_KILL_STAMP")
    if stamp:
        with open(stamp, "w") as f:
            f.write(repr(time.time()))
    os._exit(17)


def _kill_hook(rank):
    if os.environ.get("COS_TEST_KILL_RANK") == str(rank):
        return int(os.environ.get("COS_TEST_KILL_ITER", "1"))
    return None


def _validation(solver, payload, rank):
    if payload.val_source is None:
        return None
    param = caffe_pb2.SolverParameter()
    param.ParseFromString(payload.solver)
    test_net = solver.test_nets[0]
    feed(test_net, payload.val_source, payload.val_records, caffe_pb2.TEST, rank)
    return {"net": test_net, "interval": param.test_interval, "iters": param.test_iter[0],
            "names": list(test_net.outputs)}


def validate(solver, val, rank):
    """Mean of each test-net output over test_iter batches; logged in Caffe's style."""
    net = val["net"]
    solver.share_weights(net)
    sums = {}
    for _ in range(val["iters"]):
        net.forward()
        for name in val["names"]:
            value = np.asarray(net.blobs[name].data, dtype=np.float64)
            per_sample = value.reshape(value.shape[0], -1).mean(axis=0) if value.ndim > 1 \
                else value.reshape(-1)
            sums[name] = sums.get(name, 0) + per_sample
    row = {name: (sums[name] / val["iters"]).astype(np.float32).tolist()
           for name in val["names"]}
    if rank == 0:
        log_validation(net, solver.iter, row)
    return row


def log_validation(net, iteration, row):
    """Caffe's test lines (spec 6.8): one per output element, numbered across outputs,
    with ' (* w = w*v loss)' for outputs that carry a loss weight."""
    from ..engine.logging import fmt
    log.info("Iteration %d, Testing net (#0)", iteration)
    k = 0
    for name, values in row.items():
        weight = net.blob_loss_weights.get(name, 0.0)
        for value in values:
            extra = f" (* {fmt(weight)} = {fmt(weight * value)} loss)" if weight else ""
            log.info("    Test net output #%d: %s = %s%s", k, name, fmt(value), extra)
            k += 1


def save_model(solver, model_path):
    """Write the trained weights to exactly -model (atomically), with `.h5` left alone."""
    from ..proto import paths
    data = solver.net.to_proto().SerializeToString()
    paths.write_bytes_atomic(model_path, data)


# ---- feeding data layers ------------------------------------------------------

def feed(net, source, records, phase, rank, train=True):
    """Give the net's data layer batches converted from `records` on a prefetch thread;
    training wraps around the records like Caffe's data layer. Returns the Batcher."""
    from ..data.feeder import Batcher
    layer = data_layer_of(net, source.layer.name)
    seed = rank if phase == caffe_pb2.TRAIN else 0
    batcher = Batcher(pass_order(records, source.layer, phase, seed),
                      source.converter(phase, seed), source.batch_size, train=train)
    layer.set_feed(batcher)
    return batcher


def pass_order(records, layer, phase, seed):
    """A callable giving each pass over `records`: storage order, or a fresh seeded
    permutation per pass when a TRAIN CoSData layer sets `shuffle` (the original ignored it)."""
    shuffle = phase == caffe_pb2.TRAIN and layer.HasField("cos_data_param") \
        and layer.cos_data_param.shuffle
    if not shuffle:
        return lambda: iter(records)
    records = list(records)
    rng = np.random.default_rng(seed)
    return lambda: (records[i] for i in rng.permutation(len(records)))


def data_layer_of(net, name):
    layers = net.layer_dict
    if name in layers:
        return layers[name]
    for layer in layers.values():
        if hasattr(layer, "set_feed"):
            return layer
    raise DataError(f"net '{net.name}': data layer '{name}' not found")


def _net_param(data):
    param = caffe_pb2.NetParameter()
    param.ParseFromString(data)
    return param


# ---- inference: test and features ---------------------------------------------

class InferPayload:
    def __init__(self, solver, source, model_bytes, blobs):
        self.solver = solver.SerializeToString()
        self.source = source
        self.model_bytes = model_bytes
        self.blobs = blobs  # None: the test net's outputs


def test_net(payload):
    """The solver's TEST net 0 with the model's weights loaded."""
    from ..engine.net import Net
    import cos.data.layers  # noqa: F401  (registers Data, MemoryData, CoSData)
    solver_param = caffe_pb2.SolverParameter()
    solver_param.ParseFromString(payload.solver)
    net_param = solver_param.net_param
    net = Net(net_param, phase=caffe_pb2.TEST)
    net.copy_from(_net_param(payload.model_bytes))
    return net


def infer_partition(records, payload):
    """Rows (SampleID, [values per blob]) for every record once: the last partial batch is
    padded by repeating its last sample and only real rows are emitted."""
    from ..data.feeder import Batcher
    records = iter(records)
    first = next(records, None)
    if first is None:
        return
    net = test_net(payload)
    names = payload.blobs or list(net.outputs)
    batch = payload.source.batch_size
    layer = data_layer_of(net, payload.source.layer.name)
    stream = itertools.chain([first], records)
    batcher = Batcher(lambda: stream, payload.source.converter(caffe_pb2.TEST, 0), batch)
    try:
        for chunk in batcher:
            layer.set_feed([chunk])
            net.forward()
            values = [_per_sample(net, name, batch) for name in names]
            for i, sid in enumerate(chunk.ids):
                yield (str(sid), [v[i] for v in values])
    finally:
        batcher.close()


def _per_sample(net, name, batch):
    """Section 7: d = count / batch; d == 0 repeats the whole blob for every sample."""
    if name not in net.blobs:
        raise DataError(f"blob '{name}' is not in the test net "
                        f"(blobs: {', '.join(net.blobs)})")
    flat = np.asarray(net.blobs[name].data, dtype=np.float32).reshape(-1)
    d = flat.size // batch
    if d == 0:
        return [flat.tolist()] * batch
    return [flat[i * d:(i + 1) * d].tolist() for i in range(batch)]


def sum_partition(records, payload):
    """Test mode: per partition, (row count, element-wise sums per output blob)."""
    count, sums = 0, None
    for _, values in infer_partition(records, payload):
        arrays = [np.asarray(v, dtype=np.float64) for v in values]
        sums = arrays if sums is None else [s + a[:len(s)] for s, a in zip(sums, arrays)]
        count += 1
    if count:
        yield (count, sums)


def output_names(payload):
    """The TEST net's output blobs, in the net's order."""
    return list(test_net(payload).outputs)
