"""Plan a small model on CPU + GPU + DSP: MILP vs. heuristics, then an over-tight budget.

Data → model → solve → report, on a hand-built Problem (no ONNX or profile needed):

    python examples/solve_synthetic.py [--out plan.json]
"""

from __future__ import annotations

import argparse

from deepx_opt.errors import InfeasiblePlanError
from deepx_opt.solvers import check_plan, get_solver, list_solvers, solve
from deepx_opt.solvers.synthetic import branches_problem


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="write the CP-SAT plan as JSON here")
    args = ap.parse_args(argv)

    # data/model: a stem, two parallel branches of 6 layers and a join, each layer at 3 ranks on 3 processors
    base = branches_problem(6, seed=4, processors=("cpu", "gpu", "dsp"), n_ranks=3, max_accuracy_loss=2.0)
    fast = get_solver("heft").solve(base.replace(goal="min_latency"))
    problem = base.replace(latency_budget_us=round(1.2 * fast.makespan_us, 1))
    print(f"problem {problem.name}: {len(problem.layers)} layers, {len(problem.edges)} edges, "
          f"latency budget {problem.latency_budget_us:.0f} us, accuracy limit {problem.max_accuracy_loss} points")

    # solve: the MILP and every heuristic of the registry
    print(f"\n{'solver':20} {'status':10} {'energy_uJ':>10} {'makespan_us':>11} {'acc_loss':>8} {'time_s':>7}")
    best = None
    for name in list_solvers(problem):
        if name == "brute":
            continue
        plan = get_solver(name).solve(problem, time_limit_s=10)
        assert check_plan(problem, plan) == []
        if plan.status.has_plan:
            print(f"{name:20} {plan.status.value:10} {plan.energy_uj:10.1f} {plan.makespan_us:11.1f} "
                  f"{plan.accuracy_loss:8.3f} {plan.solve_time_s:7.2f}")
        else:
            print(f"{name:20} {plan.status.value:10} {'':>10} {'':>11} {'':>8} {plan.solve_time_s:7.2f}  ({plan.message})")
        if name == "cpsat":
            best = plan

    # report: where each layer runs
    print("\nCP-SAT plan:")
    for a in best.assignments.values():
        rank = "dense" if a.rank is None else f"rank {a.rank}"
        print(f"  {a.layer:4} {a.processor:4} {rank:8} {a.start_us:9.1f} -> {a.finish_us:9.1f} us")
    if args.out:
        best.save(args.out)
        print(f"wrote {args.out}")

    # an impossible request explains itself
    try:
        solve(problem.replace(latency_budget_us=round(0.5 * fast.makespan_us, 1)), time_limit_s=10)
    except InfeasiblePlanError as exc:
        print(f"\nhalf the budget: {exc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
