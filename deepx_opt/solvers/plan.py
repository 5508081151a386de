"""The :class:`Plan` a solver returns, the independent checker :func:`check_plan`, and :func:`evaluate`.

Energy model (all solvers, the checker and the heuristics use it):

    energy_uj = Σ_v energy_uj(option of v)
              + Σ_{edges (u,v) with different processors} link(p_u→p_v).energy_uj(edge bytes)
              + Σ_v link(host→p_v).energy_uj(input_bytes_v) + link(p_v→host).energy_uj(output_bytes_v)
              [+ Σ_p idle_power_w_p × (makespan_us − busy_us_p)   when problem.include_idle_energy]

with busy_us_p the summed durations of the layers on p (transfers do not occupy a processor). A Plan
reports these totals recomputed in exact (float) arithmetic; ``objective`` and ``bound`` are the solver's
values on the integer grid (see :mod:`deepx_opt.solvers.problem`) converted back to µJ or µs, so
``objective`` exceeds the float total by at most the rounding bound of :func:`rounding_bounds`.

Example
-------
>>> from deepx_opt.solvers.synthetic import chain_problem
>>> from deepx_opt.solvers.plan import evaluate, check_plan
>>> prob = chain_problem(4, seed=0)
>>> ev = evaluate(prob, {layer.name: layer.options[0].id for layer in prob.layers})
>>> check_plan(prob, ev.to_plan("manual")) == [] or ev.violations != []
True
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from deepx_opt.errors import PlanError
from deepx_opt.solvers.problem import ENERGY_UNIT_UJ, TIME_UNIT_US, Problem
from deepx_opt.solvers.schedule import GridTotals, grid_objective, grid_totals, grid_violations, list_schedule

__all__ = [
    "Status",
    "Assignment",
    "Plan",
    "Evaluation",
    "evaluate",
    "make_plan",
    "empty_plan",
    "check_plan",
    "rounding_bounds",
]

_FORMAT = "deepx_opt.plan"
_VERSION = 1


class Status(str, enum.Enum):
    """Solver outcome. FEASIBLE means a valid plan whose optimality is not proven."""

    OPTIMAL = "OPTIMAL"
    FEASIBLE = "FEASIBLE"
    INFEASIBLE = "INFEASIBLE"
    UNKNOWN = "UNKNOWN"

    @property
    def has_plan(self) -> bool:
        return self in (Status.OPTIMAL, Status.FEASIBLE)


@dataclass(frozen=True)
class Assignment:
    """What one layer does: its option (rank, processor) and when it runs."""

    layer: str
    option_id: str
    rank: int | None
    processor: str
    start_us: float
    finish_us: float


@dataclass(frozen=True)
class Plan:
    """A solution (or the honest absence of one) for a Problem.

    ``assignments`` maps layer name → :class:`Assignment` (in the Problem's layer order) and is empty
    unless ``status`` is OPTIMAL or FEASIBLE. ``objective``/``bound`` are in µJ (goal min_energy) or µs
    (min_latency); ``gap = (objective − bound) / objective``.
    """

    problem_name: str
    solver: str
    status: Status
    goal: str
    assignments: dict[str, Assignment] = field(default_factory=dict)
    makespan_us: float | None = None
    energy_uj: float | None = None
    energy_breakdown_uj: dict[str, float] = field(default_factory=dict)
    memory_bytes: dict[str, int] = field(default_factory=dict)
    accuracy_loss: float | None = None
    objective: float | None = None
    bound: float | None = None
    gap: float | None = None
    solve_time_s: float = 0.0
    message: str = ""
    #: Where the plan came from (model spec, profile, RLC method, budgets), for ``deepx run``/``report``.
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status))

    # JSON ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "problem_name": self.problem_name,
            "solver": self.solver,
            "status": self.status.value,
            "goal": self.goal,
            "assignments": [a.__dict__ for a in self.assignments.values()],
            "makespan_us": self.makespan_us,
            "energy_uj": self.energy_uj,
            "energy_breakdown_uj": dict(self.energy_breakdown_uj),
            "memory_bytes": dict(self.memory_bytes),
            "accuracy_loss": self.accuracy_loss,
            "objective": self.objective,
            "bound": self.bound,
            "gap": self.gap,
            "solve_time_s": self.solve_time_s,
            "message": self.message,
            "meta": dict(self.meta),
        }

    def to_json(self, *, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Plan":
        if d.get("format") != _FORMAT:
            raise PlanError(f"not a deepx_opt plan: format={d.get('format')!r}; expected {_FORMAT!r}")
        if d.get("version") != _VERSION:
            raise PlanError(f"plan version {d.get('version')!r} is unsupported; expected {_VERSION}")
        try:
            status = Status(d["status"])
        except ValueError:
            raise PlanError(
                f"plan status {d.get('status')!r} is unknown; expected one of {[s.value for s in Status]}"
            ) from None
        try:
            assignments = {a["layer"]: Assignment(**a) for a in d.get("assignments", [])}
            kw = {k: d.get(k) for k in ("makespan_us", "energy_uj", "accuracy_loss", "objective", "bound", "gap")}
            return cls(
                problem_name=d["problem_name"],
                solver=d["solver"],
                status=status,
                goal=d["goal"],
                assignments=assignments,
                energy_breakdown_uj=dict(d.get("energy_breakdown_uj", {})),
                memory_bytes=dict(d.get("memory_bytes", {})),
                solve_time_s=float(d.get("solve_time_s", 0.0)),
                message=d.get("message", ""),
                meta=dict(d.get("meta") or {}),
                **kw,
            )
        except (KeyError, TypeError) as exc:
            raise PlanError(f"malformed plan JSON: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> "Plan":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise PlanError(f"plan JSON does not parse: {exc}") from exc

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "Plan":
        p = Path(path)
        if not p.exists():
            raise PlanError(f"plan file {str(p)!r} does not exist")
        return cls.from_json(p.read_text())


# ---------------------------------------------------------------------------------------- evaluation
def _float_totals(problem: Problem, choice_ids: Mapping[str, str], start_us: Mapping[str, float]) -> dict:
    """Exact (float) totals of a scheduled choice. Used by make_plan and, independently, by check_plan."""
    proc_of: dict[str, str] = {}
    ce = 0.0
    te = 0.0
    acc = 0.0
    weight = {p.name: 0 for p in problem.processors}
    wspace = {p.name: 0 for p in problem.processors}
    busy = {p.name: 0.0 for p in problem.processors}
    makespan = 0.0
    for layer in problem.layers:
        o = layer.option(choice_ids[layer.name])
        proc_of[layer.name] = o.processor
        ce += o.energy_uj
        acc += o.accuracy_loss
        weight[o.processor] += o.weight_bytes
        wspace[o.processor] = max(wspace[o.processor], o.workspace_bytes)
        busy[o.processor] += o.duration_us
        if layer.input_bytes:
            te += problem.transfer_energy_uj(problem.host, o.processor, layer.input_bytes)
        end = start_us[layer.name] + o.duration_us
        if layer.output_bytes:
            te += problem.transfer_energy_uj(o.processor, problem.host, layer.output_bytes)
            end += problem.transfer_time_us(o.processor, problem.host, layer.output_bytes)
        makespan = max(makespan, end)
    for e in problem.edges:
        te += problem.transfer_energy_uj(proc_of[e.src], proc_of[e.dst], e.bytes)
    idle = 0.0
    if problem.include_idle_energy:
        idle = sum(p.idle_power_w * (makespan - busy[p.name]) for p in problem.processors)
    return {
        "makespan_us": makespan,
        "energy_uj": ce + te + idle,
        "breakdown": {"compute": ce, "transfer": te, "idle": idle},
        "accuracy_loss": acc,
        "memory_bytes": {p: weight[p] + wspace[p] for p in weight},
    }


def _objective_units(problem: Problem) -> float:
    return ENERGY_UNIT_UJ if problem.goal == "min_energy" else TIME_UNIT_US


def make_plan(
    problem: Problem,
    choice: Sequence[int],
    start: Sequence[int],
    *,
    solver: str,
    status: Status,
    bound_grid: int | float | None = None,
    solve_time_s: float = 0.0,
    message: str = "",
) -> Plan:
    """Build a Plan from a grid solution (option index and integer start per layer)."""
    g = problem.grid
    totals = grid_totals(g, choice, start)
    unit = _objective_units(problem)
    obj = grid_objective(g, totals)
    ids = {g.names[v]: g.opt_ids[v][choice[v]] for v in range(g.n)}
    starts_us = {g.names[v]: start[v] * TIME_UNIT_US for v in range(g.n)}
    ft = _float_totals(problem, ids, starts_us)
    assignments = {}
    for v, layer in enumerate(problem.layers):
        o = layer.options[choice[v]]
        s = starts_us[layer.name]
        assignments[layer.name] = Assignment(layer.name, o.id, o.rank, o.processor, s, s + o.duration_us)
    bound = None if bound_grid is None else float(bound_grid) * unit
    if status is Status.OPTIMAL:
        bound = obj * unit
    gap = None
    if bound is not None:
        gap = 0.0 if obj == 0 else max(0.0, (obj * unit - bound) / (obj * unit))
    return Plan(
        problem_name=problem.name,
        solver=solver,
        status=status,
        goal=problem.goal,
        assignments=assignments,
        makespan_us=ft["makespan_us"],
        energy_uj=ft["energy_uj"],
        energy_breakdown_uj=ft["breakdown"],
        memory_bytes=ft["memory_bytes"],
        accuracy_loss=ft["accuracy_loss"],
        objective=obj * unit,
        bound=bound,
        gap=gap,
        solve_time_s=solve_time_s,
        message=message,
    )


def empty_plan(
    problem: Problem,
    *,
    solver: str,
    status: Status,
    message: str,
    solve_time_s: float = 0.0,
    bound_grid: int | float | None = None,
) -> Plan:
    """A Plan without assignments (status INFEASIBLE or UNKNOWN)."""
    if status.has_plan:
        raise PlanError(f"empty_plan with status {status.value}; a plan of that status needs assignments")
    bound = None if bound_grid is None else float(bound_grid) * _objective_units(problem)
    return Plan(
        problem_name=problem.name,
        solver=solver,
        status=status,
        goal=problem.goal,
        bound=bound,
        solve_time_s=solve_time_s,
        message=message,
    )


@dataclass(frozen=True)
class Evaluation:
    """A choice scheduled on the grid, with grid totals, feasibility and objective."""

    problem: Problem
    choice: tuple[int, ...]
    start: tuple[int, ...]
    totals: GridTotals
    violations: list[str]
    objective_grid: int

    @property
    def feasible(self) -> bool:
        return not self.violations

    def to_plan(self, solver: str, *, solve_time_s: float = 0.0, message: str = "") -> Plan:
        """FEASIBLE plan when the evaluation is feasible, else an INFEASIBLE plan naming the violations."""
        if not self.feasible:
            return empty_plan(
                self.problem,
                solver=solver,
                status=Status.INFEASIBLE,
                message=(message + "; " if message else "") + "violates " + ", ".join(self.violations),
                solve_time_s=solve_time_s,
            )
        return make_plan(
            self.problem, self.choice, self.start, solver=solver, status=Status.FEASIBLE,
            solve_time_s=solve_time_s, message=message,
        )


def _choice_indices(problem: Problem, choice: Mapping[str, str] | Sequence[int] | Sequence[str]) -> list[int]:
    if isinstance(choice, Mapping):
        missing = [layer.name for layer in problem.layers if layer.name not in choice]
        if missing:
            raise PlanError(f"choice has no option for layers {missing}")
        ids = [choice[layer.name] for layer in problem.layers]
    else:
        ids = list(choice)
        if len(ids) != len(problem.layers):
            raise PlanError(f"choice has {len(ids)} entries; the problem has {len(problem.layers)} layers")
    out = []
    for layer, c in zip(problem.layers, ids):
        if isinstance(c, str):
            out.append(problem.grid.opt_ids[problem.layer_index[layer.name]].index(layer.option(c).id))
        else:
            if not 0 <= int(c) < len(layer.options):
                raise PlanError(f"layer {layer.name!r}: option index {c} out of range 0..{len(layer.options) - 1}")
            out.append(int(c))
    return out


def evaluate(
    problem: Problem,
    choice: Mapping[str, str] | Sequence[int] | Sequence[str],
    *,
    order: Sequence[str] | Sequence[int] | None = None,
    start: Sequence[int] | None = None,
) -> Evaluation:
    """Schedule ``choice`` and compute its totals on the grid.

    Parameters
    ----------
    choice : mapping layer → option id, or a sequence (layer order) of option ids or indices
    order : topological order of layers (names or indices) for list scheduling; default the layer order
    start : integer grid start times (layer order); overrides ``order`` (used by insertion schedulers)
    """
    g = problem.grid
    idx = _choice_indices(problem, choice)
    if start is None:
        if order is not None:
            order = [problem.layer_index[o] if isinstance(o, str) else int(o) for o in order]
        start = list_schedule(g, idx, order)
    totals = grid_totals(g, idx, start)
    return Evaluation(problem, tuple(idx), tuple(start), totals, grid_violations(g, totals), grid_objective(g, totals))


# ---------------------------------------------------------------------------------------- checker
def rounding_bounds(problem: Problem, makespan_us: float | None = None) -> dict[str, float]:
    """How far a solver's grid objective may exceed the exact total, and the energy-budget tolerance.

    Each rounded-up term errs by less than one grid step: at most (layers + edges + 2·layers) time steps
    on any path and as many energy steps. Idle energy (only when asked for) is computed on the grid with
    idle power rounded up to whole mW and grid durations, so it may differ from the exact idle energy by
    Σ_p P'_p × (time rounding) + (P'_p − P_p) × makespan + one energy step; that is the only case in which
    the checker tolerates a budget excess.
    """
    n_terms = 3 * len(problem.layers) + len(problem.edges)
    time_us = n_terms * TIME_UNIT_US
    energy_uj = n_terms * ENERGY_UNIT_UJ
    idle_tol = 0.0
    if problem.include_idle_energy:
        m = makespan_us or 0.0
        g = problem.grid
        for p, proc in zip(g.idle_mw, problem.processors):
            pw = p / 1000.0
            idle_tol += pw * 2 * time_us + (pw - proc.idle_power_w) * (m + time_us)
        idle_tol += ENERGY_UNIT_UJ
    return {"time_us": time_us, "energy_uj": energy_uj + idle_tol, "idle_energy_uj": idle_tol}


def _close(a: float, b: float, tol: float = 1e-6) -> bool:
    return abs(a - b) <= tol + 1e-9 * max(abs(a), abs(b))


def check_plan(problem: Problem, plan: Plan) -> list[str]:
    """Re-verify ``plan`` against ``problem`` without trusting the solver; return the violations.

    Checks: the plan belongs to the problem (name, goal); status/assignments consistency (INFEASIBLE and
    UNKNOWN carry none, OPTIMAL has zero gap); exactly one existing option per layer with matching rank and
    processor; finish = start + duration; start ≥ 0 and ≥ model-input transfer; precedence including
    transfer delays on cross-processor edges; no overlap per processor; memory per processor; latency and
    energy budgets; accuracy limit; reported totals (makespan, energy and its breakdown, memory, accuracy,
    objective) equal to a recomputation. An empty list means the plan is valid.
    """
    out: list[str] = []
    if plan.problem_name != problem.name:
        out.append(f"plan is for problem {plan.problem_name!r}, not {problem.name!r}")
    if plan.goal != problem.goal:
        out.append(f"plan goal {plan.goal!r} differs from the problem goal {problem.goal!r}")
    if not plan.status.has_plan:
        if plan.assignments:
            out.append(f"status {plan.status.value} but the plan carries {len(plan.assignments)} assignments")
        return out
    if plan.status is Status.OPTIMAL and plan.gap is not None and plan.gap > 1e-9:
        out.append(f"status OPTIMAL with a non-zero gap {plan.gap}")
    if plan.bound is not None and plan.objective is not None and plan.bound > plan.objective * (1 + 1e-9) + 1e-9:
        out.append(f"bound {plan.bound} exceeds objective {plan.objective} of a minimisation")

    # one existing option per layer
    names = {layer.name for layer in problem.layers}
    extra = sorted(set(plan.assignments) - names)
    if extra:
        out.append(f"assignments for unknown layers {extra}")
    chosen = {}
    for layer in problem.layers:
        a = plan.assignments.get(layer.name)
        if a is None:
            out.append(f"layer {layer.name!r} has no assignment")
            continue
        if a.layer != layer.name:
            out.append(f"assignment keyed {layer.name!r} names layer {a.layer!r}")
        opt = next((o for o in layer.options if o.id == a.option_id), None)
        if opt is None:
            out.append(f"layer {layer.name!r}: option {a.option_id!r} does not exist")
            continue
        if a.processor != opt.processor:
            out.append(f"layer {layer.name!r}: processor {a.processor!r} but option {opt.id!r} runs on {opt.processor!r}")
        if a.rank != opt.rank:
            out.append(f"layer {layer.name!r}: rank {a.rank!r} but option {opt.id!r} has rank {opt.rank!r}")
        if not (math.isfinite(a.start_us) and math.isfinite(a.finish_us)):
            out.append(f"layer {layer.name!r}: non-finite start/finish")
            continue
        if a.start_us < -1e-9:
            out.append(f"layer {layer.name!r} starts before 0 ({a.start_us} us)")
        if not _close(a.finish_us - a.start_us, opt.duration_us):
            out.append(
                f"layer {layer.name!r}: finish−start = {a.finish_us - a.start_us} us but the option lasts "
                f"{opt.duration_us} us"
            )
        if layer.input_bytes:
            t_in = problem.transfer_time_us(problem.host, opt.processor, layer.input_bytes)
            if a.start_us < t_in - 1e-6:
                out.append(f"layer {layer.name!r} starts at {a.start_us} us before its input arrives ({t_in} us)")
        chosen[layer.name] = (opt, a)
    if len(chosen) != len(problem.layers):
        return out

    # precedence with transfer delays
    for e in problem.edges:
        (ou, au), (ov, av) = chosen[e.src], chosen[e.dst]
        ready = au.finish_us + problem.transfer_time_us(ou.processor, ov.processor, e.bytes)
        if av.start_us < ready - 1e-6 - 1e-12 * ready:
            out.append(
                f"edge {e.src!r}->{e.dst!r}: {e.dst!r} starts at {av.start_us} us before its input is ready "
                f"at {ready} us ({ou.processor}->{ov.processor})"
            )
    # no overlap per processor
    by_proc: dict[str, list] = {}
    for name, (o, a) in chosen.items():
        if o.duration_us > 0:
            by_proc.setdefault(o.processor, []).append((a.start_us, a.finish_us, name))
    for p, ivs in by_proc.items():
        ivs.sort()
        for (s1, f1, n1), (s2, f2, n2) in zip(ivs, ivs[1:]):
            if s2 < f1 - 1e-6:
                out.append(f"processor {p!r}: {n1!r} [{s1}, {f1}) overlaps {n2!r} [{s2}, {f2})")

    ft = _float_totals(problem, {k: o.id for k, (o, _) in chosen.items()}, {k: a.start_us for k, (_, a) in chosen.items()})
    rb = rounding_bounds(problem, ft["makespan_us"])
    # memory
    for proc in problem.processors:
        m = ft["memory_bytes"][proc.name]
        if proc.memory_bytes is not None and m > proc.memory_bytes:
            out.append(f"processor {proc.name!r}: memory {m} bytes exceeds its capacity {proc.memory_bytes}")
    # budgets and limits
    if problem.latency_budget_us is not None and ft["makespan_us"] > problem.latency_budget_us + 1e-6:
        out.append(f"makespan {ft['makespan_us']:.3f} us exceeds the latency budget {problem.latency_budget_us} us")
    if problem.energy_budget_uj is not None:
        tol = 1e-6 + rb["idle_energy_uj"]
        if ft["energy_uj"] > problem.energy_budget_uj + tol:
            out.append(f"energy {ft['energy_uj']:.3f} uJ exceeds the energy budget {problem.energy_budget_uj} uJ")
    if problem.max_accuracy_loss is not None and ft["accuracy_loss"] > problem.max_accuracy_loss + 1e-9:
        out.append(
            f"accuracy loss {ft['accuracy_loss']:.6f} points exceeds the limit {problem.max_accuracy_loss} points"
        )
    # reported totals
    for key, label in (("makespan_us", "makespan"), ("energy_uj", "energy"), ("accuracy_loss", "accuracy loss")):
        rep = getattr(plan, key)
        if rep is None or not _close(rep, ft[key]):
            out.append(f"reported {label} {rep} differs from the recomputed {ft[key]}")
    for part, val in ft["breakdown"].items():
        rep = plan.energy_breakdown_uj.get(part)
        if rep is None or not _close(rep, val):
            out.append(f"reported {part} energy {rep} differs from the recomputed {val}")
    if dict(plan.memory_bytes) != ft["memory_bytes"]:
        out.append(f"reported memory {dict(plan.memory_bytes)} differs from the recomputed {ft['memory_bytes']}")
    if plan.objective is not None:
        total = ft["energy_uj"] if problem.goal == "min_energy" else ft["makespan_us"]
        tol = rb["energy_uj"] if problem.goal == "min_energy" else rb["time_us"]
        if abs(plan.objective - total) > tol + 1e-6:
            out.append(f"objective {plan.objective} differs from the recomputed {total} by more than rounding ({tol})")
    else:
        out.append("a plan with assignments must report its objective")
    return out
