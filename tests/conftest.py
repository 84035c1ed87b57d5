"""Shared test helpers: where the real-Caffe fixtures live, and GPU detection."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("COS_SHARED_DIR", REPO.parent / "shared"))
CAFFE_FIXTURES = SHARED / "fixtures" / "caffe"


@pytest.fixture(scope="session")
def caffe_fixtures():
    """Directory of outputs produced by real BVLC Caffe (see its README)."""
    if not CAFFE_FIXTURES.is_dir():
        pytest.fail(f"real-Caffe fixtures not found at {CAFFE_FIXTURES} "
                    "(set COS_SHARED_DIR to the shared/ folder)")
    return CAFFE_FIXTURES


def cuda_available():
    import torch
    return torch.cuda.is_available()


from hdfs_fixture import hdfs_server, hdfs_uri  # noqa: E402,F401  (fixtures for HDFS tests)
