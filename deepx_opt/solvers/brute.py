"""Exhaustive search for tiny Problems (the referee of the exact-solver tests).

Every option combination is tried; for each, every topological order of the layers is list-scheduled
(each layer at its earliest start after its predecessors' data and the previous layer on its processor).
Any schedule can be shifted left into a semi-active one that is no worse (makespan, and with it idle
energy, can only shrink), and every semi-active schedule is the list schedule of the topological order
sorted by its start times — so the minimum over these orders is the optimum for the combination, and the
search is exact. Energy without idle power does not depend on the order, which prunes most combinations.
"""

from __future__ import annotations

import itertools
import math
import time
from typing import Any

from deepx_opt.solvers.base import Solver
from deepx_opt.solvers.plan import Plan, Status, empty_plan, make_plan
from deepx_opt.solvers.problem import Problem
from deepx_opt.solvers.schedule import grid_objective, grid_totals, grid_violations, list_schedule

__all__ = ["BruteForce", "linear_extensions", "MAX_EVALUATIONS"]

#: Combinations × orders above which brute force declines a Problem.
MAX_EVALUATIONS = 300_000


def linear_extensions(n: int, preds: list[list[int]], limit: int) -> list[tuple[int, ...]] | None:
    """All topological orders of the DAG (None when there are more than ``limit``)."""
    out: list[tuple[int, ...]] = []
    indeg = [len(p) for p in preds]
    succs: list[list[int]] = [[] for _ in range(n)]
    for v, ps in enumerate(preds):
        for u in ps:
            succs[u].append(v)
    order: list[int] = []

    def rec() -> bool:
        if len(order) == n:
            out.append(tuple(order))
            return len(out) <= limit
        for v in range(n):
            if indeg[v] == 0 and v not in placed:
                placed.add(v)
                order.append(v)
                for w in succs[v]:
                    indeg[w] -= 1
                ok = rec()
                for w in succs[v]:
                    indeg[w] += 1
                order.pop()
                placed.discard(v)
                if not ok:
                    return False
        return True

    placed: set[int] = set()
    return out if rec() else None


class BruteForce(Solver):
    """Exhaustive search over options × topological orders (tiny Problems only)."""

    name = "brute"
    exact = True
    description = "exhaustive search over options and topological orders (tiny problems)"

    def _size(self, problem: Problem) -> tuple[int, list | None]:
        g = problem.grid
        combos = math.prod(len(d) for d in g.dur)
        if combos > MAX_EVALUATIONS:
            return combos, None
        limit = MAX_EVALUATIONS // combos
        return combos, linear_extensions(g.n, [[u for u, _ in g.preds[v]] for v in range(g.n)], limit)

    def supports(self, problem: Problem) -> str | None:
        combos, exts = self._size(problem)
        if exts is None or combos * len(exts) > MAX_EVALUATIONS:
            n_ext = "many" if exts is None else len(exts)
            return f"too large for brute force ({combos} option combinations × {n_ext} orders > {MAX_EVALUATIONS})"
        return None

    def _solve(self, problem: Problem, *, time_limit_s: float, **_: Any) -> Plan:
        t0 = time.perf_counter()
        g = problem.grid
        _, exts = self._size(problem)
        order_free = g.goal == "min_energy" and g.latency_budget is None and not g.include_idle
        best = None
        for choice in itertools.product(*[range(len(d)) for d in g.dur]):
            if time.perf_counter() - t0 > time_limit_s:
                return empty_plan(problem, solver=self.name, status=Status.UNKNOWN,
                                  solve_time_s=time.perf_counter() - t0,
                                  message=f"time limit {time_limit_s:g} s reached")
            if g.acc_limit is not None and sum(g.acc[v][k] for v, k in enumerate(choice)) > g.acc_limit:
                continue
            for o in (exts[:1] if order_free else exts):
                start = list_schedule(g, choice, o)
                t = grid_totals(g, choice, start)
                if grid_violations(g, t):
                    continue
                obj = grid_objective(g, t)
                if best is None or obj < best[0]:
                    best = (obj, list(choice), start)
        if best is None:
            return empty_plan(problem, solver=self.name, status=Status.INFEASIBLE,
                              solve_time_s=time.perf_counter() - t0,
                              message="no combination of options and order meets the constraints")
        return make_plan(problem, best[1], best[2], solver=self.name, status=Status.OPTIMAL,
                         solve_time_s=time.perf_counter() - t0)
