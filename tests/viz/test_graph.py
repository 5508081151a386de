"""Plan graph: layout, annotations, SVG/PNG/DOT outputs, escaping, errors."""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET

import networkx as nx
import pytest

from deepx_opt.errors import InputError, PlanError
from deepx_opt.solvers import get_solver
from deepx_opt.solvers.plan import Plan, Status
from deepx_opt.solvers.synthetic import dag_problem
from deepx_opt.viz._common import short
from deepx_opt.viz.graph import (
    block_id,
    graph_dot,
    graph_figure,
    graph_png,
    graph_svg,
    layered_layout,
    plan_graph,
    save_graph,
)

from .conftest import ODD, keep_picture, png_stats

SVG_NS = "{http://www.w3.org/2000/svg}"


def _block_groups(svg: str) -> list[ET.Element]:
    root = ET.fromstring(svg)
    return [g for g in root.iter(f"{SVG_NS}g") if g.get("id", "").startswith("block-")]


def test_layout_chain_is_one_column_top_to_bottom():
    g = nx.DiGraph([(f"l{i}", f"l{i + 1}") for i in range(5)])
    pos = layered_layout(g)
    assert {x for x, _ in pos.values()} == {0.0}
    assert [pos[f"l{i}"][1] for i in range(6)] == [-float(i) for i in range(6)]


def test_layout_branches_side_by_side_and_rows_by_generation():
    g = nx.DiGraph()
    nx.add_path(g, ["stem", "a1", "a2", "join"])
    nx.add_path(g, ["stem", "b1", "b2", "join"])
    pos = layered_layout(g)
    assert pos["a1"][1] == pos["b1"][1] == -1.0 and pos["a2"][1] == pos["b2"][1] == -2.0
    # the two branches keep to their own side, the stem and join are centred between them
    assert (pos["a1"][0] < 0) == (pos["a2"][0] < 0) and (pos["b1"][0] < 0) == (pos["b2"][0] < 0)
    assert pos["a1"][0] * pos["b1"][0] < 0
    assert pos["stem"][0] == pytest.approx(0.0) and pos["join"][0] == pytest.approx(0.0)


def test_layout_random_dags_put_every_node_below_its_predecessors_without_overlap():
    for seed in range(4):
        prob = dag_problem(18, width=3, seed=seed)
        g = nx.DiGraph([(e.src, e.dst) for e in prob.edges])
        pos = layered_layout(g)
        for u, v in g.edges:
            assert pos[v][1] < pos[u][1]
        rows: dict[float, list[float]] = {}
        for x, y in pos.values():
            rows.setdefault(y, []).append(x)
        for xs in rows.values():
            xs.sort()
            assert all(b - a >= 1.0 - 1e-9 for a, b in zip(xs, xs[1:])), xs


def test_plan_graph_carries_the_plan(fork_join):
    prob, plan = fork_join
    g = plan_graph(plan, prob)
    assert set(g.nodes) == {layer.name for layer in prob.layers}
    for layer in prob.layers:
        a = plan.assignments[layer.name]
        d = g.nodes[layer.name]
        assert (d["processor"], d["rank"], d["option_id"]) == (a.processor, a.rank, a.option_id)
        assert d["duration_us"] == pytest.approx(a.finish_us - a.start_us)
        assert d["energy_uj"] == layer.option(a.option_id).energy_uj
    for e in prob.edges:
        d = g.edges[e.src, e.dst]
        cross = plan.assignments[e.src].processor != plan.assignments[e.dst].processor
        assert d["bytes"] == e.bytes and d["cross"] == cross
        assert (d["transfer_us"] > 0) == cross


def test_fork_join_plan_uses_both_processors(fork_join):
    # the pictures below should show cross-processor edges; this plan is fastest with both processors busy
    prob, plan = fork_join
    assert {a.processor for a in plan.assignments.values()} == {"cpu", "gpu"}


@pytest.mark.parametrize("which", ["fork_join", "branches", "chain", "zoo_svhn", "zoo_resnet"])
def test_svg_has_one_group_per_block_with_label_and_tooltip(which, request):
    prob, plan = request.getfixturevalue(which)
    svg = graph_svg(plan, prob)
    keep_picture(f"graph_{which}.svg", svg)
    groups = _block_groups(svg)  # also proves the SVG is well-formed XML
    assert sorted(g.get("id") for g in groups) == sorted(block_id(layer.name) for layer in prob.layers)
    for g in groups:
        title = g.find(f"{SVG_NS}title")
        assert title is not None and title.text
    texts = [t.text or "" for t in ET.fromstring(svg).iter(f"{SVG_NS}text")]
    for layer in prob.layers:
        a = plan.assignments[layer.name]
        assert short(layer.name, 26) in texts
        assert any(a.processor in t and ("dense" in t if a.rank is None else f"r={a.rank}" in t) for t in texts)
    n_cross = sum(plan.assignments[e.src].processor != plan.assignments[e.dst].processor for e in prob.edges)
    assert len(re.findall(r'<g id="xfer-\d+"', svg)) == n_cross
    assert len(re.findall(r'<g id="edge-\d+"', svg)) == len(prob.edges) - n_cross


def test_cross_edges_are_labelled_with_bytes(fork_join):
    from deepx_opt.viz._common import fmt_bytes

    prob, plan = fork_join
    svg = graph_svg(plan, prob)
    texts = [t.text or "" for t in ET.fromstring(svg).iter(f"{SVG_NS}text")]
    cross = [e for e in prob.edges if plan.assignments[e.src].processor != plan.assignments[e.dst].processor]
    assert cross
    for e in cross:
        assert any(t.startswith(fmt_bytes(e.bytes) + " · ") for t in texts)


def test_odd_names_are_escaped_everywhere(fork_join):
    prob, plan = fork_join
    svg = graph_svg(plan, prob)
    assert ODD not in svg and html.escape(ODD, quote=False) in svg
    inline = graph_svg(plan, prob, inline=True)
    assert inline.startswith("<svg") and "<?xml" not in inline and "DOCTYPE" not in inline
    ET.fromstring(inline)
    dot = graph_dot(plan, prob)
    assert '"conv<1> & \\"x\\""' in dot


def test_inline_svg_prefixes_matplotlib_ids_but_keeps_block_ids(branches):
    prob, plan = branches
    inline = graph_svg(plan, prob, inline=True)
    ids = re.findall(r'\bid="([^"]+)"', inline)
    assert ids and all(i.startswith(("graph-", "block-", "xfer-", "edge-")) for i in ids)
    refs = re.findall(r'url\(#([^)]+)\)|href="#([^"]+)"', inline)
    for a, b in refs:  # every reference points at an id of this picture
        assert (a or b) in ids


def test_dot_lists_every_block_and_edge(branches):
    prob, plan = branches
    dot = graph_dot(plan, prob)
    assert dot.startswith(f'digraph "{prob.name}" {{') and dot.rstrip().endswith("}")
    nodes = re.findall(r'^  "([^"]+)" \[label=', dot, flags=re.M)
    edges = re.findall(r'^  "([^"]+)" -> "([^"]+)" \[', dot, flags=re.M)
    assert sorted(nodes) == sorted(layer.name for layer in prob.layers)
    assert sorted(edges) == sorted((e.src, e.dst) for e in prob.edges)
    n_cross = sum(plan.assignments[e.src].processor != plan.assignments[e.dst].processor for e in prob.edges)
    assert dot.count("style=dashed") == n_cross


def test_png_is_a_real_picture(fork_join):
    prob, plan = fork_join
    data = graph_png(plan, prob)
    keep_picture("graph_fork_join.png", data)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    shape, std = png_stats(data)
    assert shape[0] > 300 and shape[1] > 500 and std > 0.05


def test_figure_grows_with_the_graph(chain, branches):
    small = graph_figure(*reversed(chain)).get_size_inches()
    prob = dag_problem(30, width=3, seed=1)
    big = graph_figure(get_solver("heft").solve(prob), prob).get_size_inches()
    assert big[1] > small[1]


def test_save_graph_by_suffix(tmp_path, branches):
    prob, plan = branches
    for suffix in (".svg", ".png", ".dot"):
        p = save_graph(plan, prob, tmp_path / f"g{suffix}")
        assert p.stat().st_size > 200
    with pytest.raises(InputError, match=r"\.jpg"):
        save_graph(plan, prob, tmp_path / "g.jpg")


def test_plans_without_assignments_or_for_another_problem_are_refused(branches, chain):
    prob, plan = branches
    empty = Plan(problem_name=prob.name, solver="cpsat", status=Status.INFEASIBLE, goal=prob.goal)
    with pytest.raises(PlanError, match="INFEASIBLE"):
        graph_svg(empty, prob)
    with pytest.raises(PlanError, match="does not fit"):
        graph_svg(chain[1], prob)


def test_residual_dag_keeps_blocks_below_their_inputs(zoo_resnet):
    prob, plan = zoo_resnet
    g = plan_graph(plan, prob)
    pos = layered_layout(g)
    assert all(pos[v][1] < pos[u][1] for u, v in g.edges)
    joins = [n for n in g if g.in_degree(n) == 2]
    assert len(joins) == 16  # one residual add per bottleneck (3 + 4 + 6 + 3)
    png = graph_png(plan, prob, dpi=40)
    keep_picture("graph_resnet50like.png", png)
    assert png_stats(png)[1] > 0.05
