"""Config: option names, CLI defaults, mode interactions, data-layer discovery, cluster size."""

import pytest

from cos.errors import ClusterError, CosError, NetError
from cos.spark.config import Config, data_layer_id, resolve_cluster_size

NET = """
name: "tiny"
layer { name: "train_data" type: "MemoryData" top: "data" top: "label"
  include { phase: TRAIN } source_class: "com.yahoo.ml.caffe.LMDB"
  memory_data_param { source: "file:/tmp/train_lmdb" batch_size: 4 channels: 1 height: 2 width: 2 } }
layer { name: "test_data" type: "MemoryData" top: "data" top: "label"
  include { phase: TEST } source_class: "com.yahoo.ml.caffe.LMDB"
  memory_data_param { source: "file:/tmp/test_lmdb" batch_size: 2 channels: 1 height: 2 width: 2 } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 2 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""
SOLVER = 'net: "tiny_net.prototxt"\nbase_lr: 0.1\nmax_iter: 3\nsnapshot_prefix: "tiny"\n'


@pytest.fixture
def solver_file(tmp_path):
    (tmp_path / "tiny_net.prototxt").write_text(NET)
    path = tmp_path / "tiny_solver.prototxt"
    path.write_text(SOLVER)
    return path


def test_defaults_equal_the_cli_defaults():
    cfg = Config()
    assert (cfg.devices, cfg.clusterSize, cfg.connection) == (1, 1, "ethernet")
    assert (cfg.outputPath, cfg.label, cfg.outputFormat) == ("output", "", "json")
    assert (cfg.isTraining, cfg.isTest, cfg.isFeature) == (False, False, False)
    assert cfg.lmdb_partitions == 1 and cfg.captionLength == 20 and cfg.vocabSize == -1


def test_keys_with_or_without_dash_and_flags_as_empty_strings():
    cfg = Config(None, {"-train": "", "model": "file:/tmp/m", "clusterSize": "3",
                        "-devices": "1"})
    assert cfg.isTraining and cfg.modelPath == "file:/tmp/m"
    assert cfg.clusterSize == 3 and cfg.lmdb_partitions == 3
    cfg.lmdb_partitions = 5
    assert cfg.lmdb_partitions == 5


def test_unknown_names_raise_attribute_error():
    cfg = Config()
    with pytest.raises(AttributeError, match="clustersize"):
        cfg.clustersize = 2
    with pytest.raises(AttributeError, match="nope"):
        cfg.nope
    with pytest.raises(AttributeError):
        Config(None, {"-Train": ""})
    with pytest.raises(AttributeError, match="read-only"):
        cfg.netParam = None


def test_bad_integer_names_the_option():
    with pytest.raises(CosError, match="-clusterSize: expected an integer, got 'two'"):
        Config(None, {"clusterSize": "two"})


def test_features_win_over_test_and_label_is_appended():
    cfg = Config(None, {"features": "ip1,prob", "test": "", "label": "label"})
    assert not cfg.isTest and cfg.isFeature
    assert cfg.features == ["ip1", "prob", "label"]
    cfg.isTest = True  # API: the most recent wins
    assert cfg.isTest and not cfg.isFeature
    cfg2 = Config(None, {"features": "label,ip1", "label": "label"})
    assert cfg2.features == ["label", "ip1"]


def test_cli_tokens_are_parsed_like_the_original():
    cfg = Config(None, ["-train", "-clusterSize", "2", "-connection", "ethernet"])
    assert cfg.isTraining and cfg.clusterSize == 2
    with pytest.raises(CosError, match="unknown option -bogus"):
        Config(None, ["-bogus"])


def test_conf_finds_the_net_next_to_the_solver_and_the_data_layers(solver_file, tmp_path,
                                                                     monkeypatch):
    monkeypatch.chdir(tmp_path.parent)  # not the solver's directory
    cfg = Config(None, {"conf": str(solver_file)})
    assert cfg.netParam.name == "tiny"
    assert (cfg.train_data_layer_id, cfg.test_data_layer_id) == (0, 1)
    assert cfg.data_layer(False).name == "test_data"
    shipped = cfg.shipped_solver()
    assert not shipped.net and shipped.net_param.name == "tiny"


def test_missing_source_class_is_a_clear_error(tmp_path):
    (tmp_path / "tiny_net.prototxt").write_text(NET.replace(
        'include { phase: TEST } source_class: "com.yahoo.ml.caffe.LMDB"',
        'include { phase: TEST }'))
    (tmp_path / "s.prototxt").write_text(SOLVER)
    cfg = Config(None, {"conf": str(tmp_path / "s.prototxt")})
    assert cfg.test_data_layer_id is None
    with pytest.raises(NetError, match="no TEST data layer with a source_class"):
        cfg.data_layer(False)


def test_missing_net_file_names_the_paths_tried(tmp_path):
    (tmp_path / "s.prototxt").write_text(SOLVER)
    with pytest.raises(CosError, match="tiny_net.prototxt"):
        Config(None, {"conf": str(tmp_path / "s.prototxt")})


def test_cluster_size_resolution():
    conf = {"spark.dynamicAllocation.enabled": "true",
            "spark.dynamicAllocation.minExecutors": "3",
            "spark.dynamicAllocation.maxExecutors": "3"}
    assert resolve_cluster_size(lambda k, d=None: conf.get(k, d), 7, training=True) == 3
    conf["spark.dynamicAllocation.maxExecutors"] = "5"
    with pytest.raises(ClusterError, match="must be identical"):
        resolve_cluster_size(lambda k, d=None: conf.get(k, d), 7, training=True)
    yarn = {"spark.master": "yarn", "spark.executor.instances": "4"}
    assert resolve_cluster_size(lambda k, d=None: yarn.get(k, d), 2) == 4
    assert resolve_cluster_size(lambda k, d=None: d, 2) == 2
    assert resolve_cluster_size(lambda k, d=None: d, None) == 1


def test_data_layer_id_is_first_layer_with_source_class_in_phase():
    from cos.proto import caffe_pb2
    from cos.proto.text import parse_net_text
    net = parse_net_text(NET)
    assert data_layer_id(net, caffe_pb2.TRAIN) == 0
    assert data_layer_id(net, caffe_pb2.TEST) == 1
