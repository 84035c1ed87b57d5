#!/usr/bin/env python
"""Condense a caffe-on-spark log on stdin into progress lines (the full log is kept by tee)."""

import re
import sys

KEEP = re.compile(r"(Iteration \d+.*loss = |Testing net|Test net output|Optimization Done|"
                  r"Snapshotting|error|Error|ERROR|failed|caffe-on-spark:|^[EF]\d{4} )")
GLOG = re.compile(r"^[IWEF]\d{4} [\d:.]+\s+\d+ [^\]]+\] ")


def main():
    for line in sys.stdin:
        if KEEP.search(line):
            print("  " + GLOG.sub("", line.rstrip()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
