"""The joint MILP on the DeepX setting: zoo models × built-in profiles × three latency budgets, and a 100+-block DAG.

    .venv/bin/python benchmarks/solvers_zoo.py --out bench-out

For each model and profile: RLC candidates (weight SVD, proxy accuracy estimator: the paper models are not
trained), a Problem with a 2-point accuracy limit, and latency budgets between the fastest feasible plan
(L_min, CP-SAT with goal min_latency) and the slowest single-processor dense plan (L_max):
tight = 1.1·L_min, medium = the midpoint, loose = L_max. Each Problem is solved by CP-SAT (least energy) and
by every heuristic; the table gives CP-SAT's solve time, status and gap, and the energy of the best heuristic
relative to CP-SAT's (> 1 means the solver saves energy). Prints the table, writes ``solvers_zoo.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

EXACT = ("cpsat", "pulp_cbc", "pulp_highs", "dp", "brute")


def run_case(cands, profile, budget_name, budget_ms, args) -> dict:
    from deepx_opt.planner import build_problem
    from deepx_opt.solvers.compare import compare_problem

    problem = build_problem(cands, profile, latency_budget_ms=budget_ms, max_accuracy_loss=args.max_accuracy_loss)
    names = ["cpsat"] + [n for n in _heuristics(problem)]
    rows = compare_problem(problem, names, time_limit_s=args.time_limit)
    cp = rows[0]
    heur = [r for r in rows[1:] if r["status"] in ("OPTIMAL", "FEASIBLE")]
    best = min(heur, key=lambda r: r["energy_uj"], default=None)
    return {
        "budget": budget_name, "latency_budget_ms": budget_ms, "layers": len(problem.layers),
        "options": sum(len(l.options) for l in problem.layers),
        "cpsat_status": cp["status"], "cpsat_time_s": cp["solve_time_s"], "cpsat_gap": cp.get("gap"),
        "cpsat_energy_mj": None if cp.get("energy_uj") is None else cp["energy_uj"] / 1000,
        "cpsat_latency_ms": None if cp.get("makespan_us") is None else cp["makespan_us"] / 1000,
        "cpsat_violations": cp.get("violations"),
        "best_heuristic": None if best is None else best["solver"],
        "best_heuristic_energy_mj": None if best is None else best["energy_uj"] / 1000,
        "heuristics": {r["solver"]: (None if r.get("energy_uj") is None else r["energy_uj"] / 1000) for r in rows[1:]},
    }


def _heuristics(problem):
    from deepx_opt.solvers import list_solvers

    return [n for n in list_solvers(problem) if n not in EXACT]


def budgets_for(cands, profile, args) -> dict[str, float]:
    from deepx_opt.planner import build_problem
    from deepx_opt.solvers import get_solver, solve

    loose = build_problem(cands, profile, max_accuracy_loss=args.max_accuracy_loss, goal="min_latency")
    l_min = solve(loose, time_limit_s=args.time_limit).makespan_us / 1000
    singles = []
    for p in profile.processor_names:
        plan = get_solver(f"{p}_only").solve(dataclasses.replace(loose, max_accuracy_loss=None), time_limit_s=5)
        if plan.status.has_plan:
            singles.append(plan.makespan_us / 1000)
    l_max = max(singles) if singles else 4 * l_min
    return {"tight": round(1.1 * l_min, 4), "medium": round((l_min + l_max) / 2, 4), "loose": round(l_max, 4)}


def main(argv=None) -> int:
    from deepx_opt import zoo
    from deepx_opt.cost_models import load_profile
    from deepx_opt.graphs import load_onnx
    from deepx_opt.graphs.candidates import candidates

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--models", default="alexnet,svhn,speakerid,audioscene")
    ap.add_argument("--profiles", default="snapdragon800,tegrak1")
    ap.add_argument("--dag", default="resnet101like", help="the 100+-block DAG model ('' to skip)")
    ap.add_argument("--max-accuracy-loss", type=float, default=2.0)
    ap.add_argument("--time-limit", type=float, default=10.0)
    args = ap.parse_args(argv)

    results = []
    models = [m for m in args.models.split(",") if m] + ([args.dag] if args.dag else [])
    for name in models:
        t0 = time.perf_counter()
        model = load_onnx(zoo.build(name), name=name)
        cands = candidates(model)
        t_cand = time.perf_counter() - t0
        for pname in args.profiles.split(","):
            profile = load_profile(pname)
            budgets = budgets_for(cands, profile, args)
            for bname, bms in budgets.items():
                r = run_case(cands, profile, bname, bms, args)
                r.update(model=name, profile=pname, candidates_s=round(t_cand, 1))
                results.append(r)
                ratio = (r["best_heuristic_energy_mj"] / r["cpsat_energy_mj"]
                         if r["best_heuristic_energy_mj"] and r["cpsat_energy_mj"] else None)
                r["best_heuristic_over_cpsat"] = ratio
                gap = "-" if r["cpsat_gap"] is None else f"{100 * r['cpsat_gap']:.2f}%"
                print(f"{name:13s} {pname:13s} {bname:6s} {bms:10.3f} ms  {r['layers']:3d} blocks {r['options']:5d} opts  "
                      f"cpsat {r['cpsat_status']:8s} {r['cpsat_time_s']:6.2f} s gap {gap:>6s}  "
                      f"E {r['cpsat_energy_mj'] if r['cpsat_energy_mj'] is not None else float('nan'):10.3f} mJ  "
                      f"best heuristic {r['best_heuristic'] or '-':18s} "
                      + (f"{ratio:.3f}x" if ratio else "-"), flush=True)
    ratios = [r["best_heuristic_over_cpsat"] for r in results if r.get("best_heuristic_over_cpsat")]
    zoo_rows = [r for r in results if r["model"] != args.dag]
    dag_rows = [r for r in results if r["model"] == args.dag]
    summary = {
        "zoo_optimal": sum(r["cpsat_status"] == "OPTIMAL" for r in zoo_rows), "zoo_cases": len(zoo_rows),
        "zoo_max_solve_s": max((r["cpsat_time_s"] for r in zoo_rows), default=None),
        "dag_max_gap": max(((r["cpsat_gap"] or 0.0) for r in dag_rows), default=None),
        "dag_max_solve_s": max((r["cpsat_time_s"] for r in dag_rows), default=None),
        "heuristic_over_solver_median": statistics.median(ratios) if ratios else None,
        "heuristic_over_solver_min": min(ratios) if ratios else None,
        "heuristic_over_solver_max": max(ratios) if ratios else None,
        "cases_with_a_feasible_heuristic": len(ratios),
    }
    print(json.dumps(summary, indent=1))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "solvers_zoo.json").write_text(json.dumps({"summary": summary, "rows": results}, indent=1))
    print(f"wrote {out / 'solvers_zoo.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
