"""Backend registry, processor naming and OpenCL error paths."""

from __future__ import annotations

import numpy as np
import pytest

from deepx_opt.errors import BackendError, BackendUnavailableError, UnsupportedOpError
from deepx_opt.runtime.backends import (
    CANONICAL_OPS,
    NumpyBackend,
    available_backends,
    canonical_processor_name,
    get_backend,
    recommended_openblas_coretype,
)

from .conftest import REQUIRE_OPENCL


@pytest.fixture(scope="module")
def cl_backend():
    from deepx_opt.runtime.opencl_probe import working_devices

    if not working_devices():
        if REQUIRE_OPENCL:
            pytest.fail("DEEPX_REQUIRE_OPENCL=1 but no working OpenCL device was found")
        pytest.skip("no working OpenCL device")
    return get_backend("opencl:0")


def test_cpu_backend_is_shared_unless_options_given():
    assert get_backend("cpu") is get_backend("numpy")
    be = get_backend("cpu", threads=1)
    assert be is not get_backend("cpu") and be.threads == 1 and be.kind == "cpu"
    assert all(be.supports(op) for op in CANONICAL_OPS) and not be.supports("Frobnicate")


def test_bad_thread_count():
    with pytest.raises(BackendError, match="threads must be a positive int"):
        NumpyBackend(threads=0)


def test_unknown_processor_lists_available():
    with pytest.raises(BackendUnavailableError, match=r"unknown processor 'dsp:0'.*cpu"):
        get_backend("dsp:0")


def test_coretype_helper_matches_cpu_flags():
    flags = open("/proc/cpuinfo").read()
    assert (recommended_openblas_coretype() == "SkylakeX") == (" avx512f" in flags)


def test_opencl_names_by_index_and_substring(cl_backend):
    from deepx_opt.runtime.opencl_probe import working_devices

    assert "opencl:0" in available_backends()
    dev = working_devices()[0]
    word = dev.device.split("-")[0].split()[0]
    assert canonical_processor_name(f"opencl:{word.upper()}") == "opencl:0"
    assert canonical_processor_name("opencl") == "opencl:0"
    assert get_backend("opencl:0") is cl_backend and cl_backend.name == "opencl:0"
    with pytest.raises(BackendUnavailableError, match=r"no OpenCL device matches 'no-such'.*opencl:0 = "):
        get_backend("opencl:no-such")
    with pytest.raises(BackendUnavailableError, match="opencl:0 = "):
        get_backend(f"opencl:{len(working_devices())}")


def test_kernel_build_failure_is_backend_error_with_log(cl_backend):
    with pytest.raises(BackendError, match=r"(?s)failed to build on opencl:0.*error"):
        cl_backend._program("broken-test", "__kernel void f(__global float *x) { x[0] = undefined_name; }")


def test_float_only_ops_reject_other_dtypes(cl_backend):
    h = cl_backend.upload(np.arange(6, dtype=np.int64).reshape(2, 3))
    with pytest.raises(UnsupportedOpError, match="Relu on opencl:0 takes float32 tensors only, got int64"):
        cl_backend.run("Relu", [h], {})
    # data movement and arithmetic work on any numeric dtype
    t = cl_backend.download(cl_backend.run("Transpose", [h], {"perm": (1, 0)})[0])
    np.testing.assert_array_equal(t, np.arange(6).reshape(2, 3).T)
    s = cl_backend.download(cl_backend.run("Div", [h, cl_backend.upload(np.array([-4], np.int64))], {})[0])
    np.testing.assert_array_equal(s, np.array([[0, 0, 0], [0, -1, -1]]))  # ONNX: truncation toward zero


def test_cast_to_bool_is_nonzero_on_both(cl_backend):
    x = np.array([0.0, 0.5, -2.0, 0.0], np.float32)
    for be in (get_backend("cpu"), cl_backend):
        got = be.download(be.run("Cast", [be.upload(x)], {"to": "bool"})[0])
        assert got.dtype == np.bool_ and got.tolist() == [False, True, True, False]


def test_weights_are_packed_once(cl_backend):
    w = cl_backend.upload(np.ones((8, 5), np.float32))
    a = cl_backend.upload(np.ones((2, 5), np.float32))
    attrs = dict(alpha=1.0, beta=1.0, transA=0, transB=1)
    cl_backend.run("Gemm", [a, w], attrs)
    cached = dict(w.derived)
    assert cached, "the transformed weight should be cached on its handle"
    out = cl_backend.run("Gemm", [a, w], attrs)[0]
    assert all(w.derived[k] is v for k, v in cached.items())
    np.testing.assert_allclose(cl_backend.download(out), np.full((2, 8), 5.0))


def _affinity_after_probe(env_value: str | None) -> str:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "POCL_AFFINITY"}
    if env_value is not None:
        env["POCL_AFFINITY"] = env_value
    code = ("import os; from deepx_opt.runtime.opencl_probe import working_devices; working_devices(); "
            "print(os.environ.get('POCL_AFFINITY'))")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_pocl_affinity_default_is_set_before_the_platform_query_and_never_overrides_the_user(cl_backend):
    assert _affinity_after_probe(None) == "1"
    assert _affinity_after_probe("0") == "0"
