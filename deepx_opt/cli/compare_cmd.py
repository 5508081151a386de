"""``deepx compare MODEL --profile P ...``: every solver and heuristic on the same Problem, one table."""

from __future__ import annotations

import json
import sys

from deepx_opt.cli._common import check_output_path, print_json, print_table
from deepx_opt.cli._planning import add_planning_args, setup_from_args


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="run every solver and heuristic on the same problem and compare them",
                       description="Solve the planning problem of MODEL with every registered solver and heuristic "
                                   "(single-processor baselines, greedy compression, HEFT, Neurosurgeon split) and "
                                   "print energy, latency, accuracy loss, memory, status, solve time and ratios.")
    add_planning_args(p)
    p.add_argument("--time-limit", type=float, default=10.0, metavar="S", help="time limit per solver (s, default 10)")
    p.add_argument("--solvers", metavar="A,B", help="only these solvers (default: every one that can take the problem)")
    p.add_argument("-o", "--out", metavar="COMPARE.json", help="write the comparison (with every plan) here")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from deepx_opt.solvers.compare import compare_problem

    out = check_output_path(args.out, args.force) if args.out else None
    say = None if args.json else (lambda m: print(f"[deepx compare] {m}", file=sys.stderr, flush=True))
    setup = setup_from_args(args, progress=say)
    for line in setup.notes if say else ():
        say(line)
    names = [s.strip() for s in args.solvers.split(",")] if args.solvers else None
    rows = compare_problem(setup.problem, names, time_limit_s=args.time_limit, progress=say)
    doc = {"model": setup.model.name, "profile": setup.profile.name, "goal": setup.problem.goal,
           "latency_budget_us": setup.problem.latency_budget_us, "energy_budget_uj": setup.problem.energy_budget_uj,
           "max_accuracy_loss": setup.problem.max_accuracy_loss, "meta": setup.meta, "rows": rows}
    if out:
        out.write_text(json.dumps(doc, indent=1))
    if args.json:
        print_json(doc)
        return 0
    print_compare_table(doc)
    if out:
        print(f"comparison written to {out}")
    return 0


def print_compare_table(doc: dict) -> None:
    def f(v, scale, digits=3):
        return "-" if v is None else f"{v / scale:.{digits}f}"

    rows = []
    for r in doc["rows"]:
        ratio = "-" if r.get("ratio_to_best") is None else f"{r['ratio_to_best']:.2f}x"
        gap = "-" if r.get("gap") is None else f"{100 * r['gap']:.1f}%"
        rows.append([r["solver"], r["status"], f(r.get("energy_uj"), 1000), f(r.get("makespan_us"), 1000),
                     "-" if r.get("accuracy_loss") is None else f"{r['accuracy_loss']:.2f}",
                     f(r.get("memory_bytes"), 1e6, 2), gap, f"{r['solve_time_s']:.2f}", ratio])
    goal = "least energy" if doc["goal"] == "min_energy" else "least latency"
    print(f"{doc['model']} on {doc['profile']}: {goal}"
          + (f", latency ≤ {doc['latency_budget_us'] / 1000:g} ms" if doc.get("latency_budget_us") else "")
          + (f", energy ≤ {doc['energy_budget_uj'] / 1000:g} mJ" if doc.get("energy_budget_uj") else "")
          + (f", accuracy loss ≤ {doc['max_accuracy_loss']:g} pts" if doc.get("max_accuracy_loss") is not None else ""))
    print_table(["solver", "status", "energy mJ", "latency ms", "acc loss", "mem MB", "gap", "solve s", "vs best"], rows,
                align="llrrrrrrr")
    for r in doc["rows"]:
        if r["status"] not in ("OPTIMAL", "FEASIBLE") and r.get("message"):
            print(f"  {r['solver']}: {r['message']}")
