"""The same planning model as a MILP with big-M disjunctions, solved through PuLP (CBC or HiGHS).

Variables: binaries ``x[v,k]`` (option k of layer v), continuous starts ``s[v]`` and makespan ``M`` (grid
time units), continuous ``z[e,p,q] ∈ [0,1]`` for edge e=(u,v) going from processor p to q linked by flow
conservation (with 0/1 margins the only feasible z is the product of the assignments, so z need not be
integral), and one order binary ``o[u,v]`` per pair of layers that may share a processor and are not
ordered by the DAG. For every processor p both may use:

    s[v] ≥ fin[u] − H·(1 − o[u,v]) − H·(2 − y[u,p] − y[v,p])
    s[u] ≥ fin[v] − H·o[u,v]       − H·(2 − y[u,p] − y[v,p])

with H the horizon (big-M). Memory, accuracy, energy (idle energy as an integer variable I with
``1000·I ≥ Σ_p idle_mW_p (M − busy_p)``), budgets and objective are those of the CP-SAT model; the data
are the same grid integers, so both reach the same optimum. The solution is re-timed to its semi-active
schedule with exact integer arithmetic (solver tolerances never leak into a Plan).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
from typing import Any

from deepx_opt.errors import SolverError
from deepx_opt.solvers.base import Solver
from deepx_opt.solvers.plan import Plan, Status, empty_plan, make_plan
from deepx_opt.solvers.problem import TIME_UNIT_US, Problem
from deepx_opt.solvers.schedule import grid_objective, grid_totals, grid_violations, list_schedule, topo_order_by

__all__ = ["PulpSolver", "available_backends", "build_pulp_model"]

_BACKENDS = ("cbc", "highs")


def _pulp():
    try:
        import pulp
    except ImportError as exc:  # pragma: no cover - pulp is a hard dependency
        raise SolverError(f"the PuLP solvers need pulp (pip install pulp): {exc}") from exc
    return pulp


def available_backends() -> list[str]:
    """PuLP back ends that work here (``"cbc"`` is bundled; ``"highs"`` needs highspy)."""
    pulp = _pulp()
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        cbc = pulp.PULP_CBC_CMD(msg=False).available()
    if cbc:
        out.append("cbc")
    if pulp.HiGHS(msg=False).available():
        out.append("highs")
    return out


def _var(lp, name: str, low=None, up=None, cat: str = "Continuous"):
    """A variable attached to ``lp`` (PuLP ≥ 3.3 API; the bare constructor on older PuLP)."""
    add = getattr(lp, "add_variable", None)
    if add is not None:
        return add(name, low, up, cat=cat)
    return _pulp().LpVariable(name, low, up, cat=cat)


@contextlib.contextmanager
def _quiet_stdout():
    """Silence C-level stdout: HiGHS 1.12 prints debug lines ("tmpSolver.run()") even with msg=False."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # no real file descriptor (captured stdout)
        yield
        return
    sys.stdout.flush()
    saved = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


def _reachability(g) -> list[set[int]]:
    reach: list[set[int]] = [set() for _ in range(g.n)]
    for v in reversed(range(g.n)):
        for w, _ in g.succs[v]:
            reach[v].add(w)
            reach[v] |= reach[w]
    return reach


def build_pulp_model(problem: Problem):
    """Return (LpProblem, x, s) for the Problem's own goal and constraints."""
    pulp = _pulp()
    g = problem.grid
    np_ = len(g.procs)
    H = g.horizon if g.latency_budget is None else min(g.horizon, g.latency_budget)
    lp = pulp.LpProblem("deepx_plan", pulp.LpMinimize)
    x = [[_var(lp, f"x_{v}_{k}", cat="Binary") for k in range(len(g.dur[v]))] for v in range(g.n)]
    s = [_var(lp, f"s_{v}", 0, H) for v in range(g.n)]
    M = _var(lp, "makespan", 0, H)
    extra: dict[str, Any] = {"M": M, "z": {}, "o": {}, "peak": {}, "idle": None}
    y: list[dict[int, Any]] = []
    fin = []
    for v in range(g.n):
        lp += pulp.lpSum(x[v]) == 1, f"one_{v}"
        yv: dict[int, list] = {}
        for k, p in enumerate(g.opt_proc[v]):
            yv.setdefault(p, []).append(x[v][k])
        y.append({p: pulp.lpSum(lits) for p, lits in yv.items()})
        fin.append(s[v] + pulp.lpSum(g.dur[v][k] * x[v][k] for k in range(len(x[v]))))
        if any(g.in_time[v]):
            lp += s[v] >= pulp.lpSum(g.in_time[v][g.opt_proc[v][k]] * x[v][k] for k in range(len(x[v]))), f"in_{v}"
        if not g.succs[v] or any(g.out_time[v]):
            lp += M >= fin[v] + pulp.lpSum(g.out_time[v][g.opt_proc[v][k]] * x[v][k] for k in range(len(x[v]))), f"mk_{v}"
    t_energy = []
    for e, (u, v) in enumerate(g.edges):
        rows: dict[int, list] = {}
        cols: dict[int, list] = {}
        delay = []
        for p in y[u]:
            for q in y[v]:
                zz = _var(lp, f"z_{e}_{p}_{q}", 0, 1)
                extra["z"][(e, p, q)] = zz
                rows.setdefault(p, []).append(zz)
                cols.setdefault(q, []).append(zz)
                if p != q:
                    delay.append(g.ttime[e][p][q] * zz)
                    t_energy.append(g.tenergy[e][p][q] * zz)
        for p, zs in rows.items():
            lp += pulp.lpSum(zs) == y[u][p], f"flow_out_{e}_{p}"
        for q, zs in cols.items():
            lp += pulp.lpSum(zs) == y[v][q], f"flow_in_{e}_{q}"
        lp += s[v] >= fin[u] + pulp.lpSum(delay), f"prec_{e}"
    # disjunctions for layers that may share a processor and are not ordered by the DAG
    reach = _reachability(g)
    for u in range(g.n):
        for v in range(u + 1, g.n):
            if v in reach[u]:
                continue
            shared = [p for p in y[u] if p in y[v]
                      and any(g.dur[u][k] > 0 for k, q in enumerate(g.opt_proc[u]) if q == p)
                      and any(g.dur[v][k] > 0 for k, q in enumerate(g.opt_proc[v]) if q == p)]
            if not shared:
                continue
            o = _var(lp, f"o_{u}_{v}", cat="Binary")
            extra["o"][(u, v)] = o
            for p in shared:
                both = 2 - y[u][p] - y[v][p]
                lp += s[v] >= fin[u] - H * (1 - o) - H * both, f"ord_{u}_{v}_{p}_a"
                lp += s[u] >= fin[v] - H * o - H * both, f"ord_{u}_{v}_{p}_b"
    for p in range(np_):
        cap = g.cap[p]
        if cap is None:
            continue
        terms = [g.weight[v][k] * x[v][k] for v in range(g.n) for k in range(len(x[v])) if g.opt_proc[v][k] == p and g.weight[v][k]]
        ws = [(g.workspace[v][k], x[v][k]) for v in range(g.n) for k in range(len(x[v])) if g.opt_proc[v][k] == p and g.workspace[v][k]]
        if ws:
            peak = _var(lp, f"peak_{p}", 0)
            extra["peak"][p] = peak
            for i, (w, lit) in enumerate(ws):
                lp += peak >= w * lit, f"peak_{p}_{i}"
            terms.append(peak)
        if terms:
            lp += pulp.lpSum(terms) <= cap, f"mem_{p}"
    acc = pulp.lpSum(g.acc[v][k] * x[v][k] for v in range(g.n) for k in range(len(x[v])) if g.acc[v][k])
    if g.acc_limit is not None:
        lp += acc <= g.acc_limit, "accuracy"
    energy = pulp.lpSum(
        (g.energy[v][k] + g.in_energy[v][g.opt_proc[v][k]] + g.out_energy[v][g.opt_proc[v][k]]) * x[v][k]
        for v in range(g.n) for k in range(len(x[v]))
    ) + pulp.lpSum(t_energy)
    if g.include_idle and any(g.idle_mw):
        busy = [pulp.lpSum(g.dur[v][k] * x[v][k] for v in range(g.n) for k in range(len(x[v])) if g.opt_proc[v][k] == p)
                for p in range(np_)]
        idle = _var(lp, "idle_energy", 0, cat="Integer")
        extra["idle"] = idle
        lp += 1000 * idle >= pulp.lpSum(g.idle_mw[p] * (M - busy[p]) for p in range(np_) if g.idle_mw[p]), "idle"
        energy = energy + idle
    if g.energy_budget is not None:
        lp += energy <= g.energy_budget, "energy_budget"
    lp += energy if g.goal == "min_energy" else M
    lp._deepx_vars = extra  # the remaining variables, for warm starts
    return lp, x, s


def _set_warm_start(problem: Problem, lp, x, s, choice: list[int], start: list[int]) -> None:
    """Initial values of every variable from a grid solution (a heuristic plan)."""
    g = problem.grid
    ex = lp._deepx_vars
    t = grid_totals(g, choice, start)
    proc = [g.opt_proc[v][choice[v]] for v in range(g.n)]
    fin = [start[v] + g.dur[v][choice[v]] for v in range(g.n)]
    for v in range(g.n):
        for k, var in enumerate(x[v]):
            var.setInitialValue(1 if k == choice[v] else 0)
        s[v].setInitialValue(start[v])
    ex["M"].setInitialValue(t.makespan)
    for (e, p, q), var in ex["z"].items():
        u, v = g.edges[e]
        var.setInitialValue(1 if (proc[u], proc[v]) == (p, q) else 0)
    for (u, v), var in ex["o"].items():
        var.setInitialValue(1 if fin[u] <= start[v] else 0)
    for p, var in ex["peak"].items():
        var.setInitialValue(max([g.workspace[v][choice[v]] for v in range(g.n) if proc[v] == p], default=0))
    if ex["idle"] is not None:
        ex["idle"].setInitialValue(t.idle_energy)


def _highs_with_start():
    """pulp.HiGHS that hands the variables' initial values to HiGHS (setSolution) before solving."""
    pulp = _pulp()

    class _HiGHSWarm(pulp.HiGHS):
        def callSolver(self, lp):
            try:
                import highspy

                cols = sorted(lp.variables(), key=lambda var: var.index)
                sol = highspy.HighsSolution()
                sol.col_value = [float(var.varValue or 0.0) for var in cols]
                sol.value_valid = True
                lp.solverModel.setSolution(sol)
            except Exception:  # noqa: BLE001 - a warm start is only a help
                pass
            lp.solverModel.run()

    return _HiGHSWarm


class PulpSolver(Solver):
    """Big-M MILP through PuLP; ``backend`` is ``"cbc"`` (bundled with PuLP) or ``"highs"`` (highspy)."""

    exact = True

    def __init__(self, backend: str = "cbc", threads: int = 1):
        if backend not in _BACKENDS:
            raise SolverError(f"unknown PuLP backend {backend!r}; expected one of {list(_BACKENDS)}")
        self.backend = backend
        self.threads = threads
        self.name = f"pulp_{backend}"
        self.description = f"big-M MILP solved by {'CBC' if backend == 'cbc' else 'HiGHS'} through PuLP"

    def supports(self, problem: Problem) -> str | None:
        if self.backend not in available_backends():
            return f"PuLP back end {self.backend!r} is not installed (available: {available_backends()})"
        return None

    def _make(self, time_limit_s: float, strict: bool = True, warm: bool = False):
        pulp = _pulp()
        if self.backend == "cbc":
            with warnings.catch_warnings():  # PuLP 3.3 deprecates its bundled CBC for 4.0; it still works
                warnings.simplefilter("ignore", DeprecationWarning)
                return pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit_s, gapRel=0.0, gapAbs=0.5,
                                         threads=self.threads, warmStart=warm)
        # the retry after a HiGHS "solve error": looser MIP feasibility and no presolve (its reductions of
        # degenerate models, e.g. all-zero durations, are what fail)
        extra = {} if strict else {"mip_feasibility_tolerance": 1e-5, "presolve": "off"}
        cls = _highs_with_start() if warm else pulp.HiGHS
        return cls(msg=False, timeLimit=time_limit_s, gapRel=0.0, gapAbs=0.5, threads=self.threads, **extra)

    def _solve(self, problem: Problem, *, time_limit_s: float, warm_start: bool = True, **_: Any) -> Plan:
        pulp = _pulp()
        t0 = time.perf_counter()
        g = problem.grid
        start_plan = None
        if warm_start:
            from deepx_opt.solvers.heuristics import best_heuristic_plan

            start_plan = best_heuristic_plan(problem)
        lp, x, s = build_pulp_model(problem)

        def load_start() -> None:
            if start_plan is not None:
                ch = [g.opt_ids[v].index(start_plan.assignments[n].option_id) for v, n in enumerate(g.names)]
                st = [int(round(start_plan.assignments[n].start_us / TIME_UNIT_US)) for n in g.names]
                _set_warm_start(problem, lp, x, s, ch, st)

        load_start()
        warm = start_plan is not None
        try:
            with _quiet_stdout():
                lp.solve(self._make(max(1.0, time_limit_s - (time.perf_counter() - t0)), warm=warm))
        except pulp.PulpSolverError as exc:
            raise SolverError(f"{self.name} failed on problem {problem.name!r}: {exc}") from exc
        elapsed = time.perf_counter() - t0
        sol = lp.sol_status
        if (self.backend == "highs" and lp.status == pulp.LpStatusNotSolved
                and sol not in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible, pulp.LpSolutionInfeasible)):
            # HiGHS 1.12 sometimes rejects its own optimum ("MIP solver claims optimality, but with ... 1e-06
            # infeasibilities" -> solve error) on degenerate models; a looser MIP feasibility tolerance with
            # presolve off avoids it. The plan is re-timed and re-checked exactly below, and a claimed optimum that the exact
            # objective does not reproduce is downgraded to FEASIBLE.
            lp, x, s = build_pulp_model(problem)
            load_start()
            with _quiet_stdout():
                lp.solve(self._make(max(1.0, time_limit_s - (time.perf_counter() - t0)), strict=False, warm=warm))
            sol = lp.sol_status
        if lp.status == pulp.LpStatusInfeasible or sol == pulp.LpSolutionInfeasible:
            return empty_plan(problem, solver=self.name, status=Status.INFEASIBLE, solve_time_s=elapsed,
                              message=f"{self.backend.upper()} proved that no plan meets the constraints")
        if sol not in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible):
            if start_plan is not None:
                from deepx_opt.solvers.cpsat import make_plan_from

                return make_plan_from(problem, start_plan, solver=self.name, status=Status.FEASIBLE,
                                      solve_time_s=elapsed,
                                      message=f"{self.backend.upper()} found no plan within {time_limit_s:g} s; "
                                              "heuristic warm start")
            return empty_plan(problem, solver=self.name, status=Status.UNKNOWN, solve_time_s=elapsed,
                              message=f"{self.backend.upper()} found no plan within {time_limit_s:g} s "
                                      f"(status {pulp.LpStatus.get(lp.status)})")
        choice = []
        for v in range(g.n):
            vals = [var.value() or 0.0 for var in x[v]]
            choice.append(max(range(len(vals)), key=lambda k: vals[k]))
        raw = [var.value() or 0.0 for var in s]
        start = list_schedule(g, choice, topo_order_by(g, raw))
        totals = grid_totals(g, choice, start)
        bad = grid_violations(g, totals)
        if bad:  # only solver tolerances could cause this; never hand out an invalid plan
            raise SolverError(f"{self.name}: the solution breaks {bad} after exact re-timing (numerical trouble)")
        status = Status.OPTIMAL if sol == pulp.LpSolutionOptimal else Status.FEASIBLE
        bound = None
        claimed = pulp.value(lp.objective)
        exact = grid_objective(g, totals)
        if status is Status.OPTIMAL and claimed is not None and exact > claimed + 0.5 + 1e-6 * abs(claimed):
            # tolerances let the MILP see a better value than exact arithmetic gives: not a proof
            status = Status.FEASIBLE
            bound = claimed
        if status is Status.FEASIBLE and bound is None and self.backend == "highs":
            try:
                bound = lp.solverModel.getInfo().mip_dual_bound
            except Exception:  # noqa: BLE001 - the bound is optional information
                bound = None
        # OPTIMAL: the MILP value is proven within gapAbs = 0.5 of the integer optimum and exact re-timing
        # can only improve it, so the recomputed integer objective is that optimum.
        return make_plan(problem, choice, start, solver=self.name, status=status,
                         bound_grid=None if bound is None else int(-(-bound // 1)), solve_time_s=elapsed)
