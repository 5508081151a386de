"""``deepx plan MODEL --profile P (--latency-budget MS | --energy-budget MJ) -o PLAN.json``."""

from __future__ import annotations

import dataclasses
import sys

from deepx_opt.cli._common import check_output_path, print_json, print_table
from deepx_opt.cli._planning import add_planning_args, setup_from_args


def add_parser(sub) -> None:
    p = sub.add_parser("plan", help="choose every layer's rank and processor (MILP) and write a plan",
                       description="Build the planning problem of MODEL on the device profile and solve it: "
                                   "each layer's SVD rank and processor, under the budget and accuracy limit.")
    add_planning_args(p)
    p.add_argument("--solver", default="cpsat", help="solver or heuristic name (see `deepx compare`); default cpsat")
    p.add_argument("--time-limit", type=float, default=10.0, metavar="S", help="solver time limit in seconds (default 10)")
    p.add_argument("-o", "--out", metavar="PLAN.json", help="write the plan here")
    p.add_argument("--save-problem", metavar="PROBLEM.json", help="also write the Problem (for `deepx report --problem`)")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.add_argument("--json", action="store_true", help="print the plan as JSON instead of a summary")
    p.set_defaults(func=run)


def _progress(msg: str) -> None:
    print(f"[deepx plan] {msg}", file=sys.stderr, flush=True)


def run(args) -> int:
    from deepx_opt.solvers import solve

    out = check_output_path(args.out, args.force) if args.out else None
    prob_out = check_output_path(args.save_problem, args.force) if args.save_problem else None
    setup = setup_from_args(args, progress=None if args.json else _progress)
    if not args.json:
        _progress(f"solving {len(setup.problem.layers)} layers × {len(setup.problem.processors)} processors with {args.solver}")
    plan = solve(setup.problem, args.solver, time_limit_s=args.time_limit)
    plan = dataclasses.replace(plan, meta=setup.meta)
    if out:
        plan.save(out)
    if prob_out:
        setup.problem.save(prob_out)
    if args.json:
        print_json(plan.to_dict())
        return 0
    print_plan_summary(plan, setup.problem)
    for p, kinds in sorted(setup.skipped.items()):
        print(f"note: {p} cannot run {', '.join(sorted(kinds))} (profile {setup.profile.name}); those layers avoid it")
    for line in setup.notes:
        print(line)
    if out:
        print(f"plan written to {out}")
    return 0


def print_plan_summary(plan, problem) -> None:
    gap = "-" if plan.gap is None else f"{100 * plan.gap:.2f}%"
    print(f"plan for {plan.problem_name}: {plan.status.value} by {plan.solver} in {plan.solve_time_s:.2f} s (gap {gap})")
    budget = []
    if problem.latency_budget_us is not None:
        budget.append(f"latency ≤ {problem.latency_budget_us / 1000:.3f} ms")
    if problem.energy_budget_uj is not None:
        budget.append(f"energy ≤ {problem.energy_budget_uj / 1000:.3f} mJ")
    if problem.max_accuracy_loss is not None:
        budget.append(f"accuracy loss ≤ {problem.max_accuracy_loss:g} pts")
    print(f"goal {problem.goal}" + (f" with {', '.join(budget)}" if budget else ""))
    print(f"predicted: latency {plan.makespan_us / 1000:.3f} ms, energy {plan.energy_uj / 1000:.3f} mJ, "
          f"accuracy loss {plan.accuracy_loss:.3f} pts")
    rows = []
    for proc in problem.processors:
        mine = [a for a in plan.assignments.values() if a.processor == proc.name]
        if not mine:
            continue
        busy = sum(a.finish_us - a.start_us for a in mine)
        comp = [f"{a.layer}@r{a.rank}" for a in mine if a.rank is not None]
        cap = "-" if proc.memory_bytes is None else f"{proc.memory_bytes / 1e6:.0f}"
        rows.append([proc.name, len(mine), f"{busy / 1000:.3f}", f"{plan.memory_bytes.get(proc.name, 0) / 1e6:.2f}", cap,
                     ", ".join(comp) if comp else "all dense"])
    print_table(["processor", "layers", "busy ms", "mem MB", "cap MB", "compressed layers (rank)"], rows, align="lrrrrl")
