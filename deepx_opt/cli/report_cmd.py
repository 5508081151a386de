"""``deepx report PLAN.json``: one self-contained HTML page about a plan (summary, plan graph, timeline,
solver vs heuristics, predicted vs measured); optionally the graph and timeline as separate pictures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from deepx_opt.cli._common import check_output_path
from deepx_opt.errors import InputError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "report", help="write an HTML report of a plan (graph, timeline, comparisons, measurements)",
        description="Render PLAN.json (from `deepx plan`) as one self-contained HTML page: inline SVG and CSS, "
                    "no script, nothing fetched from the network. --problem adds the plan graph, energies, "
                    "budgets and an independent check of the plan; --run adds the measured timeline and the "
                    "predicted-vs-measured table; --compare adds other plans (e.g. heuristics) to the table.",
    )
    p.add_argument("plan", metavar="PLAN.json", help="a plan written by `deepx plan` (deepx_opt.plan JSON)")
    p.add_argument("--problem", metavar="PROBLEM.json", help="the Problem the plan solves (deepx_opt.problem JSON)")
    p.add_argument("--run", metavar="RUN.json", help="a run report (`deepx run --json`) with measured per-block times")
    p.add_argument("--compare", metavar="COMPARE.json", action="append", default=[],
                   help="plans to compare with: a plan, a list of plans, or {\"plans\": [...]} (repeatable)")
    p.add_argument("--heuristics", action="store_true",
                   help="also run every registry heuristic on --problem and compare (needs --problem)")
    p.add_argument("-o", "--output", metavar="REPORT.html", help="the HTML page to write")
    p.add_argument("--graph", metavar="FILE", help="also write the plan graph: .svg, .png or .dot (needs --problem)")
    p.add_argument("--timeline", metavar="FILE", help="also write the timeline: .svg or .png")
    p.add_argument("--title", help="page title (default: 'Plan report: <problem>')")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.set_defaults(func=run)


def _load_run(path: str) -> dict:
    """A run report's JSON (``deepx_opt.run_report``, written by ``deepx run --json``)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"run file '{p}' does not exist")
    try:
        d = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"run file '{p}' is not JSON: {exc}") from None
    if not isinstance(d, dict) or d.get("format") != "deepx_opt.run_report":
        got = d.get("format") if isinstance(d, dict) else type(d).__name__
        raise InputError(f"run file '{p}' is not a deepx_opt run report (format {got!r}); expected 'deepx_opt.run_report'")
    return d


def run(args) -> int:
    from deepx_opt.solvers import Plan, Problem, get_solver, list_solvers
    from deepx_opt.viz.report import load_compare, write_report

    if not (args.output or args.graph or args.timeline):
        raise InputError("nothing to write: give -o REPORT.html, --graph FILE or --timeline FILE")
    if args.graph and not args.problem:
        raise InputError("--graph needs --problem PROBLEM.json: the DAG and its tensor sizes are in the Problem")
    if args.heuristics and not args.problem:
        raise InputError("--heuristics needs --problem PROBLEM.json to run the heuristics on")
    outs = {k: check_output_path(v, args.force) for k, v in
            (("html", args.output), ("graph", args.graph), ("timeline", args.timeline)) if v}
    if "html" in outs and outs["html"].suffix.lower() not in (".html", ".htm"):
        raise InputError(f"report file '{outs['html']}' should end in .html")
    from deepx_opt.viz._common import FIGURE_FORMATS, output_format
    from deepx_opt.viz.graph import GRAPH_FORMATS

    if "graph" in outs:
        output_format(outs["graph"], GRAPH_FORMATS)
    if "timeline" in outs:
        output_format(outs["timeline"], FIGURE_FORMATS)
    plan = Plan.load(args.plan)
    problem = Problem.load(args.problem) if args.problem else None
    run_report = _load_run(args.run) if args.run else None
    others = []
    for c in args.compare:
        others += load_compare(c)
    if args.heuristics:
        for name in list_solvers(problem, kind="heuristic"):
            if name != plan.solver:
                others.append(get_solver(name).solve(problem, time_limit_s=60.0))
    written = []
    if "html" in outs:
        write_report(outs["html"], plan, problem=problem, run=run_report, compare=others or None, title=args.title)
        written.append(outs["html"])
    if "graph" in outs:
        from deepx_opt.viz.graph import save_graph

        written.append(save_graph(plan, problem, outs["graph"]))
    if "timeline" in outs:
        from deepx_opt.viz.timeline import save_timeline

        written.append(save_timeline(plan, outs["timeline"], problem, run_report))
    for w in written:
        print(f"wrote {w}", file=sys.stderr)
    return 0
