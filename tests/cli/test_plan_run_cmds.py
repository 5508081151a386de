"""`deepx inspect / plan / compare / run / processors`: real models, real profiles, real solvers and backends."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deepx_opt.cli import main
from deepx_opt.solvers import Plan, Problem, check_plan


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_inspect_table_and_json(capsys):
    code, out, _ = _run(capsys, "inspect", "speakerid")
    assert code == 0
    assert "fc1" in out and "Gemm" in out and "total:" in out and "1,808,106" in out.replace("1,808,106", "1,808,106")
    code, out, _ = _run(capsys, "inspect", "speakerid", "--json")
    doc = json.loads(out)
    assert code == 0 and set(doc) >= {"layers", "totals"}
    assert doc["totals"]["params"] == 1_808_106 and doc["totals"]["weight_bytes"] == 4 * 1_808_106
    assert [r["op"] for r in doc["layers"]][:3] == ["Gemm", "Gemm", "Gemm"]


@pytest.mark.parametrize("argv, needle", [
    (["inspect", "no_such_model"], "neither an existing file nor a zoo model"),
    (["inspect", "missing.onnx"], "does not exist"),
    (["inspect", "speakerid", "--input-shape", "input=0,3"], "positive integer"),
    (["plan", "svhn", "--profile", "nope"], "nope"),
    (["plan", "svhn", "--profile", "tegrak1", "--latency-budget", "-3"], "must be positive"),
    (["plan", "svhn", "--profile", "tegrak1", "--processors", "tpu"], "not in profile"),
    (["plan", "svhn", "--profile", "tegrak1", "--labels", "y.npy"], "--labels given without --calib"),
    (["plan", "speakerid", "--profile", "tegrak1", "--no-compression", "--latency-budget", "0.0001"], "latency"),
    (["run", "speakerid", "--processor", "tpu:7"], "tpu"),
    (["run", "speakerid"], "--processor"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, needle):
    code, out, err = _run(capsys, *argv)
    assert code == 2
    lines = [l for l in err.splitlines() if l.strip() and not l.startswith("[deepx")]  # progress lines aside
    assert len(lines) == 1 and lines[0].startswith("deepx ") and needle in lines[0], err
    assert "Traceback" not in err


def test_plan_writes_a_valid_plan_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "plan.json"
    prob = tmp_path / "problem.json"
    code, text, _ = _run(capsys, "plan", "svhn", "--profile", "tegrak1", "--latency-budget", "5",
                         "--max-accuracy-loss", "2", "-o", str(out), "--save-problem", str(prob))
    assert code == 0 and "OPTIMAL" in text and "predicted: latency" in text
    plan, problem = Plan.load(out), Problem.load(prob)
    assert check_plan(problem, plan) == []
    assert plan.meta["model"] == "svhn" and plan.meta["profile"] == "tegrak1"
    assert plan.makespan_us <= 5000 and plan.accuracy_loss <= 2
    before = out.read_bytes()
    code, _, err = _run(capsys, "plan", "svhn", "--profile", "tegrak1", "--latency-budget", "5", "-o", str(out))
    assert code == 2 and "already exists" in err and out.read_bytes() == before


def test_infeasible_budget_names_the_best_achievable(capsys):
    code, _, err = _run(capsys, "plan", "speakerid", "--profile", "snapdragon800", "--no-compression",
                        "--latency-budget", "0.001")
    assert code == 2 and "latency" in err and "ms" in err


def test_compare_table_has_every_solver_and_the_optimum_is_best(tmp_path, capsys):
    out = tmp_path / "cmp.json"
    code, text, _ = _run(capsys, "compare", "speakerid", "--profile", "tegrak1", "--latency-budget", "20",
                         "--no-compression", "-o", str(out), "--time-limit", "5")
    assert code == 0
    doc = json.loads(out.read_text())
    names = [r["solver"] for r in doc["rows"]]
    assert {"cpsat", "pulp_cbc", "heft", "greedy_compression", "cpu_only", "gpu_only"} <= set(names)
    ok = [r for r in doc["rows"] if r["status"] in ("OPTIMAL", "FEASIBLE")]
    best = min(r["energy_uj"] for r in ok)
    cps = next(r for r in doc["rows"] if r["solver"] == "cpsat")
    assert cps["status"] == "OPTIMAL" and cps["energy_uj"] == pytest.approx(best, rel=1e-6)
    assert all(r["violations"] == [] for r in ok)
    assert "vs best" in text and "heft" in text


def test_run_model_on_each_processor_matches_onnxruntime(tmp_path, capsys):
    import onnxruntime as ort

    from deepx_opt import zoo
    from deepx_opt.runtime import available_backends

    x = np.random.default_rng(3).standard_normal((1, 700)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    sess = ort.InferenceSession(zoo.build("speakerid").SerializeToString(), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {"input": x})[0]
    for proc in available_backends():
        outs = tmp_path / f"out_{proc.replace(':', '')}.npz"
        code, text, _ = _run(capsys, "run", "speakerid", "--processor", proc, "--input", str(tmp_path / "x.npy"),
                             "--repeat", "2", "--save-outputs", str(outs))
        assert code == 0 and "latency ms" in text
        got = np.load(outs)["output"]
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


def test_run_plan_with_processor_map_reports_measured_vs_predicted(tmp_path, capsys):
    plan_path = tmp_path / "plan.json"
    run_path = tmp_path / "run.json"
    assert _run(capsys, "plan", "svhn", "--profile", "tegrak1", "--latency-budget", "5", "--no-compression",
                "-o", str(plan_path))[0] == 0
    # tegrak1 is a paper profile: its processors are not this machine's, so the run needs a map
    code, _, err = _run(capsys, "run", str(plan_path), "--repeat", "1")
    assert code == 2 and "--map" in err and "this machine has" in err
    code, text, _ = _run(capsys, "run", str(plan_path), "--map", "gpu=cpu", "--map", "lpu=cpu", "--map", "cpu=cpu",
                         "--repeat", "2", "-o", str(run_path))
    assert code == 0 and "predicted" in text and "modelled" in text
    rep = json.loads(run_path.read_text())
    assert rep["predicted"]["makespan_us"] > 0 and rep["latency_us"] > 0
    assert rep["energy_source"].startswith("modelled")


def test_processors_lists_cpu_and_opencl(capsys, require_opencl):
    code, out, _ = _run(capsys, "processors", "--json")
    rows = json.loads(out)
    assert code == 0 and rows[0]["name"] == "cpu"
    assert any(r["name"].startswith("opencl:") for r in rows)


@pytest.mark.parametrize("make, needle", [
    (lambda p: np.save(p / "x.npy", np.zeros((1, 699), np.float32)), "input"),  # wrong shape
    (lambda p: np.save(p / "x.npy", np.zeros((1, 700), np.int64)), "input"),  # wrong dtype
    (lambda p: (p / "x.npy").write_text("not an array"), "not a .npy/.npz"),
    (lambda p: np.savez(p / "x.npy", a=np.zeros(3), b=np.zeros(3)), "lacks array"),
])
def test_run_rejects_bad_input_files(tmp_path, capsys, make, needle):
    make(tmp_path)
    src = tmp_path / "x.npy"
    if not src.exists():  # np.savez appends .npz
        src = tmp_path / "x.npy.npz"
    out = tmp_path / "y.npz"
    code, _, err = _run(capsys, "run", "speakerid", "--processor", "cpu", "--input", str(src), "--save-outputs", str(out))
    lines = [l for l in err.splitlines() if l.strip()]
    assert code == 2 and len(lines) == 1 and needle in lines[0], err
    assert not out.exists()  # no partial output passed off as a result
