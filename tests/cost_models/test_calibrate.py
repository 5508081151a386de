"""Calibration on the real backends (numpy and OpenCL/PoCL) in quick mode; validation against measured blocks."""

import os

import numpy as np
import pytest

from deepx_opt.cost_models import OpWork, load_profile, predict_work_us, save_profile
from deepx_opt.cost_models.calibrate import (
    _round_robin,
    calibrate,
    host_profile,
    machine_key,
    op_grid,
    summarize_validation,
    validate,
)
from deepx_opt.errors import BackendUnavailableError, CostModelError

REQUIRE_OPENCL = os.environ.get("DEEPX_REQUIRE_OPENCL", "") == "1"
CALIBRATED_KINDS = {"gemm", "conv", "dwconv", "elementwise", "pool", "lrn", "softmax", "concat", "reshape", "pad"}


def _opencl_name():
    from deepx_opt.runtime.backends import available_backends

    names = [n for n in available_backends() if n.startswith("opencl")]
    if not names:
        if REQUIRE_OPENCL:
            pytest.fail("DEEPX_REQUIRE_OPENCL=1 but no working OpenCL device was found")
        pytest.skip("no working OpenCL device")
    return names[0]


@pytest.fixture(scope="module")
def cpu_profile():
    return calibrate(["cpu"], mode="quick", progress=False)


def test_grid_covers_every_calibrated_kind():
    from deepx_opt.cost_models.calibrate import _case_work

    for size in ("small", "medium"):
        kinds = {_case_work(c).kind for c in op_grid(size)}
        assert kinds == CALIBRATED_KINDS
    assert len(op_grid("large")) > len(op_grid("medium")) > len(op_grid("small"))
    with pytest.raises(CostModelError, match="small, medium, large"):
        op_grid("huge")


def test_quick_calibration_cpu(cpu_profile, tmp_path):
    p = cpu_profile
    cpu = p.processor("cpu")
    assert cpu.backend == "cpu" and cpu.power_source == "modelled"
    assert set(cpu.latency_models) == CALIBRATED_KINDS
    for kind, md in cpu.latency_models.items():
        assert md["n_samples_"] >= 3
        small = predict_work_us(p, "cpu", OpWork(kind, 1e3, 1e4))
        big = predict_work_us(p, "cpu", OpWork(kind, 1e9, 1e4))
        assert 0 < small <= big
    # a big GEMV costs more than a small one, as measured
    assert predict_work_us(p, "cpu", OpWork("gemm", 8e6, 16e6)) > 3 * predict_work_us(p, "cpu", OpWork("gemm", 2e4, 4e4))
    samples = p.meta["calibration"]["processors"]["cpu"]["samples_table"]
    assert sum(row[5] == "grid" for row in samples) == len(op_grid("small"))
    assert {row[5] for row in samples} == {"grid", "zoo:digits_mlp", "zoo:digits_cnn"}  # timed in model order
    assert all(row[4] > 0 for row in samples)
    overhead = p.meta["calibration"]["processors"]["cpu"]["dispatch_overhead_us"]
    assert overhead >= 0 and all(md["dispatch_overhead_us"] == overhead for md in cpu.latency_models.values())
    q = load_profile(save_profile(p, tmp_path / "host.json"))
    assert q.processor("cpu").latency_models == cpu.latency_models
    with pytest.raises(CostModelError, match="no latency model for 'copy'"):
        predict_work_us(p, "cpu", OpWork("copy", 0, 1e4))


def test_quick_calibration_opencl():
    name = _opencl_name()
    p = calibrate([name], mode="quick", progress=False)
    assert p.processor_names == ["cpu", name]  # the host joins for the link, uncalibrated
    assert p.processor("cpu").latency_models == {}
    proc = p.processor(name)
    assert set(proc.latency_models) == CALIBRATED_KINDS
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
    summ = summarize_validation(rows)
    assert {s["variant"] for s in summ} == {"all", "dense", "low-rank"}
    assert all(0 <= s["within_pct"] <= 100 and s["mape_pct"] >= 0 for s in summ)


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
