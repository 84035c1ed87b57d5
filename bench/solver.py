"""Training-step time of our Solver (forward, backward, Caffe SGD update) over plain PyTorch.

Same LeNet, same batch, same threads: ours is a Caffe net driven by SGDSolver.step(1);
the baseline is a hand-written torch.nn module with a hand-written Caffe SGD loop (learning
rate inside the momentum, L2 decay, lr_mult 2 on biases). Goal: ratio <= 1.10.
Usage: .venv/bin/python bench/solver.py [--iters 50] [--batch 64] [--threads N]
"""

import argparse
import time

import torch

from cos.engine.solvers import SGDSolver
from cos.proto import caffe_pb2
from cos.proto.text import parse_net_text

LENET = """name: "LeNet"
layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: B dim: 1 dim: 28 dim: 28 } shape { dim: B } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  param { lr_mult: 1 } param { lr_mult: 2 }
  convolution_param { num_output: 20 kernel_size: 5 weight_filler { type: "xavier" } } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  param { lr_mult: 1 } param { lr_mult: 2 }
  convolution_param { num_output: 50 kernel_size: 5 weight_filler { type: "xavier" } } }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool2" top: "ip1"
  param { lr_mult: 1 } param { lr_mult: 2 }
  inner_product_param { num_output: 500 weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  param { lr_mult: 1 } param { lr_mult: 2 }
  inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
"""

BASE_LR, MOMENTUM, DECAY, GAMMA, POWER = 0.01, 0.9, 5e-4, 1e-4, 0.75


def our_solver(batch):
    p = caffe_pb2.SolverParameter(base_lr=BASE_LR, momentum=MOMENTUM, weight_decay=DECAY,
                                  lr_policy="inv", gamma=GAMMA, power=POWER, max_iter=10000,
                                  random_seed=1)
    p.net_param.CopyFrom(parse_net_text(LENET.replace("dim: B", f"dim: {batch}")))
    return SGDSolver(p)


class TorchLeNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 20, 5)
        self.conv2 = torch.nn.Conv2d(20, 50, 5)
        self.ip1 = torch.nn.Linear(800, 500)
        self.ip2 = torch.nn.Linear(500, 10)

    def forward(self, x):
        x = torch.nn.functional.max_pool2d(self.conv1(x), 2, 2)
        x = torch.nn.functional.max_pool2d(self.conv2(x), 2, 2)
        return self.ip2(torch.relu(self.ip1(x.flatten(1))))


def torch_step(model, history, x, y, it):
    """Hand-written Caffe SGD: g += decay*w; v = mu*v + lr*lr_mult*g; w -= v."""
    for prm in model.parameters():
        prm.grad = None
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    rate = BASE_LR * (1 + GAMMA * it) ** (-POWER)
    with torch.no_grad():
        for (name, prm), v in zip(model.named_parameters(), history):
            g = prm.grad.add_(prm, alpha=DECAY)
            v.mul_(MOMENTUM).add_(g, alpha=rate * (2 if name.endswith("bias") else 1))
            prm.sub_(v)
    return float(loss.detach())


def time_ours(solver, batches):
    net = solver.net
    data, label = net.blobs["data"].tensor, net.blobs["label"].tensor
    start = time.perf_counter()
    for x, y in batches:
        data.copy_(x)
        label.copy_(y)
        solver.step(1)
    return time.perf_counter() - start


def time_torch(model, history, batches):
    start = time.perf_counter()
    for it, (x, y) in enumerate(batches):
        torch_step(model, history, x, y.long(), it)
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(args.batch, 1, 28, 28, generator=g),
                torch.randint(0, 10, (args.batch,), generator=g).float())
               for _ in range(args.iters)]
    solver = our_solver(args.batch)
    model = TorchLeNet()
    history = [torch.zeros_like(p) for p in model.parameters()]
    time_ours(solver, batches[:5])          # warm-up both
    time_torch(model, history, batches[:5])
    ours, theirs = [], []
    for _ in range(args.rounds):            # interleave so load changes hit both alike
        ours.append(time_ours(solver, batches))
        theirs.append(time_torch(model, history, batches))
    o, t = min(ours) / args.iters * 1e3, min(theirs) / args.iters * 1e3
    print(f"threads={args.threads} batch={args.batch} iters={args.iters} rounds={args.rounds}")
    print(f"ours (SGDSolver.step):    {o:.3f} ms/iter")
    print(f"plain PyTorch + Caffe SGD: {t:.3f} ms/iter")
    print(f"ratio ours/pytorch: {o / t:.3f} (goal <= 1.10)")


if __name__ == "__main__":
    main()
