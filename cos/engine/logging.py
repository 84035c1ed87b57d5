"""Caffe's log lines: glog's prefix (`I1125 06:40:00.123456  1234 file.py:123] msg`) over
Python logging, and Caffe's number format (C++ stream default, i.e. '%.6g')."""

import logging as _logging
import sys
import threading
import time

LOGGER_NAME = "cos"
_LEVELS = {_logging.DEBUG: "I", _logging.INFO: "I", _logging.WARNING: "W",
           _logging.ERROR: "E", _logging.CRITICAL: "F"}


def fmt(x):
    """A number as Caffe prints it: 6 significant digits, %g style."""
    return format(float(x), ".6g")


class GlogFormatter(_logging.Formatter):
    """glog's line prefix: severity, MMDD, time with microseconds, thread id, file:line."""

    def format(self, record):
        t = time.localtime(record.created)
        micros = int((record.created % 1) * 1e6)
        tid = getattr(record, "thread_native", None) or threading.get_native_id()
        head = (f"{_LEVELS.get(record.levelno, 'I')}{t.tm_mon:02d}{t.tm_mday:02d} "
                f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{micros:06d} "
                f"{tid:5d} {record.filename}:{record.lineno}] ")
        text = head + record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def get_logger(name=None):
    """The project's logger (or a child of it); silent until configure() is called."""
    return _logging.getLogger(LOGGER_NAME if not name else f"{LOGGER_NAME}.{name}")


def configure(stream=None, level=_logging.INFO):
    """Send the project's log lines to `stream` (default stderr) in glog format; idempotent."""
    logger = get_logger()
    logger.setLevel(level)
    for h in logger.handlers:
        if getattr(h, "_cos_glog", False):
            h.stream = stream or sys.stderr  # no flush: the old stream may be closed
            return h
    handler = _logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(GlogFormatter())
    handler._cos_glog = True
    logger.addHandler(handler)
    logger.propagate = False
    return handler
