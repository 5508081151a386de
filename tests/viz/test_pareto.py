"""Pareto sweep: budgets, the non-dominated front, heuristics never beating the optimum, files."""

from __future__ import annotations

import csv
import io
import json

import pytest

from deepx_opt.errors import InputError, SolverError
from deepx_opt.solvers import get_solver
from deepx_opt.solvers.synthetic import branches_problem
from deepx_opt.viz.pareto import ParetoResult, non_dominated, pareto_figure, pareto_sweep, save_pareto

from .conftest import keep_picture, png_stats


def _dominates(a, b, tol=1e-9):
    return (a.makespan_us <= b.makespan_us + tol and a.energy_uj <= b.energy_uj + tol
            and (a.makespan_us < b.makespan_us - tol or a.energy_uj < b.energy_uj - tol))


@pytest.fixture(scope="module")
def problem():
    # small but with a real trade-off: the GPU is fast and power-hungry, the remote behind a slow link
    return branches_problem(2, n_branches=2, seed=4, max_accuracy_loss=4.0)


@pytest.fixture(scope="module")
def latency_sweep(problem):
    seen = []
    res = pareto_sweep(problem, sweep="latency", points=6, time_limit_s=20,
                       progress=lambda i, n, p: seen.append((i, n, p)))
    return res, seen


def test_non_dominated_by_hand():
    pts = [(1.0, 9.0), (2.0, 5.0), (2.0, 6.0), (3.0, 5.0), (4.0, 1.0), (4.0, 1.0), (0.5, 20.0)]
    assert non_dominated(pts) == [0, 1, 4, 6]
    assert non_dominated([]) == []


def test_front_has_no_dominated_point_and_spans_the_trade_off(problem, latency_sweep):
    res, _ = latency_sweep
    front = res.front
    assert len(front) >= 2
    for a in front:
        for b in front:
            assert a is b or not _dominates(a, b)
    # no solver point of the sweep dominates a front point either
    for p in res.points:
        if p.solver == res.solver and p.has_plan:
            assert not any(_dominates(p, f) for f in front)
    # the front's ends are the two unbudgeted optima
    fastest = get_solver("cpsat").solve(problem.replace(goal="min_latency"), time_limit_s=20)
    greenest = get_solver("cpsat").solve(problem.replace(goal="min_energy"), time_limit_s=20)
    assert front[0].makespan_us == pytest.approx(fastest.makespan_us, abs=0.05)
    assert front[-1].energy_uj == pytest.approx(greenest.energy_uj, abs=0.05)
    assert front[0].energy_uj > front[-1].energy_uj


def test_every_solve_meets_its_budget_and_no_heuristic_beats_the_optimum(latency_sweep):
    res, _ = latency_sweep
    assert len(res.budgets) == 6 and res.budgets == sorted(res.budgets)
    by_budget: dict[float, list] = {}
    for p in res.points:
        if p.budget is None:
            continue
        by_budget.setdefault(p.budget, []).append(p)
        if p.has_plan:
            assert p.makespan_us <= p.budget + 1e-6
            assert p.accuracy_loss <= res.max_accuracy_loss + 1e-9
    assert set(by_budget) == set(res.budgets)
    for b, pts in by_budget.items():
        opt = [p for p in pts if p.solver == res.solver]
        assert len(opt) == 1 and opt[0].status == "OPTIMAL"
        for h in pts:
            if h.solver != res.solver and h.has_plan:
                assert h.energy_uj >= opt[0].energy_uj - 1e-6, (b, h)
    assert {p.series for p in res.points if p.solver != res.solver} <= set(res.heuristics)


def test_heuristics_without_the_budget_land_behind_the_front_ends(latency_sweep):
    res, _ = latency_sweep
    free = [p for p in res.points if p.budget is None]
    assert sorted(p.solver for p in free) == sorted(res.heuristics)
    assert all(p.series in res.heuristics for p in free)
    front = res.front
    landed = [p for p in free if p.has_plan]
    assert landed, "some heuristic should find a plan without a latency budget"
    for p in landed:
        assert p.makespan_us >= front[0].makespan_us - 0.05  # nothing is faster than the fastest plan
        assert p.energy_uj >= front[-1].energy_uj - 0.05  # nor greener than the greenest
        assert p.accuracy_loss <= res.max_accuracy_loss + 1e-9


def test_progress_is_reported_once_per_budget(latency_sweep):
    res, seen = latency_sweep
    assert [(i, n) for i, n, _ in seen] == [(i + 1, 6) for i in range(6)]
    assert all(p.solver == res.solver for _, _, p in seen)


def test_energy_sweep_minimises_latency_under_energy_budgets(problem):
    res = pareto_sweep(problem, sweep="energy", points=4, heuristics=["heft", "greedy_compression"], time_limit_s=20)
    assert res.sweep == "energy" and res.heuristics == ["heft", "greedy_compression"]
    for p in res.points:
        if p.has_plan and p.budget is not None:
            assert p.energy_uj <= p.budget + 1e-6
    front = res.front
    assert front and all(not _dominates(a, b) for a in front for b in front if a is not b)


def test_files_beside_the_picture(tmp_path, latency_sweep):
    res, _ = latency_sweep
    paths = save_pareto(res, tmp_path / "front.png")
    assert set(paths) == {"figure", "csv", "json"}
    png = paths["figure"].read_bytes()
    keep_picture("pareto.png", png)
    shape, std = png_stats(png)
    assert shape[0] > 300 and std > 0.05
    rows = list(csv.DictReader(io.StringIO(paths["csv"].read_text())))
    assert len(rows) == len(res.points)
    assert sum(r["on_front"] == "True" for r in rows) == len(res.front)
    back = ParetoResult.from_dict(json.loads(paths["json"].read_text()))
    assert back.points == res.points and back.budgets == res.budgets
    assert len(json.loads(paths["json"].read_text())["front"]) == len(res.front)
    svg_paths = save_pareto(res, tmp_path / "front.svg")
    assert "series-front" in svg_paths["figure"].read_text()
    with pytest.raises(InputError, match="suffix"):
        save_pareto(res, tmp_path / "front.gif")


def test_figure_has_front_and_heuristic_series(latency_sweep):
    res, _ = latency_sweep
    fig = pareto_figure(res)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"{res.solver} front" in labels
    plotted = {p.series for p in res.points if p.has_plan and p.series in res.heuristics}
    assert plotted <= set(labels)


def test_bad_arguments(problem):
    with pytest.raises(InputError, match="sweep"):
        pareto_sweep(problem, sweep="memory")
    with pytest.raises(InputError, match="points"):
        pareto_sweep(problem, points=0)
    with pytest.raises(SolverError, match="unknown solver"):
        pareto_sweep(problem, solver="nope")


def test_an_impossible_accuracy_limit_is_named(problem):
    from deepx_opt.errors import InfeasiblePlanError

    # every option of a layer here loses accuracy except the dense ones, so a tiny limit is still
    # feasible; make it impossible with memory instead
    tiny = problem.replace(processors=[type(p)(p.name, p.kind, 10, p.idle_power_w) for p in problem.processors])
    with pytest.raises(InfeasiblePlanError, match="no plan even without latency/energy budgets"):
        pareto_sweep(tiny, points=2, heuristics=[], time_limit_s=10)
