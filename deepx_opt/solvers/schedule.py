"""Grid-level scheduling and accounting shared by the heuristics and exact solvers.

Everything here works on :class:`~deepx_opt.solvers.problem.Grid` integers: a *choice* is a list with the
option index of every layer (in the Problem's layer order), a schedule is a list of integer start times.

Schedule semantics (also what the checker verifies in exact arithmetic):

* layer v with option o on processor p occupies p during ``[start_v, start_v + dur_o)``;
* a processor runs one layer at a time; transfers use the links and overlap with compute (no link
  contention is modelled);
* ``start_v >= finish_u + T_e(p_u, p_v)`` for every edge e=(u, v) (T is 0 on the same processor);
* ``start_v >= T_in(host, p_v)`` when v reads model inputs;
* makespan = max over v of ``finish_v + T_out(p_v, host)`` (T_out only when v produces model outputs).

Energy = Σ option energy + Σ transfer energy of edges whose ends are on different processors + model
input/output transfer energy (+ idle energy Σ_p P_idle,p × (makespan − busy_p) when asked for).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Sequence

from deepx_opt.solvers.problem import Grid

__all__ = ["GridTotals", "list_schedule", "grid_totals", "grid_violations", "grid_objective", "topo_order_by"]


@dataclass(frozen=True)
class GridTotals:
    makespan: int
    energy: int  # incl. idle energy when the Problem asks for it
    compute_energy: int
    transfer_energy: int
    idle_energy: int
    acc: int
    mem: tuple[int, ...]  # per processor: Σ weight bytes + max workspace bytes
    busy: tuple[int, ...]


def list_schedule(g: Grid, choice: Sequence[int], order: Sequence[int] | None = None) -> list[int]:
    """Earliest start times when layers are placed in ``order`` (a topological order), each after the
    previous layer on its processor (no insertion). For a fixed choice, some order gives an optimal
    (semi-active) schedule, which is what brute force enumerates."""
    n = g.n
    order = range(n) if order is None else order
    start = [0] * n
    finish = [0] * n
    free = [0] * len(g.procs)
    for v in order:
        k = choice[v]
        p = g.opt_proc[v][k]
        r = g.in_time[v][p]
        for u, e in g.preds[v]:
            t = finish[u] + g.ttime[e][g.opt_proc[u][choice[u]]][p]
            if t > r:
                r = t
        d = g.dur[v][k]
        if d == 0:  # an empty interval occupies no processor time
            start[v] = finish[v] = r
            continue
        s = r if r > free[p] else free[p]
        start[v] = s
        finish[v] = s + d
        free[p] = finish[v]
    return start


def grid_totals(g: Grid, choice: Sequence[int], start: Sequence[int]) -> GridTotals:
    np_ = len(g.procs)
    weight = [0] * np_
    wspace = [0] * np_
    busy = [0] * np_
    makespan = 0
    ce = 0
    te = 0
    acc = 0
    for v in range(g.n):
        k = choice[v]
        p = g.opt_proc[v][k]
        d = g.dur[v][k]
        busy[p] += d
        weight[p] += g.weight[v][k]
        if g.workspace[v][k] > wspace[p]:
            wspace[p] = g.workspace[v][k]
        ce += g.energy[v][k]
        acc += g.acc[v][k]
        te += g.in_energy[v][p] + g.out_energy[v][p]
        f = start[v] + d + g.out_time[v][p]
        if f > makespan:
            makespan = f
    for e, (u, v) in enumerate(g.edges):
        te += g.tenergy[e][g.opt_proc[u][choice[u]]][g.opt_proc[v][choice[v]]]
    idle = g.idle_units(makespan, busy)
    return GridTotals(
        makespan=makespan,
        energy=ce + te + idle,
        compute_energy=ce,
        transfer_energy=te,
        idle_energy=idle,
        acc=acc,
        mem=tuple(weight[p] + wspace[p] for p in range(np_)),
        busy=tuple(busy),
    )


def grid_violations(g: Grid, t: GridTotals) -> list[str]:
    """Which budgets / limits a grid solution breaks (names only; empty = feasible)."""
    out = []
    if g.latency_budget is not None and t.makespan > g.latency_budget:
        out.append("latency")
    if g.energy_budget is not None and t.energy > g.energy_budget:
        out.append("energy")
    if g.acc_limit is not None and t.acc > g.acc_limit:
        out.append("accuracy")
    for p, cap in enumerate(g.cap):
        if cap is not None and t.mem[p] > cap:
            out.append(f"memory:{g.procs[p]}")
    return out


def grid_objective(g: Grid, t: GridTotals) -> int:
    return t.energy if g.goal == "min_energy" else t.makespan


def topo_order_by(g: Grid, key: Sequence[float]) -> list[int]:
    """A topological order that takes ready layers by ascending ``key`` (ties: layer index)."""
    indeg = [len(g.preds[v]) for v in range(g.n)]
    heap = [(key[v], v) for v in range(g.n) if indeg[v] == 0]
    heapq.heapify(heap)
    order = []
    while heap:
        _, v = heapq.heappop(heap)
        order.append(v)
        for w, _e in g.succs[v]:
            indeg[w] -= 1
            if indeg[w] == 0:
                heapq.heappush(heap, (key[w], w))
    return order
