"""Config: every CaffeOnSpark option with the CLI's defaults, the parsed solver/net, and
the cluster size resolved from Spark's settings in one place.

Build it from a dict (`Config(sc, {'conf': 's.prototxt', '-train': ''})`), from keyword
arguments, or from CLI tokens; the API defaults equal the CLI defaults.
"""

import logging
import os

from ..errors import ClusterError, CosError, NetError
from ..proto import caffe_pb2

log = logging.getLogger("cos.spark")

# option name -> (attribute, type, default); the attribute is the original's Scala name.
OPTIONS = {
    "conf": ("protoFile", str, ""),
    "train": ("isTraining", bool, False),
    "test": ("isTest", bool, False),
    "features": ("features", list, None),
    "label": ("label", str, ""),
    "outputFormat": ("outputFormat", str, "json"),
    "model": ("modelPath", str, ""),
    "output": ("outputPath", str, "output"),
    "devices": ("devices", int, 1),
    "persistent": ("isRddPersistent", bool, False),
    "snapshot": ("snapshotStateFile", str, ""),
    "weights": ("snapshotModelFile", str, ""),
    "connection": ("connection", str, "ethernet"),
    "resize": ("resize", bool, False),
    "clusterSize": ("clusterSize", int, None),
    "lmdb_partitions": ("lmdb_partitions", int, None),
    "imageRoot": ("imageRoot", str, ""),
    "labelFile": ("labelFile", str, ""),
    "captionFile": ("captionFile", str, ""),
    "captionLength": ("captionLength", int, 20),
    "vocabSize": ("vocabSize", int, -1),
    "imageCaptionDFDir": ("imageCaptionDFDir", str, ""),
    "vocabDir": ("vocabDir", str, ""),
    "embeddingDFDir": ("embeddingDFDir", str, ""),
}
FLAGS = {name for name, (_, kind, _) in OPTIONS.items() if kind is bool}
_EXTRA = {"transform_thread_per_device": 1, "barrier_timeout": 120, "sync_timeout": 300}
_READ_ONLY = {"train_data_layer_id", "test_data_layer_id", "solverParameter", "netParam",
              "isFeature", "solver_dir"}
_ATTRS = {attr for attr, _, _ in OPTIONS.values()} | set(_EXTRA) | _READ_ONLY
_ALIASES = {name: attr for name, (attr, _, _) in OPTIONS.items()}


class Config:
    """Options of one CaffeOnSpark job; unknown attribute names raise AttributeError."""

    def __init__(self, sc=None, args=None, **kwargs):
        object.__setattr__(self, "_values", {})
        object.__setattr__(self, "sc", sc)
        for name, (attr, kind, default) in OPTIONS.items():
            self._values[attr] = list(default) if isinstance(default, list) else default
        self._values.update(_EXTRA)
        self._values.update(train_data_layer_id=None, test_data_layer_id=None,
                            solverParameter=None, netParam=None, solver_dir="")
        pairs = _pairs(args) + list(kwargs.items())
        # the original's parse order: -conf first, -test before -features (features wins)
        order = list(OPTIONS)
        pairs.sort(key=lambda kv: order.index(str(kv[0]).lstrip("-"))
                   if str(kv[0]).lstrip("-") in OPTIONS else len(order))
        for key, value in pairs:
            self.set_option(key, value)

    # ---- attribute access ---------------------------------------------------
    def __getattr__(self, name):
        values = object.__getattribute__(self, "_values")
        attr = _ALIASES.get(name, name)
        if attr == "features":
            return self._merged_features()
        if attr == "isFeature":
            return bool(values["features"])
        if attr == "clusterSize":
            return self._resolved_cluster_size()
        if attr == "lmdb_partitions":
            given = values["lmdb_partitions"]
            return given if given else self._resolved_cluster_size()
        if attr in values:
            return values[attr]
        raise AttributeError(f"Config has no option {name!r}")

    def __setattr__(self, name, value):
        attr = _ALIASES.get(name, name)
        if attr in _READ_ONLY:
            raise AttributeError(f"Config.{name} is read-only")
        if attr not in _ATTRS:
            raise AttributeError(f"Config has no option {name!r}")
        if attr == "protoFile":
            self._load_solver(value)
        elif attr == "isTest":
            self._set_mode(test=bool(value))
        elif attr == "features":
            self._set_features(value)
        else:
            self._values[attr] = _convert(attr, value)

    def set_option(self, key, value):
        """One CLI-style option: key with or without '-', value as a string (flags: '')."""
        name = str(key).lstrip("-")
        if name in FLAGS and value in ("", None):
            value = True
        if name not in OPTIONS and name not in _ATTRS:
            raise AttributeError(f"Config has no option {key!r}")
        setattr(self, name, value)

    # ---- modes --------------------------------------------------------------
    def _set_mode(self, test):
        if test and self._values["features"]:
            log.warning("both -test and -features were set: running test only")
            self._values["features"] = []
        self._values["isTest"] = test

    def _set_features(self, value):
        if isinstance(value, str):
            value = [v for v in (s.strip() for s in value.split(",")) if v]
        value = list(value or [])
        if value and self._values["isTest"]:
            log.warning("both -test and -features were set: extracting features only")
            self._values["isTest"] = False
        self._values["features"] = value

    def _merged_features(self):
        features = list(self._values["features"] or [])
        label = self._values["label"]
        if features and label and label not in features:
            features.append(label)
        return features

    # ---- solver and net -----------------------------------------------------
    def _load_solver(self, path):
        self._values["protoFile"] = str(path or "")
        if not path:
            return
        from ..proto import paths, text
        solver = text.read_solver(path)
        solver_dir = os.path.dirname(paths.local_path(str(path))) if paths.is_local(path) else ""
        net = _solver_net(solver, str(path), solver_dir)
        self._values.update(solverParameter=solver, netParam=net, solver_dir=solver_dir)
        self._values["train_data_layer_id"] = data_layer_id(net, caffe_pb2.TRAIN)
        self._values["test_data_layer_id"] = data_layer_id(net, caffe_pb2.TEST)

    def shipped_solver(self):
        """The solver with its net inlined (`net_param`), so tasks need no files."""
        if self.solverParameter is None:
            raise CosError("-conf: no solver prototxt was given")
        solver = caffe_pb2.SolverParameter()
        solver.CopyFrom(self.solverParameter)
        solver.ClearField("net")
        solver.net_param.CopyFrom(self.netParam)
        return solver

    def data_layer(self, is_training):
        """The LayerParameter of the TRAIN or TEST data layer, or a clear error."""
        phase = "TRAIN" if is_training else "TEST"
        index = self.train_data_layer_id if is_training else self.test_data_layer_id
        if self.netParam is None:
            raise CosError("-conf: no solver prototxt was given")
        if index is None:
            types = sorted({lp.type for lp in self.netParam.layer})
            raise NetError(f"{self.protoFile}: no {phase} data layer with a source_class "
                           f"(layer types in the net: {', '.join(types)}); add "
                           f"'source_class: \"com.yahoo.ml.caffe.LMDB\"' (or another "
                           f"source) to the {phase} data layer")
        return self.netParam.layer[index]

    # ---- cluster size -------------------------------------------------------
    def _resolved_cluster_size(self):
        return resolve_cluster_size(_spark_conf(self.sc), self._values["clusterSize"],
                                    self._values["isTraining"])

    def __repr__(self):
        lines = [f"{attr}:{getattr(self, attr)}" for attr, _, _ in OPTIONS.values()]
        return "\n".join(lines)

    __str__ = __repr__


def resolve_cluster_size(get, given, training=False):
    """Section 2.5: dynamic allocation, then YARN's executor count, then -clusterSize, then 1."""
    if str(get("spark.dynamicAllocation.enabled", "false")).lower() == "true":
        low = int(get("spark.dynamicAllocation.minExecutors", "1"))
        high = get("spark.dynamicAllocation.maxExecutors", None)
        if training and high is not None and int(high) != low:
            raise ClusterError(
                "spark.dynamicAllocation.minExecutors and maxExecutors must be identical "
                f"for training (got {low} and {high})")
        return low
    if str(get("spark.master", "")).startswith("yarn"):
        return int(get("spark.executor.instances", "1"))
    return int(given) if given else 1


def data_layer_id(net, phase):
    """Index of the first layer with a source_class that runs in `phase`, or None."""
    for i, layer in enumerate(net.layer):
        if layer.HasField("source_class") and _in_phase(layer, phase):
            return i
    return None


def _in_phase(layer, phase):
    if layer.include:
        return any(rule.HasField("phase") and rule.phase == phase for rule in layer.include)
    return not any(rule.HasField("phase") and rule.phase == phase for rule in layer.exclude)


def _solver_net(solver, solver_path, solver_dir):
    """The solver's net: inline `net_param`, else the `net` file tried next to the solver
    and then in the CWD."""
    from ..proto import paths, text
    if solver.HasField("net_param"):
        return solver.net_param
    name = solver.net or solver.train_net
    if not name:
        raise CosError(f"{solver_path}: the solver names no net (field 'net')")
    tried = []
    for candidate in (os.path.join(solver_dir, name), name):
        tried.append(candidate)
        if paths.is_local(candidate) and os.path.exists(paths.local_path(candidate)):
            return text.read_net(candidate)
    if not paths.is_local(name):
        return text.read_net(name)
    raise CosError(f"{solver_path}: field 'net': file not found (tried {', '.join(tried)})",
                   exit_code=2)


def _spark_conf(sc):
    if sc is None:
        return lambda key, default=None: default
    conf = sc.getConf()
    return lambda key, default=None: conf.get(key, default)


def _convert(attr, value):
    kinds = {a: kind for a, kind, _ in OPTIONS.values()}
    kind = kinds.get(attr)
    if value is None or kind is None:
        return value
    if kind is bool:
        if isinstance(value, str):
            return value.lower() not in ("false", "0", "no")
        return bool(value)
    if kind is int:
        try:
            return int(value)
        except (TypeError, ValueError):
            raise CosError(f"-{_option_of(attr)}: expected an integer, got {value!r}",
                           exit_code=2) from None
    return str(value)


def _option_of(attr):
    for name, (a, _, _) in OPTIONS.items():
        if a == attr:
            return name
    return attr


def _pairs(args):
    if args is None:
        return []
    if isinstance(args, dict):
        return list(args.items())
    tokens = list(args)  # CLI tokens: ['-train', '-conf', 's.prototxt', ...]
    pairs, i = [], 0
    while i < len(tokens):
        name = tokens[i].lstrip("-")
        if name in FLAGS:
            pairs.append((name, True))
            i += 1
        elif name in OPTIONS:
            if i + 1 >= len(tokens):
                raise CosError(f"{tokens[i]}: missing value", exit_code=2)
            pairs.append((name, tokens[i + 1]))
            i += 2
        else:
            raise CosError(f"unknown option {tokens[i]}", exit_code=2)
    return pairs
