import os
from pathlib import Path

import pytest
from hypothesis import settings

# CI runs the same Hypothesis examples every time (a landing must not hinge on a random draw); local runs
# keep exploring new examples, and what they find becomes a regression test (tests/solvers/test_highs_degenerate.py).
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

# Keep BLAS single-threaded per test worker: the suite runs with one worker per core.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


@pytest.fixture
def data_dir() -> Path:
    return Path(__file__).parent / "data"


@pytest.fixture
def require_opencl():
    """The first working OpenCL device; with DEEPX_REQUIRE_OPENCL=1 (CI) its absence fails the test."""
    from deepx_opt.runtime.opencl_probe import working_devices

    devs = working_devices()
    if not devs:
        if os.environ.get("DEEPX_REQUIRE_OPENCL") == "1":
            pytest.fail("DEEPX_REQUIRE_OPENCL=1 but no working OpenCL device was found (apt-get install pocl-opencl-icd)")
        pytest.skip("no working OpenCL device")
    return devs[0]
