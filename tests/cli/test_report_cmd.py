"""`deepx report PLAN.json ...` through the real CLI entry point."""

from __future__ import annotations

import json

import pytest

from deepx_opt.cli import main
from deepx_opt.solvers import get_solver
from deepx_opt.solvers.synthetic import branches_problem


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    prob = branches_problem(2, n_branches=2, seed=3, goal="min_latency", max_accuracy_loss=4.0)
    plan = get_solver("cpsat").solve(prob, time_limit_s=20)
    prob.save(d / "problem.json")
    plan.save(d / "plan.json")
    heur = [get_solver(n).solve(prob, time_limit_s=10) for n in ("heft", "greedy_compression")]
    (d / "compare.json").write_text(json.dumps({"plans": [p.to_dict() for p in heur]}))
    return d, prob, plan


def test_report_with_problem_compare_graph_and_timeline(files, capsys):
    d, prob, plan = files
    out = d / "out" / "report.html"
    code = main(["report", str(d / "plan.json"), "--problem", str(d / "problem.json"), "--compare",
                 str(d / "compare.json"), "-o", str(out), "--graph", str(d / "out" / "g.dot"),
                 "--timeline", str(d / "out" / "t.svg")])
    assert code == 0
    page = out.read_text()
    assert page.count('<g id="block-') == len(prob.layers)
    assert "<td>heft</td>" in page and "<td>greedy_compression</td>" in page
    assert (d / "out" / "g.dot").read_text().startswith("digraph")
    assert (d / "out" / "t.svg").read_text().count('<g id="bar-pred-') == len(prob.layers)
    assert "wrote" in capsys.readouterr().err


def test_heuristics_flag_runs_the_registry(files, tmp_path):
    d, prob, plan = files
    out = tmp_path / "r.html"
    assert main(["report", str(d / "plan.json"), "--problem", str(d / "problem.json"), "--heuristics", "-o", str(out)]) == 0
    page = out.read_text()
    for name in ("heft", "greedy_compression", "neurosurgeon", "cpu_only", "gpu_only"):
        assert f"<td>{name}</td>" in page


def test_existing_output_needs_force(files, tmp_path, capsys):
    d, _, _ = files
    out = tmp_path / "r.html"
    out.write_text("keep me")
    assert main(["report", str(d / "plan.json"), "-o", str(out)]) == 2
    assert "--force" in capsys.readouterr().err and out.read_text() == "keep me"
    assert main(["report", str(d / "plan.json"), "-o", str(out), "--force"]) == 0
    assert "pass it (--problem PROBLEM.json" in out.read_text()


@pytest.mark.parametrize("argv, message", [
    (["-o", "{t}/x.html", "--graph", "{t}/g.svg"], "--graph needs --problem"),
    (["--heuristics", "-o", "{t}/x.html"], "--heuristics needs --problem"),
    ([], "nothing to write"),
    (["-o", "{t}/x.txt"], "should end in .html"),
    (["--problem", "{d}/problem.json", "--graph", "{t}/g.jpg"], "expected one of"),
    (["-o", "{t}/x.html", "--run", "{d}/plan.json"], "not a deepx_opt run report"),
    (["-o", "{t}/x.html", "--compare", "{d}/missing.json"], "does not exist"),
])
def test_bad_arguments_are_one_line_errors(files, tmp_path, capsys, argv, message):
    d, _, _ = files
    argv = [a.format(t=tmp_path, d=d) for a in argv]
    assert main(["report", str(d / "plan.json"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_plan_of_another_problem_is_refused(files, tmp_path, capsys):
    d, _, _ = files
    other = branches_problem(2, n_branches=3, seed=3)
    other.save(tmp_path / "other.json")
    assert main(["report", str(d / "plan.json"), "--problem", str(tmp_path / "other.json"), "-o", str(tmp_path / "x.html")]) == 2
    assert "is for problem" in capsys.readouterr().err
