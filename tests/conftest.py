import os
from pathlib import Path

import pytest

# Keep BLAS single-threaded per test worker: the suite runs with one worker per core.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


@pytest.fixture
def data_dir() -> Path:
    return Path(__file__).parent / "data"
