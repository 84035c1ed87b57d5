"""Run the README's ```bash readme-test blocks so the documented commands cannot rot."""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def runnable_blocks():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"^```bash readme-test\n(.*?)^```", text, re.S | re.M)


def test_readme_keeps_the_two_commands_and_a_runnable_block():
    text = (ROOT / "README.md").read_text()
    assert "make demo" in text and "make test" in text
    assert runnable_blocks()


@pytest.mark.slow
@pytest.mark.parametrize("block", runnable_blocks())
def test_readme_block_runs(block):
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=ROOT,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
