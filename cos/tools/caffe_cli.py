"""`cos-caffe train|test|time`: Caffe's command-line tool, single process, gflags-style flags."""

import argparse
import signal
import sys
import time
import traceback

import numpy as np
import torch

from ..data import layers as _data_layers  # noqa: F401  (registers Data, MemoryData, CoSData)
from ..engine import logging as cos_logging
from ..engine.logging import fmt
from ..errors import CosError

log = cos_logging.get_logger("caffe")
COMMANDS = ("train", "test", "time")


def gflags_to_argparse(argv):
    """Caffe's `-flag value` / `-flag=value` become `--flag ...` for argparse."""
    out = []
    for a in argv:
        if a.startswith("-") and not a.startswith("--") and len(a) > 2:
            a = "-" + a
        out.append(a)
    return out


def build_parser():
    p = argparse.ArgumentParser(prog="cos-caffe", description="Caffe's command-line tool")
    p.add_argument("command", help="train, test or time")
    p.add_argument("--solver", default="")
    p.add_argument("--model", default="")
    p.add_argument("--weights", default="")
    p.add_argument("--snapshot", default="")
    p.add_argument("--iterations", type=int, default=50)
    p.add_argument("--phase", default="TRAIN", choices=["TRAIN", "TEST"])
    p.add_argument("--level", type=int, default=0)
    p.add_argument("--stage", default="")
    p.add_argument("--gpu", default="")
    p.add_argument("--sigint_effect", default="stop", choices=["stop", "snapshot", "none"])
    p.add_argument("--sighup_effect", default="snapshot", choices=["stop", "snapshot", "none"])
    p.add_argument("--verbose", action="store_true", help="show tracebacks")
    return p


def device_for(gpu):
    if not gpu:
        return "cpu"
    if not torch.cuda.is_available():
        raise CosError(f"-gpu {gpu}: no CUDA device is available (leave -gpu out for CPU)")
    first = gpu.split(",")[0]
    return "cuda:0" if first == "all" else f"cuda:{int(first)}"


def stages(args):
    return [s for s in args.stage.split(",") if s]


def train(args):
    from ..engine.solvers.base import load_solver_param
    from ..engine.solvers.factory import solver_class
    if not args.solver:
        raise CosError("train: -solver is required")
    if args.snapshot and args.weights:
        raise CosError("train: give -snapshot or -weights, not both "
                       "(-snapshot resumes, -weights fine-tunes)")
    param, path = load_solver_param(args.solver)
    param.train_state.level = args.level
    param.train_state.stage.extend(stages(args))
    if args.snapshot or args.weights:
        param.ClearField("weights")
    if args.weights:
        log.info("Finetuning from %s", args.weights)
        param.weights.append(args.weights)
    gpu = args.gpu
    if not gpu and param.HasField("solver_mode") and param.solver_mode == param.GPU:
        # Caffe trains on the GPU when the solver file asks for it explicitly
        if torch.cuda.is_available():
            gpu = str(param.device_id)
        else:
            log.warning("solver_mode: GPU but no CUDA device is available; training on CPU")
    cls = solver_class(param.type)
    solver = cls(param, device=device_for(gpu), path=path)
    _install_signals(solver, args)
    log.info("Starting Optimization")
    if args.snapshot:
        log.info("Resuming from %s", args.snapshot)
    solver.solve(args.snapshot or None)
    log.info("Optimization Done.")


def _install_signals(solver, args):
    """SIGINT/SIGHUP ask the solver to stop or snapshot after the current iteration (Caffe)."""
    def handler(effect):
        def on_signal(signum, frame):
            if effect == "stop":
                solver.request_stop()
            elif effect == "snapshot":
                solver.request_snapshot()
        return on_signal
    signal.signal(signal.SIGINT, handler(args.sigint_effect))
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, handler(args.sighup_effect))


def _net(args, phase):
    from ..engine.layer import TEST, TRAIN
    from ..engine.net import Net
    if not args.model:
        raise CosError(f"{args.command}: -model is required")
    return Net(args.model, phase=TRAIN if phase == "TRAIN" else TEST, level=args.level,
               stages=stages(args), device=device_for(args.gpu))


def test(args):
    if not args.weights:
        raise CosError("test: -weights is required (one .caffemodel)")
    net = _net(args, "TEST")
    net.copy_from(args.weights)
    log.info("Running for %d iterations.", args.iterations)
    sums, loss = {}, 0.0
    for i in range(args.iterations):
        loss += net.forward_loss()
        for name, v in net.output_values().items():
            v = np.asarray(v, dtype=np.float64).reshape(-1)
            for x in v:
                log.info("Batch %d, %s = %s", i, name, fmt(x))
            sums[name] = sums[name] + v if name in sums else v.copy()
    n = max(args.iterations, 1)
    log.info("Loss: %s", fmt(loss / n))
    for name in net.outputs:
        w = net.blob_loss_weights.get(name, 0.0)
        for x in sums.get(name, []):
            mean = x / n
            extra = f" (* {fmt(w)} = {fmt(w * mean)} loss)" if w else ""
            log.info("%s = %s%s", name, fmt(mean), extra)


def _sync(net):
    if net.device.type == "cuda":
        torch.cuda.synchronize(net.device)


def time_net(args):
    net = _net(args, args.phase)
    names, n = net._layer_names, len(net.layers)
    log.info("Performing Forward")
    log.info("Initial loss: %s", fmt(net._forward(0, n - 1)))
    log.info("Performing Backward")
    net._backward(n - 1, 0)
    log.info("*** Benchmark begins ***")
    log.info("Testing for %d iterations.", args.iterations)
    fwd, bwd = np.zeros(n), np.zeros(n)
    total_f = total_b = 0.0
    start_all = time.perf_counter()
    for j in range(args.iterations):
        t_iter = time.perf_counter()
        for i in range(n):
            t = time.perf_counter()
            net._forward(i, i)
            _sync(net)
            fwd[i] += time.perf_counter() - t
        t_f = time.perf_counter() - t_iter
        t_back = time.perf_counter()
        for i in range(n - 1, -1, -1):
            t = time.perf_counter()
            net._backward(i, i)
            _sync(net)
            bwd[i] += time.perf_counter() - t
        total_b += time.perf_counter() - t_back
        total_f += t_f
        log.info("Iteration: %d forward-backward time: %s ms.", j + 1,
                 fmt((time.perf_counter() - t_iter) * 1e3))
    k = max(args.iterations, 1)
    log.info("Average time per layer: ")
    for i, name in enumerate(names):
        log.info("%10s\tforward: %s ms.", name, fmt(fwd[i] / k * 1e3))
        log.info("%10s\tbackward: %s ms.", name, fmt(bwd[i] / k * 1e3))
    log.info("Average Forward pass: %s ms.", fmt(total_f / k * 1e3))
    log.info("Average Backward pass: %s ms.", fmt(total_b / k * 1e3))
    log.info("Average Forward-Backward: %s ms.", fmt((total_f + total_b) / k * 1e3))
    log.info("Total Time: %s ms.", fmt((time.perf_counter() - start_all) * 1e3))
    log.info("*** Benchmark ends ***")


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(gflags_to_argparse(argv))
    cos_logging.configure(sys.stderr)
    try:
        if args.command not in COMMANDS:
            raise CosError(f"unknown command '{args.command}' (available: {', '.join(COMMANDS)})")
        {"train": train, "test": test, "time": time_net}[args.command](args)
    except CosError as err:
        if args.verbose:
            traceback.print_exc()
        print(f"cos-caffe: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("cos-caffe: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
