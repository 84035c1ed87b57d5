"""glog-format log lines and Caffe's number format."""

import io
import re

from cos.engine import logging as cos_logging

GLOG = re.compile(r"^([IWEF])(\d{4}) (\d\d:\d\d:\d\d\.\d{6}) +(\d+) ([\w.]+):(\d+)\] (.*)$")


def test_numbers_like_cpp_streams():
    got = [cos_logging.fmt(x) for x in (0.009925650, 2.302585, 1e-5, 87.33654, 1.0, 0, 123456789)]
    assert got == ["0.00992565", "2.30259", "1e-05", "87.3365", "1", "0", "1.23457e+08"]


def test_glog_prefix_and_levels():
    buf = io.StringIO()
    handler = cos_logging.configure(buf)
    try:
        log = cos_logging.get_logger("solver")
        log.info("Iteration %d, lr = %s", 100, cos_logging.fmt(0.00992565))
        log.warning("careful")
        log.debug("hidden")
    finally:
        cos_logging.get_logger().removeHandler(handler)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2
    m = GLOG.match(lines[0])
    assert m, lines[0]
    assert m.group(1) == "I" and m.group(5) == "test_engine_logging.py"
    assert m.group(7) == "Iteration 100, lr = 0.00992565"
    # the thread id is right-aligned in 5 columns, as glog pads it
    tid = re.match(r"^[IWEF]\d{4} [\d:.]{15} ( *\d+) ", lines[0]).group(1)
    assert len(tid) >= 5 and tid.strip().isdigit()
    assert GLOG.match(lines[1]).group(1) == "W"


def test_configure_is_idempotent():
    a, b = io.StringIO(), io.StringIO()
    h1 = cos_logging.configure(a)
    h2 = cos_logging.configure(b)
    try:
        cos_logging.get_logger().info("once")
    finally:
        cos_logging.get_logger().removeHandler(h1)
    assert h1 is h2 and a.getvalue() == "" and b.getvalue().count("once") == 1


def test_parse_log_regexes_find_our_lines():
    """Caffe's tools/extra/parse_log.py patterns must match what the solver writes."""
    buf = io.StringIO()
    handler = cos_logging.configure(buf)
    log = cos_logging.get_logger("solver")
    try:
        log.info("Iteration %d (%s iter/s, %ss/%d iters), loss = %s", 100, "12.3", "8.1", 100,
                 cos_logging.fmt(0.25))
        log.info("    Train net output #0: loss = 0.25 (* 1 = 0.25 loss)")
        log.info("Iteration 100, lr = 0.00992565")
    finally:
        cos_logging.get_logger().removeHandler(handler)
    text = buf.getvalue()
    assert re.search(r"Iteration (\d+)", text)
    assert re.search(r"lr = ([-+]?[0-9]*\.?[0-9]+([eE]?[-+]?[0-9]+)?)", text).group(1) == "0.00992565"
    assert re.search(r"Train net output #(\d+): (\S+) = ([\.\deE+-]+)", text).group(3) == "0.25"
    assert re.search(r"(\d\d:\d\d:\d\d\.\d+)", text)
