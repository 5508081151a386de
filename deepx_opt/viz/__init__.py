"""Pictures and a report for looking at plans (see docs/viz.md).

* :mod:`~deepx_opt.viz.graph`: the plan's block DAG coloured by processor (SVG, PNG, DOT).
* :mod:`~deepx_opt.viz.timeline`: Gantt chart of the predicted schedule, and of a measured run.
* :mod:`~deepx_opt.viz.pareto`: energy–latency front from a sweep of budgets, with the heuristics.
* :mod:`~deepx_opt.viz.report`: one self-contained HTML page about a plan.

matplotlib is imported only when a picture is drawn.
"""

from deepx_opt.viz.graph import graph_dot, graph_png, graph_svg, layered_layout, plan_graph, save_graph
from deepx_opt.viz.pareto import ParetoPoint, ParetoResult, non_dominated, pareto_sweep, save_pareto
from deepx_opt.viz.report import render_report, write_report
from deepx_opt.viz.timeline import save_timeline, timeline_png, timeline_svg

__all__ = [
    "plan_graph", "layered_layout", "graph_svg", "graph_png", "graph_dot", "save_graph",
    "timeline_svg", "timeline_png", "save_timeline",
    "pareto_sweep", "ParetoResult", "ParetoPoint", "non_dominated", "save_pareto",
    "render_report", "write_report",
]
