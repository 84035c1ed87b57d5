"""CaffeOnSpark in Python: Caffe training, testing and feature extraction on Spark."""

__version__ = "0.1.0"
