#!/usr/bin/env python
"""Plot training loss and validation accuracy from a Caffe-format training log.

usage: plot_training.py TRAIN_LOG OUT.png
"""

import re
import sys

TRAIN = re.compile(r"Iteration (\d+)(?: \([^)]*\))?, loss = ([-+0-9.eEinfa]+)")
TESTING = re.compile(r"Iteration (\d+), Testing net")
TEST_OUT = re.compile(r"Test net output #\d+: (\S+) = ([-+0-9.eEinfa]+)")


def parse_log(lines):
    """Return ([(iter, loss)], {blob: [(iter, value)]}) from Caffe log lines."""
    train, tests, test_iter = [], {}, None
    for line in lines:
        m = TRAIN.search(line)
        if m:
            train.append((int(m.group(1)), float(m.group(2))))
            continue
        m = TESTING.search(line)
        if m:
            test_iter = int(m.group(1))
            continue
        m = TEST_OUT.search(line)
        if m and test_iter is not None:
            tests.setdefault(m.group(1), []).append((test_iter, float(m.group(2))))
    return train, tests


def plot(train, tests, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, left = plt.subplots(figsize=(7, 4))
    if train:
        left.plot(*zip(*train), color="tab:blue", label="training loss")
    left.set_xlabel("iteration")
    left.set_ylabel("training loss", color="tab:blue")
    right = left.twinx()
    if tests.get("accuracy"):
        right.plot(*zip(*tests["accuracy"]), "o-", color="tab:orange", label="validation accuracy")
    right.set_ylabel("validation accuracy", color="tab:orange")
    right.set_ylim(0, 1)
    fig.legend(loc="center")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    with open(argv[1], errors="replace") as f:
        train, tests = parse_log(f)
    if not train or not tests.get("accuracy"):
        print(f"plot_training.py: {argv[1]} has no training loss or validation accuracy lines",
              file=sys.stderr)
        return 1
    plot(train, tests, argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
