"""HTML report: content, escaping, self-containment, and a real headless browser."""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from html.parser import HTMLParser

import numpy as np
import pytest

from deepx_opt.errors import InputError, PlanError
from deepx_opt.solvers import get_solver, list_solvers
from deepx_opt.solvers.plan import Plan, Status
from deepx_opt.viz.graph import block_id
from deepx_opt.viz.report import compare_rows, load_compare, render_report, run_rows, write_report

from .browser import Chromium, find_browser
from .conftest import ODD, keep_picture, png_stats


class _Tags(HTMLParser):
    """Collects start tags and every attribute that could fetch something."""

    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.fetching: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for k, v in attrs:
            if k in ("src", "href", "xlink:href", "action", "data", "poster") and v and not v.startswith(("#", "data:")):
                self.fetching.append((tag, k, v))


def _parse(page: str) -> _Tags:
    p = _Tags()
    p.feed(page)
    return p


def _heuristic_plans(prob):
    return [get_solver(n).solve(prob, time_limit_s=10) for n in list_solvers(prob, kind="heuristic")]


def test_report_has_every_section_and_no_script_or_external_resource(fork_join):
    prob, plan = fork_join
    page = render_report(plan, problem=prob, compare=_heuristic_plans(prob))
    tags = _parse(page)
    assert "script" not in tags.tags and not tags.fetching, tags.fetching
    assert re.search(r"https?://(?!www\.w3\.org/(2000/svg|1999/xlink))", page) is None
    for sec in ("summary", "graph", "timeline", "compare", "measured", "blocks"):
        assert f'<section id="{sec}">' in page
    assert page.count('<g id="block-') == len(prob.layers)
    assert page.count('<g id="bar-pred-') == len(prob.layers)
    assert "valid (check_plan found no violation)" in page


def test_every_text_is_escaped():
    from .conftest import fork_join_problem

    evil = "<script>alert(1)</script>"
    prob = replace(fork_join_problem(), name=evil)
    plan = get_solver("heft").solve(prob, time_limit_s=10)
    plan = replace(plan, message='<img src=x onerror="alert(2)">')
    page = render_report(plan, problem=prob, compare=[get_solver("cpu_only").solve(prob, time_limit_s=10)])
    tags = _parse(page)
    assert "script" not in tags.tags and "img" not in tags.tags
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert ODD not in page  # the layer name with < & " is escaped in tables and in the SVG
    assert "conv&lt;1&gt; &amp; &quot;x&quot;" in page


def test_compare_table_ranks_plans_and_checks_them(branches):
    prob, plan = branches
    others = _heuristic_plans(prob)
    rows = compare_rows(plan, others, prob)
    assert rows[0]["plan"] is plan and rows[0]["this"] and rows[0]["relative"] == pytest.approx(1.0)
    feasible = [r for r in rows[1:] if r["plan"].status.has_plan]
    assert [r["plan"].objective for r in feasible] == sorted(r["plan"].objective for r in feasible)
    for r in rows:
        if r["plan"].status.has_plan:
            assert r["check"] == []  # every heuristic plan passes the independent checker
            # the plan is optimal: no heuristic beats it
            assert r["plan"].objective >= plan.objective - 1e-6
    page = render_report(plan, problem=prob, compare=others)
    for o in others:
        assert f"<td>{o.solver}</td>" in page or f"<td>{o.solver} (this plan)</td>" in page


def test_a_broken_plan_is_reported_with_its_violations(fork_join):
    prob, plan = fork_join
    first = next(iter(plan.assignments))
    a = plan.assignments[first]
    moved = dict(plan.assignments)
    moved[first] = replace(a, start_us=a.start_us + 1000.0, finish_us=a.finish_us + 1000.0)
    bad = replace(plan, assignments=moved)
    page = render_report(bad, problem=prob)
    assert "violation(s), listed below" in page and '<ul class="violations">' in page


def test_infeasible_plan_still_renders(fork_join):
    prob, _ = fork_join
    tight = prob.replace(latency_budget_us=1.0)
    plan = get_solver("cpsat").solve(tight, time_limit_s=10)
    assert plan.status is Status.INFEASIBLE
    page = render_report(plan, problem=tight)
    assert "no assignments: nothing to draw" in page and "<svg" not in page


def test_report_without_problem_explains_the_missing_graph(chain):
    _, plan = chain
    page = render_report(plan)
    assert "pass it (--problem PROBLEM.json" in page
    assert page.count('<g id="bar-pred-') == len(plan.assignments)


def test_plan_and_problem_must_match(branches, chain):
    with pytest.raises(PlanError, match="is for problem"):
        render_report(chain[1], problem=branches[0])


def test_load_compare_formats(tmp_path, branches):
    prob, plan = branches
    others = _heuristic_plans(prob)[:2]
    as_dicts = [o.to_dict() for o in others]
    for content in (as_dicts, {"plans": as_dicts}, {"results": [{"plan": d} for d in as_dicts]}):
        f = tmp_path / "c.json"
        f.write_text(json.dumps(content))
        got = load_compare(f)
        assert [p.to_dict() for p in got] == as_dicts
    # the output of `deepx compare -o`: rows with a plan, or the error of a solver that raised
    doc = {"model": prob.name, "goal": prob.goal,
           "rows": [{"solver": o.solver, "status": o.status.value, "plan": d} for o, d in zip(others, as_dicts)]
           + [{"solver": "pulp_highs", "status": "ERROR", "message": "highspy missing", "plan": None, "solve_time_s": 0.5}]}
    (tmp_path / "compare.json").write_text(json.dumps(doc))
    got = load_compare(tmp_path / "compare.json")
    assert [p.to_dict() for p in got[:2]] == as_dicts
    assert got[2].status is Status.UNKNOWN and got[2].solver == "pulp_highs" and "highspy missing" in got[2].message
    page = render_report(plan, problem=prob, compare=got)
    assert "ERROR: highspy missing" in page
    (tmp_path / "one.json").write_text(others[0].to_json())
    assert len(load_compare(tmp_path / "one.json")) == 1
    (tmp_path / "bad.json").write_text(json.dumps({"whatever": 1}))
    with pytest.raises(InputError, match="expected a plan"):
        load_compare(tmp_path / "bad.json")
    with pytest.raises(InputError, match="does not exist"):
        load_compare(tmp_path / "missing.json")


def test_predicted_vs_measured_from_a_real_run(real_run):
    prob, plan, report = real_run
    rows, totals = run_rows(report.to_dict(), plan)
    assert [r["layer"] for r in rows] == sorted(plan.assignments, key=lambda n: plan.assignments[n].start_us)
    for r in rows:
        a = plan.assignments[r["layer"]]
        assert r["predicted_us"] == pytest.approx(a.finish_us - a.start_us)
        assert r["measured_us"] == pytest.approx(report.blocks[r["layer"]].latency_us)
        assert r["plan_processor"] == a.processor
    assert totals["latency_us"] == report.latency_us
    page = render_report(plan, problem=prob, run=report)
    assert page.count('<g id="bar-meas-') == len(plan.assignments)
    assert "measured median" in page and "not measured on this machine" in page


# ------------------------------------------------------------------------------------------ browser
def _browser_or_skip() -> str:
    path = find_browser()
    if path:
        return path
    if os.environ.get("DEEPX_REQUIRE_BROWSER") == "1":
        pytest.fail("DEEPX_REQUIRE_BROWSER=1 but no Chromium-family browser is installed (apt-get install chromium)")
    pytest.skip("no Chromium-family browser installed (apt-get install chromium); set DEEPX_REQUIRE_BROWSER=1 to fail instead")


@pytest.fixture(scope="module")
def browser():
    _browser_or_skip()
    with Chromium() as b:
        yield b


def test_browser_harness_sees_errors_and_requests(tmp_path, browser):
    # the checks below are only worth something if the harness does catch a broken page
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>console.error('boom'); missing();</script>"
                   "<img src='http://127.0.0.1:9/x.png'></body></html>")
    browser.load(bad)
    errs = browser.errors()
    assert any("boom" in e for e in errs) and any("missing" in e for e in errs)
    assert any(u.startswith("http://127.0.0.1:9/") for u in browser.requests())


def test_report_loads_in_a_real_browser_and_shows_the_graph(tmp_path, browser, real_run):
    prob, plan, report = real_run
    others = _heuristic_plans(prob)
    page = write_report(tmp_path / "report.html", plan, problem=prob, run=report, compare=others)
    browser.load(page)
    assert browser.errors() == []
    assert browser.requests() == [page.resolve().as_uri()]  # nothing but the page itself is fetched
    assert browser.evaluate("document.title") == f"Plan report: {prob.name}"
    # the browser parsed the inline SVG: one rendered group per block, each with a non-empty box
    ids = browser.evaluate("Array.from(document.querySelectorAll('#graph svg g[id^=\"block-\"]')).map(g => g.id)")
    assert sorted(ids) == sorted(block_id(n) for n in plan.assignments)
    sizes = browser.evaluate("Array.from(document.querySelectorAll('#graph svg g[id^=\"block-\"]'))"
                             ".map(g => { const b = g.getBBox(); return b.width * b.height; })")
    assert all(s > 100 for s in sizes)
    assert browser.evaluate("document.querySelectorAll('#timeline svg g[id^=\"bar-meas-\"]').length") == len(plan.assignments)
    rows = browser.evaluate("document.querySelectorAll('#compare tbody tr').length")
    assert rows == 1 + len(others)

    shot = browser.screenshot(selector="#graph svg")
    keep_picture("report_graph_screenshot.png", shot)
    shape, std = png_stats(shot)
    assert shape[0] > 200 and shape[1] > 300 and std > 0.05
    # the processors' colours are on screen: the graph is drawn, not just laid out
    from matplotlib.image import imread
    import io

    img = (imread(io.BytesIO(shot), format="png")[..., :3] * 255).round().astype(int)
    from deepx_opt.viz._common import lighten, processor_colors

    for proc in {a.processor for a in plan.assignments.values()}:
        hexc = lighten(processor_colors([p.name for p in prob.processors])[proc], 0.6)
        rgb = np.array([int(hexc[i:i + 2], 16) for i in (1, 3, 5)])
        close = (np.abs(img - rgb).max(axis=-1) <= 3).sum()
        assert close > 500, (proc, hexc, close)
    full = browser.screenshot()
    keep_picture("report_page_screenshot.png", full)
    assert png_stats(full)[1] > 0.05


def test_plan_meta_says_what_the_plan_was_made_from(chain):
    prob, plan = chain
    plan = replace(plan, meta={"model": "digits_mlp", "profile_name": "tegrak1", "rlc_method": "data", "calib": None})
    page = render_report(plan, problem=prob)
    assert "made from" in page and "model digits_mlp, profile_name tegrak1, rlc_method data" in page


def test_zoo_report_in_the_browser(tmp_path, browser, zoo_resnet):
    prob, plan = zoo_resnet
    page = write_report(tmp_path / "resnet.html", plan, problem=prob, compare=_heuristic_plans(prob))
    browser.load(page)
    assert browser.errors() == []
    assert browser.requests() == [page.resolve().as_uri()]
    n = browser.evaluate("document.querySelectorAll('#graph svg g[id^=\"block-\"]').length")
    assert n == len(prob.layers) == 72
    shot = browser.screenshot(selector="#graph svg")
    keep_picture("report_resnet_graph_screenshot.png", shot)
    assert png_stats(shot)[1] > 0.05
