"""`deepx demo`: the main job end to end on this machine's processors (calibration, plan, compare, run, report)."""

from __future__ import annotations

import json

import pytest

from deepx_opt.cli import main
from deepx_opt.solvers import Plan, Problem, check_plan


@pytest.mark.slow
def test_demo_writes_a_checked_plan_a_run_and_a_report(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # its own calibration cache
    out = tmp_path / "demo"
    code = main(["demo", "-o", str(out), "--model", "digits_mlp", "--repeat", "3", "--time-limit", "5"])
    text = capsys.readouterr().out
    assert code == 0
    for f in ("plan.json", "problem.json", "compare.json", "run.json", "report.html", "plan-graph.svg",
              "timeline.svg", "host-profile.json"):
        assert (out / f).stat().st_size > 0, f
    plan, problem = Plan.load(out / "plan.json"), Problem.load(out / "problem.json")
    assert check_plan(problem, plan) == [] and plan.status.value == "OPTIMAL"
    assert plan.makespan_us <= problem.latency_budget_us and plan.accuracy_loss <= 1.0
    run = json.loads((out / "run.json").read_text())
    assert run["latency_us"] > 0 and run["energy_source"].startswith("modelled")
    assert any("held-out digits" in n for n in run["notes"])  # accuracy measured on the test split
    rows = json.loads((out / "compare.json").read_text())["rows"]
    assert {r["solver"] for r in rows} >= {"cpsat", "heft", "cpu_only"}
    assert "report:" in text and "accuracy loss pts" in text and "checker: valid" in text
    # the plan it wrote runs again through `deepx run` (its profile is the one saved beside it)
    assert main(["run", str(out / "plan.json"), "--repeat", "2"]) == 0


def test_demo_refuses_an_unknown_model(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path / "d"), "--model", "nope"]) == 2
    assert "not a zoo model" in capsys.readouterr().err
