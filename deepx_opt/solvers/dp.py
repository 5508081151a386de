"""Exact dynamic program for chains (a third opinion beside the two MILPs).

On a chain ``l0 -> l1 -> ... -> ln`` every layer waits for its predecessor, so a plan is a sequence of
options and its schedule is forced: ``finish_i = max(finish_(i-1) + T(p_(i-1), p_i), T_in(i)) + dur_i``.
The DP walks the chain keeping, per processor of the last layer, the Pareto set of *labels*
(finish time, latest output arrival, energy, accuracy, memory per capped processor, workspace peak per
capped processor) — only the dimensions the Problem needs. Every quantity is monotone along the chain, so
discarding dominated labels and labels that already break a budget/limit — or will, given the least the
remaining layers add, or cannot beat the best heuristic plan (``incumbent=True``) — is exact; at the end the
best label meeting every constraint wins. All arithmetic is on the integer grid, so the optimum is the very
integer optimum CP-SAT and the MILP find.

With idle energy the energy label is ``1000·E − Σ_p idle_mW_p·busy_p`` (the makespan term is added at
the end), which is exact but no longer monotone, so energy-budget pruning is then done only at the end.
"""

from __future__ import annotations

import bisect
import time
from typing import Any

from deepx_opt.solvers.base import Solver
from deepx_opt.solvers.plan import Plan, Status, empty_plan, make_plan
from deepx_opt.solvers.problem import ENERGY_UNIT_UJ, TIME_UNIT_US, Problem

__all__ = ["ChainDP", "MAX_LABELS"]

#: Upper bound on labels kept per (layer, processor); beyond it the DP gives up (SolverError-free: UNKNOWN).
MAX_LABELS = 200_000


def _pareto(labels: list[tuple]) -> list[tuple]:
    """Keep labels whose key (first item) is not dominated component-wise (≤ everywhere) by another's.

    Sorting by key makes every possible dominator come first; 1–3 dimensions use sweeps (a 2-D staircase
    for three), more dimensions the plain pairwise test.
    """
    labels.sort(key=lambda lb: lb[0])
    if not labels:
        return labels
    dims = len(labels[0][0])
    kept: list[tuple] = []
    if dims == 0:
        return labels[:1]
    if dims == 1:
        return labels[:1]
    if dims == 2:
        best1 = None
        for lb in labels:
            if best1 is None or lb[0][1] < best1:
                kept.append(lb)
                best1 = lb[0][1]
        return kept
    if dims == 3:
        xs: list[int] = []  # staircase over (k1, k2) of kept labels: k1 ascending, k2 strictly descending
        ys: list[int] = []
        for lb in labels:
            _, k1, k2 = lb[0]
            i = bisect.bisect_right(xs, k1)
            if i > 0 and ys[i - 1] <= k2:
                continue  # a kept label has k0 ≤ (sorted), k1 ≤ and k2 ≤
            kept.append(lb)
            j = i
            while j < len(xs) and ys[j] >= k2:  # points now dominated in (k1, k2)
                j += 1
            xs[i:j] = [k1]
            ys[i:j] = [k2]
        return kept
    for lb in labels:
        key = lb[0]
        if not any(all(a <= b for a, b in zip(other[0], key)) for other in kept):
            kept.append(lb)
    return kept


class ChainDP(Solver):
    """Exact Pareto-label DP over the options of a chain (processors, ranks, transfers, budgets)."""

    name = "dp"
    exact = True
    description = "exact Pareto-label dynamic program for chains"

    def supports(self, problem: Problem) -> str | None:
        if not problem.is_chain():
            return "it is not a chain (the DP needs layers l0 -> l1 -> ... in order, one edge between each)"
        return None

    def _solve(self, problem: Problem, *, time_limit_s: float, incumbent: bool = True, **_: Any) -> Plan:
        t0 = time.perf_counter()
        g = problem.grid
        n = g.n
        np_ = len(g.procs)
        use_t = g.goal == "min_latency" or g.latency_budget is not None or g.include_idle
        use_mo = use_t and any(any(g.out_time[v]) for v in range(n - 1))
        use_e = g.goal == "min_energy" or g.energy_budget is not None
        use_acc = g.acc_limit is not None
        capped = [p for p in range(np_) if g.cap[p] is not None]
        idle = g.include_idle and any(g.idle_mw)
        e_mult = 1000 if idle else 1
        # lower bounds on what the layers after v still add (suffix sums of per-layer minima), for exact
        # look-ahead pruning against budgets, the limit and the best heuristic plan's objective
        rem_dur, rem_acc, rem_e = [0] * n, [0] * n, [0] * n
        for v in range(n - 2, -1, -1):
            w = v + 1
            rem_dur[v] = rem_dur[w] + min(g.dur[w])
            rem_acc[v] = rem_acc[w] + min(g.acc[w])
            rem_e[v] = rem_e[w] + min(g.energy[w])
        ub = None
        if incumbent:
            from deepx_opt.solvers.heuristics import best_heuristic_plan

            h = best_heuristic_plan(problem)
            if h is not None:
                ub = int(round(h.objective / (ENERGY_UNIT_UJ if g.goal == "min_energy" else TIME_UNIT_US)))

        # label: (key, t, mo, e, acc, mem(tuple), ws(tuple), parent, k)
        def make_key(t, mo, e, acc, mem, ws):
            key = []
            if use_t:
                key.append(t)
                if use_mo:
                    key.append(mo)
            if use_e:
                key.append(e)
            if use_acc:
                key.append(acc)
            key.extend(mem)
            key.extend(ws)
            return tuple(key)

        layers: list[dict[int, list[tuple]]] = []
        prev: dict[int, list[tuple]] | None = None
        for v in range(n):
            cur: dict[int, list[tuple]] = {}
            for k, p in enumerate(g.opt_proc[v]):
                d = g.dur[v][k]
                base_e = (g.energy[v][k] + g.in_energy[v][p] + g.out_energy[v][p]) * e_mult
                if idle:
                    base_e -= g.idle_mw[p] * d
                cands = []
                if prev is None:
                    iterable = [(None, None, 0, 0, 0, 0, (0,) * len(capped), (0,) * len(capped))]
                else:
                    iterable = [(lb, q) + lb[1:7] for q, lbs in prev.items() for lb in lbs]
                for parent, q, t, mo, e, acc, mem, ws in iterable:
                    e2 = e + base_e
                    if q is not None:
                        ei = g.preds[v][0][1]
                        e2 += g.tenergy[ei][q][p] * e_mult
                        ready = t + g.ttime[ei][q][p]
                    else:
                        ready = 0
                    s = max(ready, g.in_time[v][p])
                    t2 = s + d
                    mo2 = max(mo, t2 + g.out_time[v][p])
                    acc2 = acc + g.acc[v][k]
                    if use_acc and acc2 + rem_acc[v] > g.acc_limit:
                        continue
                    if g.latency_budget is not None and max(mo2, t2 + rem_dur[v]) > g.latency_budget:
                        continue
                    if not idle and g.energy_budget is not None and e2 + rem_e[v] > g.energy_budget:
                        continue
                    if ub is not None:
                        if g.goal == "min_latency" and max(mo2, t2 + rem_dur[v]) > ub:
                            continue
                        if g.goal == "min_energy" and not idle and e2 + rem_e[v] > ub:
                            continue
                    if capped:
                        mem2 = list(mem)
                        ws2 = list(ws)
                        bad = False
                        for i, cp in enumerate(capped):
                            if cp == p:
                                mem2[i] += g.weight[v][k]
                                ws2[i] = max(ws2[i], g.workspace[v][k])
                                if mem2[i] + ws2[i] > g.cap[cp]:
                                    bad = True
                        if bad:
                            continue
                        mem2, ws2 = tuple(mem2), tuple(ws2)
                    else:
                        mem2, ws2 = mem, ws
                    cands.append((make_key(t2, mo2, e2, acc2, mem2, ws2), t2, mo2, e2, acc2, mem2, ws2, parent, k))
                if cands:
                    cur.setdefault(p, []).extend(cands)
            for p in list(cur):
                cur[p] = _pareto(cur[p])
                if len(cur[p]) > MAX_LABELS:
                    return empty_plan(problem, solver=self.name, status=Status.UNKNOWN,
                                      solve_time_s=time.perf_counter() - t0,
                                      message=f"more than {MAX_LABELS} Pareto labels at layer {g.names[v]!r}")
            if time.perf_counter() - t0 > time_limit_s:
                return empty_plan(problem, solver=self.name, status=Status.UNKNOWN,
                                  solve_time_s=time.perf_counter() - t0,
                                  message=f"time limit {time_limit_s:g} s reached at layer {g.names[v]!r}")
            if not cur:
                return empty_plan(problem, solver=self.name, status=Status.INFEASIBLE,
                                  solve_time_s=time.perf_counter() - t0,
                                  message=f"no partial plan up to layer {g.names[v]!r} meets the constraints")
            layers.append(cur)
            prev = cur

        best = None
        ptot = sum(g.idle_mw)
        for p, lbs in prev.items():
            for lb in lbs:
                _, t, mo, e, acc, mem, ws, _, _ = lb
                M = mo
                energy = (-((-(e + ptot * M)) // 1000)) if idle else e
                if g.latency_budget is not None and M > g.latency_budget:
                    continue
                if g.energy_budget is not None and energy > g.energy_budget:
                    continue
                obj = energy if g.goal == "min_energy" else M
                if best is None or obj < best[0]:
                    best = (obj, lb)
        if best is None:
            return empty_plan(problem, solver=self.name, status=Status.INFEASIBLE,
                              solve_time_s=time.perf_counter() - t0,
                              message="no chain plan meets the budgets")
        choice = [0] * n
        lb = best[1]
        v = n - 1
        while lb is not None:
            choice[v] = lb[8]
            lb = lb[7]
            v -= 1
        # the forced schedule of the chain
        start = [0] * n
        fin = 0
        for v in range(n):
            k = choice[v]
            p = g.opt_proc[v][k]
            ready = 0
            if v > 0:
                ei = g.preds[v][0][1]
                ready = fin + g.ttime[ei][g.opt_proc[v - 1][choice[v - 1]]][p]
            start[v] = max(ready, g.in_time[v][p])
            fin = start[v] + g.dur[v][k]
        return make_plan(problem, choice, start, solver=self.name, status=Status.OPTIMAL,
                         solve_time_s=time.perf_counter() - t0)
