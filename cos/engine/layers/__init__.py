"""Layer implementations, one family per module; importing this registers every type."""

from . import core, vision, normalization, structure, neuron, loss, common  # noqa: F401
