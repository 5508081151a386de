"""Deep Architecture Decomposition: choose each layer's rank and processor, and schedule them.

Public API::

    Problem, Layer, Option, Processor, Edge, Link, uniform_links   # the frozen problem (problem.py)
    Plan, Assignment, Status, check_plan, evaluate                 # results and the checker (plan.py)
    solve(problem, solver="cpsat", time_limit_s=10.0) -> Plan      # raises InfeasiblePlanError
    get_solver(name), list_solvers(problem=None)                   # the registry

Solvers: ``cpsat`` (default), ``pulp_cbc``, ``pulp_highs``, ``dp`` (chains), ``brute`` (tiny problems);
heuristics: ``greedy_compression``, ``heft``, ``neurosurgeon``, ``<processor>_only``. See docs/solvers.md.
"""

from __future__ import annotations

from typing import Any

from deepx_opt.errors import InfeasiblePlanError, SolverError
from deepx_opt.solvers.plan import Assignment, Plan, Status, check_plan, evaluate
from deepx_opt.solvers.problem import Edge, Layer, Link, Option, Problem, Processor, uniform_links
from deepx_opt.solvers.registry import get_solver, list_solvers, register_solver

__all__ = [
    "Problem", "Layer", "Option", "Processor", "Edge", "Link", "uniform_links",
    "Plan", "Assignment", "Status", "check_plan", "evaluate",
    "solve", "get_solver", "list_solvers", "register_solver",
]


def solve(problem: Problem, solver: str = "cpsat", *, time_limit_s: float = 10.0, **options: Any) -> Plan:
    """Solve ``problem`` with the named solver and return a valid Plan.

    Raises
    ------
    InfeasiblePlanError
        When no plan exists (or, for a heuristic, when it found none): the message names the constraint
        that cannot be met and the best achievable value, from re-solved relaxations.
    SolverError
        When the solver found no plan and proved nothing within ``time_limit_s``.

    Examples
    --------
    >>> from deepx_opt.solvers.synthetic import chain_problem
    >>> plan = solve(chain_problem(4, seed=0, max_accuracy_loss=1.0), time_limit_s=5)
    >>> plan.status.value, len(plan.assignments)
    ('OPTIMAL', 4)
    """
    s = get_solver(solver)
    plan = s.solve(problem, time_limit_s=time_limit_s, **options)
    if plan.status is Status.INFEASIBLE:
        from deepx_opt.solvers.diagnose import diagnose_infeasibility

        why = diagnose_infeasibility(problem, time_limit_s=min(time_limit_s, 30.0))
        prefix = f"no plan for problem {problem.name!r}"
        if not s.exact:
            prefix += f" from heuristic {s.name!r} ({plan.message})"
        raise InfeasiblePlanError(f"{prefix}: {why}")
    if plan.status is Status.UNKNOWN:
        raise SolverError(f"solver {s.name!r} found no plan for problem {problem.name!r}: {plan.message}; "
                          "raise time_limit_s")
    return plan
