"""Latency models: synthetic recovery, model choice, monotonicity, block sums, unknown work raises."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from deepx_opt.cost_models import LatencyModel, OpWork, layer_works, load_profile, predict_block_us, predict_work_us
from deepx_opt.cost_models.latency import FEATURES, block_works, model_shapes, op_work
from deepx_opt.errors import CostModelError, ProfileError
from deepx_opt.graphs import OpSpec, load_onnx


def _synthetic(n=40, seed=0):
    rng = np.random.default_rng(seed)
    flops = 10 ** rng.uniform(4, 9, n)
    nbytes = 10 ** rng.uniform(3, 8, n)
    return flops, nbytes, rng


def test_linear_recovers_coefficients():
    flops, nbytes, rng = _synthetic()
    y = (12.0 + 2e-5 * flops + 3e-4 * nbytes) * rng.lognormal(0, 0.01, len(flops))
    m = LatencyModel("linear").fit(np.c_[flops, nbytes], y)
    assert m.family_ == "linear"
    assert m.coef_ == pytest.approx([12.0, 2e-5, 3e-4], rel=0.05)
    assert m.train_mape_ < 2.0
    assert m is m.fit(np.c_[flops, nbytes], y)  # fit returns self


def test_roofline_recovered_and_chosen_by_auto():
    flops, nbytes, _ = _synthetic(seed=1)
    y = 8.0 + np.maximum(1e-5 * flops, 2e-4 * nbytes)
    m = LatencyModel("auto").fit(np.c_[flops, nbytes], y)
    assert m.family_ == "roofline"
    assert m.cv_mape_["roofline"] < m.cv_mape_["linear"]
    assert m.coef_ == pytest.approx([8.0, 1e-5, 2e-4], rel=0.02)


def test_auto_prefers_linear_on_linear_data():
    flops, nbytes, _ = _synthetic(seed=2)
    y = 5.0 + 1e-5 * flops + 1e-4 * nbytes
    assert LatencyModel("auto").fit(np.c_[flops, nbytes], y).family_ == "linear"


def test_cache_feature_recovers_spill():
    flops, nbytes, _ = _synthetic(seed=3)
    cache = 1 << 20
    y = 3.0 + 1e-5 * flops + 2e-5 * nbytes + 1e-4 * np.maximum(0, nbytes - cache)
    works = [OpWork("gemm", f, b) for f, b in zip(flops, nbytes)]
    m = LatencyModel("linear", features=("flops", "bytes", "bytes_over_cache")).fit(works, y)
    assert m.cache_bytes_ == cache
    assert m.predict(works) == pytest.approx(y, rel=0.02)


def test_round_trip_dict():
    flops, nbytes, _ = _synthetic(seed=4)
    y = 5.0 + 1e-5 * flops
    m = LatencyModel().fit(np.c_[flops, nbytes], y)
    m2 = LatencyModel.from_dict(m.to_dict())
    assert np.allclose(m.predict(np.c_[flops, nbytes]), m2.predict(np.c_[flops, nbytes]))


def test_bad_inputs():
    with pytest.raises(CostModelError, match="family"):
        LatencyModel("cubic")
    with pytest.raises(CostModelError, match="features"):
        LatencyModel(features=("watts",))
    with pytest.raises(CostModelError, match="not fitted"):
        LatencyModel().predict([[1.0, 2.0]])
    with pytest.raises(CostModelError, match="> 0"):
        LatencyModel().fit([[1.0, 2.0], [2.0, 3.0]], [1.0, -1.0])
    with pytest.raises(ProfileError, match="coef_"):
        LatencyModel.from_dict({"family": "linear", "features": ["flops"], "coef_": [1.0]})


@pytest.mark.parametrize("profile", ["snapdragon800", "tegrak1"])
def test_predictions_monotone_in_flops(profile):
    p = load_profile(profile)
    for proc in p.processors:
        for kind in proc.latency_models:
            if not proc.supports_kind(kind):
                continue
            prev = 0.0
            for f in [0, 1e3, 1e5, 1e7, 1e9]:
                t = predict_work_us(p, proc.name, OpWork(kind, f, 1e5))
                assert t >= prev and t > 0
                prev = t


def test_unknown_work_raises_never_zero():
    p = load_profile("tegrak1")
    with pytest.raises(CostModelError, match="does not support 'conv'"):
        predict_work_us(p, "lpu", OpWork("conv", 1e6, 1e4))
    q = p.copy()
    del q.processor("gpu").latency_models["lrn"]
    with pytest.raises(CostModelError, match="no latency model for 'lrn'"):
        predict_work_us(q, "gpu", OpWork("lrn", 1e6, 1e4))
    with pytest.raises(CostModelError, match="need kind and flops"):
        predict_block_us(p, "gpu", {"flops": 10})


def _mlp_onnx():
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((64, 32)).astype(np.float32)
    b1 = rng.standard_normal(32).astype(np.float32)
    w2 = rng.standard_normal((32, 10)).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1"),
             helper.make_node("Relu", ["h"], ["hr"], name="relu1"),
             helper.make_node("MatMul", ["hr", "w2"], ["y0"], name="fc2"),
             helper.make_node("Softmax", ["y0"], ["y"], name="prob", axis=1)]
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
                          [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"))])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def test_works_match_importer_flops_and_block_sums():
    model = load_onnx(_mlp_onnx())
    shapes = model_shapes(model)
    for v in model.layers():
        d = model.dag.nodes[v]
        unfused = block_works(d["ops"], shapes, fused_relu=False)
        assert sum(w.flops for w in unfused) == d["flops"]
        assert all(w.kind in ("gemm", "elementwise", "softmax") for w in unfused)
    p = load_profile("tegrak1")
    fc1 = model.dag.nodes["fc1"]
    works = layer_works(model, "fc1")
    assert [w.op_type for w in works] == ["Gemm"]  # the Relu is fused into the Gemm
    assert predict_block_us(p, "cpu", fc1, shapes=shapes) == pytest.approx(
        sum(predict_work_us(p, "cpu", w) for w in works))


def test_low_rank_block_is_two_gemms():
    p = load_profile("tegrak1")
    shapes = {"x": (1, 1000), "W": (1000, 1000), "b": (1000,), "U": (1000, 64), "V": (64, 1000)}
    attrs = {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0}
    dense = [OpSpec("Gemm", ["x", "W", "b"], ["y"], attrs, "fc")]
    low = [OpSpec("MatMul", ["x", "U"], ["mid"], {}, "fc_u"), OpSpec("Gemm", ["mid", "V", "b"], ["y"], attrs, "fc_v")]
    works = block_works(low, shapes)
    assert [w.kind for w in works] == ["gemm", "gemm"]
    assert works[0].flops == 2 * 1000 * 64 and works[1].flops == 2 * 64 * 1000 + 0  # importer: no bias FLOPs
    t_low = predict_block_us(p, "cpu", ops=low, shapes=shapes)
    assert t_low == pytest.approx(sum(predict_work_us(p, "cpu", w) for w in works))
    assert t_low < predict_block_us(p, "cpu", ops=dense, shapes=shapes)


def test_op_work_conv_features():
    attrs = {"kernel_shape": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1], "dilations": [1, 1], "group": 1}
    w = op_work(OpSpec("Conv", ["x", "w", "b"], ["y"], attrs, "c"), {"x": (1, 8, 16, 16), "w": (16, 8, 3, 3), "b": (16,)})
    assert w.kind == "conv" and w.flops == 2 * 16 * 16 * 16 * 8 * 9
    assert w.im2col_bytes == 8 * 9 * 16 * 16 * 4
    pw = op_work(OpSpec("Conv", ["x", "w"], ["y"], dict(attrs, kernel_shape=[1, 1], pads=[0, 0, 0, 0]), "p"),
                 {"x": (1, 8, 16, 16), "w": (16, 8, 1, 1)})
    assert pw.im2col_bytes == 0
    dw = op_work(OpSpec("Conv", ["x", "w"], ["y"], dict(attrs, group=8), "d"), {"x": (1, 8, 16, 16), "w": (8, 1, 3, 3)})
    assert dw.kind == "dwconv"
    view = op_work(OpSpec("Reshape", ["x"], ["y"], {"shape": [1, 2048]}, "r"), {"x": (1, 8, 16, 16)})
    assert view.kind == "reshape" and view.bytes == 0
    assert set(FEATURES) >= {"flops", "bytes"}


def _bn_add_model():
    """Conv → BN → Relu, then Add → Relu with a skip, then Gemm → Clip: every rewrite the executor makes."""
    rng = np.random.default_rng(0)
    c = 4

    def init(name, shape, positive=False):
        a = rng.standard_normal(shape).astype(np.float32)
        return numpy_helper.from_array(np.abs(a) + 0.5 if positive else a, name)

    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["n"], epsilon=1e-5),
        helper.make_node("Relu", ["n"], ["r"]),
        helper.make_node("Add", ["r", "x"], ["a"]),
        helper.make_node("Relu", ["a"], ["ar"]),
        helper.make_node("Flatten", ["ar"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "gw", "gb"], ["g"]),
        helper.make_node("Clip", ["g", "lo", "hi"], ["y"]),
    ]
    inits = [init("w", (c, c, 3, 3)), init("b", (c,)), init("s", (c,)), init("bb", (c,)), init("m", (c,)),
             init("v", (c,), True), init("gw", (c * 36, 10)), init("gb", (10,)),
             numpy_helper.from_array(np.array(0.0, np.float32), "lo"),
             numpy_helper.from_array(np.array(6.0, np.float32), "hi")]
    g = helper.make_graph(nodes, "bnadd", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 6, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    return load_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]))


def test_block_works_are_the_executors_steps():
    from deepx_opt.runtime.executor import block_steps

    m = _bn_add_model()
    shapes = model_shapes(m)
    n_steps = 0
    for v in m.layers():
        d = m.layer(v)
        steps, _ = block_steps(m, v)
        works = block_works(d["ops"], shapes, outputs=d["outputs"])
        assert [w.op_type for w in works] == [s[0] for s in steps], v
        n_steps += len(steps)
    assert n_steps < sum(len(m.layer(v)["ops"]) for v in m.layers())  # something was folded or fused
    all_ops = [op.op_type for v in m.layers() for op in m.layer(v)["ops"]]
    assert "BatchNormalization" in all_ops or "Relu" in all_ops


def test_variant_models_take_precedence_over_kind():
    p = load_profile("tegrak1")
    gemv = OpWork("gemm", 2e6, 4e6, "Gemm", variant="gemv")
    base = predict_work_us(p, "gpu", gemv)
    md = dict(p.processor("gpu").latency_models["gemm"])
    md = {**md, "coef_": [c * 2 for c in md["coef_"]]}
    p.processor("gpu").latency_models["gemm/gemv"] = md
    assert predict_work_us(p, "gpu", gemv) == pytest.approx(2 * base)
    assert predict_work_us(p, "gpu", OpWork("gemm", 2e6, 4e6, "Gemm", variant="gemm")) == pytest.approx(base)
    assert op_work(OpSpec("MatMul", ["x", "W"], ["y"], {}), {"x": (1, 64), "W": (64, 10)}).variant == "gemv"
    gemm_t = OpSpec("Gemm", ["x", "W"], ["y"], {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 1})
    assert op_work(gemm_t, {"x": (1, 64), "W": (10, 64)}).variant == "gemv_t"  # weight stored outputs × inputs
    assert op_work(gemm_t, {"x": (8, 64), "W": (10, 64)}).variant == "gemm"
    assert op_work(OpSpec("MatMul", ["x", "W"], ["y"], {}), {"x": (8, 64), "W": (64, 10)}).variant == "gemm"


def test_residual_add_with_its_relu_is_its_own_variant():
    """Add → Relu is one executed step (the Relu fused into the Add), costed by ``elementwise/Add+act`` when the
    profile has it and by the kind's model when not; a plain Add stays ``elementwise/Add``."""
    ops = [OpSpec("Add", ["a", "b"], ["s"], {}, "add"), OpSpec("Relu", ["s"], ["y"], {}, "relu")]
    shapes = {"a": (1, 16, 8, 8), "b": (1, 16, 8, 8)}
    (w,) = block_works(ops, shapes, outputs=["y"])
    assert (w.kind, w.variant, w.flops) == ("elementwise", "Add+act", 1024.0)
    assert [x.variant for x in block_works(ops, shapes, outputs=["s", "y"])] == ["Add", "Relu"]  # s is read: no fusion
    p = load_profile("tegrak1")
    assert predict_work_us(p, "gpu", w) == pytest.approx(predict_work_us(p, "gpu", OpWork(
        "elementwise", w.flops, w.bytes, "Add")))  # no variant model: the kind's
    md = dict(p.processor("gpu").latency_models["elementwise"])
    p.processor("gpu").latency_models["elementwise/Add+act"] = {**md, "coef_": [c * 3 for c in md["coef_"]]}
    assert predict_work_us(p, "gpu", w) == pytest.approx(3 * predict_work_us(p, "gpu", OpWork(
        "elementwise", w.flops, w.bytes, "Add")))


def test_local_correction_pulls_towards_measured_shapes_only():
    flops, nbytes, rng = _synthetic(n=30, seed=3)
    y = 12.0 + 2e-5 * flops + 3e-4 * nbytes
    m = LatencyModel("linear").fit(np.c_[flops, nbytes], y)
    near = np.array([[1e7, 1e6]])
    far = np.array([[1e5, 1e4]])
    before_near, before_far = m.predict(near)[0], m.predict(far)[0]
    m.set_local_correction(near, [2 * before_near])  # measured inside a model: twice the regression
    assert m.predict(near)[0] == pytest.approx(2 * before_near, rel=0.05)
    assert m.predict(far)[0] == pytest.approx(before_far, rel=1e-6)  # far from it: the regression
    m2 = LatencyModel.from_dict(m.to_dict())
    assert m2.predict(np.r_[near, far]) == pytest.approx(m.predict(np.r_[near, far]))
    bad = m.to_dict()
    bad["local_correction"]["points"] = [[1.0]]
    with pytest.raises(ProfileError, match="local_correction"):
        LatencyModel.from_dict(bad)
    with pytest.raises(CostModelError, match="latencies"):
        m.set_local_correction(near, [-1.0])


def test_cold_features_use_the_models_working_set():
    from dataclasses import replace

    from deepx_opt.cost_models.latency import context_bytes_of

    rng = np.random.default_rng(4)
    works, y = [], []
    for _ in range(40):  # GEMVs: 30 GB/s inside small models, 15 GB/s inside models beyond 32 MiB
        nb = float(10 ** rng.uniform(4, 7.5))
        ctx = float(10 ** rng.uniform(5, 9))
        works.append(OpWork("gemm", nb / 2, nb, "Gemm", variant="gemv", context_bytes=ctx))
        y.append(3.0 + nb / 30e3 * (2.0 if max(ctx, nb) > 32 << 20 else 1.0))
    m = LatencyModel("linear", features=("flops", "bytes", "cold_bytes", "cold")).fit(works, y)
    assert m.cache_bytes_ == 32 << 20 and m.train_mape_ < 3
    w = OpWork("gemm", 2e6, 4e6, "Gemm", variant="gemv")
    assert m.predict(replace(w, context_bytes=300e6))[0] == pytest.approx(2 * m.predict(w)[0], rel=0.1)
    assert LatencyModel.from_dict(m.to_dict()).predict(w)[0] == pytest.approx(m.predict(w)[0])
    assert context_bytes_of({"x": (1, 256), "W": (256, 1000)}) == 4 * (256 + 256 * 1000)


def test_whole_model_summary_carries_the_models_working_set():
    from deepx_opt.cost_models import summarize_model
    from deepx_opt.cost_models.latency import context_bytes_of

    m = _bn_add_model()
    s = summarize_model(m)
    ctx = context_bytes_of(model_shapes(m))
    assert ctx > sum(w.nbytes for w in m.weights.values())
    assert s.works and all(w.context_bytes == ctx for w in s.works)


def test_context_scaled_correction_with_recall_kernel():
    """A broad, context-aware correction carries a measured in-model slowdown to nearby shapes of the same
    model's working set but not to another model's; the narrow recall kernel reproduces the measured shapes."""
    from dataclasses import replace

    rng = np.random.default_rng(5)
    grid = [OpWork("gemm", nb / 2, nb, "Gemm", variant="gemv") for nb in 10 ** rng.uniform(4, 7, 30)]
    m = LatencyModel("linear").fit(grid, [2.0 + w.bytes / 20e3 for w in grid])
    # inside a 6 MB model the same GEMVs take 1.5× the grid's time, with ±8 % scatter per shape
    inside = [OpWork("gemm", nb / 2, nb, "Gemm", variant="gemv", context_bytes=6e6) for nb in (2e5, 4e5, 8e5)]
    meas = [1.5 * m.predict(w)[0] * f for w, f in zip(inside, (1.08, 0.92, 1.05))]
    m.set_local_correction(inside, meas, bandwidth=0.5, context_scale=1.0, recall_bandwidth=0.05)
    for w, t in zip(inside, meas):  # the recall kernel: the measured shapes themselves come back
        assert m.predict(w)[0] == pytest.approx(t, rel=0.03)
    between = OpWork("gemm", 3e5 / 2, 3e5, "Gemm", variant="gemv", context_bytes=6e6)
    plain = LatencyModel.from_dict({k: v for k, v in m.to_dict().items() if k != "local_correction"})
    assert 1.3 < m.predict(between)[0] / plain.predict(between)[0] < 1.6  # carried to an unseen rank
    other = replace(between, context_bytes=240e6)  # a model 40× larger: hardly corrected
    assert m.predict(other)[0] / plain.predict(other)[0] < 1.1
    m2 = LatencyModel.from_dict(m.to_dict())
    assert m2.predict([between, other] + inside) == pytest.approx(m.predict([between, other] + inside))
    bad = m.to_dict()
    bad["local_correction"]["recall"]["values"] = [0.0]
    with pytest.raises(ProfileError, match="recall"):
        LatencyModel.from_dict(bad)
    with pytest.raises(CostModelError, match="context_scale"):
        m.set_local_correction(inside, meas, context_scale=-1.0)


def test_parallel_features_price_single_and_multi_threaded_blas_apart():
    """Below parallel_flops a GEMV runs on one core (slow per byte), from it on all (fast, plus a wake-up cost):
    the fit recovers both rates, a larger op can cost less, and the threshold survives a round trip."""
    rng = np.random.default_rng(0)
    pf = 8e5
    works, y = [], []
    for e in 2.0 ** rng.uniform(14, 23, 60):  # weight elements
        w = OpWork("gemm", 2 * e, 4 * e, variant="gemv_t")
        y.append((2.0 + (4 * e) * (2e-5 if 2 * e >= pf else 1e-4) + (3.0 if 2 * e >= pf else 0.0))
                 * rng.lognormal(0, 0.01))
        works.append(w)
    feats = ("flops", "bytes", "serial_bytes", "parallel")
    m = LatencyModel("linear", features=feats, parallel_flops=pf).fit(works, y)
    c0, cf, cb, cs, cp = m.coef_  # (flops and bytes are collinear here: only their sum is determined)
    assert cs == pytest.approx(8e-5, rel=0.1) and cp == pytest.approx(3.0, rel=0.3)
    assert m.predict(works) == pytest.approx(y, rel=0.05)
    below, above = OpWork("gemm", pf * 0.9, pf * 1.8), OpWork("gemm", pf * 1.1, pf * 2.2)
    assert m.predict([above])[0] < m.predict([below])[0]  # the larger op, split between threads, is faster
    back = LatencyModel.from_dict(m.to_dict())
    assert back.parallel_flops == pf
    np.testing.assert_allclose(back.predict(works), m.predict(works))
    with pytest.raises(CostModelError, match="need parallel_flops > 0"):
        LatencyModel("linear", features=feats)
    d = m.to_dict()
    d["parallel_flops"] = 0
    with pytest.raises(ProfileError, match="parallel_flops 0"):
        LatencyModel.from_dict(d)
