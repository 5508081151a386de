"""Heuristic planners: baselines the MILP is compared against, and its warm start.

* :class:`SingleProcessor` (``"<processor>_only"``): every layer at full rank on one processor — the
  paper's "CPU only", "GPU only", "Cloud only" rows.
* :class:`GreedyCompression` (``"greedy_compression"``): the cheapest single processor, then lower ranks
  by best saving per accuracy point lost until the budgets (and memory) hold, then further while the
  objective improves within the accuracy limit.
* :class:`Heft` (``"heft"``): HEFT (Topcuoglu, Hariri & Wu, IEEE TPDS 2002) — upward-rank priority,
  insertion-based earliest-finish-time processor choice — with a greedy rank choice (see :class:`Heft`).
* :class:`Neurosurgeon` (``"neurosurgeon"``): the best split point of the topological order between a
  local processor and a remote one (Kang et al., ASPLOS 2017), every layer at full rank.

Every heuristic decides on the integer grid, returns a FEASIBLE plan (never OPTIMAL: nothing is proven)
or an INFEASIBLE one whose message says what its plan violated.
"""

from __future__ import annotations

from typing import Any, Sequence

from deepx_opt.solvers.base import Solver
from deepx_opt.solvers.plan import Evaluation, Plan, Status, empty_plan, evaluate
from deepx_opt.solvers.problem import Grid, Problem

__all__ = ["SingleProcessor", "GreedyCompression", "Heft", "Neurosurgeon", "best_heuristic_plan", "upward_ranks"]


def _dense_on(g: Grid, v: int, p: int, goal: str) -> int | None:
    """Index of the full-rank option of layer v on processor p (cheapest by the goal), or None."""
    best = None
    for k, q in enumerate(g.opt_proc[v]):
        if q == p and g.dense[v][k]:
            key = (g.energy[v][k], g.dur[v][k]) if goal == "min_energy" else (g.dur[v][k], g.energy[v][k])
            if best is None or key < best[0]:
                best = (key, k)
    return None if best is None else best[1]


def _least_loss_on(g: Grid, v: int, p: int) -> int | None:
    """Full-rank option on p if any, else the option on p with the least accuracy loss."""
    cands = [k for k, q in enumerate(g.opt_proc[v]) if q == p]
    if not cands:
        return None
    return min(cands, key=lambda k: (not g.dense[v][k], g.acc[v][k], g.dur[v][k]))


class SingleProcessor(Solver):
    """Every layer at full rank on ``processor``; INFEASIBLE when a layer has no full-rank option there
    or the plan breaks memory, a budget or the accuracy limit."""

    exact = False

    def __init__(self, processor: str):
        self.processor = processor
        self.name = f"{processor}_only"
        self.description = f"every layer at full rank on {processor}"

    def supports(self, problem: Problem) -> str | None:
        if self.processor not in problem.processor_index:
            return f"it has no processor {self.processor!r} (processors: {list(problem.processor_index)})"
        return None

    def _solve(self, problem: Problem, *, time_limit_s: float, **_: Any) -> Plan:
        g = problem.grid
        p = problem.processor_index[self.processor]
        choice = []
        for v in range(g.n):
            k = _dense_on(g, v, p, g.goal)
            if k is None:
                return empty_plan(
                    problem, solver=self.name, status=Status.INFEASIBLE,
                    message=f"layer {g.names[v]!r} has no full-rank option on {self.processor!r}",
                )
            choice.append(k)
        return evaluate(problem, choice).to_plan(self.name)


def _violation(g: Grid, ev: Evaluation) -> float:
    """Sum of relative excesses over the budgets, the accuracy limit and memory capacities."""
    t = ev.totals
    v = 0.0
    if g.latency_budget is not None and t.makespan > g.latency_budget:
        v += (t.makespan - g.latency_budget) / max(g.latency_budget, 1)
    if g.energy_budget is not None and t.energy > g.energy_budget:
        v += (t.energy - g.energy_budget) / max(g.energy_budget, 1)
    if g.acc_limit is not None and t.acc > g.acc_limit:
        v += (t.acc - g.acc_limit) / max(g.acc_limit, 1)
    for p, cap in enumerate(g.cap):
        if cap is not None and t.mem[p] > cap:
            v += (t.mem[p] - cap) / max(cap, 1)
    return v


class GreedyCompression(Solver):
    """DeepX-style greedy: cheapest processor at full rank, then compress.

    For each processor that can run every layer (in order of its full-rank objective): phase 1 switches,
    one layer at a time, to another rank on the same processor, taking the switch with the best
    reduction of the budget/memory violation per accuracy point lost, until every constraint holds;
    phase 2 then keeps taking the best objective saving per accuracy point while the accuracy limit holds
    and the (recomputed) objective improves. The best feasible result over the processors is returned.
    """

    name = "greedy_compression"
    description = "cheapest processor at full rank, then lower ranks by best saving per accuracy point"

    def _solve(self, problem: Problem, *, time_limit_s: float, **_: Any) -> Plan:
        g = problem.grid
        starts = []
        for p in range(len(g.procs)):
            choice = [_least_loss_on(g, v, p) for v in range(g.n)]
            if any(k is None for k in choice):
                continue
            starts.append((evaluate(problem, choice).objective_grid, p, choice))
        if not starts:
            return empty_plan(problem, solver=self.name, status=Status.INFEASIBLE,
                              message="no single processor has an option for every layer")
        best: Evaluation | None = None
        last = None
        for _, p, choice in sorted(starts):
            ev = self._compress(problem, choice)
            last = ev
            if ev.feasible and (best is None or ev.objective_grid < best.objective_grid):
                best = ev
        return (best or last).to_plan(self.name)

    def _compress(self, problem: Problem, choice: list[int]) -> Evaluation:
        g = problem.grid
        ev = evaluate(problem, choice)
        tabu: set[tuple[int, int]] = set()
        # phase 1: reach feasibility
        while not ev.feasible:
            viol = _violation(g, ev)
            best = None
            for v in range(g.n):
                k0 = choice[v]
                for k, p in enumerate(g.opt_proc[v]):
                    if p != g.opt_proc[v][k0] or k == k0 or (v, k) in tabu:
                        continue
                    dacc_raw = g.acc[v][k] - g.acc[v][k0]
                    if g.acc_limit is not None and dacc_raw > 0 and ev.totals.acc + dacc_raw > g.acc_limit:
                        continue  # never buy a budget with a broken accuracy limit
                    gain = self._estimated_relief(g, ev, v, k0, k)
                    if gain <= 0:
                        continue
                    dacc = max(g.acc[v][k] - g.acc[v][k0], 0) + 1
                    score = gain / dacc
                    if best is None or score > best[0]:
                        best = (score, v, k)
            if best is None:
                return ev
            _, v, k = best
            trial = list(choice)
            trial[v] = k
            ev2 = evaluate(problem, trial)
            if _violation(g, ev2) < viol:
                choice, ev = trial, ev2
            else:
                tabu.add((v, k))
        # phase 2: spend the remaining accuracy budget on the objective
        tabu.clear()
        while True:
            best = None
            for v in range(g.n):
                k0 = choice[v]
                for k, p in enumerate(g.opt_proc[v]):
                    if p != g.opt_proc[v][k0] or k == k0 or (v, k) in tabu:
                        continue
                    if g.acc_limit is not None and ev.totals.acc - g.acc[v][k0] + g.acc[v][k] > g.acc_limit:
                        continue
                    if g.goal == "min_energy":
                        saving = g.energy[v][k0] - g.energy[v][k]
                    else:
                        saving = g.dur[v][k0] - g.dur[v][k]
                    if saving <= 0:
                        continue
                    score = saving / (max(g.acc[v][k] - g.acc[v][k0], 0) + 1)
                    if best is None or score > best[0]:
                        best = (score, v, k)
            if best is None:
                return ev
            _, v, k = best
            trial = list(choice)
            trial[v] = k
            ev2 = evaluate(problem, trial)
            if ev2.feasible and ev2.objective_grid < ev.objective_grid:
                choice, ev = trial, ev2
            else:
                tabu.add((v, k))

    @staticmethod
    def _estimated_relief(g: Grid, ev: Evaluation, v: int, k0: int, k: int) -> float:
        """Estimated drop of the relative violation when layer v switches option k0 → k (same processor)."""
        t = ev.totals
        gain = 0.0
        if g.latency_budget is not None and t.makespan > g.latency_budget:
            gain += min(g.dur[v][k0] - g.dur[v][k], t.makespan - g.latency_budget) / max(g.latency_budget, 1)
        if g.energy_budget is not None and t.energy > g.energy_budget:
            gain += min(g.energy[v][k0] - g.energy[v][k], t.energy - g.energy_budget) / max(g.energy_budget, 1)
        if g.acc_limit is not None and t.acc > g.acc_limit:
            gain += min(g.acc[v][k0] - g.acc[v][k], t.acc - g.acc_limit) / max(g.acc_limit, 1)
        p = g.opt_proc[v][k0]
        cap = g.cap[p]
        if cap is not None and t.mem[p] > cap:
            gain += min(g.weight[v][k0] - g.weight[v][k], t.mem[p] - cap) / max(cap, 1)
        return gain


def upward_ranks(g: Grid, cands: Sequence[Sequence[int | None]]) -> list[float]:
    """HEFT upward rank: rank(v) = w̄_v + max over successors s of (c̄_(v,s) + rank(s)).

    w̄_v is the mean duration of v's candidate options over the processors that have one; c̄_e is the mean
    transfer time of edge e over ordered pairs of distinct processors (Topcuoglu's L̄ + data/B̄).
    """
    np_ = len(g.procs)
    wbar = []
    for v in range(g.n):
        ds = [g.dur[v][k] for k in cands[v] if k is not None]
        wbar.append(sum(ds) / len(ds))
    cbar = []
    for e in range(len(g.edges)):
        pairs = [g.ttime[e][p][q] for p in range(np_) for q in range(np_) if p != q]
        cbar.append(sum(pairs) / len(pairs) if pairs else 0.0)
    rank = [0.0] * g.n
    for v in reversed(range(g.n)):
        rank[v] = wbar[v] + max((cbar[e] + rank[s] for s, e in g.succs[v]), default=0.0)
    return rank


class Heft(Solver):
    """HEFT with a greedy rank choice.

    Rank choice: the accuracy limit is shared among layers in proportion to their mean full-rank
    duration; on each processor a layer's candidate is its fastest option whose loss fits its share (the
    least-loss option on that processor if none fits; the fastest option when there is no limit). Then
    classic HEFT: layers by decreasing upward rank (ties: layer order), each placed on the processor giving
    the earliest finish among those whose memory still holds the layer (all, if none does) (plus its output transfer to the host, if it produces model outputs), using the
    earliest idle slot that fits (insertion policy). Ties go to the processor listed first.
    """

    name = "heft"
    description = "HEFT list scheduling (Topcuoglu 2002) with a greedy rank choice"

    def candidates(self, g: Grid) -> list[list[int | None]]:
        np_ = len(g.procs)
        share = None
        if g.acc_limit is not None:
            mean_dense = []
            for v in range(g.n):
                ds = [g.dur[v][k] for k in range(len(g.dur[v])) if g.dense[v][k]] or g.dur[v]
                mean_dense.append(sum(ds) / len(ds))
            tot = sum(mean_dense) or 1.0
            share = [g.acc_limit * w / tot for w in mean_dense]
        cands: list[list[int | None]] = []
        for v in range(g.n):
            row: list[int | None] = []
            for p in range(np_):
                ks = [k for k, q in enumerate(g.opt_proc[v]) if q == p]
                if not ks:
                    row.append(None)
                    continue
                fit = ks if share is None else [k for k in ks if g.acc[v][k] <= share[v]]
                if fit:
                    row.append(min(fit, key=lambda k: (g.dur[v][k], g.energy[v][k], k)))
                else:
                    row.append(min(ks, key=lambda k: (g.acc[v][k], g.dur[v][k], k)))
            cands.append(row)
        return cands

    def schedule(self, g: Grid) -> tuple[list[int], list[int], list[float], list[int]]:
        """Return (choice, start, upward ranks, placement order) on the grid."""
        cands = self.candidates(g)
        rank = upward_ranks(g, cands)
        order = sorted(range(g.n), key=lambda v: (-round(rank[v], 6), v))  # float noise must not break ties
        busy: list[list[tuple[int, int]]] = [[] for _ in g.procs]  # sorted (start, finish)
        choice = [0] * g.n
        start = [0] * g.n
        finish = [0] * g.n
        mem_w = [0] * len(g.procs)
        mem_ws = [0] * len(g.procs)
        for v in order:
            best = None
            fits_any = any(
                k is not None and self._fits(g, p, k, v, mem_w, mem_ws) for p, k in enumerate(cands[v])
            )
            for p, k in enumerate(cands[v]):
                if k is None or (fits_any and not self._fits(g, p, k, v, mem_w, mem_ws)):
                    continue
                ready = g.in_time[v][p]
                for u, e in g.preds[v]:
                    ready = max(ready, finish[u] + g.ttime[e][g.opt_proc[u][choice[u]]][p])
                d = g.dur[v][k]
                s = ready
                for bs, bf in (busy[p] if d > 0 else ()):  # earliest gap of length d at or after `ready`
                    if s + d <= bs:
                        break
                    s = max(s, bf)
                eft = s + d + g.out_time[v][p]
                if best is None or eft < best[0]:
                    best = (eft, p, k, s)
            _, p, k, s = best
            mem_w[p] += g.weight[v][k]
            mem_ws[p] = max(mem_ws[p], g.workspace[v][k])
            choice[v], start[v], finish[v] = k, s, s + g.dur[v][k]
            busy[p].append((s, finish[v]))
            busy[p].sort()
        return choice, start, rank, order

    @staticmethod
    def _fits(g: Grid, p: int, k: int, v: int, mem_w: list[int], mem_ws: list[int]) -> bool:
        cap = g.cap[p]
        return cap is None or mem_w[p] + g.weight[v][k] + max(mem_ws[p], g.workspace[v][k]) <= cap

    def _solve(self, problem: Problem, *, time_limit_s: float, **_: Any) -> Plan:
        choice, start, _, _ = self.schedule(problem.grid)
        return evaluate(problem, choice, start=start).to_plan(self.name)


class Neurosurgeon(Solver):
    """Best split of the layer order between a local processor and a remote one.

    For every local processor L, every processor R of kind ``"remote"`` and every split k = 0..n, the
    first k layers (in the Problem's topological order) run on L and the rest on R, all at full rank
    (least-loss option where a layer has no full-rank one). The feasible split with the best objective
    wins (k = n is "all local", k = 0 "all remote").
    """

    name = "neurosurgeon"
    description = "best local/remote split point (Neurosurgeon, ASPLOS 2017), full rank"

    def _solve(self, problem: Problem, *, time_limit_s: float, **_: Any) -> Plan:
        g = problem.grid
        remotes = [i for i, p in enumerate(problem.processors) if p.kind == "remote"]
        locals_ = [i for i, p in enumerate(problem.processors) if p.kind != "remote"]
        if not remotes or not locals_:
            return empty_plan(
                problem, solver=self.name, status=Status.INFEASIBLE,
                message="needs a processor of kind 'remote' and a local one; kinds are "
                + str({p.name: p.kind for p in problem.processors}),
            )
        best: Evaluation | None = None
        tried = 0
        for lo in locals_:
            for r in remotes:
                loc = [_least_loss_on(g, v, lo) for v in range(g.n)]
                rem = [_least_loss_on(g, v, r) for v in range(g.n)]
                for k in range(g.n + 1):
                    choice = loc[:k] + rem[k:]
                    if any(c is None for c in choice):
                        continue
                    tried += 1
                    ev = evaluate(problem, choice)
                    if ev.feasible and (best is None or ev.objective_grid < best.objective_grid):
                        best = ev
        if best is None:
            return empty_plan(problem, solver=self.name, status=Status.INFEASIBLE,
                              message=f"none of the {tried} local/remote splits meets the constraints")
        return best.to_plan(self.name)


def best_heuristic_plan(problem: Problem, *, names: Sequence[str] | None = None) -> Plan | None:
    """The feasible heuristic plan with the best objective (None when no heuristic finds one)."""
    solvers: list[Solver] = [GreedyCompression(), Heft(), Neurosurgeon()]
    solvers += [SingleProcessor(p.name) for p in problem.processors]
    if names is not None:
        solvers = [s for s in solvers if s.name in names]
    best = None
    for s in solvers:
        plan = s.solve(problem, time_limit_s=60.0)
        if plan.status.has_plan and (best is None or plan.objective < best.objective):
            best = plan
    return best
