"""RLC factorisation: exact at full rank, Eckart–Young bound below it, conv decomposition vs onnxruntime,
data-aware SVD, bookkeeping of apply_ranks, the ONNX writer, and bad ranks."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import helper

from deepx_opt.errors import CompressionError, InputError
from deepx_opt.graphs import load_onnx
from deepx_opt.graphs.compression import (
    LayerFactorizer,
    apply_ranks,
    factorizers,
    im2col,
    not_factorizable_reason,
)
from deepx_opt.graphs.rlc_onnx import OrtEvaluator, to_onnx
from tests.onnx_utils import make_model, rand

N = helper.make_node


def ort_run(proto, feeds):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


def ort_batch(proto, x):
    """Run a batch-1 model sample by sample."""
    return np.concatenate([ort_run(proto, {"x": x[i:i + 1]}) for i in range(x.shape[0])])


def gemm_model(trans_b: int, alpha=0.5, beta=2.0, k=12, n=9, seed=0):
    w = rand(n, k, seed=seed) if trans_b else rand(k, n, seed=seed)
    nodes = [N("Gemm", ["x", "w", "c"], ["g"], transB=trans_b, alpha=alpha, beta=beta, name="fc"), N("Relu", ["g"], ["y"])]
    return make_model(nodes, {"x": [1, k]}, {"y": [1, n]}, {"w": w, "c": rand(n, seed=seed + 1)}), w


def cnn_model(seed=0):
    """conv(pads, stride, dilation) + BN + ReLU → pool → flatten → Gemm."""
    rng = np.random.default_rng(seed)
    inits = {
        "w1": rand(6, 3, 3, 3, seed=seed), "b1": rand(6, seed=seed + 1),
        "s": rng.uniform(0.5, 2, 6).astype(np.float32), "be": rand(6, seed=seed + 2),
        "mu": rand(6, seed=seed + 3), "var": rng.uniform(0.5, 2, 6).astype(np.float32),
        "w2": rand(10, 6 * 4 * 4, seed=seed + 4), "b2": rand(10, seed=seed + 5),
    }
    nodes = [
        N("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[2, 1, 2, 1], strides=[1, 1], dilations=[2, 1], name="conv1"),
        N("BatchNormalization", ["c1", "s", "be", "mu", "var"], ["bn"], name="bn1"),
        N("Relu", ["bn"], ["r"], name="relu1"),
        N("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2], name="pool"),
        N("Flatten", ["p"], ["f"], name="flat"),
        N("Gemm", ["f", "w2", "b2"], ["y"], transB=1, name="fc"),
    ]
    return make_model(nodes, {"x": [1, 3, 8, 8]}, {"y": [1, 10]}, inits), inits


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_full_rank_exact_and_svd_bound(trans_b):
    proto, w = gemm_model(trans_b)
    model = load_onnx(proto)
    fz = factorizers(model)["fc"]
    wmat = 0.5 * (w.T if trans_b else w).astype(np.float64)  # K × N with alpha folded in
    np.testing.assert_allclose(fz.weight, wmat)
    assert fz.max_rank == 9
    x = rand(20, 12, seed=5)
    ref = ort_batch(proto, x)
    full = apply_ranks(model, {"fc": fz.max_rank}, factorizers_={"fc": fz})
    assert [op.op_type for op in full.layer("fc")["ops"]] == ["MatMul", "Gemm", "Relu"]
    np.testing.assert_allclose(OrtEvaluator(full).run({"x": x})["y"], ref, rtol=1e-5, atol=1e-5)
    s = np.linalg.svd(wmat, compute_uv=False)
    for r in (1, 4, 8):
        u, v, _ = fz.factors(r)
        # Eckart–Young: spectral error of the best rank-r approximation is sigma_{r+1}
        assert np.linalg.norm(wmat - u @ v, 2) == pytest.approx(s[r], rel=1e-9)
        low = apply_ranks(model, {"fc": r}, factorizers_={"fc": fz})
        got = OrtEvaluator(low).run({"x": x})["y"]
        # Relu is 1-Lipschitz: each row's error is at most ||x_row|| * sigma_{r+1} (+ float32 rounding)
        err = np.linalg.norm(got - ref, axis=1)
        assert np.all(err <= np.linalg.norm(x, axis=1) * s[r] * (1 + 1e-4) + 1e-4)
        assert err.max() > 0  # really compressed


def test_conv_decomposition_matches_dense_conv_of_low_rank_weight():
    proto, inits = cnn_model()
    model = load_onnx(proto)
    fzs = factorizers(model)
    fz = fzs["conv1"]
    assert (fz.kind, fz.folded, fz.max_rank) == ("conv", 1, 6)
    x = rand(7, 3, 8, 8, seed=3)
    ref = ort_batch(proto, x)
    # full rank: exact (BN folded into the factors)
    full = apply_ranks(model, {"conv1": 6, "fc": 10}, factorizers_=fzs)
    assert [op.op_type for op in full.layer("conv1")["ops"]] == ["Conv", "Conv", "Relu"]
    assert full.layer("conv1")["epilogue"] == ["Relu"]
    written = to_onnx(full)
    np.testing.assert_allclose(ort_run(written, {"x": x}), ref, rtol=1e-4, atol=1e-4)
    # rank 2: the r-filter conv + 1x1 conv equals one dense conv with the rank-2 weight (checked in ORT)
    low = apply_ranks(model, {"conv1": 2}, factorizers_=fzs)
    got = ort_run(to_onnx(low), {"x": x})
    w_r, b_r = fz.low_rank_weight(2)
    s = inits["s"] / np.sqrt(inits["var"] + 1e-5)
    w_orig = (fz.native_weight(w_r) / s[:, None, None, None]).astype(np.float32)
    dense_r = make_model(proto.graph.node, {"x": [1, 3, 8, 8]}, {"y": [1, 10]}, {**inits, "w1": w_orig})
    np.testing.assert_allclose(got, ort_batch(dense_r, x), rtol=1e-4, atol=1e-4)
    assert np.abs(got - ref).max() > 1e-2


def test_conv_factors_satisfy_svd_bound_and_im2col():
    proto, inits = cnn_model(seed=1)
    model = load_onnx(proto)
    fz = factorizers(model)["conv1"]
    s = np.linalg.svd(fz.weight, compute_uv=False)
    for r in (1, 3, 5):
        u, v, _ = fz.factors(r)
        assert np.linalg.norm(fz.weight - u @ v, 2) == pytest.approx(s[r], rel=1e-9)
    # im2col patches times the matrix are the conv (before bias) — the layout data-aware SVD relies on
    x = rand(2, 3, 8, 8, seed=4)
    a = model.layer("conv1")["ops"][0].attrs
    cols = im2col(x, a["kernel_shape"], a["strides"], a["pads"], a["dilations"])
    conv = make_model([N("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], pads=[2, 1, 2, 1], dilations=[2, 1])],
                      {"x": [2, 3, 8, 8]}, {"y": None}, {"w": inits["w1"]})
    ref = ort_run(conv, {"x": x})
    got = (cols @ inits["w1"].reshape(6, -1).T).reshape(2, ref.shape[2], ref.shape[3], 6).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_data_aware_svd_minimises_output_error():
    rng = np.random.default_rng(0)
    k, n = 16, 12
    # inputs with very uneven scales per feature and a non-zero mean: where weight SVD is not optimal
    x = (rng.standard_normal((400, k)) * np.geomspace(5, 0.05, k) + 1.0).astype(np.float32)
    proto, _ = gemm_model(0, alpha=1.0, beta=1.0, k=k, n=n)
    model = load_onnx(proto)
    fz = factorizers(model)["fc"]
    fz.set_calibration(x, damping=1e-8)
    z = x.astype(np.float64) @ fz.weight + fz.bias
    for r in (2, 5, 8):
        errs = {}
        for method in ("weight", "data"):
            w_r, b_r = fz.low_rank_weight(r, method)
            errs[method] = np.linalg.norm(x @ w_r + b_r - z)
        assert errs["data"] < errs["weight"]
    # full rank stays exact, with an unchanged bias
    w_f, b_f = fz.low_rank_weight(fz.max_rank, "data")
    np.testing.assert_allclose(w_f, fz.weight, atol=1e-8)
    np.testing.assert_allclose(b_f, fz.bias)
    # and the data-aware factors run as ops
    low = apply_ranks(model, {"fc": 5}, method="data", factorizers_={"fc": fz})
    w_r, b_r = fz.low_rank_weight(5, "data")
    got = OrtEvaluator(low).run({"x": x})["y"]
    np.testing.assert_allclose(got, np.maximum(x @ w_r + b_r, 0), rtol=1e-3, atol=1e-3)


def test_data_method_needs_calibration_and_checks_shape():
    proto, _ = gemm_model(1)
    fz = factorizers(load_onnx(proto))["fc"]
    with pytest.raises(CompressionError, match="calibration"):
        fz.factors(3, "data")
    with pytest.raises(InputError, match=r"\(n, 12\)"):
        fz.set_calibration(np.zeros((5, 7)))
    with pytest.raises(CompressionError, match="accepted"):
        fz.factors(3, "bogus")


def test_apply_ranks_bookkeeping_and_new_weights():
    proto, _ = gemm_model(1, k=40, n=30)
    model = load_onnx(proto)
    d = model.layer("fc")
    low = apply_ranks(model, {"fc": 6})
    e = low.layer("fc")
    assert e["rank"] == 6 and e["max_rank"] == 30
    assert e["params"] == 6 * (40 + 30) + 30  # U, V and the bias C
    assert e["weight_bytes"] == 4 * e["params"]
    # MatMul 2·1·40·6 + Gemm 2·1·6·30 + ReLU 30
    assert e["flops"] == 2 * 40 * 6 + 2 * 6 * 30 + 30
    assert d["flops"] == 2 * 40 * 30 + 30
    assert "w" in model.weights and "w" not in low.weights  # old weight dropped from the copy only
    assert all(t in low.weights for t in e["weight_names"])
    assert model.layer("fc")["ops"][0].op_type == "Gemm"  # the source model is unchanged
    # rank None leaves a layer dense
    same = apply_ranks(model, {"fc": None})
    assert same.layer("fc")["flops"] == d["flops"]


def test_matmul_with_bias_add_is_factorised():
    nodes = [N("MatMul", ["x", "w"], ["m"], name="mm"), N("Add", ["m", "b"], ["y"], name="bias")]
    proto = make_model(nodes, {"x": [1, 10]}, {"y": [1, 6]}, {"w": rand(10, 6), "b": rand(6, seed=1)})
    model = load_onnx(proto)
    fz = factorizers(model)["mm"]
    assert fz.kind == "matmul" and fz.bias is None
    x = rand(5, 10, seed=2)
    full = apply_ranks(model, {"mm": 6}, factorizers_={"mm": fz})
    assert [op.op_type for op in full.layer("mm")["ops"]] == ["MatMul", "MatMul", "Add"]
    np.testing.assert_allclose(OrtEvaluator(full).run({"x": x})["y"], ort_batch(proto, x), rtol=1e-5, atol=1e-5)


def test_grouped_conv_left_dense():
    nodes = [N("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], group=2, name="gconv")]
    model = load_onnx(make_model(nodes, {"x": [1, 4, 6, 6]}, {"y": None}, {"w": rand(6, 2, 3, 3)}))
    assert "grouped" in not_factorizable_reason(model, "gconv")
    assert factorizers(model) == {}
    with pytest.raises(CompressionError, match="group=2"):
        apply_ranks(model, {"gconv": 1})


def test_gemm_with_activation_c_left_dense():
    nodes = [N("Gemm", ["x", "w", "x2"], ["y"], transB=1, name="fc")]
    proto = make_model(nodes, {"x": [1, 5], "x2": [1, 3]}, {"y": [1, 3]}, {"w": rand(3, 5)})
    model = load_onnx(proto)
    assert not_factorizable_reason(model, "fc") == "Gemm whose C is an activation"
    assert factorizers(model) == {}


def test_gemm_with_bn_epilogue_folded():
    """Gemm → BatchNormalization (BatchNorm1d) folds into the factors and stays exact at full rank."""
    rng = np.random.default_rng(0)
    inits = {"w": rand(8, 6), "c": rand(8, seed=1), "s": rng.uniform(0.5, 2, 8).astype(np.float32),
             "b": rand(8, seed=2), "m": rand(8, seed=3), "v": rng.uniform(0.5, 2, 8).astype(np.float32)}
    nodes = [N("Gemm", ["x", "w", "c"], ["g"], transB=1, beta=0.5, name="fc"),
             N("BatchNormalization", ["g", "s", "b", "m", "v"], ["y"], name="bn")]
    proto = make_model(nodes, {"x": [1, 6]}, {"y": [1, 8]}, inits)
    model = load_onnx(proto)
    fz = factorizers(model)["fc"]
    assert fz.folded == 1
    full = apply_ranks(model, {"fc": 6}, factorizers_={"fc": fz})
    assert [op.op_type for op in full.layer("fc")["ops"]] == ["MatMul", "Gemm"]
    x = rand(9, 6, seed=4)
    np.testing.assert_allclose(OrtEvaluator(full).run({"x": x})["y"], ort_batch(proto, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rank", [0, -1, 10, 2.5, "3"])
def test_bad_rank_names_value_and_range(rank):
    proto, _ = gemm_model(1)  # 12 × 9 → ranks 1..9
    model = load_onnx(proto)
    with pytest.raises(CompressionError) as ei:
        apply_ranks(model, {"fc": rank})
    assert repr(rank) in str(ei.value) or str(rank) in str(ei.value)
    assert "1..9" in str(ei.value)


def test_unknown_layer():
    proto, _ = gemm_model(1)
    with pytest.raises(CompressionError, match="not in model"):
        apply_ranks(load_onnx(proto), {"nope": 2})


def test_svd_cached_once():
    proto, _ = gemm_model(1)
    fz = LayerFactorizer.from_layer(load_onnx(proto), "fc")
    fz.factors(2)
    dec = fz._cache["weight"]
    fz.factors(5)
    assert fz._cache["weight"] is dec


WRITER_CASES = [
    ("softmax_legacy_axis1", [N("Softmax", ["x"], ["y"], axis=1)], {"x": [1, 3, 4]}, {}, 11),
    ("clip_pad_cast", [N("Clip", ["x"], ["a"], min=-0.5, max=0.5), N("Pad", ["a"], ["b"], pads=[0, 0, 1, 2, 0, 0, 1, 0]),
                       N("Cast", ["b"], ["y"], to=1)], {"x": [1, 2, 3, 3]}, {}, 10),
    ("pools_lrn", [N("LRN", ["x"], ["a"], size=3), N("AveragePool", ["a"], ["b"], kernel_shape=[2, 2], pads=[1, 1, 1, 1]),
                   N("MaxPool", ["b"], ["y"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)], {"x": [1, 4, 5, 5]}, {}, 13),
    ("transpose_concat_leaky", [N("Transpose", ["x"], ["a"], perm=[0, 2, 1]), N("LeakyRelu", ["a"], ["b"], alpha=0.1),
                                N("Concat", ["b", "a"], ["y"], axis=1)], {"x": [1, 3, 4]}, {}, 13),
]


@pytest.mark.parametrize("case", WRITER_CASES, ids=[c[0] for c in WRITER_CASES])
def test_onnx_writer_round_trip(case):
    _, nodes, inputs, inits, opset = case
    proto = make_model(nodes, inputs, {"y": None}, inits, opset=opset)
    model = load_onnx(proto)
    x = rand(*inputs["x"], seed=9)
    np.testing.assert_allclose(ort_run(to_onnx(model), {"x": x}), ort_run(proto, {"x": x}), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("k, n", [(30, 12), (12, 30)])
def test_gram_route_for_large_matrices_matches_exact_svd(monkeypatch, k, n):
    """Large matrices skip the exact SVD; the Gram-matrix route must give the same low-rank matrices."""
    import deepx_opt.graphs.compression as comp

    proto, _ = gemm_model(0, alpha=1.0, beta=1.0, k=k, n=n, seed=3)
    model = load_onnx(proto)
    x = (np.random.default_rng(1).standard_normal((200, k)) * np.geomspace(3, 0.1, k) + 0.5).astype(np.float32)
    exact = factorizers(model)["fc"]
    exact.set_calibration(x)
    monkeypatch.setattr(comp, "EXACT_SVD_MAX_ELEMENTS", 0)
    gram = factorizers(model)["fc"]
    gram.set_calibration(x)
    for method in ("weight", "data"):
        np.testing.assert_allclose(gram.singular_values(method), exact.singular_values(method), rtol=1e-7, atol=1e-9)
        for r in (1, 4, min(k, n) - 1, min(k, n)):
            w_g, b_g = gram.low_rank_weight(r, method)
            w_e, b_e = exact.low_rank_weight(r, method)
            np.testing.assert_allclose(w_g, w_e, rtol=1e-6, atol=1e-8)
            np.testing.assert_allclose(b_g, b_e, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(gram.low_rank_weight(min(k, n), "weight")[0], gram.weight, atol=1e-10)


def test_runtime_executes_factorised_graph_unchanged():
    """The numpy runtime runs a factorised ModelGraph as it is, and agrees with onnxruntime on its ONNX."""
    from deepx_opt import zoo
    from deepx_opt.runtime.executor import execute_graph

    model = load_onnx(zoo.build("digits_cnn"))
    low = apply_ranks(model, {"conv1": 3, "conv2": 8, "fc1": 16, "fc2": 5})
    x = zoo.digits_dataset().for_model("digits_cnn").x_test[:1]
    outs, _ = execute_graph(low, {v: "cpu" for v in low.layers()}, {"input": np.ascontiguousarray(x)}, repeat=1, warmup=0)
    ref = ort_run(to_onnx(low), {"input": x})
    np.testing.assert_allclose(outs[low.outputs[0]], ref, rtol=1e-4, atol=1e-6)
