"""Every solver and heuristic on one Problem: the table behind `deepx compare`, benchmarks and reports."""

from __future__ import annotations

import time

__all__ = ["compare_problem"]


def compare_problem(problem, names=None, *, time_limit_s=10.0, progress=None) -> list[dict]:
    """Solve ``problem`` with each registered solver and heuristic (or ``names``); one row per solver.

    Each row holds the solver's name, status, message, plan (as a dict), solve time, energy, makespan,
    accuracy loss, total memory, gap, the checker's violations, and ``ratio_to_best`` — its objective over
    the best objective among the rows with a plan. A solver that raises a DeepxError gets status
    ``"ERROR"`` and its message; the comparison goes on.
    """
    from deepx_opt.errors import DeepxError
    from deepx_opt.solvers.plan import check_plan
    from deepx_opt.solvers.registry import get_solver, list_solvers

    names = list(names) if names else list_solvers(problem)
    rows = []
    for i, name in enumerate(names, 1):
        if progress:
            progress(f"[{i}/{len(names)}] {name}")
        t0 = time.perf_counter()
        try:
            plan = get_solver(name).solve(problem, time_limit_s=time_limit_s)
        except DeepxError as exc:
            rows.append({"solver": name, "status": "ERROR", "message": str(exc), "plan": None,
                         "solve_time_s": time.perf_counter() - t0})
            continue
        row = {"solver": name, "status": plan.status.value, "message": plan.message, "plan": plan.to_dict(),
               "solve_time_s": plan.solve_time_s, "energy_uj": plan.energy_uj, "makespan_us": plan.makespan_us,
               "accuracy_loss": plan.accuracy_loss, "memory_bytes": sum(plan.memory_bytes.values()) if plan.memory_bytes else None,
               "gap": plan.gap, "violations": check_plan(problem, plan) if plan.status.has_plan else []}
        rows.append(row)
    objective = "energy_uj" if problem.goal == "min_energy" else "makespan_us"
    best = min((r[objective] for r in rows if r.get(objective) is not None and r["status"] in ("OPTIMAL", "FEASIBLE")),
               default=None)
    for r in rows:
        r["ratio_to_best"] = (r[objective] / best) if best and r.get(objective) is not None and r["status"] in ("OPTIMAL", "FEASIBLE") else None
    return rows
