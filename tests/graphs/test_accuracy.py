"""The RLC accuracy estimator: calibration checks, measurement consistency with the written model,
fallbacks without labels / without data, and its fit."""

from __future__ import annotations

import numpy as np
import pytest

from deepx_opt import zoo
from deepx_opt.errors import CompressionError, InputError
from deepx_opt.graphs import load_onnx
from deepx_opt.graphs.accuracy import Estimator, check_calibration, evaluate_model, logits_tensor, top1
from deepx_opt.graphs.compression import apply_ranks, factorizers


@pytest.fixture(scope="module")
def cnn():
    return load_onnx(zoo.build("digits_cnn"))


@pytest.fixture(scope="module")
def data():
    d = zoo.digits_dataset().for_model("digits_cnn")
    return d.x_test[:200], d.y_test[:200]


def test_check_calibration_shapes_and_labels(cnn, data):
    x, y = data
    feeds, labels = check_calibration(cnn, x, y)
    assert feeds["input"].shape == (200, 1, 8, 8) and labels.dtype == np.int64
    flat, _ = check_calibration(cnn, x.reshape(200, 64))  # flat samples reshape to the input
    np.testing.assert_array_equal(flat["input"], x)
    with pytest.raises(InputError, match=r"\(4, 7, 8, 8\).*\(n, 1, 8, 8\)"):
        check_calibration(cnn, np.zeros((4, 7, 8, 8)))
    with pytest.raises(InputError, match="without calibration"):
        check_calibration(cnn, None, y)
    with pytest.raises(InputError, match=r"\(199,\).*\(200,\)"):
        check_calibration(cnn, x, y[:199])
    with pytest.raises(InputError, match=r"0\.\.9"):
        check_calibration(cnn, x, np.full(200, 10))
    with pytest.raises(InputError, match="integer"):
        check_calibration(cnn, x, y + 0.5)
    with pytest.raises(InputError, match="empty"):
        check_calibration(cnn, x[:0])


def test_logits_tensor_is_softmax_input(cnn):
    assert logits_tensor(cnn) != cnn.outputs[0]
    assert cnn.tensors[logits_tensor(cnn)].shape == (1, 10)


@pytest.mark.parametrize("method", ["weight", "data"])
def test_probe_measurement_matches_factorised_model(cnn, data, method):
    """What the estimator measures (rank-r reconstructions fed to a probe) is what the factorised graph does."""
    x, y = data
    fzs = factorizers(cnn)
    assert set(fzs) == {"conv1", "conv2", "fc1", "fc2"}
    est = Estimator.build(cnn, fzs, calib=x, labels=y, factor_method=method)
    cfg = {"conv2": 6, "fc1": 8}
    m = est.measure(cfg)
    small = apply_ranks(cnn, cfg, method=method, factorizers_=fzs)
    dense = evaluate_model(cnn, x, y)
    comp = evaluate_model(small, x, y, reference=top1(dense["outputs"]))
    assert m["loss_pts"] == pytest.approx(dense["top1_pct"] - comp["top1_pct"], abs=1e-9)
    assert m["disagree_pts"] == pytest.approx(100 - comp["agreement_pct"], abs=1e-9)
    assert m["rel_err"] > 0


def test_labels_fit_is_additive_conservative_on_its_data(cnn, data):
    x, y = data
    fzs = factorizers(cnn)
    options = {"conv2": [4, 8, 16], "fc1": [4, 8, 16, 32]}
    est = Estimator.build(cnn, fzs, options, calib=x, labels=y, factor_method="data", n_configs=24, target="loss")
    assert est.method == "labels"
    # covered to within one calibration sample on the configured fraction of the measured configurations
    assert est.fit_["covered_within_one_sample_fraction"] >= est.coverage
    # fitted on the well-measured configurations only (at least FIT_MIN_PTS and FIT_MIN_SAMPLES samples), ρ²
    from deepx_opt.graphs.accuracy import FIT_MIN_PTS, FIT_MIN_SAMPLES

    assert est.fit_["fit_min_pts"] == pytest.approx(max(FIT_MIN_PTS, FIT_MIN_SAMPLES * 100 / len(y)))
    assert 0 < est.fit_["configs_fitted"] <= est.fit_["configs"] and est.beta_ == 2.0
    # verified loss: the whole configuration measured on the calibration data, plus the margin
    cfg2 = {"conv2": 4, "fc1": 4}
    assert est.verified_pts(cfg2) == pytest.approx((1 + est.margin) * est.measure(cfg2)["loss_pts"]
                                                   + 2 * est.layer_margin_pts)
    for v, ranks in options.items():
        losses = [est.loss_pts(v, r) for r in ranks]
        assert all(a >= 0 for a in losses)
        assert losses[0] > losses[-1]  # heavier compression costs more
    cfg = {"conv2": 8, "fc1": 8}
    assert est.predict(cfg) == pytest.approx(est.loss_pts("conv2", 8) + est.loss_pts("fc1", 8))
    assert est.predict({"conv2": None}) == 0.0
    s = est.summary()
    assert s["method"] == "labels" and s["notes"] and s["fit"]["configs"] >= 7


def test_without_labels_uses_disagreement(cnn, data):
    x, _ = data
    est = Estimator.build(cnn, factorizers(cnn), {"fc1": [4, 16]}, calib=x, n_configs=8)
    assert est.method == "disagreement"
    assert "disagreement" in est.notes[-1]
    assert "loss_pts" not in est.measure({"fc1": 4})
    assert est.loss_pts("fc1", 4) > est.loss_pts("fc1", 16) >= 0


def test_without_data_weight_energy_and_errors(cnn, data):
    x, _ = data
    est = Estimator.build(cnn, factorizers(cnn), {"fc1": [4]})
    assert est.method == "weight-energy" and "not measured" in est.notes[0].replace("it was not", "not")
    with pytest.raises(CompressionError, match="calibration data"):
        est.measure({"fc1": 4})
    with pytest.raises(CompressionError, match="1..64"):
        est.loss_pts("fc1", 65)
    with pytest.raises(CompressionError, match="needs calibration"):
        Estimator.build(cnn, factorizers(cnn), factor_method="data")
    with pytest.raises(InputError, match="needs labels"):
        Estimator.build(cnn, factorizers(cnn), calib=x, target="loss")
    with pytest.raises(CompressionError, match="target"):
        Estimator.build(cnn, factorizers(cnn), calib=x, target="top5")
    with pytest.raises(CompressionError, match="margin"):
        Estimator.build(cnn, factorizers(cnn), calib=x, margin=-0.1)


def test_fixed_batch_model_needs_whole_batches():
    from onnx import helper

    from tests.onnx_utils import make_model, rand

    proto = make_model([helper.make_node("Gemm", ["x", "w"], ["y"], name="fc")], {"x": [4, 6]}, {"y": [4, 3]},
                       {"w": rand(6, 3)})
    model = load_onnx(proto)
    with pytest.raises(InputError, match="multiple of the model's fixed batch size 4"):
        check_calibration(model, rand(10, 6))
    feeds, _ = check_calibration(model, rand(8, 6))
    est = Estimator.build(model, factorizers(model), {"fc": [1]}, calib=feeds["x"], n_configs=2)
    assert est.measure({"fc": 1})["rel_err"] > 0  # runs in chunks of the fixed batch


def test_data_aware_conv_factors_reduce_output_error_on_calibration(cnn, data):
    """For a trained conv, the activation-weighted SVD gives smaller output errors on the calibration data."""
    from deepx_opt.graphs.compression import im2col
    from deepx_opt.graphs.rlc_onnx import OrtEvaluator

    x, _ = data
    fzs = factorizers(cnn)
    Estimator.build(cnn, fzs, calib=x, factor_method="data")  # sets every layer's calibration inputs
    fz = fzs["conv2"]
    assert fz.has_calibration
    a = fz.main_op.attrs
    act = OrtEvaluator(cnn, extra_outputs=[fz.main_op.inputs[0]]).run({"input": x})[fz.main_op.inputs[0]]
    cols = im2col(act, a["kernel_shape"], a["strides"], a["pads"], a["dilations"]).astype(np.float64)
    z = cols @ fz.weight + fz.bias
    for r in (2, 4, 8):
        err = {}
        for method in ("weight", "data"):
            w_r, b_r = fz.low_rank_weight(r, method)
            err[method] = np.linalg.norm(cols @ w_r + b_r - z)
        assert err["data"] < err["weight"]


def test_quantile_fit_covers_its_quantile_and_censors():
    from deepx_opt.graphs.accuracy import _quantile_fit

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(200, 3))
    s_true = np.array([2.0, 1.0, 3.0])
    t = x @ s_true * rng.uniform(0.5, 1.5, size=200)
    for tau in (0.5, 0.9):
        s, shared = _quantile_fit(x, t, tau, cap_pts=1e9)
        assert np.all(s >= 0) and shared > 0
        covered = np.mean(x @ s >= t - 1e-9)
        assert abs(covered - tau) < 0.06, (tau, covered)
    # censoring: raising the targets above the cap changes nothing as long as the fit reaches the cap there
    s_med, _ = _quantile_fit(x, t, 0.5, cap_pts=4.0)
    t2 = np.where(t >= 4.0, t * 10, t)
    s_cen, _ = _quantile_fit(x, t2, 0.5, cap_pts=4.0)
    np.testing.assert_allclose(s_med, s_cen, rtol=1e-6, atol=1e-9)
    # a capped fit is not bent by far-off targets: it is lower than the uncapped one on this convex curve
    t3 = (x @ s_true) ** 2
    low, _ = _quantile_fit(x, t3, 0.5, cap_pts=4.0)
    high, _ = _quantile_fit(x, t3, 0.5, cap_pts=1e9)
    assert np.sum(low) < np.sum(high)


def test_refit_settings_without_new_measurements(cnn, data, monkeypatch):
    x, y = data
    options = {"conv2": [4, 8, 16], "fc1": [4, 8, 16, 32]}
    est = Estimator.build(cnn, factorizers(cnn), options, calib=x, labels=y, factor_method="weight", n_configs=24)
    calls = []
    monkeypatch.setattr(est, "measure", lambda ranks: calls.append(ranks) or Estimator.measure(est, ranks))
    cfg = {"conv2": 4, "fc1": 8}
    est.refit(layer_margin_pts=0.0, soft_flip_width=0.0)  # plain counts, no additive margin
    a90 = {(v, r): est.loss_pts(v, r) for v, rs in options.items() for r in rs}
    est.refit(coverage=0.5, margin=0.0)
    a50 = {k: est.loss_pts(*k) for k in a90}
    assert calls == []  # refitting measures nothing new
    assert sum(a50.values()) < sum(a90.values())  # the median lies below the 90 % quantile (+ margin)
    assert est.fit_["coverage"] == 0.5 and est.fit_["margin"] == 0.0
    # an additive margin per compressed layer, in a[v, r] and in the verified loss
    m = est.measure(cfg)["disagree_pts"]
    est.refit(layer_margin_pts=0.25)
    for k, a in a50.items():
        assert est.loss_pts(*k) == pytest.approx(a + 0.25)
    assert est.verified_pts(cfg) == pytest.approx(m + 2 * 0.25)
    # the verified loss blended with the median curve at the same configuration
    est.refit(layer_margin_pts=0.0, verify_blend=0.25, margin=0.1)
    g = sum(est.fit_["median_sensitivity"][v] * est.effects_[(v, r)].rel_err ** 2 for v, r in cfg.items())
    assert est.verified_pts(cfg) == pytest.approx(1.1 * (0.25 * m + 0.75 * g))
    # the smoothed target: samples close to flipping count part-way, so the 0.5-point width lies above the count
    # here (few flips, many near misses); a vanishing width gives the count back
    est.refit(verify_blend=1.0, margin=0.0, soft_flip_width=0.5)
    assert est.verified_pts(cfg) > m
    est.refit(soft_flip_width=1e-6)
    assert est.verified_pts(cfg) == pytest.approx(m, abs=1e-6)
    with pytest.raises(CompressionError, match=r"verify_blend 1\.5.*\[0, 1\]"):
        est.refit(verify_blend=1.5)
    with pytest.raises(CompressionError, match="unknown"):
        est.refit(beta=3)
    with pytest.raises(CompressionError, match="fit_cap_pts"):
        Estimator.build(cnn, factorizers(cnn), calib=x, fit_cap_pts=0)


def test_point_estimate_is_the_fit_without_margins_and_below_the_bound(cnn, data):
    """a_point[v, r]: the median fit of the same configurations, no coverage guard, no margins; never above
    a[v, r]. The verified point estimate: the configuration's measured target + its own per-layer offset."""
    x, y = data
    options = {"conv2": [4, 8, 16], "fc1": [4, 8, 16, 32]}
    est = Estimator.build(cnn, factorizers(cnn), options, calib=x, labels=y, factor_method="weight", n_configs=24)
    keys = [(v, r) for v, rs in options.items() for r in rs]
    cfg = {"conv2": 4, "fc1": 8}
    assert est.loss_point_pts("fc1", None) == 0.0
    est.refit(point_coverage=0.5, point_layer_pts=0.0, verified_point_layer_pts=0.1, point_scale=1.0, point_blend=1.0)
    med = est.fit_["median_sensitivity"]
    for v, r in keys:
        bound = est.loss_pts(v, r)
        point = est.loss_point_pts(v, r)
        assert 0 <= point <= bound
        assert point == pytest.approx(min(med[v] * est.effects_[(v, r)].rel_err ** 2, bound))
    assert any(est.loss_point_pts(*k) < est.loss_pts(*k) - 0.1 for k in keys)  # the margins separate them
    assert est.predict_point(cfg) <= est.predict(cfg)
    assert est.predict_point(cfg) == pytest.approx(sum(est.loss_point_pts(v, r) for v, r in cfg.items()))
    m = est._target(est.measure(cfg))
    assert est.verified_point_pts(cfg) == pytest.approx(min(m + 2 * 0.1, est.verified_pts(cfg)))
    assert est.verified_point_pts(cfg) <= est.verified_pts(cfg)
    # the safety margins move the bound only
    points = {k: est.loss_point_pts(*k) for k in keys}
    vp = est.verified_point_pts(cfg)
    est.refit(margin=0.5, layer_margin_pts=0.6)
    assert {k: est.loss_point_pts(*k) for k in keys} == pytest.approx(points)
    assert est.verified_point_pts(cfg) == pytest.approx(vp)
    assert est.verified_pts(cfg) == pytest.approx(1.5 * m + 2 * 0.6)
    # the point settings move the point only; a higher quantile lies higher on the fitted configurations
    bounds = {k: est.loss_pts(*k) for k in keys}
    est.refit(point_scale=0.5, point_layer_pts=0.05, verified_point_layer_pts=0.2)
    assert {k: est.loss_pts(*k) for k in keys} == pytest.approx(bounds)
    for k in keys:
        assert est.loss_point_pts(*k) == pytest.approx(min(0.5 * med[k[0]] * est.effects_[k].rel_err ** 2 + 0.05, bounds[k]))
    assert est.verified_point_pts(cfg) == pytest.approx(0.5 * m + 2 * 0.2)
    # the blend weighs the measurement against the additive point estimate; the verified bound caps both
    for w in (0.0, 0.4):
        est.refit(point_blend=w)
        assert est.verified_point_pts(cfg) == pytest.approx(
            min(w * (0.5 * m + 2 * 0.2) + (1 - w) * est.predict_point(cfg), est.verified_pts(cfg)))
    with pytest.raises(CompressionError, match=r"point_blend 1\.5.*\[0, 1\]"):
        est.refit(point_blend=1.5)
    assert est.point_blend == 0.4  # a refused setting leaves the estimator as it was
    est.refit(point_blend=1.0)
    def covered() -> float:  # fraction of the fitted configurations the point fit reaches
        lo, cap = est.fit_["fit_min_pts"], est.fit_["fit_cap_pts"]
        hits = []
        for c in est._samples:
            t = est._target(est._measure_cached(c))
            if t >= lo:
                fit = sum(est.point_v_[v] * est.effects_[(v, r)].rel_err ** 2 for v, r in c.items())
                hits.append(fit >= min(t, cap) - 1e-6)
        assert len(hits) >= 6
        return float(np.mean(hits))

    est.refit(point_scale=1.0, point_layer_pts=0.0, point_coverage=0.1)
    low = covered()
    est.refit(point_coverage=0.9)
    assert low <= 0.5 and covered() >= 0.8
    assert est.fit_["point_coverage"] == 0.9 and "point_sensitivity" in est.summary()
    with pytest.raises(CompressionError, match=r"point_coverage 1\.0.*\(0, 1\)"):
        est.refit(point_coverage=1.0)
    with pytest.raises(CompressionError, match="verified_point_layer_pts"):
        est.refit(verified_point_layer_pts=-0.1)
    # not measured: the weight-energy proxy has no separate point estimate
    proxy = Estimator.build(cnn, factorizers(cnn))
    assert proxy.loss_point_pts("fc1", 8) == proxy.loss_pts("fc1", 8) > 0
    with pytest.raises(CompressionError, match="calibration data"):
        proxy.verified_point_pts({"fc1": 8})
