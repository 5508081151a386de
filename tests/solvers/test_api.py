import re

import pytest

from deepx_opt.errors import InfeasiblePlanError, SolverError
from deepx_opt.solvers import Status, check_plan, get_solver, list_solvers, register_solver, solve
from deepx_opt.solvers.diagnose import format_energy_uj, format_time_us
from deepx_opt.solvers.synthetic import branches_problem, chain_problem, dag_problem


def test_registry():
    assert "cpsat" in list_solvers() and "heft" in list_solvers(kind="heuristic")
    assert "heft" not in list_solvers(kind="exact")
    dag = dag_problem(8, seed=1)
    assert "dp" not in list_solvers(dag) and "dp" in list_solvers(chain_problem(4))
    assert {"cpu_only", "gpu_only", "remote_only"} <= set(list_solvers(dag))
    with pytest.raises(SolverError, match="unknown solver 'gurobi'.*registered"):
        get_solver("gurobi")
    with pytest.raises(SolverError, match="already registered"):
        register_solver("cpsat", lambda: None)
    with pytest.raises(SolverError, match="not a chain"):
        get_solver("dp").solve(dag)
    with pytest.raises(SolverError, match="no processor 'tpu'"):
        get_solver("tpu_only").solve(dag)
    with pytest.raises(SolverError, match="time_limit_s"):
        get_solver("cpsat").solve(dag, time_limit_s=0)
    with pytest.raises(SolverError, match="too large for brute force"):
        get_solver("brute").solve(dag_problem(30, seed=1))


def test_solve_returns_checked_plan():
    prob = chain_problem(6, seed=4, max_accuracy_loss=1.0, latency_budget_us=6_000.0)
    plan = solve(prob, time_limit_s=20)
    assert plan.status is Status.OPTIMAL and check_plan(prob, plan) == []
    assert plan.gap == 0.0 and plan.bound == plan.objective


def _best(prob, **changes):
    return get_solver("cpsat").solve(prob.replace(**changes), time_limit_s=20)


def test_infeasible_latency_budget_names_the_fastest_plan():
    prob = chain_problem(5, seed=2, max_accuracy_loss=2.0, latency_budget_us=300.0)
    fastest = _best(prob, goal="min_latency", latency_budget_us=None)
    with pytest.raises(InfeasiblePlanError) as ei:
        solve(prob, time_limit_s=20)
    msg = str(ei.value)
    assert "latency budget 300 us is below the fastest feasible plan" in msg
    assert format_time_us(fastest.objective) in msg and "2-point accuracy limit" in msg


def test_infeasible_energy_budget():
    prob = chain_problem(5, seed=2, goal="min_latency", energy_budget_uj=10.0)
    least = _best(prob, goal="min_energy", energy_budget_uj=None)
    with pytest.raises(InfeasiblePlanError, match=re.escape(format_energy_uj(least.objective))) as ei:
        solve(prob)
    assert "energy budget 10 uJ is below the least-energy feasible plan" in str(ei.value)


def test_infeasible_joint_budgets():
    # on this instance the fastest plan and the cheapest differ: each budget alone holds, not both
    prob = chain_problem(5, seed=1, goal="min_latency", max_accuracy_loss=1.0)
    fast, cheap = _best(prob), _best(prob, goal="min_energy")
    both = prob.replace(latency_budget_us=fast.makespan_us * 1.01, energy_budget_uj=cheap.energy_uj * 1.01)
    under = _best(both, goal="min_energy", energy_budget_uj=None)
    assert under.energy_uj > both.energy_budget_uj
    with pytest.raises(InfeasiblePlanError, match="cannot both hold") as ei:
        solve(both)
    assert format_energy_uj(under.objective) in str(ei.value)


def test_infeasible_memory():
    prob = chain_problem(4, seed=3, memory_bytes={"cpu": 10, "gpu": 10, "remote": 10})
    with pytest.raises(InfeasiblePlanError, match="memory capacities .* exceed"):
        solve(prob)


def test_infeasible_accuracy_under_memory():
    # L3's dense weights (3.65 MB) fit nowhere; its rank-1 option (1.83 MB, 0.1426 points) does
    prob = chain_problem(4, seed=3, max_accuracy_loss=0.0,
                         memory_bytes={"cpu": 2_000_000, "gpu": 2_000_000, "remote": 2_000_000})
    least = get_solver("cpsat").solve(prob.replace(max_accuracy_loss=None), time_limit_s=20)
    assert least.status is Status.OPTIMAL
    with pytest.raises(InfeasiblePlanError) as ei:
        solve(prob)
    assert "accuracy limit 0 points is below the least achievable accuracy loss, 0.1426 points" in str(ei.value)
    assert "memory capacities" in str(ei.value)


def test_heuristic_infeasible_raises_with_its_reason():
    prob = chain_problem(4, seed=1, processors=("cpu", "gpu"), latency_budget_us=2_500.0)
    assert solve(prob).status is Status.OPTIMAL  # the problem itself is feasible
    with pytest.raises(InfeasiblePlanError, match="heuristic 'cpu_only'.*feasible"):
        solve(prob, "cpu_only")


def test_timeout_reports_feasible_with_gap_or_proves():
    prob = branches_problem(40, seed=7, goal="min_energy", max_accuracy_loss=3.0)
    base = get_solver("heft").solve(prob.replace(goal="min_latency"))
    tight = prob.replace(latency_budget_us=base.makespan_us * 0.9)
    plan = get_solver("cpsat").solve(tight, time_limit_s=1.0)
    assert check_plan(tight, plan) == []
    if plan.status is Status.FEASIBLE:
        assert plan.gap is not None and plan.gap >= 0 and plan.bound <= plan.objective
    elif plan.status is Status.OPTIMAL:
        assert plan.gap == 0
    else:
        assert plan.status is Status.UNKNOWN and plan.assignments == {}


def test_cpsat_warm_start_modes_reach_the_same_optimum():
    prob = branches_problem(4, seed=3, processors=("cpu", "gpu", "dsp"), max_accuracy_loss=1.5, n_ranks=3)
    prob = prob.replace(latency_budget_us=1.2 * get_solver("heft").solve(prob.replace(goal="min_latency")).makespan_us)
    objs = set()
    for hint in (True, False, "cutoff", get_solver("greedy_compression").solve(prob)):
        plan = get_solver("cpsat").solve(prob, time_limit_s=30, hint=hint)
        assert plan.status is Status.OPTIMAL and check_plan(prob, plan) == []
        objs.add(round(plan.objective, 6))
    assert len(objs) == 1
    with pytest.raises(SolverError, match="hint='bogus'"):
        get_solver("cpsat").solve(prob, hint="bogus")
    with pytest.raises(SolverError, match="unknown CP-SAT parameter"):
        get_solver("cpsat").solve(prob, params={"no_such_parameter": 1})
