"""The default solver: OR-Tools CP-SAT on the flexible-job-shop form of the planning problem.

Model (all integers on the grid of :mod:`deepx_opt.solvers.problem`; docs/solvers.md has the maths):

* ``x[v,k]`` presence literal of option k of layer v; ``add_exactly_one`` per layer;
* ``s[v]`` start of layer v; an optional fixed-size interval ``[s[v], s[v] + dur[v,k])`` per option with
  presence ``x[v,k]``; ``add_no_overlap`` over the intervals of each processor;
* ``z[e,p,q]`` literal "edge e=(u,v) goes from processor p to q", linked to the layer assignments by flow
  conservation (Σ_q z[e,p,q] = y[u,p], Σ_p z[e,p,q] = y[v,q], with y[v,p] = Σ_{k on p} x[v,k]) — the
  tight linking; the weaker ``z ≥ y_u + y_v − 1`` made CP-SAT slow on 2 cores (ENVIRONMENT.md);
* precedence ``s[v] ≥ s[u] + Σ_k dur[u,k] x[u,k] + Σ_{p≠q} T[e,p,q] z[e,p,q]``; model inputs
  ``s[v] ≥ Σ_k T_in[v,p_k] x[v,k]``; makespan ``M ≥ s[v] + Σ_k (dur + T_out)[v,k] x[v,k]`` on sinks and
  output layers;
* memory per processor ``Σ weight·x + peak_p ≤ cap_p`` with ``peak_p ≥ workspace·x``; accuracy
  ``Σ acc·x ≤ limit``; energy ``E = Σ energy·x + Σ T_energy·z + Σ (in+out energy)·x (+ idle)``, idle via
  ``1000·I ≥ Σ_p idle_mW_p (M − busy_p)``; budgets ``M ≤ latency budget``, ``E ≤ energy budget``;
* objective ``min E`` or ``min M``.

Warm start (``hint=``): by default ("cutoff") the best heuristic plan's objective bounds the objective and
that plan is returned if CP-SAT finds nothing in time; ``hint=True`` passes the plan to ``add_hint``
instead, which misled the search on the larger benchmark instances (docs/solvers.md has the numbers).
The returned schedule is compacted to its
semi-active form (same processor sequences, earliest starts), which never makes an objective worse.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from deepx_opt.errors import SolverError
from deepx_opt.solvers.base import Solver
from deepx_opt.solvers.plan import Plan, Status, empty_plan, make_plan
from deepx_opt.solvers.problem import ENERGY_UNIT_UJ, TIME_UNIT_US, Problem
from deepx_opt.solvers.schedule import list_schedule, topo_order_by

__all__ = ["CpSatSolver", "DEFAULT_PARAMS", "build_model", "CpSatModel"]

#: CP-SAT parameters used unless overridden (see benchmarks/solvers_cpsat_params.py for the evidence).
DEFAULT_PARAMS: dict[str, Any] = {"num_workers": 8, "linearization_level": 2, "random_seed": 0}
#: Default warm start: the best heuristic's objective as an upper bound ("cutoff"); ``True`` = add_hint.
DEFAULT_WARM_START = "cutoff"


@dataclass
class CpSatModel:
    model: Any
    x: list[list[Any]]
    s: list[Any]
    z: dict[tuple[int, int, int], Any]
    makespan: Any
    energy: Any
    acc: Any
    overflow: Any
    objective: str


def _load_cp_model():
    try:
        from ortools.sat.python import cp_model
    except ImportError as exc:  # pragma: no cover - ortools is a hard dependency
        raise SolverError(f"CP-SAT needs ortools (pip install ortools): {exc}") from exc
    return cp_model


def build_model(
    problem: Problem,
    *,
    objective: str | None = None,
    latency_budget: bool = True,
    energy_budget: bool = True,
    accuracy_limit: bool = True,
    memory: bool = True,
    memory_overflow: bool = False,
) -> CpSatModel:
    """Build the CP-SAT model.

    ``objective`` is ``"energy"``, ``"latency"``, ``"accuracy"`` or ``"overflow"`` (total memory bytes
    above capacity; needs ``memory_overflow=True``, which makes capacities soft); default: the goal's.
    The flags drop constraints (used to diagnose infeasibility by solving relaxations).
    """
    cp_model = _load_cp_model()
    g = problem.grid
    if objective is None:
        objective = "energy" if g.goal == "min_energy" else "latency"
    m = cp_model.CpModel()
    np_ = len(g.procs)
    H = g.horizon
    if latency_budget and g.latency_budget is not None:
        H = min(H, g.latency_budget)
    x = [[m.new_bool_var(f"x_{v}_{k}") for k in range(len(g.dur[v]))] for v in range(g.n)]
    s = [m.new_int_var(0, H, f"s_{v}") for v in range(g.n)]
    M = m.new_int_var(0, H, "makespan")
    per_proc_iv: list[list[Any]] = [[] for _ in range(np_)]
    y: list[dict[int, Any]] = []
    fin: list[Any] = []
    for v in range(g.n):
        m.add_exactly_one(x[v])
        yv: dict[int, list] = {}
        for k, p in enumerate(g.opt_proc[v]):
            d = g.dur[v][k]
            iv = m.new_optional_fixed_size_interval_var(s[v], d, x[v][k], f"iv_{v}_{k}")
            if d > 0:
                per_proc_iv[p].append(iv)
            yv.setdefault(p, []).append(x[v][k])
        y.append({p: sum(lits) for p, lits in yv.items()})
        fin.append(s[v] + sum(g.dur[v][k] * x[v][k] for k in range(len(x[v]))))
        if any(g.in_time[v]):
            m.add(s[v] >= sum(g.in_time[v][g.opt_proc[v][k]] * x[v][k] for k in range(len(x[v]))))
        if not g.succs[v] or any(g.out_time[v]):
            m.add(M >= fin[v] + sum(g.out_time[v][g.opt_proc[v][k]] * x[v][k] for k in range(len(x[v]))))
    for p in range(np_):
        if len(per_proc_iv[p]) > 1:
            m.add_no_overlap(per_proc_iv[p])
        # redundant: a processor's load fits in the makespan (tightens the LP relaxation under a budget)
        load = [g.dur[v][k] * x[v][k] for v in range(g.n) for k in range(len(x[v])) if g.opt_proc[v][k] == p and g.dur[v][k]]
        if len(load) > 1:
            m.add(M >= sum(load))
    z: dict[tuple[int, int, int], Any] = {}
    t_energy_terms = []
    for e, (u, v) in enumerate(g.edges):
        delay_terms = []
        rows: dict[int, list] = {}
        cols: dict[int, list] = {}
        for p in y[u]:
            for q in y[v]:
                lit = m.new_bool_var(f"z_{e}_{p}_{q}")
                z[(e, p, q)] = lit
                rows.setdefault(p, []).append(lit)
                cols.setdefault(q, []).append(lit)
                if p != q:
                    if g.ttime[e][p][q]:
                        delay_terms.append(g.ttime[e][p][q] * lit)
                    if g.tenergy[e][p][q]:
                        t_energy_terms.append(g.tenergy[e][p][q] * lit)
        for p, lits in rows.items():
            m.add(sum(lits) == y[u][p])
        for q, lits in cols.items():
            m.add(sum(lits) == y[v][q])
        m.add(s[v] >= fin[u] + sum(delay_terms))
    # memory
    overflow_terms = []
    if memory:
        for p in range(np_):
            cap = g.cap[p]
            if cap is None:
                continue
            terms = [g.weight[v][k] * x[v][k] for v in range(g.n) for k in range(len(x[v])) if g.opt_proc[v][k] == p and g.weight[v][k]]
            ws = [(g.workspace[v][k], x[v][k]) for v in range(g.n) for k in range(len(x[v])) if g.opt_proc[v][k] == p and g.workspace[v][k]]
            if ws:
                peak = m.new_int_var(0, max(w for w, _ in ws), f"peak_{p}")
                for w, lit in ws:
                    m.add(peak >= w * lit)
                terms.append(peak)
            if not terms:
                continue
            if memory_overflow:
                total_max = sum(max(g.weight[v]) for v in range(g.n)) + max((w for w, _ in ws), default=0)
                ov = m.new_int_var(0, max(total_max, 0), f"overflow_{p}")
                m.add(sum(terms) <= cap + ov)
                overflow_terms.append(ov)
            else:
                m.add(sum(terms) <= cap)
    acc = sum(g.acc[v][k] * x[v][k] for v in range(g.n) for k in range(len(x[v])) if g.acc[v][k])
    if accuracy_limit and g.acc_limit is not None:
        m.add(acc <= g.acc_limit)
    energy = sum(
        (g.energy[v][k] + g.in_energy[v][g.opt_proc[v][k]] + g.out_energy[v][g.opt_proc[v][k]]) * x[v][k]
        for v in range(g.n)
        for k in range(len(x[v]))
    ) + sum(t_energy_terms)
    if g.include_idle and any(g.idle_mw):
        busy = [
            sum(g.dur[v][k] * x[v][k] for v in range(g.n) for k in range(len(x[v])) if g.opt_proc[v][k] == p)
            for p in range(np_)
        ]
        idle_max = -(-sum(g.idle_mw) * H // 1000)
        idle = m.new_int_var(0, max(idle_max, 0), "idle_energy")
        m.add(1000 * idle >= sum(g.idle_mw[p] * (M - busy[p]) for p in range(np_) if g.idle_mw[p]))
        energy = energy + idle
    if energy_budget and g.energy_budget is not None:
        m.add(energy <= g.energy_budget)
    obj = {"energy": energy, "latency": M, "accuracy": acc, "overflow": sum(overflow_terms)}
    if objective not in obj:
        raise SolverError(f"unknown CP-SAT objective {objective!r}; expected one of {sorted(obj)}")
    if objective == "overflow" and not memory_overflow:
        raise SolverError("objective 'overflow' needs memory_overflow=True")
    m.minimize(obj[objective])
    return CpSatModel(m, x, s, z, M, energy, acc, sum(overflow_terms), objective)


def configure(solver: Any, time_limit_s: float, params: dict[str, Any] | None) -> None:
    merged = dict(DEFAULT_PARAMS)
    merged.update(params or {})
    solver.parameters.max_time_in_seconds = float(time_limit_s)
    for k, val in merged.items():
        if not hasattr(solver.parameters, k):
            raise SolverError(f"unknown CP-SAT parameter {k!r}")
        setattr(solver.parameters, k, val)


def _add_hint(cm: CpSatModel, problem: Problem, plan: Plan) -> None:
    g = problem.grid
    for v, name in enumerate(g.names):
        a = plan.assignments[name]
        kk = g.opt_ids[v].index(a.option_id)
        for k, lit in enumerate(cm.x[v]):
            cm.model.add_hint(lit, k == kk)
        cm.model.add_hint(cm.s[v], int(round(a.start_us / TIME_UNIT_US)))


def solve_model(cm: CpSatModel, time_limit_s: float, params: dict[str, Any] | None = None):
    """Solve a built model; return (status name, solver)."""
    cp_model = _load_cp_model()
    solver = cp_model.CpSolver()
    configure(solver, time_limit_s, params)
    st = solver.solve(cm.model)
    return solver.status_name(st), solver


class CpSatSolver(Solver):
    """CP-SAT flexible job shop (the default solver).

    Options: ``params`` (dict of CP-SAT parameters overriding :data:`DEFAULT_PARAMS`), ``hint``:
    ``"cutoff"`` (default: the best heuristic plan's objective as an upper bound, and that plan as the
    fallback), ``True`` (``add_hint`` of the best heuristic plan), a Plan (``add_hint`` of it), ``False``.

    Example
    -------
    >>> from deepx_opt.solvers.synthetic import chain_problem
    >>> plan = CpSatSolver().solve(chain_problem(5, seed=2, max_accuracy_loss=1.0), time_limit_s=5)
    >>> plan.status.value, plan.gap
    ('OPTIMAL', 0.0)
    """

    name = "cpsat"
    exact = True
    description = "OR-Tools CP-SAT, flexible job shop with flow-conservation transfer literals"

    def _solve(self, problem: Problem, *, time_limit_s: float, params: dict[str, Any] | None = None,
               hint: bool | str | Plan = DEFAULT_WARM_START, **_: Any) -> Plan:
        t0 = time.perf_counter()
        hint_plan = None
        if not (isinstance(hint, (bool, Plan)) or hint == "cutoff"):
            raise SolverError(f"cpsat: hint={hint!r}; expected True (add_hint), False, 'cutoff' or a Plan")
        if hint is True:
            from deepx_opt.solvers.heuristics import best_heuristic_plan

            hint_plan = best_heuristic_plan(problem)
        elif isinstance(hint, Plan) and hint.status.has_plan:
            hint_plan = hint
        elif hint == "cutoff":
            from deepx_opt.solvers.heuristics import best_heuristic_plan

            hint_plan = best_heuristic_plan(problem)
        cm = build_model(problem)
        if hint_plan is not None:
            if hint == "cutoff":
                # the heuristic's value bounds the objective instead of steering the search
                if problem.goal == "min_energy":
                    cm.model.add(cm.energy <= int(round(hint_plan.objective / ENERGY_UNIT_UJ)))
                else:
                    cm.model.add(cm.makespan <= int(round(hint_plan.objective / TIME_UNIT_US)))
            else:
                _add_hint(cm, problem, hint_plan)
        remaining = max(0.05, time_limit_s - (time.perf_counter() - t0))
        status, solver = solve_model(cm, remaining, params)
        elapsed = time.perf_counter() - t0
        g = problem.grid
        if status == "MODEL_INVALID":
            raise SolverError(f"CP-SAT rejected the model of problem {problem.name!r} as invalid")
        if status == "INFEASIBLE":
            return empty_plan(problem, solver=self.name, status=Status.INFEASIBLE, solve_time_s=elapsed,
                              message="CP-SAT proved that no plan meets the constraints")
        bound = solver.best_objective_bound if status in ("FEASIBLE", "UNKNOWN") else None
        if status == "UNKNOWN":
            if hint_plan is not None:
                return make_plan_from(problem, hint_plan, solver=self.name, status=Status.FEASIBLE,
                                      bound_grid=bound, solve_time_s=elapsed,
                                      message=f"CP-SAT found no solution in {time_limit_s:g} s; heuristic warm start")
            return empty_plan(problem, solver=self.name, status=Status.UNKNOWN, solve_time_s=elapsed,
                              message=f"CP-SAT found no plan within {time_limit_s:g} s and proved none infeasible")
        choice = [next(k for k, lit in enumerate(cm.x[v]) if solver.boolean_value(lit)) for v in range(g.n)]
        raw = [solver.value(cm.s[v]) for v in range(g.n)]
        start = list_schedule(g, choice, topo_order_by(g, raw))
        st = Status.OPTIMAL if status == "OPTIMAL" else Status.FEASIBLE
        return make_plan(problem, choice, start, solver=self.name, status=st,
                         bound_grid=None if bound is None else _ceil(bound), solve_time_s=elapsed)


def _ceil(x: float) -> int:
    import math

    return int(math.ceil(x - 1e-9))


def make_plan_from(problem: Problem, plan: Plan, **kw: Any) -> Plan:
    """Re-issue an existing plan's grid solution under another solver name / status."""
    g = problem.grid
    choice = [g.opt_ids[v].index(plan.assignments[n].option_id) for v, n in enumerate(g.names)]
    start = [int(round(plan.assignments[n].start_us / TIME_UNIT_US)) for n in g.names]
    return make_plan(problem, choice, start, **kw)
