"""Timeline (Gantt): predicted bars, transfers, measured bars from a real run."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from deepx_opt.errors import InputError
from deepx_opt.viz.graph import block_id
from deepx_opt.viz.timeline import (
    TRANSFERS_ROW,
    TimelineBar,
    measured_bars,
    predicted_bars,
    save_timeline,
    timeline_figure,
    timeline_png,
    timeline_svg,
    transfer_bars,
)

from .conftest import keep_picture, png_stats


def _ids(svg: str, prefix: str) -> list[str]:
    return [i for i in re.findall(r'<g id="([^"]+)"', svg) if i.startswith(prefix)]


def test_predicted_bars_follow_the_plan(branches):
    prob, plan = branches
    bars = predicted_bars(plan, prob)
    assert len(bars) == len(prob.layers)
    assert [b.start_us for b in bars] == sorted(b.start_us for b in bars)
    for b in bars:
        a = plan.assignments[b.label]
        assert (b.row, b.start_us, b.finish_us) == (a.processor, a.start_us, a.finish_us)


def test_transfer_bars_are_the_cross_edges_and_host_copies(fork_join):
    prob, plan = fork_join
    bars = transfer_bars(plan, prob)
    cross = [e for e in prob.edges if plan.assignments[e.src].processor != plan.assignments[e.dst].processor]
    io = [lay for lay in prob.layers if plan.assignments[lay.name].processor != prob.host
          for n in (lay.input_bytes, lay.output_bytes) if n]
    assert len(bars) == len(cross) + len(io)
    for e in cross:
        b = next(b for b in bars if b.label == f"{e.src}→{e.dst}")
        au, av = plan.assignments[e.src], plan.assignments[e.dst]
        assert b.row == TRANSFERS_ROW and b.start_us == au.finish_us
        assert b.duration_us == pytest.approx(prob.transfer_time_us(au.processor, av.processor, e.bytes))
        assert b.finish_us <= av.start_us + 1e-6  # the consumer starts after its data arrived


def test_svg_has_a_bar_per_block(fork_join):
    prob, plan = fork_join
    svg = timeline_svg(plan, prob)
    keep_picture("timeline_fork_join.svg", svg)
    ET.fromstring(svg)
    assert sorted(_ids(svg, "bar-pred-")) == sorted("bar-pred-" + block_id(n)[len("block-"):] for n in plan.assignments)
    assert len(_ids(svg, "xfer-pred-")) == len(transfer_bars(plan, prob))
    assert not _ids(svg, "bar-meas-")
    inline = timeline_svg(plan, prob, inline=True)
    assert inline.startswith("<svg") and "<metadata>" not in inline


def test_without_problem_there_is_no_transfer_row(chain):
    prob, plan = chain
    svg = timeline_svg(plan)
    assert len(_ids(svg, "bar-pred-")) == len(prob.layers) and not _ids(svg, "xfer-")


def test_measured_run_is_drawn_below_on_the_same_axis(real_run):
    prob, plan, report = real_run
    bars = measured_bars(report)
    assert sorted(b.label for b in bars) == sorted(plan.assignments)
    assert {b.label: b.row for b in bars} == {k: v.processor for k, v in report.blocks.items()}
    for data in (report, report.to_dict()):  # the object and its JSON read the same
        fig = timeline_figure(plan, prob, data)
        axes = [ax for ax in fig.axes if ax.get_title(loc="left")]
        assert len(axes) == 2 and axes[0].get_xlim() == axes[1].get_xlim()
        assert axes[1].get_title(loc="left").startswith("measured (last of 3 runs)")
        scale = 1e3 if "ms" in axes[1].get_xlabel() else 1.0
        assert axes[1].get_xlim()[1] >= max([b.finish_us for b in bars] + [report.latencies_us[-1]]) / scale
    svg = timeline_svg(plan, prob, report)
    keep_picture("timeline_real_run.svg", svg)
    assert len(_ids(svg, "bar-meas-")) == len(plan.assignments)
    png = timeline_png(plan, prob, report)
    keep_picture("timeline_real_run.png", png)
    shape, std = png_stats(png)
    assert shape[0] > 300 and std > 0.05


def test_measured_bars_take_colours_of_the_plan_processor(real_run):
    from matplotlib.colors import to_hex

    from deepx_opt.viz._common import lighten, processor_colors

    prob, plan, report = real_run
    fig = timeline_figure(plan, prob, report)
    colors = processor_colors([p.name for p in prob.processors])
    meas_ax = [ax for ax in fig.axes if ax.get_title(loc="left").startswith("measured")][0]
    faces = {p.get_gid(): to_hex(p.get_facecolor()).upper() for p in meas_ax.patches if p.get_gid()}
    for layer, a in plan.assignments.items():
        gid = "bar-meas-" + block_id(layer)[len("block-"):]
        assert faces[gid] == lighten(colors[a.processor], 0.6)


def test_measured_bars_need_start_and_finish():
    with pytest.raises(InputError, match="start_us"):
        measured_bars({"blocks": [{"layer": "a", "processor": "cpu"}]})
    with pytest.raises(InputError, match="blocks"):
        measured_bars({"latency_us": 3.0})
    bars = [TimelineBar("b", "cpu", 5.0, 9.0), TimelineBar("a", "cpu", 0.0, 5.0)]
    assert [b.label for b in measured_bars(bars)] == ["a", "b"]


def test_save_timeline(tmp_path, branches):
    prob, plan = branches
    assert save_timeline(plan, tmp_path / "t.png", prob).read_bytes()[:4] == b"\x89PNG"
    assert "<svg" in save_timeline(plan, tmp_path / "t.svg", prob).read_text()
    with pytest.raises(InputError, match="suffix"):
        save_timeline(plan, tmp_path / "t.pdf", prob)
