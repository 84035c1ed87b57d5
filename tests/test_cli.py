"""caffe-on-spark CLI: option parsing and every check made before Spark starts, plus the
bin/caffe-on-spark wrapper's argument split."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cos.cli import cli, write_test_result

REPO = Path(__file__).resolve().parents[1]
NET = """
name: "tiny"
layer { name: "d" type: "MemoryData" top: "data" top: "label" include { phase: TRAIN }
  source_class: "com.yahoo.ml.caffe.LMDB"
  memory_data_param { source: "file:/tmp/x" batch_size: 2 channels: 1 height: 2 width: 2 } }
layer { name: "t" type: "MemoryData" top: "data" top: "label" include { phase: TEST }
  source_class: "com.yahoo.ml.caffe.LMDB"
  memory_data_param { source: "file:/tmp/x" batch_size: 2 channels: 1 height: 2 width: 2 } }
"""


@pytest.fixture
def solver(tmp_path):
    (tmp_path / "net.prototxt").write_text(NET)
    (tmp_path / "solver.prototxt").write_text('net: "net.prototxt"\nmax_iter: 2\n')
    return str(tmp_path / "solver.prototxt")


def invoke(*args):
    return CliRunner().invoke(cli, list(args))


def test_help_explains_every_option():
    result = invoke("--help")
    assert result.exit_code == 0
    for name in ("-conf", "-train", "-test", "-features", "-label", "-model", "-output",
                 "-devices", "-snapshot", "-weights", "-connection", "-clusterSize",
                 "-lmdb_partitions", "-outputFormat", "-persistent", "-resize"):
        assert name in result.output


@pytest.mark.parametrize("args, message", [
    (["-conf", "X", "-model", "m"], "no mode given"),
    (["-train", "-conf", "X", "-model", "m", "-snapshot", "s.solverstate"],
     "-snapshot needs -weights"),
    (["-train", "-conf", "/no/such/solver.prototxt", "-model", "m"],
     "/no/such/solver.prototxt"),
    (["-train", "-model", "m"], "-conf"),
    (["-train", "-conf", "{solver}", "-model", "m", "-devices", "2"], "-devices 2"),
    (["-train", "-conf", "{solver}", "-model", "m", "-clusterSize", "0"], "-clusterSize"),
])
def test_usage_errors_exit_2_with_one_line(args, message, solver):
    result = invoke(*[a.replace("{solver}", solver) for a in args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_bad_integer_and_unknown_or_wrong_case_option_exit_2():
    assert invoke("-train", "-devices", "one").exit_code == 2
    assert invoke("-train", "-bogus").exit_code == 2
    assert invoke("-TRAIN").exit_code == 2


def test_unparsable_solver_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.prototxt"
    bad.write_text("base_lr: [oops\n")
    result = invoke("-train", "-conf", str(bad), "-model", "m")
    assert result.exit_code == 2
    assert str(bad) in result.output


def test_test_result_file_layout(tmp_path):
    out = tmp_path / "result"
    write_test_result({"accuracy": [0.5], "loss": [0.25, 1e-05]}, f"file:{out}")
    assert out.read_text() == "accuracy: 0.5\nloss: 0.25,1e-05\n"


def test_wrapper_without_cos_options_prints_help():
    result = subprocess.run([str(REPO / "bin" / "caffe-on-spark"), "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "-clusterSize" in result.stdout
