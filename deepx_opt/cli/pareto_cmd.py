"""``deepx pareto MODEL --profile P --sweep latency|energy -o OUT.png``: the energy–latency trade-off.

Builds the planning Problem once (as ``deepx plan`` does), solves it under a sweep of budgets, and writes
the front of non-dominated plans with every heuristic's plans on the same axes (``OUT.png`` or
``OUT.svg``), plus ``OUT.csv`` and ``OUT.json`` beside it. One progress line per budget goes to stderr.
"""

from __future__ import annotations

import sys

from deepx_opt.cli._common import check_output_path, print_json, print_table
from deepx_opt.errors import InputError


def add_parser(sub) -> None:
    from deepx_opt.cli._planning import add_planning_args
    from deepx_opt.viz.pareto import SWEEPS

    p = sub.add_parser(
        "pareto", help="solve a sweep of budgets and plot the energy–latency front with the heuristics",
        description="Build the planning problem of MODEL on the profile once, then solve it for POINTS budgets "
                    "between the fastest and the least-energy plan (--sweep latency: least energy under each "
                    "latency budget; --sweep energy: least latency under each energy budget). Writes the front "
                    "(non-dominated plans, accuracy loss as colour) and every heuristic's plans to OUT.png/.svg, "
                    "and all points to OUT.csv and OUT.json.",
    )
    add_planning_args(p, budgets=False)
    p.add_argument("--sweep", choices=SWEEPS, default="latency",
                   help="which budget to sweep (default latency: least energy under each latency budget)")
    p.add_argument("--points", type=int, default=8, metavar="N", help="number of budgets (default 8)")
    p.add_argument("--solver", default="cpsat", help="solver of the front (default cpsat)")
    p.add_argument("--heuristics", metavar="A,B",
                   help="heuristics to plot beside the front (default: every heuristic of the registry; 'none')")
    p.add_argument("--time-limit", type=float, default=10.0, metavar="S", help="time limit per solve (s, default 10)")
    p.add_argument("-o", "--out", required=True, metavar="OUT.png", help="the picture (.png or .svg); .csv and .json go beside it")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of the front table")
    p.set_defaults(func=run)


def run(args) -> int:
    from deepx_opt.cli._planning import setup_from_args
    from deepx_opt.viz._common import FIGURE_FORMATS, fmt_energy_uj, fmt_time_us, output_format
    from deepx_opt.viz.pareto import describe, pareto_sweep, save_pareto

    if args.points < 1:
        raise InputError(f"--points {args.points}; expected an integer >= 1")
    if not args.time_limit > 0:
        raise InputError(f"--time-limit {args.time_limit}; expected seconds > 0")
    out = check_output_path(args.out, args.force)
    output_format(out, FIGURE_FORMATS)
    for side in (out.with_suffix(".csv"), out.with_suffix(".json")):
        check_output_path(side, args.force)
    heuristics = None
    if args.heuristics:
        heuristics = [] if args.heuristics.strip() == "none" else [h.strip() for h in args.heuristics.split(",") if h.strip()]

    def say(msg: str) -> None:
        if not args.json:
            print(f"[deepx pareto] {msg}", file=sys.stderr, flush=True)

    setup = setup_from_args(args, progress=say)
    for line in setup.notes:
        say(line)
    prob = setup.problem
    say(f"sweeping {args.points} {args.sweep} budgets on {len(prob.layers)} layers × {len(prob.processors)} processors "
        f"with {args.solver}")
    res = pareto_sweep(prob, sweep=args.sweep, points=args.points, solver=args.solver, heuristics=heuristics,
                       time_limit_s=args.time_limit,
                       progress=lambda i, n, p: say(f"[{i}/{n}] {describe(p)}"))
    paths = save_pareto(res, out)
    if args.json:
        print_json(res.to_dict())
        return 0
    rows = []
    for p in res.front:
        budget = fmt_time_us(p.budget) if args.sweep == "latency" else fmt_energy_uj(p.budget)
        rows.append([budget, fmt_time_us(p.makespan_us), fmt_energy_uj(p.energy_uj), f"{p.accuracy_loss:.3f}", p.status])
    what = "least energy under latency budgets" if args.sweep == "latency" else "least latency under energy budgets"
    print(f"{prob.name} on {setup.profile.name}: {what}; front of {len(res.front)} plans "
          f"({len(res.budgets)} budgets, {res.solve_time_s:.1f} s)")
    print_table([f"{args.sweep} budget", "latency", "energy", "acc loss", "status"], rows, align="rrrrl")
    with_plan = {p.series for p in res.points if p.series in res.heuristics and p.has_plan}
    if res.heuristics:
        print(f"heuristics with a plan: {', '.join(sorted(with_plan)) or 'none'}")
    print("wrote " + ", ".join(str(paths[k]) for k in ("figure", "csv", "json")))
    return 0
