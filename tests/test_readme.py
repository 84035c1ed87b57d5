"""Run the README's ```bash readme-test blocks so the documented commands cannot rot."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def runnable_blocks():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"^```bash readme-test\n(.*?)^```", text, re.S | re.M)


def block_id(block):
    """The block's first command after the venv activation, for readable test ids."""
    lines = [l for l in block.splitlines() if l.strip() and not l.startswith(". ")]
    return re.sub(r"\W+", "_", lines[0])[:40] if lines else "empty"


@pytest.fixture(scope="module")
def sample_data():
    """The blocks read data/generated/; prepare it once, whichever block runs first."""
    subprocess.run([sys.executable, "scripts/prepare_mnist.py"], cwd=ROOT, check=True,
                   capture_output=True, timeout=600)


def test_readme_keeps_the_two_commands_and_a_runnable_block():
    text = (ROOT / "README.md").read_text()
    assert "make demo" in text and "make test" in text
    assert runnable_blocks()


@pytest.mark.slow
@pytest.mark.parametrize("block", runnable_blocks(), ids=block_id)
def test_readme_block_runs(block, sample_data):
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=ROOT,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
