"""User-facing errors: one line that names the file, field, layer, key or rank."""


class CosError(Exception):
    """An error caused by the user's input or environment, shown as one line.

    The CLI prints ``str(err)`` without a traceback (unless ``--verbose``)
    and exits with ``exit_code``.
    """

    exit_code = 1

    def __init__(self, message, exit_code=None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ParseError(CosError):
    """A prototxt or binary proto file could not be read (``path:line:col: what``)."""

    exit_code = 2


class NetError(CosError):
    """A net definition is inconsistent (unknown layer type, bad bottom, shapes...)."""


class SolverError(CosError):
    """A solver definition or state is unusable."""


class DataError(CosError):
    """A data source is missing, empty or corrupt."""


class ClusterError(CosError):
    """The cluster cannot run the job (executor count, unreachable peer, dead rank)."""
