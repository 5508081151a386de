"""Calibration on the real backends (numpy and OpenCL/PoCL) in quick mode; validation against measured blocks."""

import os
from pathlib import Path

import numpy as np
import pytest

from deepx_opt.cost_models import LatencyModel, OpWork, load_profile, predict_work_us, save_profile
from deepx_opt.cost_models.calibrate import (
    MAX_ZOO_REPS,
    BlockSample,
    ValidationRow,
    _block_latencies,
    Sample,
    _round_robin,
    fit_latency_models,
    leave_one_model_out,
    calibrate,
    cold_cases,
    host_profile,
    machine_key,
    op_grid,
    summarize_validation,
    validation_ceiling,
    validate,
)
from deepx_opt.errors import BackendUnavailableError, CostModelError

REQUIRE_OPENCL = os.environ.get("DEEPX_REQUIRE_OPENCL", "") == "1"
DATA = Path(__file__).resolve().parents[1] / "data"
CALIBRATED_KINDS = {"gemm", "conv", "dwconv", "elementwise", "pool", "lrn", "softmax", "concat", "reshape", "pad"}


def _opencl_name():
    from deepx_opt.runtime.backends import available_backends

    names = [n for n in available_backends() if n.startswith("opencl")]
    if not names:
        if REQUIRE_OPENCL:
            pytest.fail("DEEPX_REQUIRE_OPENCL=1 but no working OpenCL device was found")
        pytest.skip("no working OpenCL device")
    return names[0]


ZOO = ("digits_mlp", "digits_cnn", "speakerid")


@pytest.fixture(scope="module")
def cpu_profile():
    return calibrate(["cpu"], mode="quick", progress=False, models=ZOO)


def test_grid_covers_every_calibrated_kind():
    from deepx_opt.cost_models.calibrate import _case_work

    for size in ("small", "medium"):
        kinds = {_case_work(c).kind for c in op_grid(size)}
        assert kinds == CALIBRATED_KINDS
    assert len(op_grid("large")) > len(op_grid("medium")) > len(op_grid("small"))
    with pytest.raises(CostModelError, match="small, medium, large"):
        op_grid("huge")


def test_grid_times_gemm_weights_in_the_layout_the_executor_runs():
    """On numpy (gemm_weight_layout "nk") a grid GEMV stored inputs × outputs is timed as the executor runs it
    (weight transposed once, transB=1); its work, and so its cost-model key, stays the model's (gemv)."""
    from deepx_opt.cost_models.calibrate import _case_work, _laid_out
    from deepx_opt.runtime import get_backend
    from deepx_opt.runtime.backends.base import WEIGHT_NK_ATTR

    cpu = get_backend("cpu")
    cases = {(c.op_type, c.attrs.get("transB", 0)): c for c in op_grid("small") if c.inputs[0][0] == 1
             and c.op_type in ("Gemm", "MatMul")}
    rng = np.random.default_rng(0)
    for (op_type, trans_b), case in cases.items():
        arrays = [None if s is None else rng.standard_normal(s).astype(np.float32) for s in case.inputs]
        attrs, laid = _laid_out(cpu, case, arrays)
        assert attrs.get("transB", 0) == 1 if op_type == "Gemm" else attrs[WEIGHT_NK_ATTR] == 1
        assert laid[1].shape == arrays[1].shape[::-1] or trans_b
        ref = cpu.run(op_type, arrays, case.attrs)[0]  # sums in another order: float32 rounding apart
        np.testing.assert_allclose(cpu.run(op_type, laid, attrs)[0], ref, rtol=0, atol=1e-5 * np.abs(ref).max())
        assert _case_work(case).variant == ("gemv_t" if trans_b else "gemv")
    assert set(cases) == {("Gemm", 0), ("Gemm", 1), ("MatMul", 0)}


def test_quick_calibration_cpu(cpu_profile, tmp_path):
    p = cpu_profile
    cpu = p.processor("cpu")
    assert cpu.backend == "cpu" and cpu.power_source == "modelled"
    assert {k.split("/")[0] for k in cpu.latency_models} == CALIBRATED_KINDS <= set(cpu.latency_models)
    # the grid times a residual Add with its fused Relu apart from a plain Add (a model of its own from the
    # default grid's six sizes on: MIN_VARIANT_SAMPLES)
    from deepx_opt.cost_models.calibrate import _case_work

    variants = [_case_work(c).variant for c in op_grid("small") if c.op_type == "Add"]
    assert variants.count("Add+act") == variants.count("Add") == 3
    for kind, md in cpu.latency_models.items():
        kind = kind.split("/")[0]
        assert md["n_samples_"] >= 3
        small = predict_work_us(p, "cpu", OpWork(kind, 1e3, 1e4))
        big = predict_work_us(p, "cpu", OpWork(kind, 1e9, 1e4))
        assert 0 < small <= big
    # a big GEMV costs more than a small one, as measured
    assert predict_work_us(p, "cpu", OpWork("gemm", 8e6, 16e6)) > 3 * predict_work_us(p, "cpu", OpWork("gemm", 2e4, 4e4))
    samples = p.meta["calibration"]["processors"]["cpu"]["samples_table"]
    assert sum(row[5] == "grid" for row in samples) == len(op_grid("small"))
    # every zoo model's blocks were timed inside whole-model runs of the executor
    assert {row[5] for row in samples} == {"grid", "cold"} | {f"zoo:{m}" for m in ZOO}
    assert sum(row[5] == "cold" for row in samples) == len(cold_cases(op_grid("small"))) > 5
    assert all(row[4] > 0 for row in samples)
    assert cpu.block_overhead_us >= 0
    # variants with enough samples get their own model: batch-1 GEMMs (GEMV) and MaxPool
    assert {"gemm/gemv", "pool/MaxPool", "conv/im2col"} <= set(cpu.latency_models)
    q = load_profile(save_profile(p, tmp_path / "host.json"))
    assert q.processor("cpu").latency_models == cpu.latency_models
    assert q.processor("cpu").block_overhead_us == cpu.block_overhead_us
    with pytest.raises(CostModelError, match="no latency model for 'copy'"):
        predict_work_us(p, "cpu", OpWork("copy", 0, 1e4))


def test_quick_calibration_opencl():
    name = _opencl_name()
    p = calibrate([name], mode="quick", progress=False, models=("digits_mlp",))
    assert p.processor_names == ["cpu", name]  # the host joins for the link, uncalibrated
    assert p.processor("cpu").latency_models == {}
    proc = p.processor(name)
    assert CALIBRATED_KINDS <= set(proc.latency_models)
    lk = p.link("cpu", name)
    assert lk is not None and lk.bandwidth_bytes_per_s > 1e7 and not lk.wireless
    assert p.transfer_time_us("cpu", name, 1 << 20) > p.transfer_time_us("cpu", name, 1 << 10)


def test_unknown_processor_and_mode():
    with pytest.raises(BackendUnavailableError, match="cpu"):
        calibrate(["tpu:0"], mode="quick", progress=False)
    with pytest.raises(CostModelError, match="quick, default, thorough"):
        calibrate(["cpu"], mode="fast", progress=False)


def test_validate_measures_and_predicts_every_block(cpu_profile):
    rows = validate(cpu_profile, ["digits_mlp"], rank_fractions=(0.5,), warmup=1, reps=3, progress=False)
    dense = [r for r in rows if r.variant == "dense"]
    low = [r for r in rows if r.variant != "dense"]
    assert [r.layer for r in dense] == ["fc1", "fc2", "fc3", "prob"]
    assert {r.layer for r in low} == {"fc1", "fc2", "fc3"}
    assert all(r.measured_us > 0 and r.predicted_us > 0 for r in rows)
    assert all(r.measured_min_us <= r.measured_us == r.measured_median_us for r in rows)  # the median of the runs
    # the executor's steps: a dense fc is one (fused) GEMV of a weight stored outputs × inputs (transB=1), a
    # factorised one two GEMVs of weights stored inputs × outputs
    assert [w.variant for w in dense[0].works] == ["gemv_t"]
    assert [w.variant for w in low[0].works] == ["gemv", "gemv"]
    summ = summarize_validation(rows)
    assert {s["variant"] for s in summ} == {"all", "dense", "low-rank"}
    # the ceiling: the same dense blocks as calibration timed them, against these measurements
    (ceil,) = validation_ceiling(cpu_profile, rows)
    cal = {(m, lay): t for m, lay, var, _w, t in cpu_profile.meta["calibration"]["processors"]["cpu"]["fit_data"]
           ["blocks"] if var == "dense" and m == "digits_mlp"}
    ratios = np.array([r.measured_us / cal[(r.model, r.layer)] for r in dense])
    assert ceil["processor"] == "cpu" and ceil["blocks"] == len(dense) == len(cal)
    assert ceil["drift"] == pytest.approx(np.median(ratios))
    assert ceil["within_pct"] == pytest.approx(np.mean(np.abs(ratios - 1) <= 0.1) * 100)
    assert ceil["within_after_drift_pct"] == pytest.approx(np.mean(np.abs(ratios / np.median(ratios) - 1) <= 0.1) * 100)
    slow = [ValidationRow(r.processor, r.model, r.layer, r.variant, r.kind, r.measured_us * 1.5, r.predicted_us)
            for r in rows]  # the machine 50 % slower than at calibration: all drift, no scatter
    (c2,) = validation_ceiling(cpu_profile, slow)
    assert c2["drift"] == pytest.approx(1.5 * ceil["drift"])
    assert c2["within_after_drift_pct"] == pytest.approx(ceil["within_after_drift_pct"])
    assert all(0 <= s["within_pct"] <= 100 and s["mape_pct"] >= 0 for s in summ)
    # leave-one-model-out: digits_mlp's own blocks are dropped from the fit, the measurements stay
    lo = leave_one_model_out(cpu_profile, rows)
    assert [(r.layer, r.variant, r.measured_us) for r in lo] == [(r.layer, r.variant, r.measured_us) for r in rows]
    assert any(abs(a.predicted_us - b.predicted_us) > 1e-6 for a, b in zip(lo, rows))


def test_fit_uses_in_model_blocks_and_splits_multi_step_blocks():
    # synthetic: the grid says a GEMV costs 10 µs + 1 µs per kB; inside models, blocks cost twice that
    grid = [Sample(OpWork("gemm", 2 * kb * 256, kb * 1024.0, "Gemm", variant="gemv"), 10 + kb)
            for kb in (1, 4, 16, 64, 256, 1024)]
    w = [OpWork("gemm", 2 * kb * 256, kb * 1024.0, "Gemm", variant="gemv") for kb in (2, 8, 32, 128, 512)]
    blocks = [BlockSample((x,), 2 * (10 + x.bytes / 1024), "m1") for x in w]
    blocks += [BlockSample((x, x), 4 * (10 + x.bytes / 1024), "m2") for x in w]  # two steps each
    grid_only = fit_latency_models(grid, [], 0.0)
    both = fit_latency_models(grid, blocks, 0.0)
    x = OpWork("gemm", 2 * 100 * 256, 100 * 1024.0, "Gemm", variant="gemv")
    p_grid = LatencyModel.from_dict(grid_only["gemm"]).predict(x)[0]
    p_both = LatencyModel.from_dict(both["gemm"]).predict(x)[0]
    assert p_grid == pytest.approx(110, rel=0.05)
    assert p_both == pytest.approx(220, rel=0.15)  # in-model samples (weight 4) dominate
    # leaving m1 and m2 out gives back the grid's answer
    again = fit_latency_models(grid, blocks, 0.0, exclude_models=["m1", "m2"])
    assert LatencyModel.from_dict(again["gemm"]).predict(x)[0] == pytest.approx(p_grid)


def test_blas_threading_threshold_measured_and_used_by_the_gemv_fit():
    from deepx_opt.cost_models.calibrate import blas_parallel_flops
    from deepx_opt.runtime.backends.numpy_backend import NumpyBackend

    assert blas_parallel_flops(NumpyBackend(threads=1)) is None  # one thread: nothing to split
    pf = blas_parallel_flops(NumpyBackend())
    assert pf is None or 2 * 2 ** 13 <= pf <= 2 * 2 ** 23.5  # a size of the ladder (machine-dependent)
    # synthetic GEMVs: 1 µs per kB on one core below 1 MFLOP, 0.2 µs per kB + 4 µs above
    grid = [Sample(OpWork("gemm", 2 * e, 4.0 * e, "Gemm", variant="gemv"),
                   2 + 4 * e / 1024 * (0.2 if 2 * e >= 1e6 else 1.0) + (4 if 2 * e >= 1e6 else 0))
            for e in 2.0 ** np.arange(12, 23, 0.5)]
    grid += [Sample(OpWork("gemm", 32 * e, 4.0 * e, "Gemm", variant="gemm"), 5 + 16 * e / 1e4) for e in (1e4, 1e5, 1e6)]
    split = fit_latency_models(grid, [], 0.0, parallel_flops=1e6)["gemm/gemv"]
    assert split["features"][-2:] == ["serial_bytes", "parallel"] and split["parallel_flops"] == 1e6
    plain = fit_latency_models(grid, [], 0.0)["gemm/gemv"]
    assert "serial_bytes" not in plain["features"]
    x = OpWork("gemm", 2 * 2 ** 18.25, 4 * 2 ** 18.25, "Gemm", variant="gemv")  # below the threshold, unseen
    truth = 2 + 4 * 2 ** 18.25 / 1024
    assert LatencyModel.from_dict(split).predict(x)[0] == pytest.approx(truth, rel=0.1)
    assert abs(LatencyModel.from_dict(plain).predict(x)[0] / truth - 1) > 0.2


def test_calibration_times_its_dense_blocks_again_and_says_how_well_they_repeat(cpu_profile):
    import copy

    from deepx_opt.cli.calibrate_cmd import repeat_check_lines

    info = cpu_profile.meta["calibration"]["processors"]["cpu"]
    check = info["repeat_check"]
    dense = [b for b in info["fit_data"]["blocks"] if b[2] == "dense"]
    assert check["processor"] == "cpu" and check["blocks"] == len(dense) > 0
    assert 0 <= check["within_pct"] <= 100 and 0 <= check["within_after_drift_pct"] <= 100 and check["drift"] > 0
    lines = repeat_check_lines(cpu_profile)
    n_in = round(check["within_pct"] * len(dense) / 100)
    assert lines[0].startswith(f"repeat check cpu: {n_in} of {len(dense)} dense blocks ({check['within_pct']:.1f}%)")
    busy = copy.deepcopy(cpu_profile)
    busy.meta["calibration"]["processors"]["cpu"]["repeat_check"]["within_pct"] = 40.0
    assert any(ln.startswith("warning: the calibration of cpu did not repeat") for ln in repeat_check_lines(busy))
    calm = copy.deepcopy(cpu_profile)
    calm.meta["calibration"]["processors"]["cpu"]["repeat_check"]["within_pct"] = 95.0
    assert not any(ln.startswith("warning") for ln in repeat_check_lines(calm))


def test_fast_models_get_more_timed_runs_within_the_budget():
    from deepx_opt import zoo
    from deepx_opt.graphs import load_onnx

    g = load_onnx(zoo.build("digits_mlp"))  # a run of a few tens of µs
    plain = _block_latencies("cpu", g, 1, 3, None)
    assert set(plain) == set(g.layers()) and all(len(ts) == 3 for ts in plain.values())
    tiny = _block_latencies("cpu", g, 1, 3, None, budget_s=1e-6)  # less than one run: the reps alone
    assert all(len(ts) == 3 for ts in tiny.values())
    capped = _block_latencies("cpu", g, 1, 3, None, budget_s=10.0)
    assert all(len(ts) == MAX_ZOO_REPS for ts in capped.values())
    some = _block_latencies("cpu", g, 1, 3, None, budget_s=0.002)  # 2 ms: more runs, fewer than the cap
    n = {len(ts) for ts in some.values()}
    assert len(n) == 1 and 3 < n.pop() < MAX_ZOO_REPS


def test_round_robin_times_every_call():
    calls_seen = []
    out = _round_robin([lambda i: calls_seen.append(("a", i)), lambda i: calls_seen.append(("b", i))],
                       lambda: None, warmup=1, reps=3)
    assert len(out) == 2 and all(t >= 0 for t in out)
    assert [c for c, _ in calls_seen] == ["a", "b"] * 4  # in turns, warm-up included


def test_host_profile_cache(tmp_path, monkeypatch, cpu_profile):
    import deepx_opt.cost_models.calibrate as cal

    calls = []

    def counting_calibrate(names, **kw):  # the real calibration ran once, in the fixture
        calls.append(list(names))
        return cpu_profile

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(cal, "calibrate", counting_calibrate)
    p1 = host_profile(["cpu"], mode="quick", progress=False)
    files = list((tmp_path / "deepx_opt").glob("host-*.json"))
    assert len(files) == 1 and machine_key() in files[0].name
    p2 = host_profile(["cpu"], mode="quick", progress=False)  # from the cache, no recalibration
    assert calls == [["cpu"]]
    assert p2.to_dict() == p1.to_dict()
    host_profile(["cpu"], mode="quick", refresh=True, progress=False)
    assert len(calls) == 2


def test_local_correction_kernel_chosen_by_cross_validation_over_zoo_runs():
    """In-model GEMVs cost 1.6× the grid inside one model's working set and 1× inside another's; held-out
    runs (other ranks) are predicted best by a broad kernel that weighs the working set — and the fitted
    models carry the choice."""
    from deepx_opt.cost_models.calibrate import choose_local_correction

    grid = [Sample(OpWork("gemm", 2 * kb * 256, kb * 1024.0, "Gemm", variant="gemv"), 10 + kb)
            for kb in (1, 2, 4, 8, 16, 64, 256, 1024, 4096)]
    blocks = []
    for model, ctx, slow in (("small", 2e5, 1.6), ("large", 2e8, 1.0)):
        for variant, kbs in (("dense", (24, 96, 384)), ("rank=0.35", (9, 34, 134)), ("rank=0.125", (3, 12, 48))):
            for kb in kbs:
                w = OpWork("gemm", 2 * kb * 256, kb * 1024.0, "Gemm", variant="gemv", context_bytes=ctx)
                blocks.append(BlockSample((w,), slow * (10 + kb), model, f"fc{kb}", variant))
    models = fit_latency_models(grid, blocks, 0.0)
    chosen = models["gemm/gemv"]["local_correction_cv"] if "gemm/gemv" in models else models["gemm"]["local_correction_cv"]
    assert chosen["bandwidth"] >= 0.3 and chosen["context_scale"] > 0, chosen
    key = "gemm/gemv" if "gemm/gemv" in models else "gemm"
    m = LatencyModel.from_dict(models[key])
    unseen = [OpWork("gemm", 2 * 20 * 256, 20 * 1024.0, "Gemm", variant="gemv", context_bytes=c) for c in (2e5, 2e8)]
    small, large = m.predict(unseen)
    assert small == pytest.approx(1.6 * 30, rel=0.12) and large == pytest.approx(30, rel=0.12)
    # the choice itself, from the regressions before correction and the in-model samples
    plain = {k: {f: v for f, v in md.items() if not f.startswith("local_correction")} for k, md in models.items()}
    inmodel = [((b.model, b.variant), b.works[0], b.latency_us) for b in blocks]
    bw, cs = choose_local_correction(plain, inmodel, blocks, 0.0)
    assert (bw, cs) == (chosen["bandwidth"], chosen["context_scale"])


def test_uncalibrated_blocks_are_those_no_calibrated_model_ran(cpu_profile):
    """A block counts as calibrated when some calibrated model ran the same steps on the same shapes."""
    from deepx_opt.cost_models import load_profile
    from deepx_opt.cost_models.calibrate import calibration_models, uncalibrated_blocks

    mlp, cnn, resnet = calibration_models(["digits_mlp", "digits_cnn", str(DATA / "torch_resnet_tiny.onnx")])
    assert uncalibrated_blocks(cpu_profile, mlp) == {"cpu": []}
    assert uncalibrated_blocks(cpu_profile, cnn) == {"cpu": []}
    assert uncalibrated_blocks(cpu_profile, resnet) == {"cpu": list(resnet.layers())}
    assert uncalibrated_blocks(load_profile("tegrak1"), mlp) == {}  # no calibration samples: nothing to say


def test_calibration_models_names_files_after_themselves_and_refuses_duplicates():
    from deepx_opt.cost_models.calibrate import calibration_models
    from deepx_opt.errors import InputError, ModelLoadError

    # both files' graphs are named "main_graph" by the exporter
    graphs = calibration_models([str(DATA / "torch_resnet_tiny.onnx"), str(DATA / "torch_resnet_tiny_dynamo.onnx"),
                                 "zoo:Digits_MLP"])
    assert [g.name for g in graphs] == ["torch_resnet_tiny", "torch_resnet_tiny_dynamo", "digits_mlp"]
    with pytest.raises(InputError, match="distinct names; given more than once: digits_mlp"):
        calibration_models(["zoo", "digits_mlp"], default=("digits_mlp",))
    with pytest.raises(ModelLoadError, match="'nope' is neither an existing file nor a zoo model; zoo models: "):
        calibration_models(["nope"])

