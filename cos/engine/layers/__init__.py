"""Layer implementations, one family per module; importing this registers every type."""

# Later modules win where two register the same type (neuron's ReLU, loss's SoftmaxWithLoss).
from . import basic, core, normalization, structure, neuron, loss, common  # noqa: F401
