"""RLC candidates: default and custom rank sets, the CandidateGraph, and rank selection within a limit."""

from __future__ import annotations

import itertools
import json
import math

import pytest

from deepx_opt import zoo
from deepx_opt.errors import CompressionError, InputError
from deepx_opt.graphs import load_onnx
from deepx_opt.graphs.accuracy import evaluate_model
from deepx_opt.graphs.candidates import candidate_ranks, candidates, select_ranks
from deepx_opt.graphs.compression import factorizers


@pytest.fixture(scope="module")
def mlp():
    return load_onnx(zoo.build("digits_mlp"))


@pytest.fixture(scope="module")
def digits():
    d = zoo.digits_dataset().for_model("digits_mlp")
    # calibration on part of the training split (as `deepx demo` does); the whole test split stays unseen
    return d.x_train[:600], d.y_train[:600], d.x_test, d.y_test


@pytest.fixture(scope="module")
def cg(mlp, digits):
    x, y, _, _ = digits
    return candidates(mlp, calib=x, labels=y, method="data")


def test_default_rank_set(mlp):
    fz = factorizers(mlp)["fc2"]  # 256 × 128 → min 128
    ranks, notes = candidate_ranks(fz)
    assert ranks == sorted(set(ranks))
    assert {64, 32, 16, 8, 4}.issubset(ranks)
    for e in (0.99, 0.95, 0.90):  # kept exactly when they save something over dense
        r = fz.energy_rank(e)
        assert (r in ranks) == (r * (256 + 128) < 256 * 128)
    assert fz.energy_rank(0.99) not in ranks  # 109: more parameters than dense
    assert all(r * (256 + 128) < 256 * 128 for r in ranks)
    assert notes == []
    # energy ranks keep at least that much energy, one fewer does not
    s2 = fz.singular_values() ** 2
    r95 = fz.energy_rank(0.95)
    assert s2[:r95].sum() / s2.sum() >= 0.95 > s2[: r95 - 1].sum() / s2.sum()


def test_custom_ranks_fractions_energy_and_dropping(mlp):
    fz = factorizers(mlp)["fc3"]  # 128 × 10 → min 10; saves only when r·138 < 1280, i.e. r <= 9
    ranks, notes = candidate_ranks(fz, [10, 9, 0.5, "e0.9"])
    assert 10 not in ranks and 9 in ranks and 5 in ranks
    assert any("dropped" in n and "[10]" in n for n in notes)
    with pytest.raises(CompressionError, match="1..10"):
        candidate_ranks(fz, [11])
    with pytest.raises(CompressionError, match="1..10"):
        candidate_ranks(fz, [0])
    with pytest.raises(CompressionError, match="fraction"):
        candidate_ranks(fz, [1.5])
    with pytest.raises(CompressionError, match="not understood"):
        candidate_ranks(fz, ["x0.9"])


def test_candidate_graph_options_and_summary(cg, mlp):
    assert list(cg.options) == mlp.layers()
    for v, opts in cg.options.items():
        assert opts[0].rank is None and opts[0].accuracy_loss_pts == 0.0
        assert opts[0].flops == mlp.layer(v)["flops"]
        ranks = [o.rank for o in opts[1:]]
        assert ranks == sorted(ranks)
        for o in opts[1:]:
            assert o.flops < opts[0].flops and o.weight_bytes < opts[0].weight_bytes
            assert o.accuracy_loss_pts >= 0
            assert o.ops[0].op_type == "MatMul"
            mid = o.ops[0].outputs[0]  # the rank-r intermediate is described for cost models
            assert o.tensors[mid].shape == (1, o.rank)
            assert all(t in o.tensors for op in o.ops for t in op.inputs + op.outputs if t)
            u, v_, b = o.factors()
            assert u.shape[1] == o.rank == v_.shape[0]
    assert [o.rank for o in cg.options["prob"]] == [None]  # softmax: dense only
    s = cg.summary()
    text = json.dumps(s)
    assert json.loads(text)["layers"]["fc1"][0]["rank"] is None
    assert s["accuracy"]["method"] == "disagreement"  # the default target, labels or not
    assert s["dense"]["weight_bytes"] == mlp.total("weight_bytes")


def test_select_ranks_is_optimal_and_within_limit(cg):
    layers = [v for v, o in cg.options.items() if len(o) > 1]
    for limit in (0.0, 0.5, 1.0, 2.0, 5.0):
        choice = select_ranks(cg, limit)
        assert set(choice) == set(layers)
        assert cg.predicted_loss_pts(choice) <= limit + 1e-9
        # brute force over every combination (losses rounded up to 0.01 points, as the DP does) agrees
        steps = lambda o: math.ceil(o.accuracy_loss_pts / 0.01 - 1e-9)  # noqa: E731
        best = min(
            sum(o.flops for o in combo)
            for combo in itertools.product(*(cg.options[v] for v in layers))
            if sum(steps(o) for o in combo) <= round(limit / 0.01)
        )
        assert sum(cg.option(v, r).flops for v, r in choice.items()) == best
    assert select_ranks(cg, 0.0) == {v: None for v in layers}
    with pytest.raises(CompressionError, match=">= 0"):
        select_ranks(cg, -1)
    with pytest.raises(CompressionError, match="objective"):
        select_ranks(cg, 1, objective="energy")


def test_selected_model_respects_limit_when_measured(cg, mlp, digits):
    x, y, x_held, y_held = digits
    dense_cal = evaluate_model(mlp, x, y)["top1_pct"]
    dense_held = evaluate_model(mlp, x_held, y_held)["top1_pct"]
    for limit in (1.0, 2.0):
        choice = select_ranks(cg, limit)
        small = cg.apply(choice)
        assert small.total("weight_bytes") < mlp.total("weight_bytes")
        assert dense_cal - evaluate_model(small, x, y)["top1_pct"] <= limit
        assert dense_held - evaluate_model(small, x_held, y_held)["top1_pct"] <= limit


def test_option_costs_equal_the_applied_model(cg, mlp):
    for v in ("fc1", "fc2"):
        for o in cg.options[v][1:]:
            real = cg.apply({v: o.rank}).layer(v)
            assert (o.flops, o.params, o.weight_bytes) == (real["flops"], real["params"], real["weight_bytes"])
            assert [op.op_type for op in o.ops] == [op.op_type for op in real["ops"]]


def test_weight_only_candidates_without_calibration(mlp):
    cg = candidates(mlp)
    assert cg.method == "weight" and cg.estimator.method == "weight-energy"
    # costing options needs no factors: only singular values were computed
    assert all("weight" not in fz._cache for fz in cg.estimator.factorizers.values())
    assert cg.options["fc1"][1].factors()[0].shape == (64, cg.options["fc1"][1].rank)
    assert any("uncalibrated" in n for n in cg.notes)
    fz = cg.estimator.factorizers["fc1"]
    s2 = fz.singular_values() ** 2
    o = cg.options["fc1"][1]
    assert o.accuracy_loss_pts == pytest.approx(100 * s2[o.rank:].sum() / s2.sum())


def test_candidates_errors(mlp, digits):
    x, y, _, _ = digits
    with pytest.raises(CompressionError, match="needs calibration"):
        candidates(mlp, method="data")
    with pytest.raises(InputError, match="without calibration"):
        candidates(mlp, labels=y)
    with pytest.raises(CompressionError, match="not factorised"):
        candidates(mlp, calib=x, ranks={"prob": [2]}, method="weight")
    with pytest.raises(CompressionError, match="cannot be factorised"):
        candidates(mlp, layers=["prob"])


def test_verified_loss_is_the_whole_choice_measured_on_calibration(cg, mlp, digits):
    from deepx_opt.graphs.accuracy import top1

    x, y, _, _ = digits
    ref = top1(evaluate_model(mlp, x, y)["outputs"])
    for limit in (0.5, 2.0, 5.0):
        choice = select_ranks(cg, limit, verify=True)
        verified = cg.verified_loss_pts(choice)
        assert verified <= limit + 1e-9
        agree = evaluate_model(cg.apply(choice), x, y, reference=ref)["agreement_pct"]
        est = cg.estimator
        m = est.measure(choice)
        assert m["disagree_pts"] == pytest.approx(100 - agree, abs=1e-9)  # the probe is the written model
        n_layers = sum(r is not None for r in choice.values())
        assert verified == pytest.approx((1 + est.margin) * est._target(m) + est.layer_margin_pts * n_layers, abs=1e-9)
    with pytest.raises(CompressionError, match="calibration data"):
        candidates(mlp).verified_loss_pts({"fc1": 8})


def test_verify_corrects_an_optimistic_estimate(cg):
    """With every a[v, r] 100x too small, Σa picks ranks far over the limit; verify=True tightens until the
    choice measured on the calibration data meets it."""
    from dataclasses import replace

    optimistic = replace(cg, options={v: [replace(o, accuracy_loss_pts=o.accuracy_loss_pts / 100) for o in opts]
                                      for v, opts in cg.options.items()})
    plain = select_ranks(optimistic, 1.0)
    assert optimistic.verified_loss_pts(plain) > 1.0  # the plain sum believed it
    checked = select_ranks(optimistic, 1.0, verify=True)
    assert optimistic.verified_loss_pts(checked) <= 1.0
    assert optimistic.totals(checked)["flops"] > optimistic.totals(plain)["flops"]


def test_refit_updates_every_option(mlp, digits):
    x, y, _, _ = digits
    cg = candidates(mlp, calib=x[:300], labels=y[:300], method="weight", ranks=[0.25, 0.0625])
    before = {(v, o.rank): o.accuracy_loss_pts for v, opts in cg.options.items() for o in opts if o.rank}
    assert cg.refit(layer_margin_pts=cg.estimator.layer_margin_pts + 0.5) is cg
    for (v, r), a in before.items():
        assert cg.option(v, r).accuracy_loss_pts == pytest.approx(a + 0.5)
    assert all(o.accuracy_loss_pts == 0.0 for opts in cg.options.values() for o in opts if o.rank is None)
    assert sum("accuracy loss fitted" in n for n in cg.notes) == 1 and "per compressed layer" in cg.notes[-1]


def test_point_estimate_fields(cg, mlp):
    """Every option carries the bound a[v, r] and the point estimate a_point[v, r] ≤ a[v, r]; the sums and the
    verified numbers come in the same two kinds; the selection holds the bounds."""
    from dataclasses import replace

    from deepx_opt.graphs.accuracy import DEFAULT_POINT_BLEND, DEFAULT_POINT_LAYER_PTS, DEFAULT_VERIFIED_POINT_LAYER_PTS
    from deepx_opt.graphs.candidates import LayerOption

    est = cg.estimator
    strict = 0
    for v, opts in cg.options.items():
        assert opts[0].accuracy_loss_point_pts == 0.0
        for o in opts[1:]:
            assert 0 <= o.accuracy_loss_point_pts <= o.accuracy_loss_pts
            assert o.accuracy_loss_point_pts == pytest.approx(est.loss_point_pts(v, o.rank))
            strict += o.accuracy_loss_point_pts < o.accuracy_loss_pts
    assert strict >= 1
    d = json.loads(json.dumps(cg.summary()))["layers"]["fc1"][1]
    assert d["accuracy_loss_point_pts"] <= d["accuracy_loss_pts"]
    for limit in (0.5, 2.0, 5.0):
        choice = select_ranks(cg, limit, verify=True)
        assert cg.predicted_loss_point_pts(choice) <= cg.predicted_loss_pts(choice)
        assert cg.predicted_loss_point_pts(choice) == pytest.approx(
            sum(cg.option(v, r).accuracy_loss_point_pts for v, r in choice.items()))
        assert cg.verified_loss_point_pts(choice) <= cg.verified_loss_pts(choice) <= limit + 1e-9
        n_layers = sum(r is not None for r in choice.values())
        m = est._target(est.measure(choice))
        w = est.point_blend
        assert cg.verified_loss_point_pts(choice) == pytest.approx(
            min(w * (est.point_scale * m + est.verified_point_layer_pts * n_layers)
                + (1 - w) * cg.predicted_loss_point_pts(choice), cg.verified_loss_pts(choice)))
        # the point settings change what is reported, not what is selected
        cg.refit(point_layer_pts=0.3, verified_point_layer_pts=0.0, point_blend=0.5)
        assert select_ranks(cg, limit, verify=True) == choice
        assert cg.verified_loss_point_pts(choice) == pytest.approx(
            min(0.5 * m + 0.5 * cg.predicted_loss_point_pts(choice), cg.verified_loss_pts(choice)))
        cg.refit(point_layer_pts=DEFAULT_POINT_LAYER_PTS, verified_point_layer_pts=DEFAULT_VERIFIED_POINT_LAYER_PTS,
                 point_blend=DEFAULT_POINT_BLEND)
    # a LayerOption built without a point estimate has the bound as its point; the bound caps a point above it
    o = cg.option("fc1", cg.options["fc1"][1].rank)
    bare = LayerOption(o.layer, o.rank, o.flops, o.params, o.weight_bytes, o.ops, 1.25)
    assert bare.accuracy_loss_point_pts == 1.25
    assert replace(o, accuracy_loss_pts=o.accuracy_loss_point_pts / 2).accuracy_loss_point_pts == o.accuracy_loss_point_pts / 2
    with pytest.raises(CompressionError, match="calibration data"):
        candidates(mlp).verified_loss_point_pts({"fc1": 8})
    proxy = candidates(mlp)
    assert all(o.accuracy_loss_point_pts == o.accuracy_loss_pts for opts in proxy.options.values() for o in opts)
