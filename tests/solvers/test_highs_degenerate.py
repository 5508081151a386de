"""A degenerate Problem (zero-duration options, found by Hypothesis in CI) on which HiGHS 1.12's presolve
ends in "solve error": the retry (looser MIP tolerance, presolve off) must prove the same optimum as CP-SAT."""

from pathlib import Path

import pytest

from deepx_opt.solvers import Problem, Status, check_plan, get_solver, list_solvers

DATA = Path(__file__).with_name("data_highs_degenerate.json")


@pytest.mark.parametrize("name", ["cpsat", "pulp_cbc", "pulp_highs"])
def test_degenerate_problem_is_proven_optimal(name):
    if name not in list_solvers():
        pytest.skip(f"{name} not installed")
    prob = Problem.load(DATA)
    ref = get_solver("cpsat").solve(prob, time_limit_s=10)
    plan = get_solver(name).solve(prob, time_limit_s=10)
    assert plan.status is Status.OPTIMAL, plan.message
    assert check_plan(prob, plan) == []
    assert plan.makespan_us == pytest.approx(ref.makespan_us)
