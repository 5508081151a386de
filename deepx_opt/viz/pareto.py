"""The energy–latency trade-off of a Problem: a sweep of budgets solved by one solver, the front of its
non-dominated plans, and every heuristic's plans on the same axes.

A *latency* sweep solves "least energy with makespan ≤ B" for budgets B from the fastest achievable
makespan to the makespan of the least-energy plan; an *energy* sweep solves "fastest with energy ≤ B"
from the least achievable energy to the energy of the fastest plan. Each budgeted Problem is the given
one with its goal and budgets replaced (:meth:`Problem.replace`; the Problem is built once). The accuracy
limit is the Problem's unless ``max_accuracy_loss`` is given.

Outputs: :class:`ParetoResult` (points with status, makespan, energy, accuracy loss, solve time; the
front), a Figure (front as a staircase with accuracy loss as colour, dominated solver points hollow,
each heuristic with its own marker), and CSV / JSON.

Example
-------
>>> from deepx_opt.solvers.synthetic import chain_problem
>>> from deepx_opt.viz.pareto import pareto_sweep
>>> res = pareto_sweep(chain_problem(4, seed=0, max_accuracy_loss=2.0), sweep="latency", points=3,
...                    heuristics=["heft"], time_limit_s=5)
>>> len(res.budgets), all(p.series == "heft" for p in res.points if p.solver == "heft")
(3, True)
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from deepx_opt.errors import InputError, SolverError
from deepx_opt.viz._common import FIGURE_FORMATS, figure_to_svg, fmt_energy_uj, fmt_time_us, output_format, save_figure

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from deepx_opt.solvers.plan import Plan
    from deepx_opt.solvers.problem import Problem

__all__ = [
    "SWEEPS",
    "ParetoPoint",
    "ParetoResult",
    "pareto_sweep",
    "non_dominated",
    "pareto_figure",
    "save_pareto",
    "pareto_svg",
    "describe",
]

#: What a sweep varies: the latency budget (minimising energy) or the energy budget (minimising latency).
SWEEPS = ("latency", "energy")
_FORMAT = "deepx_opt.pareto"
_VERSION = 1
_CSV_FIELDS = ("series", "solver", "budget_kind", "budget", "status", "makespan_us", "energy_uj",
               "accuracy_loss", "objective", "gap", "solve_time_s", "on_front", "message")


@dataclass(frozen=True)
class ParetoPoint:
    """One solve of the sweep.

    ``series`` is ``"front"`` (a non-dominated point of the sweep's solver), ``"duplicate"`` (the same
    totals as a front point, found again at another budget), ``"dominated"`` (another of its plans that a
    front point beats: a solve that was not proven optimal), ``"no plan"`` (infeasible or unknown), or the
    heuristic's name. ``budget`` is in µs (latency sweep) or µJ (energy sweep); None for a heuristic's
    extra solve without the swept budget.
    """

    series: str
    solver: str
    budget_kind: str
    budget: float | None
    status: str
    makespan_us: float | None
    energy_uj: float | None
    accuracy_loss: float | None
    objective: float | None
    gap: float | None
    solve_time_s: float
    on_front: bool = False
    message: str = ""

    @property
    def has_plan(self) -> bool:
        return self.makespan_us is not None and self.energy_uj is not None


@dataclass
class ParetoResult:
    """Everything a sweep found; see :func:`pareto_sweep`."""

    problem_name: str
    sweep: str
    solver: str
    budgets: list[float]
    points: list[ParetoPoint]
    max_accuracy_loss: float | None
    heuristics: list[str] = field(default_factory=list)
    solve_time_s: float = 0.0

    @property
    def front(self) -> list[ParetoPoint]:
        """The solver's non-dominated points, by increasing makespan (decreasing energy)."""
        return sorted((p for p in self.points if p.on_front), key=lambda p: (p.makespan_us, p.energy_uj))

    def series(self, name: str) -> list[ParetoPoint]:
        return [p for p in self.points if p.series == name]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "problem_name": self.problem_name,
            "sweep": self.sweep,
            "solver": self.solver,
            "heuristics": list(self.heuristics),
            "max_accuracy_loss": self.max_accuracy_loss,
            "budgets": list(self.budgets),
            "budget_unit": "us" if self.sweep == "latency" else "uJ",
            "solve_time_s": self.solve_time_s,
            "points": [asdict(p) for p in self.points],
            "front": [asdict(p) for p in self.front],
        }

    def to_json(self, *, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ParetoResult":
        if d.get("format") != _FORMAT or d.get("version") != _VERSION:
            raise InputError(
                f"not a deepx_opt Pareto result: format={d.get('format')!r} version={d.get('version')!r}; "
                f"expected {_FORMAT!r} version {_VERSION}"
            )
        return cls(d["problem_name"], d["sweep"], d["solver"], list(d["budgets"]),
                   [ParetoPoint(**p) for p in d["points"]], d.get("max_accuracy_loss"),
                   list(d.get("heuristics", [])), float(d.get("solve_time_s", 0.0)))

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=_CSV_FIELDS, lineterminator="\n")
        w.writeheader()
        for p in self.points:
            row = asdict(p)
            w.writerow({k: ("" if row[k] is None else row[k]) for k in _CSV_FIELDS})
        return buf.getvalue()


def non_dominated(points: Sequence[tuple[float, float]], *, rel_tol: float = 1e-9) -> list[int]:
    """Indices of the points ``(latency, energy)`` that no other point dominates (both ≤, one <),
    keeping one of several equal points (the first).

    >>> non_dominated([(1, 5), (2, 3), (3, 3), (2, 4), (4, 1), (1, 5)])
    [0, 1, 4]
    """

    def le(a: float, b: float) -> bool:
        return a <= b + rel_tol * max(abs(a), abs(b), 1.0)

    def eq(a: float, b: float) -> bool:
        return le(a, b) and le(b, a)

    keep = []
    for i, (li, ei) in enumerate(points):
        dominated = False
        for j, (lj, ej) in enumerate(points):
            if i == j:
                continue
            if le(lj, li) and le(ej, ei):
                if eq(lj, li) and eq(ej, ei):
                    if j < i:  # a duplicate of an earlier point
                        dominated = True
                        break
                else:
                    dominated = True
                    break
        if not dominated:
            keep.append(i)
    return keep


def _point(plan: "Plan", series: str, kind: str, budget: float | None) -> ParetoPoint:
    has = plan.status.has_plan
    return ParetoPoint(
        series=series if has or series != "front" else "no plan",
        solver=plan.solver,
        budget_kind=kind,
        budget=None if budget is None else float(budget),
        status=plan.status.value,
        makespan_us=plan.makespan_us if has else None,
        energy_uj=plan.energy_uj if has else None,
        accuracy_loss=plan.accuracy_loss if has else None,
        objective=plan.objective if has else None,
        gap=plan.gap,
        solve_time_s=float(plan.solve_time_s),
        message=plan.message,
    )


def _same(a: float, b: float, rel_tol: float = 1e-9) -> bool:
    return abs(a - b) <= rel_tol * max(abs(a), abs(b), 1.0)


def _budgets(lo: float, hi: float, n: int) -> list[float]:
    if n == 1 or hi <= lo * (1 + 1e-9):
        return [hi]
    return [lo + (hi - lo) * i / (n - 1) for i in range(n)]


def pareto_sweep(
    problem: "Problem",
    *,
    sweep: str = "latency",
    points: int = 8,
    solver: str = "cpsat",
    heuristics: Sequence[str] | None = None,
    time_limit_s: float = 10.0,
    max_accuracy_loss: float | None = None,
    progress: Callable[[int, int, ParetoPoint], None] | None = None,
) -> ParetoResult:
    """Solve ``points`` budgets between the two extremes of the trade-off.

    Parameters
    ----------
    problem : Problem
        Any goal and budgets; they are replaced by the sweep's (memory limits stay).
    sweep : {"latency", "energy"}
        ``"latency"``: least energy under latency budgets; ``"energy"``: least makespan under energy budgets.
    points : int
        Number of budgets (≥ 1), evenly spaced from the tightest achievable to the loosest useful one.
    solver : str
        Registry name of the solver of the front (default CP-SAT).
    heuristics : list of str, optional
        Registry names plotted beside it; default every heuristic the registry has for the Problem.
    time_limit_s : float
        Per solve.
    max_accuracy_loss : float, optional
        Accuracy limit (points) of every solve; default the Problem's.
    progress : callable(done, total, point), optional
        Called after each budget is solved by the solver (``done`` counts from 1).

    Raises
    ------
    InputError
        On a bad ``sweep`` or ``points``.
    InfeasiblePlanError
        When not even the unbudgeted problem (accuracy limit and memory only) has a plan.
    """
    from deepx_opt.errors import InfeasiblePlanError
    from deepx_opt.solvers import get_solver, list_solvers
    from deepx_opt.solvers.plan import rounding_bounds

    if sweep not in SWEEPS:
        raise InputError(f"sweep {sweep!r} is unknown; expected one of {list(SWEEPS)}")
    if not isinstance(points, int) or points < 1:
        raise InputError(f"points={points!r}; expected an integer >= 1")
    acc = problem.max_accuracy_loss if max_accuracy_loss is None else float(max_accuracy_loss)
    if heuristics is None:
        heuristics = list_solvers(problem, kind="heuristic")
    main = get_solver(solver)  # unknown names raise SolverError here, before any solve
    hsolvers = [get_solver(h) for h in heuristics]
    t_start = time.perf_counter()
    base = problem.replace(latency_budget_us=None, energy_budget_uj=None, max_accuracy_loss=acc)
    fastest = main.solve(base.replace(goal="min_latency"), time_limit_s=time_limit_s)
    greenest = main.solve(base.replace(goal="min_energy"), time_limit_s=time_limit_s)
    if not (fastest.status.has_plan and greenest.status.has_plan):
        bad = fastest if not fastest.status.has_plan else greenest
        if bad.status.value == "INFEASIBLE":
            raise InfeasiblePlanError(
                f"problem {problem.name!r} has no plan even without latency/energy budgets "
                f"(accuracy limit {acc} points, memory limits): {bad.message}"
            )
        raise SolverError(f"solver {solver!r} found no plan for problem {problem.name!r} within "
                          f"{time_limit_s:g} s ({bad.message}); raise time_limit_s")
    rb = rounding_bounds(base)
    if sweep == "latency":
        # grid objective of the fastest plan: the tightest budget that is feasible on the grid
        lo, hi = fastest.objective, greenest.makespan_us + rb["time_us"]
        goal, key = "min_energy", "latency_budget_us"
    else:
        lo, hi = greenest.objective, fastest.energy_uj + rb["energy_uj"]
        goal, key = "min_latency", "energy_budget_uj"
    budgets = _budgets(lo, max(lo, hi), points)
    pts: list[ParetoPoint] = []
    for i, b in enumerate(budgets):
        prob_b = base.replace(goal=goal, **{key: b})
        sp = _point(main.solve(prob_b, time_limit_s=time_limit_s), "front", sweep, b)
        pts.append(sp)
        for h in hsolvers:
            if h.supports(prob_b) is not None:
                continue
            pts.append(_point(h.solve(prob_b, time_limit_s=time_limit_s), h.name, sweep, b))
        if progress is not None:
            progress(i + 1, len(budgets), sp)
    # each heuristic once more without the swept budget: where the baseline lands when not held to one
    # (a budget-blind heuristic such as cpu_only is often slower than every budget of the sweep)
    free = base.replace(goal=goal)
    for h in hsolvers:
        if h.supports(free) is None:
            pts.append(_point(h.solve(free, time_limit_s=time_limit_s), h.name, sweep, None))
    # the front: non-dominated solver points; the rest of the solver's plans are "dominated"
    idx = [i for i, p in enumerate(pts) if p.solver == main.name and p.series == "front"]
    xy = [(pts[i].makespan_us, pts[i].energy_uj) for i in idx]
    keep = {idx[k] for k in non_dominated(xy)}
    front_xy = [(pts[i].makespan_us, pts[i].energy_uj) for i in sorted(keep)]
    out = []
    for i, p in enumerate(pts):
        if i in idx:
            if i in keep:
                series = "front"
            elif any(_same(pts[i].makespan_us, fx) and _same(pts[i].energy_uj, fy) for fx, fy in front_xy):
                series = "duplicate"  # the same plan found again at a looser budget
            else:
                series = "dominated"
            p = ParetoPoint(**{**asdict(p), "series": series, "on_front": i in keep})
        out.append(p)
    return ParetoResult(problem.name, sweep, main.name, budgets, out, acc, [h.name for h in hsolvers],
                        time.perf_counter() - t_start)


_MARKERS = ("X", "^", "s", "D", "v", "P", "<", ">", "*", "h")


def _draw(ax, result: ParetoResult, *, ts: float, es: float, norm, cmap, gid_suffix: str = "") -> None:
    """Front, dominated solver points and heuristics on one Axes."""
    front = result.front
    if front:
        xs = [p.makespan_us / ts for p in front]
        ys = [p.energy_uj / es for p in front]
        ax.step(xs, ys, where="post", color="#333333", lw=1.2, zorder=2, label=f"{result.solver} front")
        sc = ax.scatter(xs, ys, c=[p.accuracy_loss or 0.0 for p in front], cmap=cmap, norm=norm, s=70,
                        edgecolors="black", linewidths=0.9, zorder=4)
        sc.set_gid("series-front" + gid_suffix)
    dom = [p for p in result.points if p.series == "dominated"]
    if dom:
        sc = ax.scatter([p.makespan_us / ts for p in dom], [p.energy_uj / es for p in dom], s=40,
                        facecolors="none", edgecolors="#888888", zorder=3, label=f"{result.solver}, dominated")
        sc.set_gid("series-dominated" + gid_suffix)
    for k, name in enumerate(result.heuristics):
        seen = set()
        uniq = []
        for p in result.series(name):  # a budget-blind heuristic gives one plan at every budget: plot it once
            key = (round(p.makespan_us, 6), round(p.energy_uj, 6)) if p.has_plan else None
            if key is not None and key not in seen:
                seen.add(key)
                uniq.append(p)
        if not uniq:
            continue
        sc = ax.scatter([p.makespan_us / ts for p in uniq], [p.energy_uj / es for p in uniq],
                        c=[p.accuracy_loss or 0.0 for p in uniq], cmap=cmap, norm=norm,
                        marker=_MARKERS[k % len(_MARKERS)], s=55, edgecolors="#C0392B", linewidths=0.8,
                        zorder=5, label=name)
        sc.set_gid(f"series-{name}{gid_suffix}")
    ax.tick_params(labelsize=8)
    ax.grid(color="#E5E5E5", lw=0.6)
    ax.set_axisbelow(True)


def _log_axes(ax, pts: Sequence[ParetoPoint]) -> None:
    """Logarithmic axes where the points span more than 8×, with plain tick labels."""
    from matplotlib import ticker

    for vals, axis, setter in (([p.makespan_us for p in pts], ax.xaxis, ax.set_xscale),
                               ([p.energy_uj for p in pts], ax.yaxis, ax.set_yscale)):
        lo = min(vals)
        if lo > 0 and max(vals) / lo > 8:
            setter("log")
            axis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(ticker.FormatStrFormatter("%g"))
            axis.set_minor_formatter(ticker.NullFormatter())


def pareto_figure(result: ParetoResult, *, title: str | None = None) -> "Figure":
    """Energy (y) against makespan (x): the front as a staircase, points coloured by accuracy loss.

    When the heuristics land far from the front (the plot spans more than 3× the front's extent on an
    axis), a second panel zooms on the front, with the points that fall in it.
    """
    import matplotlib
    from matplotlib.figure import Figure

    pts = [p for p in result.points if p.has_plan]
    if not pts:
        raise InputError(f"Pareto result for {result.problem_name!r} has no plans to plot")
    t_max = max(p.makespan_us for p in pts)
    e_max = max(p.energy_uj for p in pts)
    tu, ts = ("ms", 1e3) if t_max >= 2e3 else ("µs", 1.0)
    eu, es = ("mJ", 1e3) if e_max >= 2e3 else ("µJ", 1.0)
    # colour scale from no loss to the limit (or the largest loss seen): comparable between sweeps
    top = max([p.accuracy_loss or 0.0 for p in pts] + [result.max_accuracy_loss or 0.0])
    norm = matplotlib.colors.Normalize(vmin=0.0, vmax=top if top > 0 else 1.0)
    cmap = matplotlib.colormaps["viridis"]
    front = result.front

    zoom = None
    if front:
        fx = [p.makespan_us for p in front]
        fy = [p.energy_uj for p in front]
        wx = max(max(fx) - min(fx), 0.02 * max(fx))
        wy = max(max(fy) - min(fy), 0.02 * max(fy))
        allx = [p.makespan_us for p in pts]
        ally = [p.energy_uj for p in pts]
        if (max(allx) - min(allx)) > 3 * wx or (max(ally) - min(ally)) > 3 * wy:
            zoom = ((min(fx) - 0.25 * wx) / ts, (max(fx) + 0.25 * wx) / ts,
                    (min(fy) - 0.25 * wy) / es, (max(fy) + 0.25 * wy) / es)

    fig = Figure(figsize=(12.5 if zoom else 8.0, 5.6), layout="constrained")
    axes = fig.subplots(1, 2 if zoom else 1, squeeze=False)[0]
    ax = axes[0]
    _draw(ax, result, ts=ts, es=es, norm=norm, cmap=cmap)
    _log_axes(ax, pts)
    ax.legend(fontsize=7.5, loc="best", frameon=True)
    what = "latency budget" if result.sweep == "latency" else "energy budget"
    acc = "" if result.max_accuracy_loss is None else f", accuracy loss ≤ {result.max_accuracy_loss:g} pts"
    ax.set_title(title or f"{result.problem_name}: energy vs latency\n{result.solver} on {len(result.budgets)} "
                 f"{what}s{acc}", fontsize=9.5)
    if zoom:
        az = axes[1]
        _draw(az, result, ts=ts, es=es, norm=norm, cmap=cmap, gid_suffix="-zoom")
        az.set_xlim(zoom[0], zoom[1])
        az.set_ylim(zoom[2], zoom[3])
        az.set_title("the front, close up", fontsize=9.5)
        from matplotlib.patches import Rectangle

        ax.add_patch(Rectangle((zoom[0], zoom[2]), zoom[1] - zoom[0], zoom[3] - zoom[2], fill=False,
                               ec="#555555", lw=0.8, ls=":", zorder=1))
    for a in axes:
        a.set_xlabel(f"makespan ({tu})", fontsize=9)
        a.set_ylabel(f"energy ({eu})", fontsize=9)
    cb = fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=list(axes))
    cb.set_label("accuracy loss (points)", fontsize=8)
    cb.ax.tick_params(labelsize=7.5)
    return fig


def pareto_svg(result: ParetoResult, *, inline: bool = False) -> str:
    return figure_to_svg(pareto_figure(result), inline=inline, id_prefix="pareto-" if inline else "",
                         keep_ids=("series-",))


def save_pareto(result: ParetoResult, path: str | Path, *, dpi: int = 110) -> dict[str, Path]:
    """Write the picture to ``path`` (``.png`` or ``.svg``) and ``.csv`` / ``.json`` beside it (same stem).

    Returns the three paths by kind (``"figure"``, ``"csv"``, ``"json"``).
    """
    p = Path(path)
    output_format(p, FIGURE_FORMATS)
    save_figure(pareto_figure(result), p, dpi=dpi)
    csv_p, json_p = p.with_suffix(".csv"), p.with_suffix(".json")
    csv_p.write_text(result.to_csv(), encoding="utf-8")
    json_p.write_text(result.to_json(), encoding="utf-8")
    return {"figure": p, "csv": csv_p, "json": json_p}


def describe(point: ParetoPoint) -> str:
    """One progress line: ``latency ≤ 1.20 ms: 3.4 mJ, 1.1 ms, acc 0.8 pts (OPTIMAL, 0.21 s)``."""
    if point.budget is None:
        b = "∞"
    else:
        b = fmt_time_us(point.budget) if point.budget_kind == "latency" else fmt_energy_uj(point.budget)
    if not point.has_plan:
        return f"{point.budget_kind} ≤ {b}: no plan ({point.status}, {point.solve_time_s:.2f} s)"
    return (f"{point.budget_kind} ≤ {b}: {fmt_energy_uj(point.energy_uj)}, {fmt_time_us(point.makespan_us)}, "
            f"accuracy loss {point.accuracy_loss:.3g} pts ({point.status}, {point.solve_time_s:.2f} s)")

