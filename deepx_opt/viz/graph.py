"""The plan graph: the model's block DAG, each block coloured by its processor and labelled with its
rank, predicted time and energy; edges between processors dashed red with the bytes they move.

Outputs: a matplotlib Figure, SVG (standalone or inline for HTML), PNG, and Graphviz DOT text (written
as text; no graphviz binary is needed).

The layout is layered: one row per topological generation (a block sits one row below its deepest
predecessor), read top to bottom; blocks of one generation (parallel branches) sit side by side,
ordered by the mean position of their predecessors to keep edges from crossing.

Every block is drawn as one SVG group ``<g id="block-<name>">`` (see :func:`block_id`) carrying a
``<title>`` tooltip with the block's full details; cross-processor edges are ``<g id="xfer-<i>">``.

Example
-------
>>> from deepx_opt.solvers.synthetic import branches_problem
>>> from deepx_opt.solvers.heuristics import Heft
>>> from deepx_opt.viz.graph import graph_svg, graph_dot
>>> prob = branches_problem(2, n_branches=2, seed=0)
>>> plan = Heft().solve(prob)
>>> svg = graph_svg(plan, prob)
>>> svg.count('<g id="block-')
6
>>> graph_dot(plan, prob).splitlines()[0]
'digraph "branches2x2" {'
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx

from deepx_opt.viz._common import (
    TRANSFER_COLOR,
    add_svg_titles,
    check_plan_matches,
    figure_to_png,
    figure_to_svg,
    fmt_bytes,
    fmt_energy_uj,
    fmt_rank,
    fmt_time_us,
    lighten,
    output_format,
    processor_colors,
    processor_order,
    short,
)

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from deepx_opt.solvers.plan import Plan
    from deepx_opt.solvers.problem import Problem

__all__ = [
    "plan_graph",
    "layered_layout",
    "block_id",
    "graph_figure",
    "graph_svg",
    "graph_png",
    "graph_dot",
    "save_graph",
    "GRAPH_FORMATS",
]

#: File suffixes :func:`save_graph` writes.
GRAPH_FORMATS = (".svg", ".png", ".dot", ".gv")

_X_SPACING_IN = 2.4   # figure inches per layout column
_Y_SPACING_IN = 1.05  # figure inches per generation
_BOX_W = 0.86         # box size in layout units (one unit = one column / one row)
_BOX_H = 0.62


def block_id(layer: str) -> str:
    """The SVG group id of a block: ``block-`` + the layer name with characters outside
    ``[A-Za-z0-9_.-]`` replaced by ``_`` (made unique by :func:`plan_graph` when two names collide)."""
    return "block-" + re.sub(r"[^A-Za-z0-9_.-]", "_", layer)


def plan_graph(plan: "Plan", problem: "Problem") -> nx.DiGraph:
    """The Problem's DAG annotated with the plan.

    Node attributes: ``processor``, ``rank``, ``option_id``, ``start_us``, ``finish_us``, ``duration_us``,
    ``energy_uj`` (compute energy of the chosen option), ``accuracy_loss``, ``weight_bytes``, ``svg_id``.
    Edge attributes: ``bytes``, ``cross`` (different processors), ``transfer_us``, ``transfer_uj``.

    Raises
    ------
    PlanError
        When the plan has no assignments or does not fit the Problem.
    """
    check_plan_matches(plan, problem)
    g = nx.DiGraph(name=problem.name)
    used: set[str] = set()
    for layer in problem.layers:
        a = plan.assignments[layer.name]
        opt = layer.option(a.option_id)
        sid = block_id(layer.name)
        if sid in used:
            k = 2
            while f"{sid}-{k}" in used:
                k += 1
            sid = f"{sid}-{k}"
        used.add(sid)
        g.add_node(
            layer.name,
            processor=a.processor,
            rank=a.rank,
            option_id=a.option_id,
            start_us=a.start_us,
            finish_us=a.finish_us,
            duration_us=a.finish_us - a.start_us,
            energy_uj=opt.energy_uj,
            accuracy_loss=opt.accuracy_loss,
            weight_bytes=opt.weight_bytes,
            svg_id=sid,
        )
    for e in problem.edges:
        pu, pv = g.nodes[e.src]["processor"], g.nodes[e.dst]["processor"]
        g.add_edge(
            e.src,
            e.dst,
            bytes=e.bytes,
            cross=pu != pv,
            transfer_us=problem.transfer_time_us(pu, pv, e.bytes),
            transfer_uj=problem.transfer_energy_uj(pu, pv, e.bytes),
        )
    return g


_DUMMY_SLOT = 0.35  # width (columns) of a lane that a long edge takes through an intermediate row


def _crossings(upper: list, lower: list, edges: set) -> int:
    pos_u = {n: i for i, n in enumerate(upper)}
    pos_l = {n: i for i, n in enumerate(lower)}
    pairs = [(pos_u[a], pos_l[b]) for a in upper for b in lower if (a, b) in edges]
    return sum(1 for i, (a1, b1) in enumerate(pairs) for a2, b2 in pairs[i + 1:] if (a1 - a2) * (b1 - b2) < 0)


def _sugiyama(g: nx.DiGraph) -> tuple[dict[Any, tuple[float, float]], dict[tuple[Any, Any], list[tuple[float, float]]]]:
    """Layered layout with virtual nodes on long edges: node positions and, per edge, its route."""
    gens = [list(gen) for gen in nx.topological_generations(g)]
    depth = {n: d for d, gen in enumerate(gens) for n in gen}
    order0 = {n: i for i, n in enumerate(g.nodes)}
    for gen in gens:
        gen.sort(key=order0.__getitem__)
    # virtual nodes: one per intermediate row of an edge that skips rows
    h = nx.DiGraph()
    h.add_nodes_from(g.nodes)
    chains: dict[tuple[Any, Any], list] = {}
    for u, v in g.edges:
        chain = [("~", u, v, d) for d in range(depth[u] + 1, depth[v])]
        for d, dummy in zip(range(depth[u] + 1, depth[v]), chain):
            gens[d].append(dummy)
        path = [u, *chain, v]
        h.add_edges_from(zip(path, path[1:]))
        chains[(u, v)] = chain
    hedges = set(h.edges)

    def sweep(rows: list[list], neighbours) -> None:
        for i in range(1, len(rows)):
            idx = {n: k for k, n in enumerate(rows[i - 1])}

            def key(n, idx=idx):
                nb = [idx[m] for m in neighbours(n) if m in idx]
                return (sum(nb) / len(nb) if nb else len(idx), order0.get(n, len(order0)))

            rows[i].sort(key=key)

    def total(rows: list[list]) -> int:
        return sum(_crossings(a, b, hedges) for a, b in zip(rows, rows[1:]))

    best = [list(r) for r in gens]
    best_c = total(best)
    rows = [list(r) for r in gens]
    for _ in range(3):
        if best_c == 0:
            break
        sweep(rows, h.predecessors)
        up = rows[::-1]
        sweep(up, h.successors)
        rows = up[::-1]
        c = total(rows)
        if c < best_c:
            best, best_c = [list(r) for r in rows], c

    # x: each node wants the mean x of its predecessors; push apart left to right, re-centre on the wishes
    xpos: dict[Any, float] = {}
    for d, row in enumerate(best):
        width = [(_DUMMY_SLOT if isinstance(n, tuple) and n[:1] == ("~",) else 1.0) for n in row]
        want = []
        for n in row:
            px = [xpos[m] for m in h.predecessors(n) if m in xpos]
            want.append(sum(px) / len(px) if px else 0.0)
        xs: list[float] = []
        for i in range(len(row)):
            x = want[i]
            if i:
                x = max(x, xs[-1] + (width[i - 1] + width[i]) / 2)
            xs.append(x)
        shift = sum(w - x for w, x in zip(want, xs)) / len(xs)
        for n, x in zip(row, xs):
            xpos[n] = x + shift
    lo = min(xpos.values())
    hi = max(xpos.values())
    mid = (lo + hi) / 2
    pos = {n: (xpos[n] - mid, float(-depth[n])) for n in g.nodes}
    routes = {}
    for (u, v), chain in chains.items():
        routes[(u, v)] = [pos[u]] + [(xpos[c] - mid, float(-c[3])) for c in chain] + [pos[v]]
    return pos, routes


def layered_layout(g: nx.DiGraph) -> dict[Any, tuple[float, float]]:
    """Positions ``(x, y)`` with y = −generation (top to bottom) and blocks of one generation side by side.

    A Sugiyama-style layout: rows are topological generations, an edge that skips rows gets a narrow lane
    of its own through them, rows are ordered by barycentre sweeps (fewest crossings kept), and each block
    sits at the mean x of its predecessors where there is room. A chain is one column; parallel branches
    are parallel columns.

    >>> g = nx.DiGraph([("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")])
    >>> pos = layered_layout(g)
    >>> pos["a"], pos["d"], pos["b"][1] == pos["c"][1], pos["b"][0] == -pos["c"][0]
    ((0.0, 0.0), (0.0, -2.0), True, True)
    """
    return _sugiyama(g)[0]


def _tooltip(name: str, d: dict) -> str:
    return (
        f"{name}\noption {d['option_id']} ({fmt_rank(d['rank'])}) on {d['processor']}\n"
        f"start {d['start_us']:.2f} µs, finish {d['finish_us']:.2f} µs ({fmt_time_us(d['duration_us'])})\n"
        f"compute energy {fmt_energy_uj(d['energy_uj'])}, accuracy loss {d['accuracy_loss']:.4g} points, "
        f"weights {fmt_bytes(d['weight_bytes'])}"
    )


def graph_figure(plan: "Plan", problem: "Problem", *, title: str | None = None) -> "Figure":
    """Draw the plan graph (see the module docstring) and return the Figure."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch

    from matplotlib.path import Path as MplPath

    g = plan_graph(plan, problem)
    pos, routes = _sugiyama(g)
    procs = processor_order(plan, problem)
    colors = processor_colors(procs)
    xs = [x for pts in routes.values() for x, _ in pts] + [x for x, _ in pos.values()]
    n_gen = int(-min(y for _, y in pos.values())) + 1
    half_cols = max(abs(x) for x in xs) + 0.5
    fig_w = max(6.0, _X_SPACING_IN * 2 * half_cols + 0.6)
    fig_h = max(3.0, _Y_SPACING_IN * n_gen + 1.35)
    fig = Figure(figsize=(fig_w, fig_h))
    # data units map 1:1 onto column / row spacing so boxes keep their size whatever the graph
    top_in = 1.0
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0 - top_in / fig_h))
    ax.set_axis_off()
    half_w = fig_w / _X_SPACING_IN / 2
    ax.set_xlim(-half_w, half_w)
    ax.set_ylim(-(fig_h - top_in) / _Y_SPACING_IN + 0.5, 0.5)

    # edges first, under the boxes: a polyline through the edge's lane, leaving the source's bottom and
    # entering the destination's top
    for i, (u, v, d) in enumerate(g.edges(data=True)):
        pts = list(routes[(u, v)])
        pts[0] = (pts[0][0], pts[0][1] - _BOX_H / 2)
        pts[-1] = (pts[-1][0], pts[-1][1] + _BOX_H / 2)
        style = dict(color=TRANSFER_COLOR, lw=1.6, ls=(0, (4, 2.5))) if d["cross"] else dict(color="#555555", lw=1.0)
        path = MplPath(pts, [MplPath.MOVETO] + [MplPath.LINETO] * (len(pts) - 1))
        arrow = FancyArrowPatch(path=path, arrowstyle="-|>", mutation_scale=10, zorder=1, **style)
        arrow.set_gid(f"xfer-{i}" if d["cross"] else f"edge-{i}")
        ax.add_patch(arrow)
        if d["cross"]:
            label = f"{fmt_bytes(d['bytes'])} · {fmt_time_us(d['transfer_us'])}"
            if len(pts) > 2:  # on the edge's own lane, where no block is
                mx, my = pts[1]
            else:
                # fan-in: near the source; fan-out: near the destination; else half way
                t = 0.5
                if g.in_degree(v) > 1:
                    t = 0.3
                elif g.out_degree(u) > 1:
                    t = 0.7
                (x0, y0), (x1, y1) = pts
                mx, my = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
            ax.text(mx, my, label, ha="center", va="center", fontsize=6.5, color=TRANSFER_COLOR, zorder=4,
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.9))

    titles = {}
    for name, d in g.nodes(data=True):
        x, y = pos[name]
        col = colors[d["processor"]]
        box = FancyBboxPatch(
            (x - _BOX_W / 2, y - _BOX_H / 2), _BOX_W, _BOX_H, boxstyle="round,pad=0,rounding_size=0.06",
            fc=lighten(col, 0.6), ec=col, lw=1.4, zorder=2,
        )
        box.set_gid(d["svg_id"])
        ax.add_patch(box)
        titles[d["svg_id"]] = _tooltip(name, d)
        ax.text(x, y + 0.15, short(name, 26), ha="center", va="center", fontsize=8, fontweight="bold", zorder=3)
        ax.text(x, y - 0.01, f"{fmt_rank(d['rank'])} · {d['processor']}", ha="center", va="center",
                fontsize=7.5, zorder=3)
        ax.text(x, y - 0.16, f"{fmt_time_us(d['duration_us'])} · {fmt_energy_uj(d['energy_uj'])}",
                ha="center", va="center", fontsize=7.5, zorder=3)

    head = title or (
        f"{problem.name} — {plan.solver} ({plan.status.value}): {fmt_time_us(plan.makespan_us)}, "
        f"{fmt_energy_uj(plan.energy_uj)}, accuracy loss {plan.accuracy_loss or 0:.3g} pts"
    )
    fig.text(0.5, 1 - 0.25 / fig_h, head, ha="center", va="top", fontsize=10, fontweight="bold")
    used = [p for p in procs if any(d["processor"] == p for _, d in g.nodes(data=True))]
    handles = [Patch(fc=lighten(colors[p], 0.6), ec=colors[p], label=p) for p in used]
    handles.append(Line2D([], [], color=TRANSFER_COLOR, ls=(0, (4, 2.5)), lw=1.6, label="cross-processor transfer"))
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 1 - 0.5 / fig_h), ncol=min(len(handles), 6),
               fontsize=8, frameon=False)
    fig._deepx_titles = titles  # tooltips added to the SVG by graph_svg
    return fig


def graph_svg(plan: "Plan", problem: "Problem", *, inline: bool = False, title: str | None = None) -> str:
    """The plan graph as SVG text; ``inline=True`` for embedding in HTML (no prolog, scales to its box)."""
    fig = graph_figure(plan, problem, title=title)
    svg = figure_to_svg(fig, inline=inline, id_prefix="graph-" if inline else "", keep_ids=("block-", "xfer-", "edge-"))
    return add_svg_titles(svg, fig._deepx_titles)


def graph_png(plan: "Plan", problem: "Problem", *, dpi: int = 110, title: str | None = None) -> bytes:
    """The plan graph as PNG bytes."""
    return figure_to_png(graph_figure(plan, problem, title=title), dpi=dpi)


def _dot_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def graph_dot(plan: "Plan", problem: "Problem") -> str:
    """The plan graph as Graphviz DOT text (render with ``dot -Tsvg`` where graphviz is installed)."""
    g = plan_graph(plan, problem)
    colors = processor_colors(processor_order(plan, problem))
    lines = [
        f"digraph {_dot_str(problem.name)} {{",
        "  rankdir=TB;",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=8, color="#555555"];',
        f"  label={_dot_str(f'{problem.name}: {plan.solver} ({plan.status.value}), {fmt_time_us(plan.makespan_us)}, {fmt_energy_uj(plan.energy_uj)}')};",
        "  labelloc=t;",
    ]
    for name, d in g.nodes(data=True):
        col = colors[d["processor"]]
        label = f"{name}\n{fmt_rank(d['rank'])} · {d['processor']}\n{fmt_time_us(d['duration_us'])} · {fmt_energy_uj(d['energy_uj'])}"
        lines.append(
            f"  {_dot_str(name)} [label={_dot_str(label)}, fillcolor={_dot_str(lighten(col, 0.6))}, "
            f"color={_dot_str(col)}, id={_dot_str(d['svg_id'])}, tooltip={_dot_str(_tooltip(name, d))}];"
        )
    for u, v, d in g.edges(data=True):
        if d["cross"]:
            attrs = (f'style=dashed, color={_dot_str(TRANSFER_COLOR)}, fontcolor={_dot_str(TRANSFER_COLOR)}, penwidth=1.6, '
                     f"label={_dot_str(fmt_bytes(d['bytes']) + ' · ' + fmt_time_us(d['transfer_us']))}")
        else:
            attrs = f"tooltip={_dot_str(fmt_bytes(d['bytes']))}"
        lines.append(f"  {_dot_str(u)} -> {_dot_str(v)} [{attrs}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def save_graph(plan: "Plan", problem: "Problem", path: str | Path, *, dpi: int = 110) -> Path:
    """Write the plan graph to ``path``: ``.svg``, ``.png`` or ``.dot``/``.gv`` by the suffix."""
    p = Path(path)
    fmt = output_format(p, GRAPH_FORMATS)
    if fmt == ".svg":
        p.write_text(graph_svg(plan, problem), encoding="utf-8")
    elif fmt == ".png":
        p.write_bytes(graph_png(plan, problem, dpi=dpi))
    else:
        p.write_text(graph_dot(plan, problem), encoding="utf-8")
    return p
