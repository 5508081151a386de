"""One suite for every registered solver and heuristic (PuLP's tests/solver_common.py idea)."""

import pytest

from deepx_opt.solvers import Status, check_plan, get_solver, list_solvers
from deepx_opt.solvers.registry import _EXACT

from .problems import fixed_problems

PROBLEMS = fixed_problems()
CASES = [(prob, name) for prob in PROBLEMS for name in list_solvers(prob)]


@pytest.fixture(scope="module")
def reference():
    """CP-SAT's proven optimum (or proven infeasibility) of every fixed problem."""
    out = {}
    for prob in PROBLEMS:
        plan = get_solver("cpsat").solve(prob, time_limit_s=30)
        assert plan.status in (Status.OPTIMAL, Status.INFEASIBLE), plan.message
        out[prob.name] = plan
    return out


def test_every_solver_is_covered():
    names = {n for prob in PROBLEMS for n in list_solvers(prob)}
    assert {"cpsat", "pulp_cbc", "dp", "brute", "greedy_compression", "heft", "neurosurgeon",
            "cpu_only", "gpu_only", "remote_only"} <= names


@pytest.mark.parametrize("prob,name", CASES, ids=[f"{p.name}-{n}" for p, n in CASES])
def test_solver_conformance(prob, name, reference):
    solver = get_solver(name)
    plan = solver.solve(prob, time_limit_s=30)
    assert plan.solver == name and plan.problem_name == prob.name and plan.goal == prob.goal
    assert check_plan(prob, plan) == []
    ref = reference[prob.name]
    if not plan.status.has_plan:
        assert plan.assignments == {} and plan.message
    else:
        assert set(plan.assignments) == {layer.name for layer in prob.layers}
        assert plan.objective is not None and plan.solve_time_s > 0
    if name in _EXACT:
        assert plan.status is ref.status
        if ref.status is Status.OPTIMAL:
            assert plan.objective == pytest.approx(ref.objective, rel=1e-12, abs=1e-9)
    else:
        assert plan.status is not Status.OPTIMAL  # a heuristic proves nothing
        if plan.status.has_plan:
            assert ref.status is Status.OPTIMAL and plan.objective >= ref.objective - 1e-9
