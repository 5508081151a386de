"""CP-SAT, PuLP (CBC, HiGHS), the chain DP and brute force agree on random small Problems."""

from hypothesis import HealthCheck, event, given, settings

from deepx_opt.solvers import Status, check_plan, get_solver, list_solvers

from .problems import small_problems

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _agree(prob, names, record=True):
    plans = {n: get_solver(n).solve(prob, time_limit_s=30) for n in names}
    for n, plan in plans.items():
        assert check_plan(prob, plan) == [], (n, check_plan(prob, plan))
        assert plan.status in (Status.OPTIMAL, Status.INFEASIBLE), (n, plan.status, plan.message)
    statuses = {n: p.status for n, p in plans.items()}
    if record:
        event(f"status {plans[names[0]].status.value}")
    assert len(set(statuses.values())) == 1, statuses
    objs = {n: p.objective for n, p in plans.items()}
    if plans[names[0]].status is Status.OPTIMAL:
        ref = objs[names[0]]
        assert all(abs(o - ref) <= 1e-9 * max(1.0, abs(ref)) for o in objs.values()), objs
    return plans


@settings(max_examples=60, **SETTINGS)
@given(small_problems(max_layers=5, chain=False))
def test_exact_solvers_agree_on_dags(prob):
    names = [n for n in ("cpsat", "pulp_cbc", "pulp_highs", "brute", "dp") if n in list_solvers(prob, kind="exact")]
    assert "brute" in names
    _agree(prob, names)


@settings(max_examples=40, **SETTINGS)
@given(small_problems(max_layers=8, chain=True, max_options=4))
def test_dp_matches_milps_on_chains(prob):
    names = ["dp", "cpsat", "pulp_highs" if "pulp_highs" in list_solvers(prob) else "pulp_cbc"]
    _agree(prob, names)


@settings(max_examples=30, **SETTINGS)
@given(small_problems(max_layers=6, chain=False))
def test_exact_never_worse_than_heuristics(prob):
    best = get_solver("cpsat").solve(prob, time_limit_s=30)
    for name in list_solvers(prob, kind="heuristic"):
        h = get_solver(name).solve(prob, time_limit_s=30)
        assert check_plan(prob, h) == [], (name, check_plan(prob, h))
        if h.status.has_plan:
            assert best.status is Status.OPTIMAL, (name, best.status)
            assert best.objective <= h.objective + 1e-9, (name, best.objective, h.objective)


def test_infeasible_cases_agree():
    from deepx_opt.solvers.synthetic import chain_problem

    prob = chain_problem(4, seed=2, n_ranks=2, processors=("cpu", "gpu"), latency_budget_us=100.0)
    plans = _agree(prob, ["cpsat", "pulp_cbc", "dp", "brute"], record=False)
    assert all(p.status is Status.INFEASIBLE for p in plans.values())
