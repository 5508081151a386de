"""The GPU GEMM path of the OpenCL backend (``gemm_variant="tiled"``), run on every OpenCL device.

The register-blocked kernel, its split-K and GEMV paths and every tile configuration must be exact on
arbitrary M, N, K (edge tiles, K not a multiple of the stage depth, conv im2col shapes, offsets into
batched operands). The decisions that a GPU would take (tile by compute-unit count, split-K, GEMV) are
forced on PoCL by setting ``compute_units`` to an H200's 132. References: numpy in float64, onnxruntime
for convolutions.
"""

from __future__ import annotations

import numpy as np
import pytest

from deepx_opt.errors import BackendError

from .conftest import REQUIRE_OPENCL, ort_one_node

RNG = np.random.default_rng(7)
H200_SMS = 132


def _devices():
    from deepx_opt.runtime.opencl_probe import working_devices

    n = len(working_devices())
    if n == 0:
        marks = [] if REQUIRE_OPENCL else [pytest.mark.skip(reason="no working OpenCL device")]
        return [pytest.param(None, id="opencl-missing", marks=marks)]
    return [pytest.param(i, id=f"opencl:{i}") for i in range(n)]


def tiled(index, tile=None, compute_units=None, split_k=True):
    from deepx_opt.runtime.backends.opencl import OpenCLBackend

    if index is None:
        pytest.fail("DEEPX_REQUIRE_OPENCL=1 but no working OpenCL device was found")
    be = OpenCLBackend(index, gemm_variant="tiled", gemm_tile=tile)
    if compute_units is not None:
        be.compute_units = compute_units
    be.split_k = split_k
    return be


def r(*shape):
    return RNG.uniform(-1.0, 1.0, size=shape).astype(np.float32)


def gemm_ref(a, b, c, alpha, beta, lo=-np.inf, hi=np.inf):
    out = alpha * (a.astype(np.float64) @ b.astype(np.float64))
    if c is not None:
        out = out + beta * c
    return np.clip(out, lo, hi)


SHAPES = [  # (M, N, K): edge tiles in every dimension, K not a multiple of BK, K = 0, GEMV rows
    (1, 1, 1), (1, 37, 300), (3, 130, 517), (8, 65, 129), (9, 70, 600), (63, 129, 17), (130, 67, 37),
    (129, 257, 513), (200, 31, 1030), (5, 129, 0),
]


@pytest.mark.parametrize("dev", _devices())
@pytest.mark.parametrize("tile", [None, "128x128", "64x128", "64x64", (32, 64, 4, 8, 4)],
                         ids=["auto", "128x128", "64x128", "64x64", "32x64-bk4"])
@pytest.mark.parametrize("cu", [None, H200_SMS], ids=["device-cus", "h200-cus"])
def test_gemm_edge_shapes(dev, tile, cu):
    be = tiled(dev, tile, cu)
    for M, N, K in SHAPES:
        a, b, c = r(M, K), r(K, N), r(N)
        attrs = dict(alpha=1.5, beta=0.5, transA=0, transB=0, fused_activation="Relu", fused_min=0.0,
                     fused_max=np.inf)
        got = be.download(be.run("Gemm", [be.upload(a), be.upload(b), be.upload(c)], attrs)[0])
        want = gemm_ref(a, b, c, 1.5, 0.5, lo=0.0)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=f"{(M, N, K)} tile {tile} cu {cu}")


@pytest.mark.parametrize("dev", _devices())
def test_split_k_and_gemv_match_unsplit(dev):
    """Split-K (grid's third dimension + reduce) and the GEMV path agree with the single-pass kernel, with a
    2-D bias, transposed operands and clamps."""
    plain, split = tiled(dev, "64x64", H200_SMS, split_k=False), tiled(dev, "64x64", H200_SMS)
    assert split.tile_for(70, 90) == (64, 64, 4, 4, 16)
    for M, N, K in [(70, 90, 1500), (4, 300, 2000), (1, 5, 700)]:
        a, b, c = r(K, M), r(N, K), r(M, N)
        attrs = dict(alpha=0.75, beta=-2.0, transA=1, transB=1, fused_activation="Clip", fused_min=-0.5,
                     fused_max=0.5)
        outs = [be.download(be.run("Gemm", [be.upload(a), be.upload(b), be.upload(c)], attrs)[0])
                for be in (plain, split)]
        want = gemm_ref(a.T, b.T, c, 0.75, -2.0, -0.5, 0.5)
        for got in outs:
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dev", _devices())
def test_tile_choice_by_compute_units(dev):
    be = tiled(dev, compute_units=H200_SMS)
    assert be.tile_for(4096, 4096) == (128, 128, 8, 8, 8)   # 1024 work-groups
    assert be.tile_for(1024, 2048)[:2] == (64, 128)         # 128 work-groups of 128x128 < 132 -> next
    assert be.tile_for(1024, 1024)[:2] == (64, 64)          # 64 / 128 work-groups of the larger tiles
    assert be.tile_for(384, 169) == (64, 64, 4, 4, 16)      # nothing fills the GPU: smallest (+ split-K)


@pytest.mark.parametrize("dev", _devices())
def test_batched_matmul_offsets(dev):
    """Batched MatMul runs one GEMM per batch at element offsets into A, B and C."""
    be = tiled(dev, compute_units=H200_SMS)
    a, b = r(3, 1, 20, 600), r(2, 600, 33)
    got = be.download(be.run("MatMul", [be.upload(a), be.upload(b)], {})[0])
    want = np.matmul(a.astype(np.float64), b.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dev", _devices())
@pytest.mark.parametrize("x_shape,w_shape,attrs", [
    ((1, 3, 35, 37), (13, 3, 11, 11), dict(strides=[4, 4], pads=[2, 2, 2, 2], group=1)),   # conv1-like, odd
    ((2, 10, 9, 11), (14, 5, 3, 3), dict(strides=[1, 2], pads=[1, 0, 1, 2], group=2)),      # groups, batch 2
    ((1, 70, 6, 5), (33, 70, 3, 3), dict(strides=[1, 1], pads=[1, 1, 1, 1], group=1)),     # K = 630: split-K
    ((1, 16, 5, 7), (9, 16, 1, 1), dict(strides=[1, 1], pads=[0, 0, 0, 0], group=1)),      # 1x1: no im2col
], ids=["conv1-like", "groups-batch2", "splitk-k630", "pointwise"])
def test_conv_through_tiled_gemm(dev, x_shape, w_shape, attrs):
    be = tiled(dev, compute_units=H200_SMS)
    x, w, bias = r(*x_shape), r(*w_shape), r(w_shape[0])
    kh, kw = w_shape[2:]
    full = dict(kernel_shape=(kh, kw), dilations=(1, 1), **{k: tuple(v) if isinstance(v, list) else v
                                                            for k, v in attrs.items()})
    got = be.download(be.run("Conv", [be.upload(x), be.upload(w), be.upload(bias)], full)[0])
    want = ort_one_node("Conv", [x, w, bias], dict(kernel_shape=[kh, kw], **attrs))[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dev", _devices())
def test_bad_tile_is_rejected(dev):
    for bad in ["256x256", (64, 64, 3, 4, 8), (64, 64, 4, 4), (8, 8, 4, 4, 0), (256, 256, 4, 4, 8)]:
        with pytest.raises(BackendError, match="gemm_tile"):
            tiled(dev, bad)


@pytest.mark.parametrize("dev", _devices())
@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_softmax_long_rows(dev, op):
    """Rows of >= 128 classes take the one-work-group-per-row kernel (classifier outputs)."""
    from deepx_opt.runtime.backends import get_backend

    be = get_backend(f"opencl:{dev}") if dev is not None else pytest.fail("no OpenCL device")
    for shape in [(1, 1000), (3, 129), (2, 5, 300)]:
        x = (RNG.standard_normal(shape) * 5).astype(np.float32)
        got = be.download(be.run(op, [be.upload(x)], dict(axis=len(shape) - 1, legacy=False))[0])
        want = ort_one_node(op, [x], dict(axis=len(shape) - 1), opset=13)[0]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dev", _devices())
def test_memory_pool_reuses_buffers(dev):
    """With the pool (GPU default) outputs of dropped tensors are recycled and results stay correct."""
    from deepx_opt.runtime.backends.opencl import OpenCLBackend

    if dev is None:
        pytest.fail("DEEPX_REQUIRE_OPENCL=1 but no working OpenCL device was found")
    be = OpenCLBackend(dev, mem_pool=True, zero_copy=False)
    x = r(64, 64)
    want = np.maximum(x, 0)
    for _ in range(5):
        h = be.run("Relu", [be.upload(x)], {})[0]
        np.testing.assert_array_equal(be.download(h), want)
        del h
    assert be._mempool.held_blocks >= 1  # freed blocks kept for reuse, not released to the driver


@pytest.mark.parametrize("dev", _devices())
def test_gemv_and_low_split_threshold(dev):
    """GEMV rows (N odd) and split-K of a short K (threshold lowered) agree with numpy."""
    be = tiled(dev, compute_units=H200_SMS)
    be.split_k_min_k = 256
    for M, N, K in [(1, 4097, 900), (6, 30, 300), (3, 2, 70), (96, 300, 363)]:
        a, b = r(M, K), r(K, N)
        got = be.download(be.run("MatMul", [be.upload(a), be.upload(b)], {})[0])
        np.testing.assert_allclose(got, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4, err_msg=str((M, N, K)))
