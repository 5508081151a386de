"""Why is a Problem infeasible? Re-solve relaxations with CP-SAT and name the binding constraint.

The checks run in this order, each adding one constraint family to the previous ones:

1. memory alone (no budget, no accuracy limit): the least total bytes above capacity;
2. + the accuracy limit: the least achievable accuracy loss;
3. + the latency budget: the fastest plan; + the energy budget: the least energy (each alone);
4. both budgets: the least energy under the latency budget.

The first relaxation that is infeasible names the culprit, with the best value the relaxation
achieves (proven optimal, or a proven bound when the time runs out: "at least ...").
"""

from __future__ import annotations

from deepx_opt.solvers.problem import ACCURACY_UNIT_POINTS, ENERGY_UNIT_UJ, TIME_UNIT_US, Problem

__all__ = ["diagnose_infeasibility", "format_time_us", "format_energy_uj"]


def format_time_us(us: float) -> str:
    if us >= 1e6:
        return f"{us / 1e6:.4g} s"
    if us >= 1e3:
        return f"{us / 1e3:.4g} ms"
    return f"{us:.4g} us"


def format_energy_uj(uj: float) -> str:
    if uj >= 1e6:
        return f"{uj / 1e6:.4g} J"
    if uj >= 1e3:
        return f"{uj / 1e3:.4g} mJ"
    return f"{uj:.4g} uJ"


def _relax(problem: Problem, objective: str, time_limit_s: float, **flags) -> tuple[str, float | None, float | None]:
    """Solve one relaxation; return (status, objective value, bound) in grid units."""
    from deepx_opt.solvers.cpsat import build_model, solve_model

    cm = build_model(problem, objective=objective, **flags)
    status, solver = solve_model(cm, time_limit_s)
    if status in ("OPTIMAL", "FEASIBLE"):
        return status, solver.objective_value, solver.best_objective_bound
    return status, None, (solver.best_objective_bound if status == "UNKNOWN" else None)


def _value(status: str, obj: float | None, bound: float | None, unit: float, fmt) -> str:
    if status == "OPTIMAL":
        return fmt(obj * unit)
    return f"at least {fmt(bound * unit)}"


def diagnose_infeasibility(problem: Problem, *, time_limit_s: float = 10.0) -> str:
    """A sentence naming the constraint that cannot be met and the best achievable value.

    >>> from deepx_opt.solvers.synthetic import chain_problem
    >>> p = chain_problem(3, seed=0, goal="min_energy", latency_budget_us=1.0)
    >>> diagnose_infeasibility(p).startswith("latency budget 1 us is below the fastest feasible plan")
    True
    """
    g = problem.grid
    each = max(0.5, time_limit_s / 5)
    none = dict(latency_budget=False, energy_budget=False, accuracy_limit=False)
    caps = {p.name: p.memory_bytes for p in problem.processors if p.memory_bytes is not None}
    mem_txt = " and the memory capacities" if caps else ""
    if caps:
        st, obj, bound = _relax(problem, "overflow", each, memory_overflow=True, **none)
        if st == "OPTIMAL" and obj > 0 or st in ("FEASIBLE", "UNKNOWN") and bound and bound > 0:
            val = int(obj) if st == "OPTIMAL" else f"at least {int(bound)}"
            return (f"memory capacities {caps} (bytes) cannot hold the layers' weights and workspaces: "
                    f"the best assignment still exceeds them by {val} bytes in total, with no budget or accuracy limit")
    acc_txt = ""
    if g.acc_limit is not None:
        st, obj, bound = _relax(problem, "accuracy", each, **none)
        best = obj if st == "OPTIMAL" else bound
        if best is not None and best > g.acc_limit:
            return (f"accuracy limit {problem.max_accuracy_loss:g} points is below the least achievable accuracy "
                    f"loss, {_value(st, obj, bound, ACCURACY_UNIT_POINTS, lambda a: f'{a:.4g} points')}"
                    f"{' under the memory capacities' if caps else ''}")
        acc_txt = f" under a {problem.max_accuracy_loss:g}-point accuracy limit"
    under = (acc_txt + mem_txt) if acc_txt else (" under the memory capacities" if caps else "")
    if g.latency_budget is not None:
        st, obj, bound = _relax(problem, "latency", each, latency_budget=False, energy_budget=False)
        best = obj if st == "OPTIMAL" else bound
        if best is not None and best > g.latency_budget:
            return (f"latency budget {format_time_us(problem.latency_budget_us)} is below the fastest feasible plan, "
                    f"{_value(st, obj, bound, TIME_UNIT_US, format_time_us)}{under}")
    if g.energy_budget is not None:
        st, obj, bound = _relax(problem, "energy", each, latency_budget=False, energy_budget=False)
        best = obj if st == "OPTIMAL" else bound
        if best is not None and best > g.energy_budget:
            return (f"energy budget {format_energy_uj(problem.energy_budget_uj)} is below the least-energy feasible "
                    f"plan, {_value(st, obj, bound, ENERGY_UNIT_UJ, format_energy_uj)}{under}")
    if g.latency_budget is not None and g.energy_budget is not None:
        st, obj, bound = _relax(problem, "energy", each, energy_budget=False)
        best = obj if st == "OPTIMAL" else bound
        if st == "INFEASIBLE" or (best is not None and best > g.energy_budget):
            return (f"latency budget {format_time_us(problem.latency_budget_us)} and energy budget "
                    f"{format_energy_uj(problem.energy_budget_uj)} cannot both hold: within the latency budget the "
                    f"least energy is {_value(st, obj, bound, ENERGY_UNIT_UJ, format_energy_uj)}{under}")
    return ("no single constraint family explains the infeasibility within the time given to the relaxations "
            f"({each:g} s each); the full problem may be feasible — try a longer time_limit_s")
