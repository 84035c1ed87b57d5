"""Prototxt reading/writing: round trips, upgrades on read, and one-line errors with path:line:col."""

import os

import pytest
from google.protobuf import text_format

from cos.errors import CosError, ParseError
from cos.proto import caffe_pb2, text

NET = """name: "tiny"
layer {
  name: "data"  type: "Input"  top: "data"
  input_param { shape { dim: 2 dim: 3 } }
}
layer {
  name: "ip"  type: "InnerProduct"  bottom: "data"  top: "ip"
  param { lr_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  inner_product_param: { num_output: 4 weight_filler { type: "xavier" } }
}
layer {
  name: "pool"  type: "Pooling"  bottom: "ip"  top: "pool"
  pooling_param { pool: AVE kernel_size: 2 }  # enums by name, comments allowed
}
"""

SOLVER = """net: "tiny.prototxt"
test_iter: 3 test_iter: 4
base_lr: 0.01
lr_policy: "step"
stepsize: 10
solver_mode: CPU
"""


def test_net_text_round_trip(tmp_path):
    net = text.parse_net_text(NET, "tiny.prototxt")
    assert [l.name for l in net.layer] == ["data", "ip", "pool"]
    assert net.layer[1].param[1].decay_mult == 0
    assert net.layer[2].pooling_param.pool == caffe_pb2.PoolingParameter.AVE
    path = tmp_path / "out.prototxt"
    text.write_text(net, str(path))
    again = text.read_net(str(path))
    assert again == net
    assert text.to_text(again) == path.read_text()


def test_solver_text_round_trip(tmp_path):
    solver = text.parse_solver_text(SOLVER, "s.prototxt")
    assert list(solver.test_iter) == [3, 4]
    assert solver.solver_mode == caffe_pb2.SolverParameter.CPU
    assert not solver.HasField("type")  # default SGD stays unset
    path = tmp_path / "solver.prototxt"
    text.write_text(solver, str(path))
    assert text.read_solver(str(path)) == solver


def test_read_net_upgrades_v1(tmp_path):
    path = tmp_path / "v1.prototxt"
    path.write_text('name: "old"\nlayers { name: "r" type: RELU bottom: "x" top: "x" }\n'
                    'input: "x" input_dim: 1 input_dim: 2 input_dim: 3 input_dim: 4\n')
    net = text.read_net(str(path))
    assert [(l.name, l.type) for l in net.layer] == [("input", "Input"), ("r", "ReLU")]
    assert not len(net.layers) and not len(net.input)


def test_read_solver_upgrades_solver_type(tmp_path):
    path = tmp_path / "s.prototxt"
    path.write_text('base_lr: 0.1\nsolver_type: ADAM\n')
    solver = text.read_solver(str(path))
    assert solver.type == "Adam" and not solver.HasField("solver_type")


def test_write_text_is_atomic_and_leaves_no_temp(tmp_path):
    path = tmp_path / "n.prototxt"
    path.write_text("old contents")
    text.write_text(text.parse_net_text(NET), str(path))
    assert os.listdir(tmp_path) == ["n.prototxt"]
    assert 'name: "tiny"' in path.read_text()


def test_file_uri_paths(tmp_path):
    path = tmp_path / "n.prototxt"
    path.write_text(NET)
    assert text.read_net("file://" + str(path)).name == "tiny"
    assert text.read_net("file:" + str(path)).name == "tiny"


def _error(body, parse=text.parse_net_text):
    with pytest.raises(ParseError) as info:
        parse(body, "bad.prototxt")
    message = str(info.value)
    assert "\n" not in message
    return message


def test_syntax_error_gives_path_line_col():
    message = _error('name: "x"\nlayer {\n  name: "a"\n  bottom: }\n')
    assert message.startswith("bad.prototxt:4:11: ")
    assert "Expected string" in message


def test_unclosed_brace():
    message = _error('layer {\n  name: "a"\n')
    assert message.startswith("bad.prototxt:2:") and 'Expected "}"' in message


def test_unknown_field_names_field_and_message():
    message = _error('layer {\n  name: "a"\n  convolution_param { num_outputs: 3 }\n}\n')
    assert message.startswith("bad.prototxt:3:")
    assert "unknown field 'num_outputs'" in message
    assert "caffe.ConvolutionParameter" in message


def test_unknown_solver_field():
    message = _error("base_lr: 0.1\nlearning_rate: 3\n", text.parse_solver_text)
    assert message.startswith("bad.prototxt:2:")
    assert "'learning_rate'" in message and "caffe.SolverParameter" in message


def test_unknown_enum_value_names_value_field_and_message():
    message = _error('layer {\n  pooling_param { pool: MEAN }\n}\n')
    assert message.startswith("bad.prototxt:2:")
    assert "'MEAN'" in message and "'pool'" in message
    assert "caffe.PoolingParameter" in message and "MAX, AVE, STOCHASTIC" in message


def test_unknown_top_level_enum():
    message = _error('state { phase: TRAINING }\n')
    assert "'TRAINING'" in message and "'phase'" in message and "TRAIN, TEST" in message


def test_bad_bool():
    assert "true" in _error("force_backward: 7\n")


def test_missing_file_names_path(tmp_path):
    missing = tmp_path / "nope.prototxt"
    with pytest.raises(CosError) as info:
        text.read_net(str(missing))
    assert str(missing) in str(info.value) and "not found" in str(info.value)
    with pytest.raises(CosError):
        text.read_solver(str(missing))


def test_binary_file_as_text(tmp_path):
    path = tmp_path / "model.caffemodel"
    path.write_bytes(b"\x0a\x05LeNet\xff\xfe\x80")
    with pytest.raises(ParseError) as info:
        text.read_net(str(path))
    assert str(path) in str(info.value)


def test_matches_protobuf_text_format():
    # Our writer is protobuf's own text format, so C++ Caffe reads what we write.
    net = text.parse_net_text(NET)
    assert text.to_text(net) == text_format.MessageToString(net)


def test_every_real_caffe_fixture_prototxt_round_trips(caffe_fixtures, tmp_path):
    files = sorted(caffe_fixtures.rglob("*.prototxt"))
    assert len(files) > 40
    for path in files:
        is_solver = "solver" in path.name
        message = text.read_solver(str(path)) if is_solver else text.read_net(str(path))
        out = tmp_path / path.name
        text.write_text(message, str(out))
        again = text.read_solver(str(out)) if is_solver else text.read_net(str(out))
        assert again == message, path.name
