"""The driver API: CaffeOnSpark, Config and DataSource (only this package knows Spark)."""

from .caffe_on_spark import CaffeOnSpark
from .config import Config
from .datasource import DataSource

__all__ = ["CaffeOnSpark", "Config", "DataSource"]
