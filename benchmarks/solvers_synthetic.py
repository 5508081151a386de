"""Exact solvers vs heuristics on generated Problems (25-layer chains, 2×50 branches, 120-layer DAGs).

For every instance of deepx_opt.solvers.synthetic.benchmark_problems(): all heuristics, then the exact
solvers (CP-SAT with its default parameters, PuLP/HiGHS, PuLP/CBC, the chain DP) under one time limit.
Every plan goes through check_plan. Prints a table (status, objective, proven gap, solve time, energy,
makespan, objective relative to the best heuristic) and writes solvers_synthetic.json.

    python benchmarks/solvers_synthetic.py --out bench-out [--time-limit 30]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder for solvers_synthetic.json")
    ap.add_argument("--time-limit", type=float, default=30.0, help="seconds per exact solve (default 30)")
    ap.add_argument("--instances", nargs="*", help="subset of instance names")
    ap.add_argument("--exact", nargs="*", default=["cpsat", "pulp_highs", "pulp_cbc", "dp"],
                    help="exact solvers to run (default: cpsat pulp_highs pulp_cbc dp)")
    args = ap.parse_args(argv)

    from deepx_opt.solvers import check_plan, get_solver, list_solvers
    from deepx_opt.solvers.cpsat import DEFAULT_PARAMS
    from deepx_opt.solvers.synthetic import benchmark_problems

    problems = benchmark_problems()
    names = args.instances or list(problems)
    rows = []
    hdr = (f"{'instance':26} {'solver':18} {'status':10} {'objective':>11} {'gap%':>7} {'time_s':>7} "
           f"{'energy_uJ':>11} {'makespan_us':>11} {'vs_best_heur%':>13}")
    print(hdr)
    print("-" * len(hdr))
    for name in names:
        prob = problems[name]
        available = set(list_solvers(prob))
        results = []
        for sname in list_solvers(prob, kind="heuristic"):
            results.append((sname, get_solver(sname).solve(prob, time_limit_s=args.time_limit)))
        feas = [p.objective for _, p in results if p.status.has_plan]
        best_h = min(feas) if feas else None
        for sname in args.exact:
            if sname not in available:
                continue
            results.append((sname, get_solver(sname).solve(prob, time_limit_s=args.time_limit)))
        for sname, plan in results:
            bad = check_plan(prob, plan)
            if bad:
                raise SystemExit(f"{name}/{sname}: invalid plan: {bad[:3]}")
            rel = None
            if plan.status.has_plan and best_h:
                rel = 100.0 * (plan.objective - best_h) / best_h
            row = dict(instance=name, goal=prob.goal, layers=len(prob.layers), edges=len(prob.edges),
                       processors=[p.name for p in prob.processors], solver=sname, status=plan.status.value,
                       objective=plan.objective, bound=plan.bound, gap=plan.gap,
                       solve_time_s=round(plan.solve_time_s, 3), energy_uj=plan.energy_uj,
                       makespan_us=plan.makespan_us, accuracy_loss=plan.accuracy_loss,
                       best_heuristic_objective=best_h, vs_best_heuristic_pct=rel, message=plan.message)
            rows.append(row)

            def f(x, fmt):
                return "-" if x is None else format(x, fmt)

            print(f"{name:26} {sname:18} {plan.status.value:10} {f(plan.objective, '11.1f')} "
                  f"{f(None if plan.gap is None else 100 * plan.gap, '7.2f')} {plan.solve_time_s:7.2f} "
                  f"{f(plan.energy_uj, '11.1f')} {f(plan.makespan_us, '11.1f')} {f(rel, '13.1f')}", flush=True)
        print()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = dict(time_limit_s=args.time_limit, cpsat_params=DEFAULT_PARAMS, cpus=os.cpu_count(),
                machine=platform.machine(), python=platform.python_version())
    (out / "solvers_synthetic.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"wrote {out / 'solvers_synthetic.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
