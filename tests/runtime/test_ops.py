"""Every canonical op on every backend against onnxruntime running the equivalent one-node ONNX model.

Tolerance rtol 1e-4 / atol 1e-5 everywhere, except ops whose reduction is long (GEMM/Conv with K in the
hundreds) on OpenCL, where the summation order differs from BLAS: rtol 1e-4 / atol 1e-4 (documented in
docs/opencl.md).
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from deepx_opt.errors import UnsupportedOpError
from deepx_opt.runtime.backends import CANONICAL_OPS, get_backend

from .conftest import make_backend, opencl_backend_params, ort_one_node

RNG = np.random.default_rng(0)


def r(*shape, lo=-1.0, hi=1.0):
    return RNG.uniform(lo, hi, size=shape).astype(np.float32)


def conv_attrs(k, s=(1, 1), p=(0, 0, 0, 0), d=(1, 1), g=1):
    return dict(kernel_shape=tuple(k), strides=tuple(s), pads=tuple(p), dilations=tuple(d), group=g)


def pool_attrs(k, s=(1, 1), p=(0, 0, 0, 0), d=(1, 1), ceil=0, cip=None):
    a = dict(kernel_shape=tuple(k), strides=tuple(s), pads=tuple(p), ceil_mode=ceil)
    if cip is None:
        a["dilations"] = tuple(d)
    else:
        a["count_include_pad"] = cip
    return a


def onnx_spec(op, inputs, attrs):
    """(onnx op, inputs, onnx attrs, consts, opset) equivalent to a canonical op."""
    a = {k: (list(v) if isinstance(v, tuple) else v) for k, v in attrs.items()}
    if op == "Clip":
        lo, hi = attrs["min"], attrs["max"]
        consts = {}
        if np.isfinite(lo):
            consts[1] = np.array(lo, np.float32)
        if np.isfinite(hi):
            consts[2] = np.array(hi, np.float32)
        return op, inputs, {}, consts, 13
    if op in ("Softmax", "LogSoftmax"):
        return op, inputs, {"axis": attrs["axis"]}, {}, 11 if attrs["legacy"] else 13
    if op == "Reshape":
        return op, inputs, {}, {1: np.array(attrs["shape"], np.int64)}, 17
    if op == "Pad":
        consts = {1: np.array(attrs["pads"], np.int64)}
        if attrs["mode"] == "constant":
            consts[2] = np.array(attrs["value"], inputs[0].dtype)
        return op, inputs, {"mode": attrs["mode"]}, consts, 17
    if op == "Cast":
        return op, inputs, {"to": helper.np_dtype_to_tensor_dtype(np.dtype(attrs["to"]))}, {}, 17
    return op, inputs, a, {}, 17


LONG = 1e-4
CASES = [
    # id, op, inputs, attrs, opencl atol
    ("conv-basic", "Conv", [r(1, 3, 9, 9), r(4, 3, 3, 3), r(4)], conv_attrs((3, 3)), None),
    ("conv-stride-asympad", "Conv", [r(2, 3, 10, 11), r(5, 3, 3, 2), r(5)],
     conv_attrs((3, 2), (2, 3), (1, 0, 2, 1)), None),
    ("conv-dilation-nobias", "Conv", [r(1, 2, 12, 12), r(3, 2, 3, 3), None],
     conv_attrs((3, 3), (1, 2), (2, 2, 2, 2), (2, 3)), None),
    ("conv-groups", "Conv", [r(1, 6, 8, 8), r(9, 2, 3, 3), r(9)], conv_attrs((3, 3), p=(1, 1, 1, 1), g=3), None),
    ("conv-depthwise", "Conv", [r(2, 5, 9, 8), r(5, 1, 3, 3), r(5)],
     conv_attrs((3, 3), (2, 1), (1, 0, 1, 2), g=5), None),
    ("conv-depthwise-mult2", "Conv", [r(1, 3, 7, 7), r(6, 1, 3, 3), r(6)], conv_attrs((3, 3), g=3), None),
    ("conv-1x1", "Conv", [r(2, 16, 5, 6), r(8, 16, 1, 1), r(8)], conv_attrs((1, 1)), None),
    ("conv-1x1-stride2", "Conv", [r(1, 8, 7, 7), r(4, 8, 1, 1), None], conv_attrs((1, 1), (2, 2)), None),
    # output rows of >= 16 pixels: the OpenCL im2col fast paths (contiguous and strided rows) and their borders
    ("conv-wide-rows", "Conv", [r(1, 2, 5, 40), r(3, 2, 3, 3), r(3)], conv_attrs((3, 3), p=(1, 1, 1, 1)), None),
    ("conv-wide-strided", "Conv", [r(1, 2, 6, 70), r(4, 2, 2, 3), None],
     conv_attrs((2, 3), (1, 2), (0, 2, 1, 1), (1, 2)), None),
    ("conv-large-k", "Conv", [r(1, 3, 31, 31), r(8, 3, 11, 11), r(8)], conv_attrs((11, 11), (4, 4), (2, 2, 2, 2)), LONG),
    ("gemm-basic", "Gemm", [r(3, 20), r(20, 7), r(7)], dict(alpha=1.0, beta=1.0, transA=0, transB=0), None),
    ("gemm-transB", "Gemm", [r(2, 33), r(17, 33), r(17)], dict(alpha=1.0, beta=1.0, transA=0, transB=1), None),
    ("gemm-transA-alpha-beta", "Gemm", [r(19, 4), r(19, 9), r(4, 9)],
     dict(alpha=0.5, beta=2.0, transA=1, transB=0), None),
    ("gemm-bcast-col-C", "Gemm", [r(5, 8), r(8, 6), r(5, 1)], dict(alpha=1.0, beta=-1.0, transA=0, transB=0), None),
    ("gemm-noC-both-trans", "Gemm", [r(10, 3), r(4, 10), None], dict(alpha=2.0, beta=1.0, transA=1, transB=1), None),
    ("gemm-long-k", "Gemm", [r(2, 1500), r(40, 1500), r(40)], dict(alpha=1.0, beta=1.0, transA=0, transB=1), LONG),
    ("matmul-2d", "MatMul", [r(7, 13), r(13, 18)], {}, None),
    ("matmul-batched-bcast", "MatMul", [r(2, 1, 4, 6), r(3, 6, 5)], {}, None),
    ("matmul-vec", "MatMul", [r(6), r(6, 4)], {}, None),
    ("batchnorm", "BatchNormalization",
     [r(2, 4, 5, 5), r(4), r(4), r(4), r(4, lo=0.5, hi=2.0)], dict(epsilon=1e-5), None),
    ("relu", "Relu", [r(3, 4, 5)], {}, None),
    ("sigmoid", "Sigmoid", [r(3, 40, lo=-20, hi=20)], {}, None),
    ("tanh", "Tanh", [r(3, 40, lo=-5, hi=5)], {}, None),
    ("identity", "Identity", [r(4, 4)], {}, None),
    ("leakyrelu", "LeakyRelu", [r(2, 3, 4)], dict(alpha=0.1), None),
    ("clip-both", "Clip", [r(2, 30)], dict(min=-0.3, max=0.4), None),
    ("clip-max-only", "Clip", [r(2, 30)], dict(min=-np.inf, max=0.2), None),
    ("softmax-axis1", "Softmax", [r(2, 10, lo=-5, hi=5)], dict(axis=1, legacy=False), None),
    ("softmax-axis-mid", "Softmax", [r(2, 5, 3)], dict(axis=1, legacy=False), None),
    ("softmax-legacy", "Softmax", [r(2, 3, 4)], dict(axis=1, legacy=True), None),
    ("logsoftmax", "LogSoftmax", [r(3, 12, lo=-5, hi=5)], dict(axis=1, legacy=False), None),
    ("logsoftmax-legacy", "LogSoftmax", [r(2, 3, 4)], dict(axis=2, legacy=True), None),
    ("maxpool", "MaxPool", [r(1, 3, 8, 8)], pool_attrs((2, 2), (2, 2)), None),
    ("maxpool-alexnet-ceil", "MaxPool", [r(1, 2, 13, 13)], pool_attrs((3, 3), (2, 2), ceil=1), None),
    ("maxpool-pads-ceil", "MaxPool", [r(2, 2, 10, 9)], pool_attrs((3, 2), (2, 2), (1, 0, 1, 1), ceil=1), None),
    ("maxpool-dilation", "MaxPool", [r(1, 2, 10, 10)], pool_attrs((2, 2), (1, 2), (0, 1, 1, 0), (2, 2)), None),
    ("avgpool", "AveragePool", [r(1, 3, 8, 8)], pool_attrs((2, 2), (2, 2), cip=0), None),
    ("avgpool-pads-excl", "AveragePool", [r(1, 2, 7, 7)], pool_attrs((3, 3), (2, 2), (1, 1, 1, 1), cip=0), None),
    ("avgpool-pads-incl", "AveragePool", [r(1, 2, 7, 7)], pool_attrs((3, 3), (2, 2), (1, 1, 1, 1), cip=1), None),
    ("avgpool-ceil-incl", "AveragePool", [r(1, 2, 8, 8)], pool_attrs((3, 3), (2, 2), (1, 0, 0, 1), ceil=1, cip=1), None),
    ("avgpool-ceil-excl", "AveragePool", [r(1, 2, 8, 9)], pool_attrs((3, 3), (2, 2), (0, 1, 1, 0), ceil=1, cip=0), None),
    ("globalavgpool", "GlobalAveragePool", [r(2, 3, 5, 6)], {}, None),
    ("globalmaxpool", "GlobalMaxPool", [r(2, 3, 5, 6)], {}, None),
    ("lrn", "LRN", [r(1, 7, 4, 4)], dict(size=5, alpha=1e-2, beta=0.75, bias=1.0), None),
    ("lrn-beta-generic", "LRN", [r(1, 4, 3, 3)], dict(size=3, alpha=0.5, beta=0.6, bias=1.5), None),
    ("lrn-beta1", "LRN", [r(1, 4, 3, 3)], dict(size=5, alpha=0.3, beta=1.0, bias=1.0), None),
    ("lrn-size3", "LRN", [r(2, 6, 3, 3)], dict(size=3, alpha=2e-2, beta=0.5, bias=2.0), None),
    ("reshape", "Reshape", [r(2, 3, 4)], dict(shape=(6, 4)), None),
    ("transpose", "Transpose", [r(2, 3, 4, 5)], dict(perm=(0, 2, 3, 1)), None),
    ("transpose-2d", "Transpose", [r(7, 9)], dict(perm=(1, 0)), None),
    ("concat-ch", "Concat", [r(1, 2, 3, 3), r(1, 4, 3, 3), r(1, 1, 3, 3)], dict(axis=1), None),
    ("concat-last", "Concat", [r(2, 3), r(2, 5)], dict(axis=1), None),
    ("add-bcast", "Add", [r(2, 3, 4, 5), r(3, 1, 1)], {}, None),
    ("add-same", "Add", [r(4, 5), r(4, 5)], {}, None),
    ("sub-bcast", "Sub", [r(4, 1), r(1, 6)], {}, None),
    ("mul-scalar", "Mul", [r(3, 4), np.array(0.5, np.float32)], {}, None),
    ("div", "Div", [r(3, 4), r(4, lo=0.5, hi=2.0)], {}, None),
    ("sum3", "Sum", [r(2, 3), r(2, 3), r(3)], {}, None),
    ("pad-const", "Pad", [r(1, 2, 3, 4)], dict(pads=(0, 0, 1, 2, 0, 0, 2, 0), mode="constant", value=0.5), None),
    ("pad-reflect", "Pad", [r(1, 2, 4, 5)], dict(pads=(0, 0, 2, 1, 0, 0, 1, 3), mode="reflect", value=0.0), None),
    ("pad-edge", "Pad", [r(2, 3, 4)], dict(pads=(0, 1, 2, 0, 2, 1), mode="edge", value=0.0), None),
    ("cast-f2i", "Cast", [r(3, 4, lo=-9, hi=9)], dict(to="int64"), None),
    ("cast-i2f", "Cast", [RNG.integers(-50, 50, size=(3, 4)).astype(np.int64)], dict(to="float32"), None),
]

CASE_OPS = {c[1] for c in CASES}
BACKENDS = [pytest.param(("cpu", {}), id="cpu")] + opencl_backend_params()


def test_cases_cover_every_canonical_op():
    assert CASE_OPS == set(CANONICAL_OPS)


def run_backend(be, op, inputs, attrs):
    handles = [None if x is None else be.upload(x) for x in inputs]
    outs = be.run(op, handles, attrs)
    be.synchronize()
    return [be.download(h) for h in outs]


@pytest.fixture(params=BACKENDS, scope="module")
def backend(request):
    return make_backend(request.param)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_op_matches_onnxruntime(backend, case):
    _id, op, inputs, attrs, cl_atol = case
    onnx_op, onnx_inputs, onnx_attrs, consts, opset = onnx_spec(op, inputs, attrs)
    ref = ort_one_node(onnx_op, onnx_inputs, onnx_attrs, consts=consts, opset=opset)
    got = run_backend(backend, op, inputs, attrs)
    assert len(got) == len(ref)
    atol = cl_atol if (cl_atol is not None and backend.kind != "cpu" or
                       cl_atol is not None and backend.name.startswith("opencl")) else 1e-5
    for g, e in zip(got, ref):
        assert g.shape == e.shape, f"{op}: shape {g.shape} != onnxruntime {e.shape}"
        assert g.dtype == e.dtype, f"{op}: dtype {g.dtype} != onnxruntime {e.dtype}"
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=atol, err_msg=f"{op} on {backend.name}")


@pytest.mark.parametrize("op,inputs,attrs", [
    ("Conv", [r(1, 4, 6, 6), r(5, 4, 3, 3), r(5)], conv_attrs((3, 3), p=(1, 1, 1, 1))),
    ("Gemm", [r(3, 9), r(6, 9), r(6)], dict(alpha=1.0, beta=1.0, transA=0, transB=1)),
    ("MatMul", [r(4, 9), r(9, 5)], {}),
    ("Add", [r(1, 4, 5, 5), r(1, 4, 5, 5)], {}),
    ("Sub", [r(2, 7), r(7)], {}),
], ids=["conv", "gemm", "matmul", "add-residual", "sub-broadcast"])
def test_fused_relu_equals_op_then_relu(backend, op, inputs, attrs):
    plain = run_backend(backend, op, inputs, attrs)[0]
    fused = run_backend(backend, op, inputs, dict(attrs, fused_activation="Relu"))[0]
    np.testing.assert_allclose(fused, np.maximum(plain, 0), rtol=1e-6, atol=1e-6)
    assert (fused >= 0).all() and (plain < 0).any()


def test_unknown_op_names_op_and_supported(backend):
    with pytest.raises(UnsupportedOpError, match="Frobnicate.*Conv"):
        backend.run("Frobnicate", [backend.upload(r(2))], {})


def test_upload_download_roundtrip(backend):
    for arr in (r(3, 5), np.arange(7, dtype=np.int64), np.array(2.5, np.float32)):
        back = backend.download(backend.upload(arr))
        assert back.dtype == arr.dtype and back.shape == arr.shape
        np.testing.assert_array_equal(back, arr)
        assert backend.shape_of(backend.upload(arr)) == arr.shape


def test_backends_agree_on_chain(backend):
    """A small conv → relu → pool → gemm chain matches the numpy reference backend end to end."""
    ref_be = get_backend("cpu")
    x, w, b = r(1, 3, 12, 12), r(6, 3, 3, 3), r(6)
    fw, fb = r(10, 6 * 6 * 6), r(10)
    outs = []
    for be in (ref_be, backend):
        h = be.run("Conv", [be.upload(x), be.upload(w), be.upload(b)], conv_attrs((3, 3), p=(1, 1, 1, 1)))[0]
        h = be.run("Relu", [h], {})[0]
        h = be.run("MaxPool", [h], pool_attrs((2, 2), (2, 2)))[0]
        h = be.run("Reshape", [h], dict(shape=(1, 216)))[0]
        h = be.run("Gemm", [h, be.upload(fw), be.upload(fb)], dict(alpha=1.0, beta=1.0, transA=0, transB=1))[0]
        h = be.run("Softmax", [h], dict(axis=1, legacy=False))[0]
        outs.append(be.download(h))
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("op,inputs,attrs", [
    ("Conv", [r(1, 3, 6, 6), r(4, 3, 3, 3), r(4)], conv_attrs((3, 3), p=(1, 1, 1, 1))),
    ("Conv", [r(1, 3, 6, 6), r(3, 1, 3, 3), r(3)], conv_attrs((3, 3), p=(1, 1, 1, 1), g=3)),
    ("Gemm", [r(3, 9), r(9, 6), None], dict(alpha=2.0, beta=1.0, transA=0, transB=0)),
    ("Add", [r(2, 3, 4), r(3, 1)], {}),
    ("Mul", [r(3, 8), r(3, 8)], {}),
    ("Sum", [r(2, 6), r(2, 6), r(6)], {}),
], ids=["conv", "dwconv", "gemm", "add", "mul-same", "sum"])
def test_fused_clip_equals_op_then_clip(backend, op, inputs, attrs):
    plain = run_backend(backend, op, inputs, attrs)[0]
    fused = run_backend(backend, op, inputs, dict(attrs, fused_activation="Clip", fused_min=-0.5, fused_max=0.7))[0]
    np.testing.assert_allclose(fused, np.clip(plain, -0.5, 0.7), rtol=1e-6, atol=1e-6)
    assert ((plain < -0.5) | (plain > 0.7)).any()


def _random_pool_cases(n=24, seed=7):
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        is_max = i % 2 == 0
        k = tuple(int(v) for v in rng.integers(1, 4, size=2))
        s = tuple(int(v) for v in rng.integers(1, 4, size=2))
        d = tuple(int(v) for v in rng.integers(1, 3, size=2)) if is_max else (1, 1)
        p = tuple(int(rng.integers(0, k[j % 2])) if k[j % 2] > 1 else 0 for j in range(4))
        hw = tuple(int(v) for v in rng.integers(max(k) * 2 + 2, 12, size=2))
        x = RNG.uniform(-1, 1, size=(1, 2) + hw).astype(np.float32)
        ceil = int(rng.integers(0, 2))
        attrs = pool_attrs(k, s, p, d, ceil=ceil) if is_max else pool_attrs(k, s, p, ceil=ceil, cip=int(rng.integers(0, 2)))
        cases.append(pytest.param("MaxPool" if is_max else "AveragePool", x, attrs, id=f"pool{i}"))
    return cases


@pytest.mark.parametrize("op,x,attrs", _random_pool_cases())
def test_random_pooling_configs_match_onnxruntime(backend, op, x, attrs):
    onnx_op, onnx_inputs, onnx_attrs, consts, opset = onnx_spec(op, [x], attrs)
    ref = ort_one_node(onnx_op, onnx_inputs, onnx_attrs, consts=consts, opset=opset)[0]
    got = run_backend(backend, op, [x], attrs)[0]
    assert got.shape == ref.shape, f"{attrs}: {got.shape} vs onnxruntime {ref.shape}"
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5, err_msg=str(attrs))
