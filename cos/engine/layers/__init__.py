"""Layer implementations, one family per module; importing this registers every type."""

from . import basic, core  # noqa: F401

import importlib

for _family in ("vision", "normalization", "structure", "neuron", "loss", "common"):
    try:
        importlib.import_module(f"{__name__}.{_family}")
    except ModuleNotFoundError as _err:
        if _err.name != f"{__name__}.{_family}":
            raise
