"""The solver interface: ``solve(problem, *, time_limit_s=...) -> Plan``."""

from __future__ import annotations

import time
from typing import Any

from deepx_opt.solvers.plan import Plan
from deepx_opt.solvers.problem import Problem

__all__ = ["Solver"]


class Solver:
    """Base class of every solver and heuristic.

    Subclasses set ``name``, ``exact`` (True when an OPTIMAL status is a proof) and implement
    :meth:`_solve`. :meth:`supports` says why a Problem is out of scope (e.g. the chain DP on a DAG),
    or returns None.
    """

    name: str = "?"
    exact: bool = False
    description: str = ""

    def supports(self, problem: Problem) -> str | None:
        return None

    def solve(self, problem: Problem, *, time_limit_s: float = 10.0, **options: Any) -> Plan:
        from deepx_opt.errors import SolverError

        if time_limit_s is None or not time_limit_s > 0:
            raise SolverError(f"{self.name}: time_limit_s={time_limit_s!r}; expected a number > 0")
        why = self.supports(problem)
        if why is not None:
            raise SolverError(f"solver {self.name!r} cannot solve problem {problem.name!r}: {why}")
        t0 = time.perf_counter()
        plan = self._solve(problem, time_limit_s=float(time_limit_s), **options)
        if plan.solve_time_s == 0.0:
            from dataclasses import replace

            plan = replace(plan, solve_time_s=time.perf_counter() - t0)
        return plan

    def _solve(self, problem: Problem, *, time_limit_s: float, **options: Any) -> Plan:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<solver {self.name}>"
