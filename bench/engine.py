#!/usr/bin/env python
"""Engine speed and memory against plain PyTorch, measured in one run.

For LeNet (batch 64) and CIFAR-10 quick (batch 100), forward+backward of our Net's
training path vs. a hand-written torch.nn module of the same net, same thread count.
Prints the time ratio (goal <= 1.10) and the peak-memory ratio (goal <= 1.2).
Each memory figure is measured in a fresh process: peak RSS growth over five training
steps, counted from just after the model is built (params included in both, the
activations, gradients and autograd buffers of the steps are what is compared).
"""

import json
import os
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

NETS = {
    "lenet": ("data/lenet_memory_train_test.prototxt", (64, 1, 28, 28)),
    "cifar10_quick": ("data/cifar10_quick_train_test.prototxt", (100, 3, 32, 32)),
}


def our_net(which):
    from cos.engine.layer import TRAIN
    from cos.engine.net import Net
    from cos.proto import caffe_pb2
    from cos.proto.text import read_net
    path, shape = NETS[which]
    param = read_net(os.path.join(REPO, path))
    body = [l for l in param.layer if not l.source_class]
    del param.layer[:]
    data = param.layer.add(name="data", type="Input")
    data.top.extend(["data", "label"])
    data.input_param.shape.add().dim.extend(shape)
    data.input_param.shape.add().dim.append(shape[0])
    param.layer.extend(body)
    net = Net(param, TRAIN, seed=1)
    x, y = inputs(shape)
    net.blobs["data"].data[...] = x.numpy()
    net.blobs["label"].data[...] = y.numpy()

    def step():
        net.forward_backward()
    return step


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 20, 5), nn.Conv2d(20, 50, 5)
        self.ip1, self.ip2 = nn.Linear(800, 500), nn.Linear(500, 10)

    def forward(self, x):
        x = F.max_pool2d(self.conv1(x * 0.00390625), 2, 2)
        x = F.max_pool2d(self.conv2(x), 2, 2)
        return self.ip2(F.relu(self.ip1(x.flatten(1))))


class CifarQuick(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 5, padding=2)
        self.conv2 = nn.Conv2d(32, 32, 5, padding=2)
        self.conv3 = nn.Conv2d(32, 64, 5, padding=2)
        self.ip1, self.ip2 = nn.Linear(1024, 64), nn.Linear(64, 10)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 3, 2, ceil_mode=True))
        x = F.avg_pool2d(F.relu(self.conv2(x)), 3, 2, ceil_mode=True)
        x = F.avg_pool2d(F.relu(self.conv3(x)), 3, 2, ceil_mode=True)
        return self.ip2(self.ip1(x.flatten(1)))


def plain_net(which):
    _, shape = NETS[which]
    model = LeNet() if which == "lenet" else CifarQuick()
    x, y = inputs(shape)

    def step():
        loss = F.cross_entropy(model(x), y)
        loss.backward()
    return step


def inputs(shape):
    g = torch.Generator().manual_seed(0)
    return torch.rand(shape, generator=g) * 255, torch.randint(0, 10, (shape[0],), generator=g)


def time_steps(step, repeats=30, warmup=5):
    for _ in range(warmup):
        step()
    best = []
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            step()
        best.append((time.perf_counter() - start) / repeats)
    return min(best)


def rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def current_rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def memory_child(kind, which):
    """Run in a fresh process: peak RSS growth over building and running the model."""
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    step = (our_net if kind == "ours" else plain_net)(which)
    before = current_rss_kb()
    for _ in range(5):
        step()
    print(json.dumps({"peak_growth_kb": rss_kb() - before}))


def peak_growth(kind, which, threads):
    env = dict(os.environ, BENCH_THREADS=str(threads))
    out = subprocess.run([sys.executable, __file__, "--memory", kind, which], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_growth_kb"]


def main():
    threads = int(os.environ.get("BENCH_THREADS", str(torch.get_num_threads())))
    torch.set_num_threads(threads)
    print(f"engine benchmark: forward+backward, {threads} thread(s), CPU")
    print(f"{'net':<14}{'ours ms':>9}{'torch ms':>10}{'time ratio':>12}{'mem ratio':>11}")
    for which in NETS:
        ours = time_steps(our_net(which))
        plain = time_steps(plain_net(which))
        mem = peak_growth("ours", which, threads) / max(1, peak_growth("plain", which, threads))
        print(f"{which:<14}{ours * 1e3:>9.2f}{plain * 1e3:>10.2f}{ours / plain:>12.3f}{mem:>11.3f}")
    print("goals: time ratio <= 1.10, peak memory ratio <= 1.2")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--memory":
        memory_child(sys.argv[2], sys.argv[3])
    else:
        main()
