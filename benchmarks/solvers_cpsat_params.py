"""Which CP-SAT parameters to use on a small machine: workers × linearization level × warm start.

Runs the synthetic benchmark instances (deepx_opt.solvers.synthetic.benchmark_problems) under each
setting (wN = num_workers, linK = linearization_level; warm start: add_hint of the best heuristic plan
by default, "nohint" none, "cutoff" the heuristic objective as an upper bound instead of a hint) and
random seeds, with the same time limit, and prints status, objective, proven bound, gap and wall time.

    python benchmarks/solvers_cpsat_params.py --out bench-out [--time-limit 20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

CONFIGS = {
    "w1_lin1": ({"num_workers": 1, "linearization_level": 1}, True),
    "w1_lin2": ({"num_workers": 1, "linearization_level": 2}, True),
    "w2_lin1": ({"num_workers": 2, "linearization_level": 1}, True),
    "w2_lin2": ({"num_workers": 2, "linearization_level": 2}, True),
    "w8_lin1": ({"num_workers": 8, "linearization_level": 1}, True),
    "w8_lin2": ({"num_workers": 8, "linearization_level": 2}, True),
    "w2_lin2_nohint": ({"num_workers": 2, "linearization_level": 2}, False),
    "w1_lin2_nohint": ({"num_workers": 1, "linearization_level": 2}, False),
    "w2_lin2_cutoff": ({"num_workers": 2, "linearization_level": 2}, "cutoff"),
    "w1_lin2_cutoff": ({"num_workers": 1, "linearization_level": 2}, "cutoff"),
    "w2_lin1_cutoff": ({"num_workers": 2, "linearization_level": 1}, "cutoff"),
    "w8_lin2_cutoff": ({"num_workers": 8, "linearization_level": 2}, "cutoff"),
}


def summarize(rows: list[dict]) -> str:
    """Per setting: runs proven optimal, runs without any plan, mean gap, total time (lower is better)."""
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["setting"], []).append(r)
    lines = [f"{'setting':16} {'runs':>4} {'optimal':>7} {'no_plan':>7} {'mean_gap%':>9} {'total_s':>8}"]
    for cfg, rs in by.items():
        gaps = [100 * (r["gap"] or 0.0) for r in rs if r["objective"] is not None]
        lines.append(
            f"{cfg:16} {len(rs):4d} {sum(r['status'] == 'OPTIMAL' for r in rs):7d} "
            f"{sum(r['objective'] is None for r in rs):7d} {sum(gaps) / max(len(gaps), 1):9.3f} "
            f"{sum(r['wall_s'] for r in rs):8.1f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder for solvers_cpsat_params.json")
    ap.add_argument("--time-limit", type=float, default=20.0, help="seconds per solve (default 20)")
    ap.add_argument("--instances", nargs="*", help="subset of instance names")
    ap.add_argument("--configs", nargs="*", choices=sorted(CONFIGS), help="subset of settings")
    ap.add_argument("--seeds", nargs="*", type=int, default=[0], help="CP-SAT random seeds (default 0)")
    args = ap.parse_args(argv)

    from deepx_opt.solvers import check_plan
    from deepx_opt.solvers.cpsat import CpSatSolver
    from deepx_opt.solvers.heuristics import best_heuristic_plan
    from deepx_opt.solvers.synthetic import benchmark_problems

    problems = benchmark_problems()
    names = args.instances or list(problems)
    configs = args.configs or list(CONFIGS)
    rows = []
    print(f"{'instance':26} {'setting':15} {'status':10} {'objective':>12} {'bound':>12} {'gap%':>7} {'time_s':>7}")
    for name in names:
        prob = problems[name]
        hint = best_heuristic_plan(prob)
        for cfg, seed in [(c, sd) for c in configs for sd in args.seeds]:
            params, use_hint = CONFIGS[cfg]
            t0 = time.perf_counter()
            plan = CpSatSolver().solve(prob, time_limit_s=args.time_limit, params=dict(params, random_seed=seed),
                                       hint=hint if use_hint is True else use_hint)
            wall = time.perf_counter() - t0
            bad = check_plan(prob, plan)
            if bad:
                raise SystemExit(f"{name}/{cfg}: invalid plan: {bad[:3]}")
            row = dict(instance=name, setting=cfg, seed=seed, params=params, hint=use_hint, status=plan.status.value,
                       objective=plan.objective, bound=plan.bound, gap=plan.gap, wall_s=round(wall, 3),
                       heuristic_objective=hint.objective if hint else None)
            rows.append(row)
            gap = "-" if plan.gap is None else f"{100 * plan.gap:.3f}"
            obj = "-" if plan.objective is None else f"{plan.objective:.2f}"
            bnd = "-" if plan.bound is None else f"{plan.bound:.2f}"
            print(f"{name:26} {cfg + '/s' + str(seed):15} {plan.status.value:10} {obj:>12} {bnd:>12} {gap:>7} {wall:7.2f}", flush=True)
    print()
    print(summarize(rows))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = dict(time_limit_s=args.time_limit, cpus=os.cpu_count(), machine=platform.machine(),
                python=platform.python_version())
    (out / "solvers_cpsat_params.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"wrote {out / 'solvers_cpsat_params.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
